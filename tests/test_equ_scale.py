"""EquScal backbones (ICLR 2021 sec. 3.5, eq. 3 and 5): the scale group correlation layers and the two models.

Exact checks use the symmetry module's actions on history and output: the magnitude part of eq. 3 (``w -> a w``,
``a > 0``), whole-pixel translations (circular ResNet) and, for one correlation layer, the level shift under zoom on
fields linear in space (where bilinear resampling is exact). The per-frame spatial scaling of whole models is only
approximate on a grid; it is compared with the plain backbones of the same width.
"""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import Tensor, nn

from symbench.fields import VELOCITY_2D, FieldLayout
from symbench.layers.scale_conv import (
    ScaleBatchNorm2d,
    ScaleConv2d,
    ScaleConvProject2d,
    ScaleConvTranspose2d,
    ScaleLift,
    scale_levels,
    splat_matrix,
    split_levels,
)
from symbench.metrics.equivariance import EquivarianceError, equivariance_pair
from symbench.models import build
from symbench.models.equ_scale import EquScaleResNet, EquScaleUNet
from symbench.symmetry import Magnitude, SpatialScaling, Translation

T_IN = 3
VELOCITY_TEMPERATURE = FieldLayout.of("velocity:vector", "temperature:scalar")
MODELS = {"resnet": EquScaleResNet, "unet": EquScaleUNet}
SCALE_GRID = 48


def history(layout: FieldLayout, batch: int = 2, size: int = 32, seed: int = 1) -> Tensor:
    return torch.randn(batch, T_IN, layout.channels, size, size, generator=torch.Generator().manual_seed(seed))


def smooth_history(size: int = SCALE_GRID, seed: int = 0) -> Tensor:
    """Three velocity histories of Gaussian-filtered noise (correlation lengths 1, 2 and 4 pixels) under a centred
    Gaussian envelope of width size/8, so that zooming by 1/2..2 neither cuts the flow off nor moves it past the
    grid: the zero padding then agrees with the zeros ``SpatialScaling`` puts outside the grid."""
    z = torch.randn(3, T_IN, 2, size, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    k = torch.fft.fftfreq(size, dtype=torch.float64)
    ell = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64).view(-1, 1, 1, 1, 1)
    z = torch.fft.ifft2(torch.fft.fft2(z) * torch.exp(-2 * math.pi**2 * ell**2 * (k[:, None] ** 2 + k**2))).real
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    z = z * torch.exp(-(r[:, None] ** 2 + r**2) / (2 * (size / 8) ** 2))
    return (z / z.flatten(1).std(1).view(-1, 1, 1, 1, 1)).float()


