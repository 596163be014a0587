"""Scale-steerable convolutions (SESN) and their relaxations (ICML 2022 sec. 3.2-3.3, eq. 6-9): sesn, rsteer_scale
and rsteer_ts of the smoke-scaling benchmark.

What is checked: the Hermite-Gaussian basis is orthogonal at every width, keeps its mass and first moment, and its
cut-off functions rescale exactly (two-scale relation of the tents); the networks' level-major features commute with
a proper (antialiased) zoom out by the ratios of the basis' own scales, far better than a plain ConvNet's; SESN's
scale neighbours mix as its H -> H convolution defines; the relaxed weights are one per kernel tap, with equal
weights the relaxed network is SESN, and the penalty vanishes exactly then; the translation part reduces to one
relaxed kernel for constant ``a_r`` and breaks translation equivariance otherwise; budgets, a training step and the
error messages.
"""

from __future__ import annotations

import math
from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from symbench.fields import FieldLayout
from symbench.layers import stack_frames
from symbench.layers.scale_conv import ScaleLift, level_factors, split_levels
from symbench.layers.scale_steerable import (
    DEFAULT_SCALES,
    PixelMixedScaleConv2d,
    ScaleSteerableConv2d,
    ScaleSteerableLift2d,
    ScaleSteerableProject2d,
    hermite_functions,
    hermite_gaussian_basis,
    hermite_tent_integrals,
    relative_scales,
)
from symbench import models
from symbench.models.conv_net import ConvNet, conv_budget
from symbench.models.equiv import Equiv
from symbench.models.rsteer_ts import RSteerTS
from symbench.models.sesn import SESN, RSteerScale, ScaleSteerableNet

VELOCITY_DENSITY = FieldLayout.of("velocity:vector", "density:scalar")
SCALES = DEFAULT_SCALES
GEOMETRIC = (1.0, 2**0.5, 2.0, 2 * 2**0.5)
MODELS = {"sesn": SESN, "rsteer_scale": RSteerScale, "rsteer_ts": RSteerTS}
# width, layers, grid, frames; "jet" is the jet benchmark's paper preset on its rectangular 23 x 62 PIV stations
PRESETS = {"tiny": (32, 3, 16, 3), "cpu": (32, 5, 32, 10), "paper": (128, 5, 64, 10), "jet": (128, 5, (23, 62), 10)}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def randn(*shape: int, seed: int = 0) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def history(size: int = 16, frames: int = 3, seed: int = 0, batch: int = 2) -> Tensor:
    return randn(batch, frames, VELOCITY_DENSITY.channels, size, size, seed=seed).float()


# --- the Hermite-Gaussian basis ------------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.1, 0.7, 2.5])
def test_basis_functions_are_orthogonal_with_the_per_scale_norm(sigma: float) -> None:
    """Continuum: ``<psi_{sigma,l}, psi_{sigma,l'}> = sigma^-2 delta`` (quadrature on a fine grid)."""
    step = sigma / 50
    y = torch.arange(-12 * sigma, 12 * sigma + step / 2, step, dtype=torch.float64)
    h = hermite_functions(4, y / sigma) / sigma  # one axis of sigma^-2 h_n(y1 / sigma) h_m(y2 / sigma)
    gram_1d = h @ h.T * step
    gram = torch.kron(gram_1d, gram_1d)
    assert torch.allclose(gram, torch.eye(16, dtype=torch.float64) / sigma**2, atol=1e-9 / sigma**2)


def test_tent_integrals_match_quadrature_and_keep_mass_and_first_moment() -> None:
    """The closed form (with and without a cut-off) against quadrature; the mass of every function is the same at
    every width and its first moment grows as ``sigma`` (the continuous ``K_sigma(y) = sigma^-2 K(y / sigma)``), also
    far below a pixel and for a cut-off at a fixed multiple of the width."""
    nodes = torch.arange(-7, 8, dtype=torch.float64)
    x = torch.linspace(-8, 8, 160001, dtype=torch.float64)
    tents = (1 - (x[None, :] - nodes[:, None]).abs()).clamp(min=0)
    for cutoff in (math.inf, 1.3):
        mass, moment = [], []
        for sigma in (0.05, 0.3, 1.0):
            taps = hermite_tent_integrals(5, sigma, nodes, cutoff)
            inside = (x.abs() <= cutoff * sigma).to(torch.float64)
            quadrature = hermite_functions(5, x / sigma) / sigma * inside @ tents.T * (x[1] - x[0])
            assert torch.allclose(taps, quadrature, atol=1e-6 if cutoff == math.inf else 2e-3)  # a jump: O(dx / sigma)
            mass.append(taps.sum(1))
            moment.append((taps * nodes).sum(1) / sigma)
        assert torch.allclose(mass[0], mass[1], atol=1e-12) and torch.allclose(mass[0], mass[2], atol=1e-6)
        assert torch.allclose(moment[0], moment[1], atol=1e-12) and torch.allclose(moment[0], moment[2], atol=1e-6)
        assert mass[0][0] > 1 and moment[0][1] > 0.5  # h_0 has mass, h_1 a first moment


