"""RSteer, the relaxed steerable convolution (ICML 2022 sec. 3.2-3.3, eq. 7-9), and its network.

With weights that do not depend on the kernel position it is escnn's strict steerable convolution (the same filter as
``R2Conv`` for the same coefficients) and exactly C4-equivariant; with position-dependent weights it is not; the
smoothness penalty is zero exactly for position-independent weights and enters linearly; RSteerTR with constant
translation weights is one relaxed steerable convolution with the combined weights ``sum_r a_r b_r``.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from symbench.fields import FieldLayout
from symbench.layers.escnn_blocks import RotationFields, layout_blocks, regular
from symbench.layers.relaxed_steerable import RelaxedSteerableConv2d, angle_bins
from symbench.metrics.equivariance import EquivarianceError, equivariance_pair
from symbench.models.conv_net import ConvNet, conv_budget
from symbench.models.rsteer import RSteerNet
from symbench.symmetry import rot90

LAYOUT = FieldLayout.of("velocity:vector", "density:scalar")
ROT = RotationFields(4)


def history(size: int = 12, frames: int = 3, seed: int = 0) -> Tensor:
    return torch.randn(2, frames, LAYOUT.channels, size, size, generator=torch.Generator().manual_seed(seed))


def rotation_error(model: nn.Module, x: Tensor) -> float:
    metric = EquivarianceError()
    for k in (1, 2, 3):
        metric.update(*equivariance_pair(model, x, lambda t, k=k: rot90(t, LAYOUT, k)))
    return metric.compute()["relative"].item()


def settled(model: nn.Module, size: int = 12) -> nn.Module:
    """Non-trivial batch-norm statistics from a few training-mode forwards, then evaluation mode, float64."""
    model = model.double()
    with torch.no_grad():
        for seed in range(3):
            model(history(size, model.in_frames, seed).double())
    return model.eval()


def perturb_along_angles(model: nn.Module, scale: float = 0.5) -> None:
    """Make every relaxed weight depend on the kernel angle."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, RelaxedSteerableConv2d):
                for w in m.weights.values():
                    w.mul_(1 + scale * torch.randn(w.shape, generator=gen, dtype=w.dtype))


