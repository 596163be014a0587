"""Uniform-motion (EquUM, ICLR 2021 eq. 2) and magnitude (EquMag, eq. 4) equivariant layers and backbones.

Layers are checked against literal, unfolded implementations of the paper's equations; models for exact
equivariance under the symmetry module's actions (history and output), parameter budget, gradients and checkpoints.
"""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from symbench.fields import VELOCITY_2D, FieldLayout
from symbench.layers import stack_frames
from symbench.layers.magnitude import MagnitudeConv2d, MagnitudeConvTranspose2d, channel_extremes, window_max
from symbench.layers.uniform_motion import (
    MotionComponents,
    UniformMotionConv2d,
    UniformMotionConvTranspose2d,
    _ReplicatePad,
    box_mean,
    pad,
)
from symbench.metrics.equivariance import EquivarianceError, equivariance_pair
from symbench.models import build
from symbench.models.equ_mag import EquMagResNet, EquMagUNet
from symbench.models.equ_um import EquUMResNet, EquUMUNet
from symbench.symmetry import GroupElement, Magnitude, UniformMotion

T_IN = 3
VELOCITY_TEMPERATURE = FieldLayout.of("velocity:vector", "temperature:scalar")
LAYOUTS = {"velocity": VELOCITY_2D, "velocity+temperature": VELOCITY_TEMPERATURE}
UM_MODELS = {"equ_um_resnet": EquUMResNet, "equ_um_unet": EquUMUNet}
MAG_MODELS = {"equ_mag_resnet": EquMagResNet, "equ_mag_unet": EquMagUNet}
MODELS = {**UM_MODELS, **MAG_MODELS}
PLAIN = {"equ_um_resnet": "resnet", "equ_um_unet": "unet", "equ_mag_resnet": "resnet", "equ_mag_unet": "unet"}


def small(name: str, layout: FieldLayout = VELOCITY_2D, seed: int = 0, **hparams) -> nn.Module:
    torch.manual_seed(seed)
    return MODELS[name](T_IN, layout, **{"width": 4, **hparams})


def history(layout: FieldLayout, batch: int = 3, h: int = 16, w: int = 16, seed: int = 1) -> Tensor:
    return torch.randn(batch, T_IN, layout.channels, h, w, generator=torch.Generator().manual_seed(seed))


def motion(batch: int, seed: int = 2) -> UniformMotion:
    """Per-sample c ~ U(-1, 1)^2, the um test split of the paper (D.1)."""
    return UniformMotion(torch.rand(batch, 2, generator=torch.Generator().manual_seed(seed)) * 2 - 1)


def scaling(batch: int, seed: int = 3) -> Magnitude:
    """Per-sample a ~ U(0, 2), the mag test split of the paper (D.1)."""
    return Magnitude(torch.rand(batch, generator=torch.Generator().manual_seed(seed)) * 2)


def group_element(name: str, batch: int) -> GroupElement:
    return motion(batch) if name in UM_MODELS else scaling(batch)


def relative_error(model: nn.Module, x: Tensor, g: GroupElement, layout: FieldLayout) -> float:
    metric = EquivarianceError()
    metric.update(*equivariance_pair(model, x, lambda t: g.act(t, layout)))
    return metric.compute()["relative"].item()


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- literal, unfolded implementations of eq. 2 and eq. 4 (float64, for comparison only) ---

def dilate(x: Tensor) -> Tensor:
    """Zero-interleave the grid: ``x[i, j]`` goes to ``[2i, 2j]`` (the input grid of a stride-2 transposed conv)."""
    b, c, h, w = x.shape
    out = x.new_zeros(b, c, 2 * h - 1, 2 * w - 1)
    out[..., ::2, ::2] = x
    return out


def as_conv_weight(transposed: Tensor) -> Tensor:
    """Weight of the stride-1 convolution over the dilated grid equal to a transposed convolution."""
    return transposed.flip(-2, -1).transpose(0, 1)