def test_cut_off_basis_at_twice_the_width_rescales_exactly_to_the_coarse_grid() -> None:
    """Width ``2 sigma`` on the fine grid, filtered by ``[1/2, 1, 1/2]`` per axis and subsampled by 2, is width
    ``sigma`` on the coarse grid (two-scale relation of the tents + ``psi_{2 sigma}(2 y) = psi_sigma(y) / 4``), the
    cut-off at ``1.5 sigma`` included: SESN's truncation scales with the width, so it rescales too."""
    fine = hermite_gaussian_basis(3, [2.8, 1.4], 21, cutoff=1.5)  # nodes -10 .. 10
    coarse = hermite_gaussian_basis(3, [1.4, 0.7], 9, cutoff=1.5)  # nodes -4 .. 4
    tent = torch.tensor([0.5, 1.0, 0.5], dtype=torch.float64)
    restrict = (tent[:, None] * tent[None, :]).view(1, 1, 3, 3)
    for s in range(2):
        restricted = F.conv2d(fine[s][:, None], restrict, stride=2, padding=1)[:, 0, 1:-1, 1:-1]
        assert torch.allclose(restricted, coarse[s], atol=1e-12)


def test_default_basis_grows_from_one_pixel_on_a_five_by_five_kernel() -> None:
    """SESN's scales (the ICML 2022 reference's 1, 1.5, 2, 2.5 px) on 5 x 5 kernels, the widest filling the kernel:
    the second moment of ``psi_{sigma, (0, 0)}`` grows with the width (measured 0.46, 0.82, 1.33, 1.71 px^2 per
    axis) and none of the levels is a near-1x1 kernel (centre tap 29 % of the mass at 1 px, 6 % at 2.5 px)."""
    layer = ScaleSteerableConv2d(1, 1)
    assert layer.kernel_size == 5 and layer.scales == (1.0, 1.5, 2.0, 2.5)
    gauss = layer.expansion[0].view(4, 5, 5).double()  # h_0 x h_0 at every level
    offsets = torch.arange(5, dtype=torch.float64) - 2
    second = (gauss.sum(1) * offsets.square()).sum(1) / gauss.sum((1, 2))
    assert (second.diff() > 0.3).all() and second[0] > 0.4
    assert (gauss[:, 2, 2] / gauss.sum((1, 2)) < 0.35).all()


# --- SESN: scale equivariance ---------------------------------------------------------------------------------------


def zoom_out(x: Tensor, lam: float) -> Tensor:
    """Proper downscale by ``lam`` of ``(..., H, W)``: antialiased (low-pass, then bilinear) resampling."""
    flat = x.reshape(-1, 1, *x.shape[-2:])
    out = F.interpolate(flat, scale_factor=1 / lam, mode="bilinear", antialias=True, recompute_scale_factor=False)
    return out.view(*x.shape[:-2], *out.shape[-2:])


def smooth_field(size: int, frames: int, seed: int = 0) -> Tensor:
    """``(1, frames, 3, size, size)`` velocity + density histories of Gaussian-filtered noise (std 2 px)."""
    z = randn(1, frames, VELOCITY_DENSITY.channels, size, size, seed=seed)
    k = torch.fft.fftfreq(size, dtype=torch.float64)
    return torch.fft.ifft2(torch.fft.fft2(z) * torch.exp(-8 * math.pi**2 * (k[:, None] ** 2 + k**2))).real.float()