def relative_error(model: nn.Module, x: Tensor, act, layout: FieldLayout) -> float:
    metric = EquivarianceError()
    metric.update(*equivariance_pair(model, x, lambda t: act(t, layout)))
    return metric.compute()["relative"].item()


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- the layers -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [3, 4, 5])
def test_splat_keeps_mass_and_first_moment_and_is_the_identity_at_scale_one(size: int) -> None:
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    assert torch.equal(splat_matrix(1.0, size), torch.eye(size, dtype=torch.float64))
    for scale in (0.9, 0.7, 0.5, 0.3, 0.1, 0.0):
        a = splat_matrix(scale, size)
        assert torch.allclose(a.sum(0), torch.ones(size, dtype=torch.float64))
        assert torch.allclose(offsets @ a, scale * offsets)
    # At scale 0 every tap lands on the centre: one tap for odd sizes, split evenly between two for even ones.
    middle = list(range((size - 1) // 2, size // 2 + 1))
    expected = torch.zeros(size, size, dtype=torch.float64)
    expected[middle] = 1.0 / len(middle)
    assert torch.equal(splat_matrix(0.0, size), expected)
    with pytest.raises(ValueError, match="scales must lie in"):
        splat_matrix(1.5, size)


def test_scale_levels_are_geometric_from_one() -> None:
    assert scale_levels(4, 2.0) == (1.0, 0.5, 0.25, 0.125)
    for bad in [(0, 2.0), (3, 1.0)]:
        with pytest.raises(ValueError):
            scale_levels(*bad)


def test_each_level_correlates_with_the_splatted_base_kernel() -> None:
    """Level ``s`` of the grouped convolution is the ordinary convolution of level ``s`` of the input with
    ``A_s K A_s^T``, ``A_s = splat_matrix(sigma_s)`` (level 0: the base kernel itself)."""
    torch.manual_seed(0)
    scales = (1.0, 0.6, 0.25)
    conv, up = ScaleConv2d(3, 4, 3, scales), ScaleConvTranspose2d(3, 4, scales)
    x = split_levels(torch.randn(2, 3 * 3, 8, 8), 3)
    with torch.no_grad():
        y, y_up = split_levels(conv(x.flatten(1, 2)), 3), split_levels(up(x.flatten(1, 2)), 3)
        for s, sigma in enumerate(scales):
            a3, a4 = splat_matrix(sigma, 3).float(), splat_matrix(sigma, 4).float()
            expected = nn.functional.conv2d(x[:, s], a3 @ conv.weight @ a3.T, padding=1)
            expected_up = nn.functional.conv_transpose2d(x[:, s], a4 @ up.weight @ a4.T, stride=2, padding=1)
            assert torch.allclose(y[:, s], expected, atol=1e-5)
            assert torch.allclose(y_up[:, s], expected_up, atol=1e-5)


def test_output_layer_averages_the_levels_and_undoes_the_lifting() -> None:
    """The fused output layer is ``mean_s sigma_s^-e (K_{sigma_s} * x_s)``; with a centred delta kernel (which every
    rescaling keeps) it undoes the lifting: ``mean_s sigma_s^-e (sigma_s^e x) = x`` for every field kind."""
    torch.manual_seed(0)
    layout, scales = VELOCITY_TEMPERATURE, scale_levels(3, 1.7)
    x = history(layout)[:, 0]
    for power in (0.0, 1.0, 3.0):
        lifted = split_levels(ScaleLift(layout, 1, scales, power)(x), 3)
        assert torch.allclose(lifted[:, 2, :2], scales[2] * x[:, :2])  # velocity: sigma
        assert torch.allclose(lifted[:, 2, 2], scales[2] ** power * x[:, 2])  # temperature: sigma^power
        head = ScaleConvProject2d(layout.channels, layout, 3, scales, power)
        with torch.no_grad():
            head.weight.zero_()
            head.weight[:, :, 1, 1] = torch.eye(layout.channels)
            assert torch.allclose(head(lifted.flatten(1, 2)), x, atol=1e-6)
            head.weight.normal_()
            expected = sum(
                nn.functional.conv2d(lifted[:, s], splat_matrix(sigma, 3).float() @ head.weight
                                     @ splat_matrix(sigma, 3).float().T, padding=1)
                / torch.tensor([sigma, sigma, sigma**power]).view(1, -1, 1, 1) for s, sigma in enumerate(scales)
            ) / len(scales)
            assert torch.allclose(head(lifted.flatten(1, 2)), expected, atol=1e-5)


def hidden_layout(channels: int) -> FieldLayout:
    return FieldLayout.of(*[f"h{i}:scalar" for i in range(channels)])


def test_lifted_correlation_of_a_linear_field_moves_up_one_level_under_zoom() -> None:
    """Level ``sigma`` of the correlation of ``T_lam w`` is level ``lam sigma`` of that of ``w``, zoomed: exact for
    ``w`` linear in space (bilinear zoom and the splat's first moment are exact there), with the lifting factors of
    eq. 3 per field kind (vectors ``lam``, the scalar ``lam^2`` here)."""
    torch.manual_seed(0)
    layout, scales, out, size = VELOCITY_TEMPERATURE, scale_levels(4, 2.0), 5, 24
    lift = ScaleLift(layout, 1, scales, scalar_power=2.0).double()
    conv = ScaleConv2d(layout.channels, out, 3, scales).double()
    coords = torch.arange(size, dtype=torch.float64)
    a, b, c = torch.randn(3, 1, layout.channels, 1, 1, dtype=torch.float64)
    w = a + b * coords + c * coords[:, None]  # (1, C, H, W), linear in x and y
    g = SpatialScaling(0.5, scalar_power=2.0)
    zoom = SpatialScaling(0.5)  # hidden channels are plain functions on the grid: zoomed, not multiplied
    with torch.no_grad():
        moved = split_levels(conv(lift(g.act(w, layout))), len(scales))
        levels = split_levels(conv(lift(w)), len(scales))
    inner = (..., slice(1, -1), slice(1, -1))  # off the zero-padded border
    for s in range(len(scales) - 1):
        expected = zoom.act(levels[:, s + 1], hidden_layout(out))
        assert torch.allclose(moved[:, s][inner], expected[inner], atol=1e-10)
    # Without the lifting factors the levels would not line up: the scaled input carries lam on the vectors.
    assert not torch.allclose(moved[:, 0][inner], zoom.act(levels[:, 0], hidden_layout(out))[inner], atol=1e-3)


def test_layers_are_differentiable_through_the_rescaled_kernels() -> None:
    """Every level's kernel is generated from the trainable base weight in forward (nothing detached), and the hand
    written backward of the normalisation is right."""
    torch.manual_seed(0)
    scales = (1.0, 0.6, 0.2)
    x = torch.randn(1, 3 * 2, 5, 5, dtype=torch.float64, requires_grad=True)
    for layer in (ScaleConv2d(2, 3, 3, scales, stride=2, padding_mode="circular"), ScaleConvTranspose2d(2, 3, scales),
                  ScaleConvProject2d(2, VELOCITY_2D, 3, scales, padding_mode="reflect"),
                  ScaleBatchNorm2d(2, len(scales))):
        layer = layer.double().train()
        with torch.no_grad():
            layer.weight.uniform_(0.5, 1.5)
        assert torch.autograd.gradcheck(lambda inp, wt: torch.func.functional_call(layer, {"weight": wt}, (inp,)),  # noqa: B023
                                        (x, layer.weight.detach().clone().requires_grad_()))
    # A loss on the smallest level alone reaches the base weight only through its rescaling.
    conv = ScaleConv2d(2, 3, 3, scales).double()
    split_levels(conv(x), len(scales))[:, -1].square().sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_scale_batch_norm_pools_levels_and_is_linear_in_evaluation() -> None:
    torch.manual_seed(0)
    norm = ScaleBatchNorm2d(3, 2, momentum=1.0).train()
    base = torch.randn(4, 3, 5, 5) * torch.tensor([1.0, 2.0, 3.0]).view(1, -1, 1, 1)
    x = torch.cat([base, 0.25 * base], dim=1)  # level 1 is level 0 at a quarter of the magnitude
    y = split_levels(norm(x), 2)
    # Training: every channel has unit mean square over batch, levels and pixels together (no centring), and one
    # factor per channel for all levels keeps their ratio.
    assert torch.allclose(y.square().mean(dim=(0, 1, 3, 4)), torch.ones(3), atol=1e-4)
    assert torch.allclose(y[:, 1], 0.25 * y[:, 0])
    assert not torch.allclose(y.mean(dim=(0, 1, 3, 4)), torch.zeros(3), atol=1e-2)
    norm.eval()
    assert torch.allclose(split_levels(norm(x), 2), y, atol=1e-6)  # the running statistics are this batch's
    assert torch.allclose(norm(2.5 * x), 2.5 * norm(x))


# --- the models -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", MODELS)
def test_magnitude_equivariance_is_exact_and_the_plain_backbone_lacks_it(kind: str) -> None:
    layout = VELOCITY_TEMPERATURE
    torch.manual_seed(0)
    model = MODELS[kind](T_IN, layout, width=4).eval()
    x = history(layout)
    g = Magnitude(torch.tensor([0.3, 1.7]))
    assert relative_error(model, x, g.act, layout) < 1e-5
    torch.manual_seed(0)
    plain = build(kind, in_frames=T_IN, layout=layout, width=4).eval()
    assert relative_error(plain, x, g.act, layout) > 1e-2


def test_circular_resnet_commutes_with_whole_pixel_translations() -> None:
    torch.manual_seed(0)
    model = EquScaleResNet(T_IN, VELOCITY_2D, width=4, padding_mode="circular").eval()
    x = history(VELOCITY_2D)
    assert relative_error(model, x, Translation(5, -3).act, VELOCITY_2D) < 1e-5
    zero_padded = EquScaleResNet(T_IN, VELOCITY_2D, width=4).eval()
    assert relative_error(zero_padded, x, Translation(5, -3).act, VELOCITY_2D) > 1e-3


def scale_error(model_of_seed, x: Tensor) -> float:
    """Pooled relative error of ``f(S x)`` vs ``S f(x)`` over ``SpatialScaling(lam)``, ``lam`` in {1/2, 0.8, 1.25,
    2}, and over the random initialisations of seeds 0..4 (one random network is a noisy sample of its class)."""
    metric = EquivarianceError()
    for seed in range(5):
        torch.manual_seed(seed)
        model = model_of_seed().eval()
        with torch.no_grad():
            fx = model(x)
            for lam in (0.5, 0.8, 1.25, 2.0):
                g = SpatialScaling(lam)
                metric.update(model(g.act(x, VELOCITY_2D)), g.act(fx, VELOCITY_2D))
    return metric.compute()["relative"].item()


@pytest.mark.parametrize("kind, bound", [("resnet", 0.5), ("unet", 0.6)])
def test_spatial_scaling_error_is_well_below_the_plain_backbone(kind: str, bound: float) -> None:
    """The per-frame part of eq. 3 (space and magnitude; a one-step model at a fixed frame rate cannot commute with
    the time part). Measured ratios equ/plain: 0.34 (ResNet) and 0.47 (U-net); with a single level
    (``n_scales=1``, which keeps only the exact magnitude part) 0.68 and 1.00."""
    x = smooth_history()
    plain = scale_error(lambda: build(kind, in_frames=T_IN, layout=VELOCITY_2D, width=4), x)
    equ = scale_error(lambda: MODELS[kind](T_IN, VELOCITY_2D, width=4), x)
    print(f"{kind}: spatial-scaling equivariance error {equ:.3f} (plain {plain:.3f}, ratio {equ / plain:.2f})")
    assert equ < bound * plain


@pytest.mark.parametrize("kind", MODELS)
def test_parameter_count_is_within_10_percent_of_the_plain_backbone(kind: str) -> None:
    for width in (4, 8, 16, 64):
        for in_frames in (3, 10, 25):
            plain = n_params(build(kind, in_frames=in_frames, layout=VELOCITY_TEMPERATURE, width=width))
            equ = n_params(MODELS[kind](in_frames, VELOCITY_TEMPERATURE, width=width))
            assert abs(equ / plain - 1) < 0.1, (width, in_frames, equ, plain)


@pytest.mark.parametrize("kind", MODELS)
def test_every_parameter_gets_gradient(kind: str) -> None:
    layout = VELOCITY_TEMPERATURE
    torch.manual_seed(0)
    model = MODELS[kind](T_IN, layout, width=4, scalar_power=3.0).double().train()
    x = history(layout, size=16).double()
    nn.functional.mse_loss(model(x), history(layout, size=16, seed=2)[:, -1].double()).backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().max() < 1e-12]
    assert not dead, f"parameters without gradient: {dead}"


@pytest.mark.parametrize("kind", MODELS)
def test_training_and_evaluation_differ_only_by_the_normalisation_statistics(kind: str) -> None:
    """The lifting is part of forward (Rose-STL-Lab/Equivariant-Net lifted in its training loop only): with the running
    statistics set to the batch's own, the training and evaluation forwards agree."""
    torch.manual_seed(0)
    model = MODELS[kind](T_IN, VELOCITY_2D, width=4)
    for m in model.modules():
        if isinstance(m, ScaleBatchNorm2d):
            m.momentum = 1.0
    x = history(VELOCITY_2D)
    with torch.no_grad():
        train_out = model.train()(x)
        assert torch.allclose(model.eval()(x), train_out, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("kind", MODELS)
def test_state_dict_round_trip_gives_identical_outputs(kind: str, mode: str) -> None:
    layout = VELOCITY_TEMPERATURE
    torch.manual_seed(0)
    source = MODELS[kind](T_IN, layout, width=4)
    x = history(layout, batch=4)
    source.train()(x)  # moves the running statistics away from their initial values
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    buffer.seek(0)
    torch.manual_seed(1)
    target = MODELS[kind](T_IN, layout, width=4)
    getattr(source, mode)()
    getattr(target, mode)()
    with torch.no_grad():
        assert not torch.allclose(target(x), source(x))
        target.load_state_dict(torch.load(buffer, weights_only=True))
        assert torch.equal(target(x), source(x))


@pytest.mark.parametrize("hparams", [{"n_scales": 0}, {"scale_ratio": 1.0}, {"width": 0}])
@pytest.mark.parametrize("kind", MODELS)
def test_bad_hyperparameters_are_rejected(kind: str, hparams: dict) -> None:
    with pytest.raises(ValueError):
        MODELS[kind](T_IN, VELOCITY_2D, **{"width": 4, **hparams})


def test_unet_rejects_a_width_that_is_not_a_multiple_of_4() -> None:
    with pytest.raises(ValueError, match="multiple of 4"):
        EquScaleUNet(T_IN, VELOCITY_2D, width=6)