def test_angle_bins_share_only_taps_on_one_ray_and_separate_every_quarter_turn() -> None:
    for k in (3, 5):
        bins = angle_bins(k).view(k, k)
        assert bins[k // 2, k // 2] == bins.max() and (bins == bins.max()).sum() == 1  # the centre alone
        for turn in (1, 2, 3):  # a relaxation constant on C4 orbits would still be equivariant: no tap shares a
            rotated = torch.rot90(bins, turn)  # bin with its turned image
            off_centre = bins != bins.max()
            assert not (rotated[off_centre] == bins[off_centre]).any()
    assert len(angle_bins(3).unique()) == 9
    assert len(angle_bins(5).unique()) == 17  # 16 directions + centre: taps (1, 0) and (2, 0) share a ray
    five = angle_bins(5).view(5, 5)
    assert five[2, 3] == five[2, 4] and five[1, 3] == five[0, 4]


def test_strict_weights_give_escnns_r2conv_filter() -> None:
    """Same basis, same coefficients (escnn orders them (out field, in field, basis element)) -> same filter."""
    torch.manual_seed(0)
    escnn_conv = ROT.conv(regular(3), regular(2), 3, bias=False).module
    theirs, _ = escnn_conv.expand_parameters()
    coefficients = escnn_conv.weights.detach().view(1, 2, 3, -1, 1)
    for relaxed in (False, True):
        ours = RelaxedSteerableConv2d(ROT, regular(3), regular(2), 3, relaxed=relaxed)
        with torch.no_grad():
            w = ours.weights["regular_regular"]
            w.copy_(coefficients.expand_as(w))
        torch.testing.assert_close(ours.kernel(), theirs.detach(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("ranks", [1, 2])
def test_network_is_exactly_c4_equivariant_while_weights_ignore_the_angle(ranks: int) -> None:
    torch.manual_seed(0)
    model = settled(RSteerNet(3, LAYOUT, width=8, layers=3, grid_size=12, ranks=ranks, relax_grid=1))
    x = history().double()
    assert rotation_error(model, x) < 1e-6  # float32 escnn basis, float64 arithmetic
    assert model.regularization_loss().item() == 0.0
    perturb_along_angles(model)
    assert rotation_error(model, x) > 1e-2
    assert model.regularization_loss().item() > 0.0


def test_strict_network_stays_equivariant_and_the_plain_convnet_is_not() -> None:
    torch.manual_seed(0)
    strict = settled(RSteerNet(3, LAYOUT, width=8, layers=3, grid_size=12, relaxed=False))
    perturb_along_angles(strict)  # strict weights have no angle axis: the perturbation is a new strict network
    assert rotation_error(strict, history().double()) < 1e-6
    conv = settled(ConvNet(3, LAYOUT, width=8, layers=3))
    assert rotation_error(conv, history().double()) > 0.1


def test_smoothness_penalty_is_the_finite_difference_norm_over_the_kernel_grid() -> None:
    conv = RelaxedSteerableConv2d(ROT, (("scalar", 1),), (("scalar", 1),), 3)
    w = conv.weights["scalar_scalar"]  # (1, 1, 1, L, 9 bins)
    with torch.no_grad():
        w.fill_(0.5)
        assert conv.regularization_loss().item() == 0.0
        w[..., angle_bins(3)[0]] += 2.0  # the top-left tap of every basis element
        # the top-left tap differs from its right and lower neighbours by 2: 2 * 2 per basis element
        assert conv.regularization_loss().item() == pytest.approx(4.0 * w.shape[-2])
        w.mul_(3.0)  # linear in w: no squaring (Rose-STL-Lab/Approximately-Equivariant-Nets squared it)
        assert conv.regularization_loss().item() == pytest.approx(12.0 * w.shape[-2])


def test_rsteer_tr_with_constant_translation_weights_is_one_rsteer_conv() -> None:
    torch.manual_seed(0)
    blocks_in, blocks_out = layout_blocks(LAYOUT, 2), regular(2)
    tr = RelaxedSteerableConv2d(ROT, blocks_in, blocks_out, 3, ranks=3, grid_size=8)
    perturb_along_angles(tr)
    a = torch.tensor([0.7, -0.2, 1.3])
    with torch.no_grad():
        tr.mixing.relaxed_weights.copy_(a[:, None, None].expand_as(tr.mixing.relaxed_weights))
    one = RelaxedSteerableConv2d(ROT, blocks_in, blocks_out, 3)
    with torch.no_grad():
        for key, w in one.weights.items():
            w.copy_(torch.einsum("r,r...->...", a, tr.weights[key])[None])
    x = torch.randn(2, tr.in_channels, 8, 8)
    torch.testing.assert_close(tr(x), one(x), rtol=1e-5, atol=1e-6)
    assert tr.mixing.regularization_loss().item() == 0.0  # constant a_r: no translation penalty
    with torch.no_grad():  # a translation weight that varies over space breaks translation equivariance
        tr.mixing.relaxed_weights[0, :4] += 1.0
    shifted = tr(x.roll(2, dims=-2))
    assert (shifted - tr(x).roll(2, dims=-2))[..., 2:6, 2:6].abs().max() > 1e-2
    assert tr.regularization_loss() > one.regularization_loss()


@pytest.mark.parametrize("ranks", [1, 2])
@pytest.mark.parametrize("width, layers, grid, frames", [(16, 3, 16, 3), (32, 5, 32, 10), (128, 5, 64, 10),
                                                        (128, 5, (23, 62), 10)])
def test_parameters_match_the_conv_budget_and_the_analytic_count(ranks, width, layers, grid, frames) -> None:
    model = RSteerNet(frames, LAYOUT, width=width, layers=layers, grid_size=grid, ranks=ranks)
    n = sum(p.numel() for p in model.parameters())
    budget = conv_budget(frames, LAYOUT, width, layers)
    assert abs(n - budget) <= 0.1 * budget, (model.hidden, n, budget)
    assert n == model._count(model.hidden)


def test_basis_moves_with_the_module_and_is_not_in_the_state_dict() -> None:
    model = RSteerNet(3, LAYOUT, width=8, layers=3, grid_size=12).double()
    conv = model.net[0]
    assert all(getattr(conv, f"basis_{a}_{b}").dtype == torch.float64 for a in conv.in_kinds for b in conv.out_kinds)
    assert not any("basis" in key or "angle_index" in key for key in model.state_dict())
    clone = RSteerNet(3, LAYOUT, width=8, layers=3, grid_size=12).double()
    clone.load_state_dict(model.state_dict())
    x = history().double()
    torch.testing.assert_close(clone.eval()(x), model.eval()(x))


def test_training_step_reaches_the_relaxed_weights_and_starts_equal_along_angles() -> None:
    model = RSteerNet(3, LAYOUT, width=8, layers=3, grid_size=12)
    for m in model.modules():
        if isinstance(m, RelaxedSteerableConv2d):
            for w in m.weights.values():
                assert torch.equal(w, w[..., :1].expand_as(w))
    loss = model(history()).pow(2).mean() + 1e-3 * model.regularization_loss()
    loss.backward()
    grads = [w.grad for m in model.modules() if isinstance(m, RelaxedSteerableConv2d) for w in m.weights.values()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    # gradients differ between angle bins: training moves the network away from strict equivariance
    assert any((g - g[..., :1]).abs().max() > 0 for g in grads)


def test_bad_symmetry_is_one_line_value_error() -> None:
    with pytest.raises(ValueError, match="rotation steerable") as err:
        RSteerNet(3, LAYOUT, symmetry="scaling")
    assert "\n" not in str(err.value)