def hidden_features(model: nn.Module, x: Tensor) -> Tensor:
    """The features before the output layer: level-major for SESN / RSteer and the scaling Equiv (lift, then the
    stack), plain channels for the ConvNet."""
    if isinstance(model, ConvNet):
        return model.net[:-1](stack_frames(x))
    if isinstance(model, Equiv):
        lift, stack = model.net
        return stack[:-1](lift(stack_frames(x)))
    return model.body[:-1](stack_frames(x))


def feature_scale_error(model: nn.Module, x: Tensor, scales: tuple[float, ...], levels: tuple[int, ...]) -> float:
    """Relative error of ``level 0 of h(T_lam x)`` against ``D_lam (level s of h(x))`` over ``s`` in ``levels``, with
    ``lam = sigma_s / sigma_0`` (the basis' own scale ratios), ``D_lam`` the antialiased zoom out and ``T_lam`` the
    scaling of ICML 2022 / EquScal (zoom out, velocity times ``lam``), on interior pixels (4 px off the border).
    A ConvNet has one level: its only features stand for every level."""
    n = 1 if isinstance(model, ConvNet) else len(scales)
    squared, norm = 0.0, 0.0
    with torch.no_grad():
        fine = split_levels(hidden_features(model, x), n)
        for s in levels:
            lam = scales[s] / scales[0]
            moved = zoom_out(x, lam)
            moved[:, :, VELOCITY_DENSITY.vector_slices[0]] *= lam
            got = split_levels(hidden_features(model, moved), n)[:, 0]
            expected = zoom_out(fine[:, s if n > 1 else 0], lam)
            inner = (..., slice(4, -4), slice(4, -4))
            squared += (got - expected)[inner].square().sum().item()
            norm += expected[inner].square().sum().item()
    return math.sqrt(squared / norm)


def mean_feature_scale_error(make: Callable[[], nn.Module], x: Tensor) -> float:
    """:func:`feature_scale_error` for zooms 1.5, 2 and 2.5 (level 0 onto levels 1, 2, 3), evaluation mode, averaged
    over three initialisations."""
    total = 0.0
    for seed in range(3):
        torch.manual_seed(seed)
        total += feature_scale_error(make().eval(), x, SCALES, (1, 2, 3)) / 3
    return total


def plain_convnet() -> ConvNet:
    """The reference: a ConvNet of 5 x 5 kernels, four layers of six channels."""
    return ConvNet(3, VELOCITY_DENSITY, width=6, layers=4, kernel_size=5)


@pytest.mark.parametrize("name", ["sesn", "rsteer_scale"])
def test_features_commute_with_zooming_out_by_the_basis_scale_ratios(name: str) -> None:
    """Evaluation mode, three initialisations, zooms 1.5, 2 and 2.5 (level 0 onto levels 1, 2, 3): at most 0.3x the
    plain ConvNet's error (5 x 5 kernels, same depth and channels) on the same inputs. Six channels per level: the
    budget-fitted RSteer at a small width has single channels, whose ReLU thresholds dominate any error. Measured
    0.133 for both (equal relaxed weights at init) against the ConvNet's 1.11."""
    x = smooth_field(60, 3)
    errors = {name: mean_feature_scale_error(
        lambda: MODELS[name](3, VELOCITY_DENSITY, width=6, layers=4, grid_size=60, hidden=(6, 6, 6)), x),
        "conv": mean_feature_scale_error(plain_convnet, x)}
    assert errors[name] <= 0.3 * errors["conv"], errors


def test_scale_neighbours_mix_as_sesns_h_to_h_convolution() -> None:
    """``scale_size = 2``: ``y_s = K_{s,0} * f_s + K_{s,1} * f_{s+1}``, the level past the last one zero; so a change of
    input level 2 reaches output levels 1 and 2 only. On a geometric scale set the network stays equivariant for the
    scale ratio (level 0 onto level 1: measured 0.040 against the ConvNet's 0.51); a non-geometric set is refused."""
    torch.manual_seed(0)
    layer = ScaleSteerableConv2d(2, 3, 5, GEOMETRIC, scale_size=2).double()
    x = randn(1, 4 * 2, 12, 12, seed=1)
    kernels = layer.level_kernels()  # (S, C_out, I, C_in, k, k)
    levels = split_levels(x, 4)
    with torch.no_grad():
        y = split_levels(layer(x), 4)
        for s in range(4):
            expected = sum(F.conv2d(levels[:, s + i], kernels[s, :, i], padding=2) for i in range(2) if s + i < 4)
            assert torch.allclose(y[:, s], expected, atol=1e-12)
        bumped = levels.clone()
        bumped[:, 2] += 1.0
        changed = (split_levels(layer(bumped.flatten(1, 2)), 4) - y).flatten(2).abs().amax(2).amax(0)
    assert changed[1] > 0.1 and changed[2] > 0.1 and changed[0] == 0 and changed[3] == 0
    model = SESN(3, VELOCITY_DENSITY, width=8, layers=4, grid_size=60, scales=GEOMETRIC, scale_size=2).eval()
    plain = ConvNet(3, VELOCITY_DENSITY, width=8, layers=4, kernel_size=5).eval()
    x = smooth_field(60, 3)
    assert feature_scale_error(model, x, GEOMETRIC, (1,)) <= 0.3 * feature_scale_error(plain, x, GEOMETRIC, (1,))
    with pytest.raises(ValueError, match="geometric scale set"):
        ScaleSteerableConv2d(2, 3, 5, SCALES, scale_size=2)
    with pytest.raises(ValueError, match="kernel_size >= 5"):
        ScaleSteerableConv2d(2, 3, 3, SCALES)


