"""RGroup (ICML 2022 sec. 3.1, eq. 4-5; regulariser sec. 3.3): regular lift, relaxed group convolutions, the model.

Exact checks (evaluation mode): with all relaxation weights equal the layers and RGroupNet commute with the
symmetry module's quarter turns / circular shifts, and the relaxed scale correlation is the strict one; with
perturbed weights they do not. The expanded single-conv kernel is checked against eq. 5 written out with loops.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from symbench.fields import VELOCITY_2D, FieldLayout
from symbench.layers import stack_frames
from symbench.layers.pixel_mixing import total_variation
from symbench.layers.regular_lift import RegularBatchNorm2d, RegularLift, RegularProject, rotate_regular
from symbench.layers.relaxed_group_conv import (
    RelaxedRotGroupConv2d,
    RelaxedScaleConvProject2d,
    RelaxedScaleGroupConv2d,
    RelaxedTranslationConv2d,
    RotGroupConv2d,
    pairwise_l1,
)
from symbench.layers.scale_steerable import ScaleSteerableConv2d, ScaleSteerableProject2d
from symbench.models.conv_net import conv_budget
from symbench.models.equiv import Equiv
from symbench.models.rgroup import RGroupNet
from symbench.symmetry import rot90, translate

VELOCITY_DENSITY = FieldLayout.of("velocity:vector", "density:scalar")
T_IN, GRID = 3, 12
SCALES = (1.0, 1.5, 2.0)


def randn(*shape: int, seed: int = 0) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def max_err(a: Tensor, b: Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp(min=1.0)).item()


def perturb_(weights: nn.Parameter, seed: int = 1) -> None:
    with torch.no_grad():
        weights.add_(0.5 * randn(*weights.shape, seed=seed))


def relaxed_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if m is not model and hasattr(m, "regularization_loss")]


def small_model(symmetry: str, layout: FieldLayout = VELOCITY_DENSITY, **kw) -> RGroupNet:
    torch.manual_seed(0)
    return RGroupNet(T_IN, layout, symmetry=symmetry, width=6, grid_size=GRID, **kw)


def settle(model: RGroupNet, x: Tensor) -> RGroupNet:
    """A few training-mode forwards so that the batch-norm running statistics are not the trivial ones."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(x)
    return model.eval()


# --- regular lift and projection -------------------------------------------------------------------------------

@pytest.mark.parametrize("k", range(4))
def test_lift_turns_into_group_axis_shift(k: int) -> None:
    lift = RegularLift(VELOCITY_DENSITY, T_IN, 4)
    perturb_(lift.scale)
    x = randn(2, T_IN, VELOCITY_DENSITY.channels, 7, 7)
    lifted = lift(stack_frames(x))
    assert lifted.shape == (2, T_IN * 2 * 4, 7, 7)
    assert max_err(lift(stack_frames(rot90(x, VELOCITY_DENSITY, k))), rotate_regular(lifted, k, 4)) <= 1e-6
    if k:
        assert max_err(rotate_regular(lifted, k, 4), torch.rot90(lifted, k, dims=(-2, -1))) > 0.1


def test_lift_values_and_round_trip() -> None:
    lift, project = RegularLift(VELOCITY_DENSITY, 1, 4), RegularProject(VELOCITY_DENSITY, 4)
    with torch.no_grad():
        lift.scale.fill_(1.5)
    x = randn(2, 3, 5, 5)
    lifted = lift(x)
    a, b, s = x[:, 0], x[:, 1], x[:, 2]
    # f(i) = c <v, e_i> with e_i = (1, 0), (0, 1), (-1, 0), (0, -1); the scalar tiled over the group axis
    assert torch.allclose(lifted[:, :4], 1.5 * torch.stack([a, b, -a, -b], dim=1))
    assert torch.allclose(lifted[:, 4:], s[:, None].expand(-1, 4, -1, -1))
    expected = torch.cat([1.5 * x[:, :2], x[:, 2:]], dim=1)
    assert max_err(project(lifted), expected) <= 1e-6


@pytest.mark.parametrize("group_order", [3, 4, 8])
def test_projection_inverts_lift_for_any_order(group_order: int) -> None:
    x = randn(2, 3, 4, 4)
    lifted = RegularLift(VELOCITY_DENSITY, 1, group_order)(x)
    assert max_err(RegularProject(VELOCITY_DENSITY, group_order)(lifted), x) <= 1e-6