def eq2(blocks: Tensor, real: Tensor, weight: Tensor, bias: Tensor | None, kinds_in: MotionComponents,
        kinds_out: MotionComponents, post: nn.Module, shift_back: bool, grid: tuple[int, int]) -> Tensor:
    """Eq. 2 on unfolded blocks ``(B, C, k*k, L)``; ``real (k*k, L)`` marks the taps holding input pixels (the rest
    hold the block mean, i.e. vanish after centring)."""
    ind = kinds_in.indicator().double()
    count = ind.sum(1)[None, :, None] * real.sum(0)[None, None, :]
    mu = torch.einsum("kc,bcql,ql->bkl", ind, blocks, real) / count
    centred = (blocks - torch.einsum("kc,bkl->bcl", ind, mu)[:, :, None, :]) * real
    z = torch.einsum("ocq,bcql->bol", weight.flatten(2), centred)
    if bias is not None:
        z = z + bias[None, :, None]
    y = post(z.unflatten(-1, grid))
    if shift_back:
        y = y + torch.einsum("ko,bkl->bol", kinds_out.indicator().double(), mu).unflatten(-1, grid)
    return y


def eq4(blocks: Tensor, real: Tensor, weight: Tensor, bias: Tensor, activation: nn.Module,
        grid: tuple[int, int]) -> Tensor:
    """Eq. 4 on unfolded blocks: ``s act(conv(P / s) + b)``, ``s`` = max - min over the real pixels of the block."""
    inf = torch.tensor(float("inf"), dtype=blocks.dtype)
    mask = real[None, None].bool()
    s = (torch.where(mask, blocks, -inf).amax((1, 2)) - torch.where(mask, blocks, inf).amin((1, 2)))[:, None]
    assert (s > 0).all(), "the literal eq. 4 needs non-constant blocks"
    z = torch.einsum("ocq,bcql->bol", weight.flatten(2), blocks / s[:, :, None]) + bias[None, :, None]
    return (s * activation(z)).unflatten(-1, grid)


def unfold(x: Tensor, k: int, stride: int = 1) -> Tensor:
    return F.unfold(x, k, stride=stride).unflatten(1, (x.shape[1], k * k))


def out_grid(n: int, k: int, stride: int) -> int:
    return (n - k) // stride + 1


KINDS_IN = {
    "pairs": MotionComponents.hidden(6),
    "history with a scalar": MotionComponents.of_history(VELOCITY_TEMPERATURE, 2),
    "odd hidden": MotionComponents.hidden(5),
}