@pytest.mark.parametrize("relaxed", [False, True])
def test_lift_layer_is_the_lift_then_a_level_wise_convolution(relaxed: bool) -> None:
    """SESN's Z2 -> H layer folds the lifting factors ``(sigma_s / sigma_0)^e`` into one dense convolution: the same
    as copying the history to every level with :class:`ScaleLift` and convolving level by level."""
    torch.manual_seed(0)
    scales = relative_scales(SCALES)
    lift = ScaleLift(VELOCITY_DENSITY, 2, scales, scalar_power=0.5).double()
    layer = ScaleSteerableLift2d(6, 4, 5, SCALES, level_factors(VELOCITY_DENSITY, 2, scales, 0.5),
                                 relaxed=relaxed).double()
    plain = ScaleSteerableConv2d(6, 4, 5, SCALES, relaxed=relaxed).double()
    with torch.no_grad():
        layer.weight.add_(0.1 * torch.randn_like(layer.weight))
        plain.weight.copy_(layer.weight)
    x = randn(2, 6, 12, 12, seed=3)
    with torch.no_grad():
        assert torch.allclose(layer(x), plain(lift(x)), atol=1e-12)


# --- RSteer (scaling): relaxed scale-steerable convolution ---------------------------------------------------------


def strict_twin(relaxed: RSteerScale) -> SESN:
    """The SESN network with ``relaxed``'s hidden sizes and, per layer, its weights at the first tap."""
    strict = SESN(3, VELOCITY_DENSITY, width=32, grid_size=16, hidden=relaxed.hidden)
    with torch.no_grad():
        for a, b in zip(strict.body, relaxed.body):
            if isinstance(a, ScaleSteerableConv2d):
                a.weight.copy_(b.weight[..., 0, 0])
    return strict


def relaxed_layers(model: ScaleSteerableNet) -> list[ScaleSteerableConv2d]:
    return [m for m in model.modules() if isinstance(m, ScaleSteerableConv2d) and m.relaxed]