@pytest.mark.parametrize("k", range(4))
def test_projection_is_equivariant(k: int) -> None:
    project = RegularProject(VELOCITY_DENSITY, 4)
    f = randn(2, 8, 6, 6)  # arbitrary regular fields, not only lifted ones
    assert max_err(project(rotate_regular(f, k, 4)), rot90(project(f), VELOCITY_DENSITY, k)) <= 1e-6


def test_lift_rejects_orders_that_lose_a_component() -> None:
    with pytest.raises(ValueError, match="N >= 3"):
        RegularLift(VELOCITY_2D, 1, 2)


def test_regular_batch_norm_shares_statistics_over_the_group() -> None:
    bn = RegularBatchNorm2d(3, 4)
    x = randn(2, 12, 5, 5) * torch.arange(1, 13.0)[:, None, None]
    y = bn(x).view(2, 3, 4, 5, 5)
    # one mean and variance per field over batch, group and pixels
    assert torch.allclose(y.mean(dim=(0, 2, 3, 4)), torch.zeros(3), atol=1e-6)
    assert torch.allclose(y.var(dim=(0, 2, 3, 4), unbiased=False), torch.ones(3), atol=1e-3)
    assert not torch.allclose(y.mean(dim=(0, 3, 4)), torch.zeros(3, 4), atol=1e-2)


# --- relaxed C_N group convolution ------------------------------------------------------------------------------