@pytest.mark.parametrize("shift_back", [True, False])
@pytest.mark.parametrize("kernel_size, stride", [(3, 1), (3, 2), (5, 1)])
@pytest.mark.parametrize("kinds_name", KINDS_IN)
def test_uniform_motion_conv_is_eq2_on_replicate_padded_blocks(kinds_name: str, kernel_size: int, stride: int,
                                                               shift_back: bool) -> None:
    torch.manual_seed(0)
    kinds_in, kinds_out = KINDS_IN[kinds_name], MotionComponents.of_fields(VELOCITY_TEMPERATURE)
    layer = UniformMotionConv2d(kinds_in, kinds_out, kernel_size, stride, post=nn.LeakyReLU(),
                                shift_back=shift_back).double()
    x = torch.randn(2, len(kinds_in), 10, 8, dtype=torch.float64)
    p = (kernel_size - 1) // 2
    blocks = unfold(F.pad(x, (p,) * 4, mode="replicate"), kernel_size, stride)
    grid = (out_grid(10 + 2 * p, kernel_size, stride), out_grid(8 + 2 * p, kernel_size, stride))
    real = torch.ones(blocks.shape[2:], dtype=torch.float64)
    expected = eq2(blocks, real, layer.conv.weight, layer.conv.bias, kinds_in, kinds_out, layer.post, shift_back,
                   grid)
    torch.testing.assert_close(layer(x), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kinds_name", KINDS_IN)
def test_uniform_motion_upsampler_is_eq2_with_the_interleaved_holes_holding_the_block_mean(kinds_name: str) -> None:
    torch.manual_seed(0)
    kinds_in, kinds_out = KINDS_IN[kinds_name], MotionComponents.hidden(4)
    layer = UniformMotionConvTranspose2d(kinds_in, kinds_out, post=nn.ReLU()).double()
    x = torch.randn(2, len(kinds_in), 5, 4, dtype=torch.float64)
    # The transposed conv (k4, s2, p1) on the replicate-padded input is a k4 conv over its dilated grid.
    padded = F.pad(x, (1,) * 4, mode="replicate")
    blocks = unfold(dilate(padded), 4)
    real = unfold(dilate(torch.ones_like(padded[:1, :1])), 4)[0, 0]
    expected = eq2(blocks, real, as_conv_weight(layer.conv.weight), layer.conv.bias, kinds_in, kinds_out, layer.post,
                   True, (10, 8))
    torch.testing.assert_close(layer(x), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("padding_mode", ["zeros", "replicate"])
@pytest.mark.parametrize("kernel_size, stride", [(3, 1), (3, 2), (5, 1)])
def test_magnitude_conv_is_eq4_on_its_blocks(kernel_size: int, stride: int, padding_mode: str) -> None:
    torch.manual_seed(0)
    layer = MagnitudeConv2d(4, 3, kernel_size, stride, activation=nn.LeakyReLU(),
                            padding_mode=padding_mode).double()
    x = torch.randn(2, 4, 10, 8, dtype=torch.float64)
    p = (kernel_size - 1) // 2
    mode = "constant" if padding_mode == "zeros" else padding_mode
    blocks = unfold(F.pad(x, (p,) * 4, mode=mode), kernel_size, stride)
    real = unfold(F.pad(torch.ones_like(x[:1, :1]), (p,) * 4), kernel_size, stride)[0, 0]  # in-grid pixels
    grid = (out_grid(10 + 2 * p, kernel_size, stride), out_grid(8 + 2 * p, kernel_size, stride))
    expected = eq4(blocks, real, layer.conv.weight, layer.conv.bias, layer.activation, grid)
    torch.testing.assert_close(layer(x), expected, rtol=1e-10, atol=1e-10)


def test_magnitude_upsampler_is_eq4_on_the_input_pixels_of_each_block() -> None:
    torch.manual_seed(0)
    layer = MagnitudeConvTranspose2d(4, 3, activation=nn.ReLU()).double()
    x = torch.randn(2, 4, 5, 4, dtype=torch.float64)
    # Transposed conv (k4, s2, p1) = k4 conv over the dilated grid zero-padded by 2.
    blocks = unfold(F.pad(dilate(x), (2,) * 4), 4)
    real = unfold(F.pad(dilate(torch.ones_like(x[:1, :1])), (2,) * 4), 4)[0, 0]
    expected = eq4(blocks, real, as_conv_weight(layer.conv.weight), layer.conv.bias, layer.activation, (10, 8))
    torch.testing.assert_close(layer(x), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kernel_size, stride, padding", [(3, 1, 1), (3, 2, 1), (2, 1, 1), (5, 2, 2)])
def test_window_max_is_max_pooling_with_and_without_autograd(kernel_size: int, stride: int, padding: int) -> None:
    x = torch.randn(2, 2, 9, 8, requires_grad=True)
    expected = F.max_pool2d(x, kernel_size, stride, padding)
    torch.testing.assert_close(window_max(x, kernel_size, stride, padding), expected, rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(window_max(x, kernel_size, stride, padding), expected, rtol=0, atol=0)


@pytest.mark.parametrize("channels", [3, 2000])  # below and (at 16 x 17) above REPLICATE_FOLD_MIN elements
@pytest.mark.parametrize("size", [6, 16])
@pytest.mark.parametrize("p", [1, 2])
def test_replicate_pad_matches_torch_forward_and_backward(channels: int, size: int, p: int) -> None:
    x = torch.randn(2, channels, size, size + 1, dtype=torch.float64, requires_grad=True)
    grad_out = torch.randn(2, channels, size + 2 * p, size + 1 + 2 * p, dtype=torch.float64)
    expected = F.pad(x, (p,) * 4, mode="replicate")
    (expected_grad,) = torch.autograd.grad(expected, x, grad_out)
    for padded in (pad(x, p, "replicate"), _ReplicatePad.apply(x, p)):  # the dispatch, and the fold at every size
        (grad,) = torch.autograd.grad(padded, x, grad_out)
        torch.testing.assert_close(padded, expected, rtol=0, atol=0)
        torch.testing.assert_close(grad, expected_grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("ties", [False, True])
def test_channel_extremes_have_the_values_and_gradient_of_amax_and_amin(ties: bool) -> None:
    """The hand-written backward spreads the gradient over tied channels exactly as ``amax`` / ``amin`` do (ReLU
    outputs tie at 0 for the minimum; a constant pixel ties everywhere)."""
    x = torch.randn(3, 7, 5, 6, dtype=torch.float64)
    if ties:
        x = x.relu()
        x[:, :, 0, 0] = 2.0
    x.requires_grad_(True)
    weights = torch.randn(3, 2, 5, 6, dtype=torch.float64)
    reference = torch.cat([x.amax(1, keepdim=True), -x.amin(1, keepdim=True)], 1)
    (expected,) = torch.autograd.grad((reference * weights).sum(), x)
    values = channel_extremes(x)
    (grad,) = torch.autograd.grad((values * weights).sum(), x)
    torch.testing.assert_close(values, reference, rtol=0, atol=0)
    torch.testing.assert_close(grad, expected, rtol=1e-14, atol=1e-14)
    if ties:
        assert grad[0, :, 0, 0].abs().max() < weights[0, :, 0, 0].abs().max()  # spread, not copied, over 7 ties


@pytest.mark.parametrize("size, kernel_size, stride", [(40, 3, 1), (40, 5, 1), (40, 3, 2), (9, 3, 1), (8, 2, 1)])
def test_box_mean_is_average_pooling(size: int, kernel_size: int, stride: int) -> None:
    x = torch.randn(2, 2, size, size + 3, dtype=torch.float64)
    torch.testing.assert_close(box_mean(x, kernel_size, stride), F.avg_pool2d(x, kernel_size, stride))


def test_mag_unet_head_scale_is_that_of_its_whole_input() -> None:
    """The U-net assembles the head's channel extremes from the history's and the decoder's: same output as the head
    computing them from its concatenated input."""
    model = small("equ_mag_unet", VELOCITY_TEMPERATURE).eval()
    seen = {}
    hook = model.head.register_forward_hook(lambda module, args, out: seen.update(args=args, out=out))
    with torch.no_grad():
        # A negative history, so that the decoder's ReLU output (>= 0) sets the head blocks' maximum.
        model(-1 + 0.1 * history(VELOCITY_TEMPERATURE))
        hook.remove()
        assert len(seen["args"]) == 2  # (input, precomputed extremes)
        torch.testing.assert_close(model.head(seen["args"][0]), seen["out"], rtol=0, atol=0)


@pytest.mark.parametrize("layout_name", LAYOUTS)
def test_history_components_are_those_the_symmetry_module_shifts(layout_name: str) -> None:
    layout = LAYOUTS[layout_name]
    x = history(layout)
    g = motion(x.shape[0])
    shift = stack_frames(g.act(x, layout) - x)[..., 0, 0]  # (B, T*C), constant over the grid
    kinds = MotionComponents.of_history(layout, T_IN)
    torch.testing.assert_close(shift, g.c @ kinds.indicator())


# --- models ---

@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("layout_name", LAYOUTS)
@pytest.mark.parametrize("name", MODELS)
def test_model_is_exactly_equivariant_and_the_plain_backbone_is_not(name: str, layout_name: str, mode: str) -> None:
    layout = LAYOUTS[layout_name]
    x = history(layout)
    g = group_element(name, x.shape[0])
    model = getattr(small(name, layout), mode)()
    # float32 for the eval-mode model as benchmarked; train mode (batch statistics) in float64, where float32
    # round-off, amplified through the 8 blocks (and their batch norms, where a model has them), reaches ~1e-6.
    if mode == "train":
        model, x = model.double(), x.double()
    err = relative_error(model, x, g, layout)
    assert err < (1e-5 if mode == "eval" else 1e-10), f"{name} ({mode}): relative equivariance error {err:.2e}"
    torch.manual_seed(0)
    plain = build(PLAIN[name], in_frames=T_IN, layout=layout, width=4).eval()
    plain_err = relative_error(plain, history(layout), g, layout)
    assert plain_err > 1e-2, f"plain {PLAIN[name]}: error {plain_err:.2e} is suspiciously small"


@pytest.mark.parametrize("name", ["equ_um_unet", "equ_mag_unet"])
def test_unet_pads_an_odd_grid_equivariantly_and_crops_back(name: str) -> None:
    layout = VELOCITY_TEMPERATURE
    x = history(layout, h=24, w=20)
    model = small(name, layout).eval()
    assert model(x).shape == (3, layout.channels, 24, 20)
    assert relative_error(model, x, group_element(name, 3), layout) < 1e-5


def test_resnet_with_identity_first_skip_keeps_the_history_components() -> None:
    """T_in * C = width: the first block keeps the history's channel kinds (x, y, scalar) through its identity skip."""
    layout = VELOCITY_TEMPERATURE
    model = small("equ_um_resnet", layout, width=T_IN * layout.channels).eval()
    assert relative_error(model, history(layout), motion(3), layout) < 1e-5


def test_uniform_motion_moves_vectors_and_leaves_scalars() -> None:
    layout = VELOCITY_TEMPERATURE
    x = history(layout)
    c = torch.tensor([0.7, -0.4])
    for name in UM_MODELS:
        model = small(name, layout).eval()
        with torch.no_grad():
            diff = model(UniformMotion(c).act(x, layout)) - model(x)
        torch.testing.assert_close(diff[:, 0], torch.full_like(diff[:, 0], 0.7), atol=1e-5, rtol=0)
        torch.testing.assert_close(diff[:, 1], torch.full_like(diff[:, 1], -0.4), atol=1e-5, rtol=0)
        torch.testing.assert_close(diff[:, 2], torch.zeros_like(diff[:, 2]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", MAG_MODELS)
def test_magnitude_models_at_zero_negative_and_constant_inputs(name: str) -> None:
    layout = VELOCITY_TEMPERATURE
    model = small(name, layout).eval()
    x = history(layout)
    with torch.no_grad():
        assert torch.equal(model(0 * x), torch.zeros(3, layout.channels, 16, 16))  # a = 0: f(0) = 0 exactly
        constant = torch.full_like(x, 0.5)  # every block constant: MinMax = 0 everywhere
        fc = model(constant)
        assert torch.isfinite(fc).all()
        torch.testing.assert_close(model(3 * constant), 3 * fc, rtol=1e-5, atol=1e-6)
    # a < 0 is not in the symmetry group the model respects (the scaler takes |a|).
    assert relative_error(model, x, Magnitude(-1.0), layout) > 1e-2


@pytest.mark.parametrize("in_frames", [3, 25])
@pytest.mark.parametrize("width", [4, 8, 16, 64])
@pytest.mark.parametrize("name", MODELS)
def test_parameter_count_is_within_10_percent_of_the_plain_backbone(name: str, width: int, in_frames: int) -> None:
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        ours = n_params(MODELS[name](in_frames, VELOCITY_TEMPERATURE, width=width))
        plain = n_params(build(PLAIN[name], in_frames=in_frames, layout=VELOCITY_TEMPERATURE, width=width))
    assert abs(ours / plain - 1) < 0.10, f"{name}: {ours} vs {plain}"


@pytest.mark.parametrize("name", MODELS)
def test_every_parameter_gets_gradient_and_training_lowers_the_loss(name: str) -> None:
    layout = VELOCITY_TEMPERATURE
    model = small(name, layout).double().train()
    x, target = history(layout, batch=2).double(), history(layout, batch=2, seed=5)[:, -1].double()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(6):
        opt.zero_grad()
        loss = F.mse_loss(model(x), target)
        loss.backward()
        if step == 0:
            dead = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().max() < 1e-12]
            assert not dead, f"parameters without gradient: {dead}"
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.98 * losses[0], losses


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("name", MODELS)
def test_state_dict_round_trip_gives_identical_outputs(name: str, mode: str) -> None:
    layout = VELOCITY_TEMPERATURE
    x = history(layout, batch=4)
    source = small(name, layout, seed=0).train()
    with torch.no_grad():
        source(x)  # moves batch-norm running statistics (EquUM-ResNet) off their initial values
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    buffer.seek(0)
    target = small(name, layout, seed=1)
    getattr(source, mode)(), getattr(target, mode)()
    with torch.no_grad():
        assert not torch.allclose(target(x), source(x))
        target.load_state_dict(torch.load(buffer, weights_only=True))
        assert torch.equal(target(x), source(x))


@pytest.mark.parametrize("name", MODELS)
def test_bad_history_raises_one_clear_line(name: str) -> None:
    model = small(name)
    x = torch.randn(2, T_IN + 1, 2, 16, 16)
    with pytest.raises(ValueError) as info:
        model(x)
    assert "\n" not in str(info.value) and str(tuple(x.shape)) in str(info.value)


def test_layers_reject_what_would_break_equivariance() -> None:
    hidden = MotionComponents.hidden(4)
    with pytest.raises(ValueError, match="zero padding"):
        UniformMotionConv2d(hidden, hidden, padding_mode="zeros")
    with pytest.raises(ValueError, match="positively homogeneous"):
        MagnitudeConv2d(4, 4, activation=nn.Tanh())
    with pytest.raises(ValueError, match="multiple of 4"):
        EquUMUNet(T_IN, VELOCITY_2D, width=6)