def test_relaxed_scale_network_with_equal_weights_is_sesn() -> None:
    """At init ``w_l(y)`` is equal over the taps ``y``: the penalty is exactly zero and the network computes what
    SESN computes with the same weights (training and evaluation mode, float32 precision). A tap-dependent ``w``
    changes the output and makes the penalty positive."""
    torch.manual_seed(0)
    relaxed = RSteerScale(3, VELOCITY_DENSITY, width=32, grid_size=16)
    strict = strict_twin(relaxed)
    x = history()
    assert relaxed.regularization_loss() == 0
    for mode in (True, False):
        relaxed.train(mode), strict.train(mode)
        with torch.no_grad():
            assert torch.allclose(relaxed(x), strict(x), rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        layer = relaxed_layers(relaxed)[1]
        layer.weight[..., 0, :] += 0.1 * torch.randn_like(layer.weight[..., 0, :])
        assert relaxed.regularization_loss() > 0
        assert not torch.allclose(relaxed(x), strict(x), atol=1e-3)


def test_relaxed_weights_are_one_per_kernel_tap() -> None:
    """Eq. 7, ``w: K^2 -> R^{c_out x c_in x L}``: the weights have the kernel's ``k x k`` taps as their last axes,
    and changing the weight of one tap changes every level's kernel at that tap and nowhere else."""
    torch.manual_seed(0)
    layer = ScaleSteerableConv2d(2, 3, 5, SCALES, relaxed=True, scale_size=1).double()
    assert layer.weight.shape == (3, 2, 1, 9, 5, 5)
    before = layer.level_kernels()
    with torch.no_grad():
        layer.weight[1, 0, 0, :, 3, 1] += torch.linspace(0.5, 1.5, 9, dtype=torch.float64)
    change = (layer.level_kernels() - before).abs()  # (S, C_out, I, C_in, k, k)
    assert (change[:, 1, 0, 0, 3, 1] > 1e-3).all()
    change[:, 1, 0, 0, 3, 1] = 0
    assert change.max() == 0


def test_relaxed_layer_penalty_is_the_2d_total_variation_of_its_weights() -> None:
    layer = ScaleSteerableConv2d(2, 3, 5, SCALES, relaxed=True)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[0, 0, 0, 0, 2, 2] = 1.0  # a spike at the centre tap: 4 unit jumps
        assert layer.regularization_loss().item() == pytest.approx(4.0)
        layer.weight.fill_(0.3)  # constant: no jumps
        assert layer.regularization_loss() == 0


# --- RSteerTS: relaxed translation x relaxed scale (eq. 8-9) ------------------------------------------------------


@pytest.mark.parametrize("head", [False, True], ids=["hidden", "output"])
def test_constant_mixing_reduces_to_one_relaxed_kernel(head: bool) -> None:
    """``a_r(x) = c_r`` everywhere: the layer is one relaxed scale-steerable convolution with ``b = sum_r c_r b_r``
    (eq. 9), also with position-dependent ``b_r``."""
    torch.manual_seed(0)
    ranks, c_in, n = 3, 2, len(SCALES)
    if head:
        conv = ScaleSteerableProject2d(c_in, VELOCITY_DENSITY, 5, SCALES, copies=ranks, relaxed=True)
        single = ScaleSteerableProject2d(c_in, VELOCITY_DENSITY, 5, SCALES, relaxed=True)
    else:
        conv = ScaleSteerableConv2d(c_in, ranks * 4, 5, SCALES, relaxed=True)
        single = ScaleSteerableConv2d(c_in, 4, 5, SCALES, relaxed=True)
    layer = PixelMixedScaleConv2d(conv, 1 if head else n, ranks, grid_size=16, relax_grid=4).double()
    single.double()
    c = torch.tensor([0.7, -1.3, 0.4], dtype=torch.float64)
    with torch.no_grad():
        conv.weight.add_(0.1 * torch.randn_like(conv.weight))  # b_r(y) not constant
        layer.mixing.relaxed_weights.copy_(c.view(-1, 1, 1).expand(-1, 4, 4))
        b = conv.weight.view(ranks, -1, *conv.weight.shape[1:])
        single.weight.copy_(torch.einsum("r,r...->...", c, b))
    x = randn(2, n * c_in, 16, 16, seed=1)
    with torch.no_grad():
        assert torch.allclose(layer(x), single(x), atol=1e-12)
    assert layer.mixing.regularization_loss() == 0


def shift_error(model: nn.Module, x: Tensor) -> float:
    with torch.no_grad():
        moved = model(x.roll((3, -5), dims=(-2, -1)))
        expected = model(x).roll((3, -5), dims=(-2, -1))
    return ((moved - expected).norm() / expected.norm()).item()


def test_rsteer_ts_is_translation_equivariant_only_while_its_mixing_weights_are_constant() -> None:
    """Circular padding and circular shifts: exact at init (``a_r`` equal), broken by non-constant ``a_r``, which
    the penalty then sees."""
    torch.manual_seed(0)
    model = RSteerTS(3, VELOCITY_DENSITY, width=8, grid_size=16, padding_mode="circular", hidden=(4, 4, 4, 4))
    x = history()
    model(x)  # one training-mode step of the normalisation statistics
    model.eval()
    assert shift_error(model, x) < 1e-5
    assert model.regularization_loss() == 0
    with torch.no_grad():
        mixing = next(m for m in model.modules() if isinstance(m, PixelMixedScaleConv2d)).mixing
        mixing.relaxed_weights.add_(0.3 * torch.randn_like(mixing.relaxed_weights))
    assert shift_error(model, x) > 1e-2
    assert model.regularization_loss() > 0


# --- contract: budget, training step, errors ----------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_parameter_count_is_within_10_percent_of_the_conv_budget_at_every_preset(name: str) -> None:
    for preset, (width, layers, grid, frames) in PRESETS.items():
        model = MODELS[name](frames, VELOCITY_DENSITY, width=width, layers=layers, grid_size=grid)
        budget = conv_budget(frames, VELOCITY_DENSITY, width, layers)
        assert abs(n_params(model) / budget - 1) < 0.1, (preset, model.hidden, n_params(model), budget)


@pytest.mark.parametrize("name", MODELS)
def test_one_training_step_reaches_every_parameter(name: str) -> None:
    """``loss = mse + alpha * penalty``, one backward: every parameter, the relaxed ``w_l(y)`` and ``a_r(x)``
    included, gets a gradient (at init the penalty itself is zero). Four channels per level: the fitted sizes of a
    small width can be a single channel, which a ReLU may silence."""
    torch.manual_seed(0)
    model = MODELS[name](3, VELOCITY_DENSITY, width=8, layers=3, grid_size=16, hidden=(4, 4)).train()
    y = model(history())
    assert y.shape == (2, VELOCITY_DENSITY.channels, 16, 16)
    loss = F.mse_loss(y, history(seed=1)[:, -1]) + 1e-3 * model.regularization_loss()
    loss.backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().max() == 0]
    assert not dead, f"parameters without gradient: {dead}"
    if name != "sesn":
        assert relaxed_layers(model) and all(m.weight.grad.abs().max() > 0 for m in relaxed_layers(model))