def naive_relaxed_rot_conv(x: Tensor, banks: Tensor, w: Tensor) -> Tensor:
    """Eq. 5 with explicit loops: ``out(g) = sum_h conv(f(h), sum_l w_l(h) rot_g psi_l((h - g) mod N))``."""
    n_banks, c_out, _, n, k, _ = banks.shape
    out = torch.zeros(x.shape[0], c_out * n, *x.shape[-2:])
    for g in range(n):
        for h in range(n):
            kernel = torch.zeros(c_out, banks.shape[2], k, k)
            for b in range(n_banks):
                kernel += w[b, h] * torch.rot90(banks[b, :, :, (h - g) % n], g * 4 // n, dims=(-2, -1))
            out[:, g::n] += F.conv2d(x[:, h::n], kernel, padding=k // 2)
    return out


@pytest.mark.parametrize("group_order", [2, 4])
def test_expanded_kernel_equals_eq5_loops(group_order: int) -> None:
    torch.manual_seed(0)
    conv = RelaxedRotGroupConv2d(2, 3, kernel_size=3, group_order=group_order, banks=3)
    perturb_(conv.relaxed_weights)
    x = randn(2, 2 * group_order, 7, 7)
    with torch.no_grad():
        expected = naive_relaxed_rot_conv(x, conv.weight, conv.relaxed_weights)
        assert max_err(conv(x), expected) <= 1e-5


def test_equal_relaxed_weights_give_the_strict_group_conv() -> None:
    torch.manual_seed(0)
    relaxed, strict = RelaxedRotGroupConv2d(3, 2, banks=2), RotGroupConv2d(3, 2)
    with torch.no_grad():
        relaxed.relaxed_weights.fill_(0.7)
        strict.weight.copy_(0.7 * relaxed.weight.sum(0))
    x = randn(2, 12, 8, 8)
    assert max_err(relaxed(x), strict(x)) <= 1e-6


@pytest.mark.parametrize("layer", ["relaxed", "strict"])
def test_rot_group_conv_is_equivariant_with_equal_weights(layer: str) -> None:
    torch.manual_seed(0)
    conv = RelaxedRotGroupConv2d(3, 2, banks=2) if layer == "relaxed" else RotGroupConv2d(3, 2)
    x = randn(2, 12, 9, 9)
    with torch.no_grad():
        y = conv(x)
        for k in range(4):
            assert max_err(conv(rotate_regular(x, k, 4)), rotate_regular(y, k, 4)) <= 1e-5
    if layer == "relaxed":
        perturb_(conv.relaxed_weights)
        with torch.no_grad():
            assert max_err(conv(rotate_regular(x, 1, 4)), rotate_regular(conv(x), 1, 4)) > 1e-2


def test_c2_group_conv_commutes_with_half_turns() -> None:
    torch.manual_seed(0)
    conv = RelaxedRotGroupConv2d(2, 2, group_order=2, banks=2)
    x = randn(2, 4, 8, 8)
    with torch.no_grad():
        assert max_err(conv(rotate_regular(x, 2, 2)), rotate_regular(conv(x), 2, 2)) <= 1e-5


def test_rot_group_conv_init() -> None:
    torch.manual_seed(0)
    conv = RelaxedRotGroupConv2d(8, 8, kernel_size=3, banks=2)
    bound = (8 * 4 * 9) ** -0.5  # fan-in C_in * N * k^2
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.9 * bound
    assert torch.equal(conv.relaxed_weights, torch.full((2, 4), conv.relaxed_weights[0, 0].item()))


# --- regularisers -----------------------------------------------------------------------------------------------

def test_penalty_values() -> None:
    # sum over ordered pairs (g, h): |0 - 1| + |1 - 0| + |0 - 3| + |3 - 0| + |1 - 3| + |3 - 1| = 12
    assert pairwise_l1(torch.tensor([[0.0, 1.0, 3.0], [2.0, 2.0, 2.0]])).item() == 12.0
    w = torch.tensor([[[0.0, 1.0], [3.0, 1.0]]])
    assert total_variation(w).item() == 3.0 + 0.0 + 1.0 + 2.0


@pytest.mark.parametrize("make", [
    lambda: RelaxedRotGroupConv2d(2, 2, banks=3),
    lambda: RelaxedTranslationConv2d(2, 2, 3, grid_size=8, banks=3),
    lambda: RelaxedTranslationConv2d(2, 2, 3, grid_size=8, banks=3, relax_grid=4),
    lambda: RelaxedScaleGroupConv2d(2, 2, 5, SCALES, banks=3),
])
def test_regulariser_is_zero_exactly_for_equal_weights(make) -> None:
    layer = make()
    assert layer.regularization_loss().item() == 0.0
    with torch.no_grad():
        layer.relaxed_weights.add_(3.0)  # still equal: still zero
        assert layer.regularization_loss().item() == 0.0
        layer.relaxed_weights.view(-1)[-1] += 1e-3
    assert layer.regularization_loss().item() > 0.0


@pytest.mark.parametrize("symmetry", ["rotation", "translation", "scaling"])
def test_model_penalty_sums_the_layers(symmetry: str) -> None:
    model = small_model(symmetry)
    assert model.regularization_loss().item() == 0.0
    layers = relaxed_layers(model)
    assert len(layers) == 5
    for i, layer in enumerate(layers):
        perturb_(layer.relaxed_weights, seed=i)
    total = sum(layer.regularization_loss() for layer in layers)
    assert model.regularization_loss().item() == pytest.approx(total.item(), rel=1e-6) and total.item() > 0
    assert small_model(symmetry, relaxed=False).regularization_loss().item() == 0.0


# --- relaxed translation convolution ----------------------------------------------------------------------------

def test_translation_conv_equivariant_with_equal_weights() -> None:
    torch.manual_seed(0)
    conv = RelaxedTranslationConv2d(3, 4, 3, grid_size=GRID, banks=2, padding_mode="circular")
    x = randn(2, 3, GRID, GRID)
    shift = (3, -5)
    with torch.no_grad():
        y = conv(x)
        assert max_err(conv(torch.roll(x, shift, dims=(-2, -1))), torch.roll(y, shift, dims=(-2, -1))) <= 1e-5
        # equal weights: one convolution with the summed kernel
        w = conv.relaxed_weights[:, 0, 0]
        kernel = torch.einsum("l,locyx->ocyx", w, conv.conv.weight.view(2, 4, 3, 3, 3))
        assert max_err(y, F.conv2d(F.pad(x, (1, 1, 1, 1), mode="circular"), kernel)) <= 1e-5
    perturb_(conv.relaxed_weights)
    with torch.no_grad():
        assert max_err(conv(torch.roll(x, shift, dims=(-2, -1))), torch.roll(conv(x), shift, dims=(-2, -1))) > 1e-2


def test_translation_conv_checks_the_grid() -> None:
    conv = RelaxedTranslationConv2d(1, 1, 3, grid_size=8)
    with pytest.raises(ValueError, match="8x8"):
        conv(torch.zeros(1, 1, 8, 9))
    with pytest.raises(ValueError, match="divide"):
        RelaxedTranslationConv2d(1, 1, 3, grid_size=8, relax_grid=3)


# --- relaxed scale group correlation ----------------------------------------------------------------------------

def test_equal_level_weights_give_the_strict_scale_conv() -> None:
    """Equal ``w_l(s)``: exactly the strict scaling Equiv (SESN) layer on the same basis, with weights
    ``sum_l w_l W_l``."""
    torch.manual_seed(0)
    relaxed, strict = RelaxedScaleGroupConv2d(3, 4, 5, SCALES, banks=2), ScaleSteerableConv2d(3, 4, 5, SCALES)
    with torch.no_grad():
        relaxed.relaxed_weights.fill_(0.6)
        strict.weight.copy_(0.6 * relaxed.weight.view(2, *strict.weight.shape).sum(0))
    x = randn(2, len(SCALES) * 3, 10, 10)
    assert max_err(relaxed(x), strict(x)) <= 1e-6
    perturb_(relaxed.relaxed_weights)
    assert max_err(relaxed(x), strict(x)) > 1e-2


def test_equal_level_weights_give_the_strict_projection() -> None:
    torch.manual_seed(0)
    relaxed = RelaxedScaleConvProject2d(3, VELOCITY_DENSITY, 5, SCALES, banks=2, scalar_power=0.5)
    strict = ScaleSteerableProject2d(3, VELOCITY_DENSITY, 5, SCALES, scalar_power=0.5)
    with torch.no_grad():
        strict.weight.copy_(relaxed.relaxed_weights[0, 0] * relaxed.weight.view(2, *strict.weight.shape).sum(0))
    x = randn(2, len(SCALES) * 3, 10, 10)
    assert max_err(relaxed(x), strict(x)) <= 1e-6


# --- RGroupNet --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", [VELOCITY_2D, VELOCITY_DENSITY], ids=str)
def test_rotation_model_equivariant_with_equal_weights(layout: FieldLayout) -> None:
    model = small_model("rotation", layout)
    x = randn(2, T_IN, layout.channels, GRID, GRID)
    settle(model, x)
    with torch.no_grad():
        y = model(x)
        assert y.shape == (2, layout.channels, GRID, GRID)
        for k in range(4):
            assert max_err(model(rot90(x, layout, k)), rot90(y, layout, k)) <= 1e-5
        for layer in relaxed_layers(model):
            perturb_(layer.relaxed_weights)
        assert max_err(model(rot90(x, layout, 1)), rot90(model(x), layout, 1)) > 1e-2


def test_translation_model_equivariant_with_equal_weights() -> None:
    model = small_model("translation", padding_mode="circular")
    x = randn(2, T_IN, VELOCITY_DENSITY.channels, GRID, GRID)
    settle(model, x)
    shift = (2, -3)
    with torch.no_grad():
        y = model(x)
        assert max_err(model(translate(x, VELOCITY_DENSITY, shift)), translate(y, VELOCITY_DENSITY, shift)) <= 1e-5
        for layer in relaxed_layers(model):
            perturb_(layer.relaxed_weights)
        y = model(x)
        assert max_err(model(translate(x, VELOCITY_DENSITY, shift)), translate(y, VELOCITY_DENSITY, shift)) > 1e-2


def test_scaling_model_with_equal_weights_is_the_strict_network() -> None:
    relaxed = small_model("scaling", scales=SCALES)
    x = randn(2, T_IN, VELOCITY_DENSITY.channels, GRID, GRID)
    settle(relaxed, x)
    strict = small_model("scaling", scales=SCALES, relaxed=False, hidden=relaxed.hidden).eval()
    with torch.no_grad():
        for r, s in zip(relaxed.body, strict.body):
            if hasattr(r, "relaxed_weights"):
                banks = r.weight.view(r.banks, -1, *r.weight.shape[1:])
                s.weight.copy_(torch.einsum("l,locyx->ocyx", r.relaxed_weights[:, 0], banks))
            else:
                s.load_state_dict(r.state_dict())
        y = relaxed(x)
        assert max_err(y, strict(x)) <= 1e-5
        # the strict network's exact property carries over: positive homogeneity (magnitude part of ICLR 2021 eq. 3)
        assert max_err(relaxed(2.5 * x), 2.5 * y) <= 1e-5
        for layer in relaxed_layers(relaxed):
            perturb_(layer.relaxed_weights)
        assert max_err(relaxed(x), strict(x)) > 1e-2


def test_scaling_model_with_equal_weights_is_the_scaling_equiv_network() -> None:
    """RGroup-scale relaxes the scaling Equiv (SESN) network over its levels: with ``w_l(s)`` equal over ``s`` and
    Equiv's weights ``sum_l w_l W_l``, the two networks agree exactly (same lift, basis, norms and head)."""
    torch.manual_seed(0)
    equiv = Equiv(T_IN, VELOCITY_DENSITY, symmetry="scaling", width=6, layers=3, grid_size=GRID)
    relaxed = small_model("scaling", layers=3, hidden=equiv.sizes)
    x = randn(2, T_IN, VELOCITY_DENSITY.channels, GRID, GRID)
    settle(relaxed, x)
    lift, stack = equiv.net
    assert type(lift) is type(relaxed.lift) and len(stack) == len(relaxed.body)
    with torch.no_grad():
        for r, e in zip(relaxed.body, stack):
            assert isinstance(r, type(e))  # the relaxed layers are the strict ones with w_l(s)
            if hasattr(r, "relaxed_weights"):
                banks = r.weight.view(r.banks, *e.weight.shape)
                e.weight.copy_(torch.einsum("l,l...->...", r.relaxed_weights[:, 0], banks))
            else:
                e.load_state_dict(r.state_dict())
        equiv.eval()
        assert max_err(relaxed(x), equiv(x)) <= 1e-5
        for layer in relaxed_layers(relaxed):
            perturb_(layer.relaxed_weights)
        assert max_err(relaxed(x), equiv(x)) > 1e-2


@pytest.mark.parametrize("symmetry", ["rotation", "translation", "scaling"])
def test_every_parameter_gets_a_gradient(symmetry: str) -> None:
    model = small_model(symmetry)
    x, target = randn(2, T_IN, 3, GRID, GRID), randn(2, 3, GRID, GRID, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss = F.mse_loss(model(x), target) + 1e-3 * model.regularization_loss()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    before = [layer.relaxed_weights.detach().clone() for layer in relaxed_layers(model)]
    opt.step()
    assert any(not torch.equal(b, layer.relaxed_weights) for b, layer in zip(before, relaxed_layers(model)))
    assert model.regularization_loss().item() > 0  # the step relaxed the symmetry a little


@pytest.mark.parametrize("symmetry", ["rotation", "translation", "scaling"])
@pytest.mark.parametrize("width", [8, 16, 64])
@pytest.mark.parametrize("layout", [VELOCITY_2D, VELOCITY_DENSITY], ids=str)
def test_parameter_count_matches_the_conv_budget(symmetry: str, width: int, layout: FieldLayout) -> None:
    model = RGroupNet(10, layout, symmetry=symmetry, width=width, banks=2)
    n = sum(p.numel() for p in model.parameters())
    assert abs(n / conv_budget(10, layout, width) - 1) <= 0.10, (model.hidden, n)


def test_translation_relaxation_grid() -> None:
    assert RGroupNet(10, VELOCITY_2D, symmetry="translation", width=64).relax_grid == 64  # per pixel (paper)
    small = RGroupNet(10, VELOCITY_2D, symmetry="translation", width=8)
    assert small.relax_grid == 8 and 64 % small.relax_grid == 0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="group_order=4"):
        RGroupNet(T_IN, VELOCITY_2D, symmetry="rotation", group_order=8)
    with pytest.raises(ValueError, match="unknown symmetry"):
        RGroupNet(T_IN, VELOCITY_2D, symmetry="reflection")
    with pytest.raises(ValueError, match="T_in=3"):
        small_model("rotation")(torch.zeros(1, 4, 3, GRID, GRID))


@pytest.mark.parametrize("symmetry", ["rotation", "translation", "scaling"])
def test_stacked_layers_are_not_linear(symmetry: str) -> None:
    """The activation is applied between the relaxed layers (the RGroup of
    Rose-STL-Lab/Approximately-Equivariant-Nets never applied it): an affine map (convolutions and evaluation-mode
    batch norms alone) has f(x) + f(-x) = 2 f(0)."""
    model = small_model(symmetry)
    x = randn(2, T_IN, VELOCITY_DENSITY.channels, GRID, GRID)
    settle(model, torch.cat([x, -x]))
    with torch.no_grad():
        gap = max_err(model(x) + model(-x), 2 * model(torch.zeros_like(x)))
        assert gap > 1e-2 * model(x).abs().max()


@pytest.mark.parametrize("symmetry", ["rotation", "scaling"])
def test_non_square_grids_keep_rows_and_columns(symmetry: str) -> None:
    """(H, W) is read as (H, W) (the lifting layer of Rose-STL-Lab/Approximately-Equivariant-Nets swapped them,
    silently wrong on non-square grids): on an 8 x 12 grid the output is 8 x 12 and, with equal weights, commutes with
    the half turn."""
    model = small_model(symmetry)
    x = randn(2, T_IN, VELOCITY_DENSITY.channels, 8, 12)
    settle(model, x)
    with torch.no_grad():
        y = model(x)
        assert y.shape == (2, VELOCITY_DENSITY.channels, 8, 12)
        if symmetry == "rotation":
            assert max_err(model(rot90(x, VELOCITY_DENSITY, 2)), rot90(y, VELOCITY_DENSITY, 2)) <= 1e-5