def test_basis_is_a_non_persistent_buffer_that_follows_the_module() -> None:
    model = SESN(3, VELOCITY_DENSITY, width=4, layers=2, grid_size=16).double()
    assert not any("expansion" in k for k in model.state_dict())
    assert model(history().double()).dtype == torch.float64


@pytest.mark.parametrize("name", MODELS)
def test_symmetry_other_than_scaling_is_one_line_value_error(name: str) -> None:
    with pytest.raises(ValueError, match="symmetry='scaling' only, got 'rotation'") as info:
        MODELS[name](3, VELOCITY_DENSITY, symmetry="rotation", width=4, grid_size=16)
    assert "\n" not in str(info.value)


# --- the scaling variants of the smoke families (Equiv, Rpp, Lift, Combo, RGroup) -------------------------------

# registry name -> scale-steerable layers at layers=3: two hidden and the head; Combo's first layer is free
FAMILY_MODELS = {"equiv": 3, "rpp": 3, "lift": 3, "combo": 2, "rgroup": 3}


@pytest.mark.parametrize("name", sorted(FAMILY_MODELS))
def test_scaling_variants_are_built_on_sesns_growing_basis(name: str) -> None:
    """Every equivariant layer of the scaling variants, from the first, is SESN's scale-steerable correlation on the
    growing widths 1, 1.5, 2, 2.5 px with 5 x 5 kernels (effective size 3): no other trainable level-wise kernel."""
    model = models.build(name, in_frames=3, layout=VELOCITY_DENSITY, symmetry="scaling", width=8, layers=3,
                         grid_size=16)
    steerable = [m for m in model.modules() if isinstance(m, ScaleSteerableConv2d)]
    assert len(steerable) == FAMILY_MODELS[name]
    for layer in steerable:
        assert (layer.scales, layer.kernel_size, layer.effective_size) == (DEFAULT_SCALES, 5, 3)
    others = {type(m).__name__ for m in model.modules() if type(m).__module__ == "symbench.layers.scale_conv"
              and any(True for _ in m.parameters(recurse=False))}
    assert others <= {"ScaleBatchNorm2d"}, others
    assert model(history(16)).shape == (2, VELOCITY_DENSITY.channels, 16, 16)


def test_scaling_equiv_features_commute_with_zooming_out_by_the_basis_scale_ratios() -> None:
    """The strict scaling Equiv (lift, scale-steerable layers): as SESN, at most 0.3x the plain ConvNet's error for
    the basis' own scale ratios on interior pixels (budget-fitted to six channels per level)."""
    x = smooth_field(60, 3)
    equiv = mean_feature_scale_error(
        lambda: Equiv(3, VELOCITY_DENSITY, symmetry="scaling", width=6, layers=4, grid_size=60), x)
    assert equiv <= 0.3 * mean_feature_scale_error(plain_convnet, x), equiv
