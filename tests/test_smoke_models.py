"""The ICML 2022 smoke baselines (sec. 3.4 and sec. 5): MLP, Equiv, RPP, Combo, CLCNN, Lift.

Contract checks for every model and symmetry (shape, gradients reach every parameter, ConvNet parameter budget, one
line for a bad symmetry name), then what each model claims: the MLP has its own width and fits a linear map; Equiv
is exactly rotation-equivariant and closer to scale-equivariant than the ConvNet; RPP without its free pathway is
exactly equivariant, its translation pathway is the paper's dense (MLP) one and its prior reaches the training loss;
Combo's translation layers are an MLP; CLCNN has a kernel per pixel (maps no convolution can represent), its hinge
loss vanishes exactly on equivariant kernel fields (and the network built from them is equivariant) and, weighted
heavily, trains it into a convolution; Lift's encoder sees every pixel, and Lift is equivariant when its context is
constant.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn

from symbench.config import resolve
from symbench.fields import VELOCITY_2D, FieldLayout
from symbench.forecast import ForecastModule
from symbench.layers import stack_frames
from symbench.layers.local_conv import LocallyConnected2d
from symbench.metrics.equivariance import EquivarianceError, equivariance_pair
from symbench.models.budget import PARAMETER_CAP
from symbench.models.clcnn import CLCNN, rotate_kernels
from symbench.models.combo import Combo
from symbench.models.conv_net import SYMMETRIES, ConvNet, conv_budget
from symbench.models.equiv import Equiv
from symbench.models.lift import Lift
from symbench.models.mlp import MLP, mlp_parameters
from symbench.models.rpp import RPP, GridLinear
from symbench.symmetry import rot90

from scale_checks import scale_error, smooth_history

T_IN, GRID = 3, 8
VELOCITY_DENSITY = FieldLayout.of("velocity:vector", "density:scalar")
MODELS = {"mlp": MLP, "equiv": Equiv, "rpp": RPP, "combo": Combo, "clcnn": CLCNN, "lift": Lift}


def history(layout: FieldLayout, size: int = GRID, seed: int = 0, batch: int = 2) -> Tensor:
    return torch.randn(batch, T_IN, layout.channels, size, size, generator=torch.Generator().manual_seed(seed))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def rotation_error(model: nn.Module, x: Tensor, layout: FieldLayout) -> float:
    """Pooled relative error of ``f(R x)`` vs ``R f(x)`` over the three non-trivial quarter turns, for a model whose
    vector output responds to its input (a constant or dead output would be trivially equivariant)."""
    with torch.no_grad():
        y, y_other = model(x), model(x.roll(1, dims=0))
    vectors = torch.cat([y[:, s] - y_other[:, s] for s in layout.vector_slices], dim=1)
    assert vectors.norm() > 1e-2 * y.norm(), "the model's vector output does not respond to its input"
    metric = EquivarianceError()
    for k in (1, 2, 3):
        metric.update(*equivariance_pair(model, x, lambda t, k=k: rot90(t, layout, k)))
    return metric.compute()["relative"].item()


def settle(model: nn.Module, layout: FieldLayout, size: int = GRID) -> nn.Module:
    """A few training-mode forwards (non-trivial normalisation statistics), then evaluation mode."""
    with torch.no_grad():
        for seed in range(3):
            model(history(layout, size, seed=10 + seed).to(next(model.parameters()).dtype))
    return model.eval()


# --- the contract, for every model and symmetry --------------------------------------------------------------------


@pytest.mark.parametrize("symmetry", SYMMETRIES)
@pytest.mark.parametrize("name", MODELS)
def test_forward_shape_and_every_parameter_gets_gradient(name: str, symmetry: str) -> None:
    torch.manual_seed(0)
    layout = VELOCITY_DENSITY
    model = MODELS[name](T_IN, layout, symmetry=symmetry, width=8, grid_size=GRID).train()
    y = model(history(layout))
    assert y.shape == (2, layout.channels, GRID, GRID)
    loss = nn.functional.mse_loss(y, history(layout, seed=1)[:, -1])
    if hasattr(model, "regularization_loss"):
        reg = model.regularization_loss()
        assert reg.ndim == 0 and torch.isfinite(reg)
        loss = loss + reg
    loss.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.numel() > 0]
    dead = [n for n, p in trainable if p.grad is None or p.grad.abs().max() == 0]
    assert trainable and not dead, f"parameters without gradient: {dead}"


# Grid-sized weights (a kernel per pixel, dense maps of the grid) cannot meet a convolutional budget.
GRID_SIZED = {("clcnn", s) for s in SYMMETRIES} | {("rpp", "translation"), ("combo", "translation")}


@pytest.mark.parametrize("layout", [VELOCITY_2D, VELOCITY_DENSITY], ids=["velocity", "velocity+density"])
@pytest.mark.parametrize("name", [name for name in MODELS if name != "mlp"])  # the MLP has its own width
def test_parameter_count_is_within_10_percent_of_the_conv_budget(name: str, layout: FieldLayout) -> None:
    for symmetry in SYMMETRIES:
        if (name, symmetry) in GRID_SIZED:
            continue
        for width in (8, 16, 64):
            budget = conv_budget(T_IN, layout, width)
            count = n_params(MODELS[name](T_IN, layout, symmetry=symmetry, width=width, grid_size=GRID))
            assert abs(count / budget - 1) < 0.1, (symmetry, width, count, budget)


@pytest.mark.parametrize("bench", ["smoke-translation", "smoke-rotation", "smoke-scaling"])
def test_mlp_has_its_own_width_in_table_3s_range_under_the_papers_parameter_cap(bench: str) -> None:
    """cpu and paper presets: every hidden layer has the preset's ``hidden_width`` (in Table 3's 64 .. 512) and the
    MLP stays under the paper's 1e7 parameters on the data's grid (velocity, 10 frames)."""
    for preset in ("cpu", "paper"):
        cfg = resolve(bench, preset, "mlp", 0, use_best=False)
        hp, frames, grid = cfg.model_hparams, cfg.data["in_frames"], cfg.model_hparams["grid_size"]
        assert 64 <= hp["hidden_width"] <= 512, (preset, hp)
        sizes = (hp["hidden_width"],) * (hp["layers"] - 1)
        assert mlp_parameters(frames * 2 * grid**2, 2 * grid**2, sizes) < PARAMETER_CAP, (preset, hp)
    assert MLP(frames, VELOCITY_2D, **{**hp, "grid_size": 8}).sizes == sizes


def test_mlp_at_cpu_preset_sizes_fits_a_linear_map_far_below_predicting_zero() -> None:
    """smoke-translation's cpu preset (10 velocity frames, 32x32): hidden layers at least ``hidden_width`` wide, and
    on a batch of 8 histories the MLP learns linear extrapolation ``2 x_t - x_{t-1}`` in 30 Adam steps to under 5 %
    of the loss of predicting zero (1.3 %). The ConvNet-budget MLP it replaces had one unit per layer: its outputs
    span a 2-dimensional affine family over the batch, and it stayed at 81 % of that loss."""
    cfg = resolve("smoke-translation", "cpu", "mlp", 0, use_best=False)
    hp, frames = cfg.model_hparams, cfg.data["in_frames"]
    torch.manual_seed(0)
    model = MLP(frames, VELOCITY_2D, **hp).train()
    assert min(model.sizes) >= hp["hidden_width"] >= 64
    x = torch.randn(8, frames, 2, hp["grid_size"], hp["grid_size"], generator=torch.Generator().manual_seed(1))
    target = 2 * x[:, -1] - x[:, -2]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), target)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05 * target.pow(2).mean().item(), loss.item()


@pytest.mark.parametrize("name", MODELS)
def test_bad_symmetry_is_one_line_value_error(name: str) -> None:
    with pytest.raises(ValueError, match="unknown symmetry 'reflection'") as info:
        MODELS[name](T_IN, VELOCITY_2D, symmetry="reflection", width=4, grid_size=GRID)
    assert "\n" not in str(info.value)


# --- Equiv ---------------------------------------------------------------------------------------------------------


def test_equiv_rotation_is_exactly_equivariant_and_the_convnet_is_not() -> None:
    torch.manual_seed(0)
    layout = VELOCITY_DENSITY
    x = history(layout, seed=3)
    equiv = settle(Equiv(T_IN, layout, symmetry="rotation", width=8, grid_size=GRID), layout)
    plain = settle(ConvNet(T_IN, layout, width=8), layout)
    assert rotation_error(equiv, x, layout) <= 1e-5
    assert rotation_error(plain, x, layout) > 1e-2


def test_equiv_scaling_is_closer_to_scale_equivariance_than_the_convnet() -> None:
    x = smooth_history()
    zooms = (0.5, 0.8, 1.25, 2.0)
    equiv = scale_error(lambda: Equiv(T_IN, VELOCITY_2D, symmetry="scaling", width=4, grid_size=32), x, zooms)
    plain = scale_error(lambda: ConvNet(T_IN, VELOCITY_2D, width=4), x, zooms)
    assert equiv <= plain, (equiv, plain)


# --- RPP -----------------------------------------------------------------------------------------------------------


def equivariant_l2(model: RPP) -> Tensor:
    return sum(p.square().sum() for p in model.equivariant_parameters())  # type: ignore[return-value]


def test_rpp_rotation_without_its_free_pathway_is_exactly_equivariant() -> None:
    torch.manual_seed(0)
    layout = VELOCITY_DENSITY
    x = history(layout, seed=4)
    model = settle(RPP(T_IN, layout, symmetry="rotation", width=8, grid_size=GRID), layout)
    assert model.regularization_loss() > model.equivariant_prior * equivariant_l2(model)
    assert rotation_error(model, x, layout) > 1e-2
    with torch.no_grad():
        for p in model.free_parameters():
            p.zero_()
    assert torch.isclose(model.regularization_loss(), model.equivariant_prior * equivariant_l2(model))
    assert rotation_error(settle(model.train(), layout), x, layout) <= 1e-5


def far_response(model: nn.Module, layout: FieldLayout) -> float:
    """How much the output at the far corner moves when the input at pixel (0, 0) does (eval mode)."""
    x = history(layout, seed=8)
    bumped = x.clone()
    bumped[:, :, :, 0, 0] += 1.0
    with torch.no_grad():
        return (model(bumped) - model(x))[..., -1, -1].abs().max().item()


def test_rpp_translation_free_pathway_is_the_papers_dense_mlp_with_its_prior_in_the_training_loss() -> None:
    """ICML 2022 sec. 5: "the combination of MLP and ConvNet for translation". The free pathway of every block is a
    dense map of the whole grid (the far corner sees pixel (0, 0), which a 2-layer 3x3 ConvNet cannot), and the
    residual pathway prior (strong on it, weak on the convolutions) is what the Lightning module adds to the loss."""
    torch.manual_seed(0)
    hparams = dict(symmetry="translation", width=4, layers=2, grid_size=GRID)
    model = settle(RPP(T_IN, VELOCITY_2D, **hparams), VELOCITY_2D)  # type: ignore[arg-type]
    pathways = [m.free for m in model.modules() if hasattr(m, "free")]
    assert len(pathways) == 2 and all(isinstance(f, GridLinear) for f in pathways)
    assert far_response(model, VELOCITY_2D) > 1e-3
    free = sum(p.square().sum() for p in model.free_parameters())
    assert 0 < model.equivariant_prior < 1
    assert torch.isclose(model.regularization_loss(), free + model.equivariant_prior * equivariant_l2(model))
    alpha = 0.5
    module = ForecastModule("rpp", hparams, in_frames=T_IN, alpha=alpha)
    batch = (history(VELOCITY_2D, seed=2), history(VELOCITY_2D, seed=3)[:, :1])
    module.log = lambda *args, **kwargs: None  # type: ignore[method-assign]  # no Trainer attached
    loss = module.training_step(batch, 0)
    mse = nn.functional.mse_loss(module.net(batch[0]), batch[1][:, 0])
    assert torch.isclose(loss, mse + alpha * module.net.regularization_loss())
    with torch.no_grad():
        for p in model.free_parameters():
            p.zero_()
    assert far_response(model, VELOCITY_2D) == 0.0


# --- Combo ---------------------------------------------------------------------------------------------------------


def test_combo_translation_starts_with_an_mlp_of_the_whole_grid() -> None:
    """The reference's MLPConvNet: MLP layers, then convolutions; the output at the far corner sees pixel (0, 0)
    through the MLP (the single 3x3 convolution after it cannot reach it)."""
    torch.manual_seed(0)
    model = settle(Combo(T_IN, VELOCITY_2D, symmetry="translation", width=4, layers=2, grid_size=GRID), VELOCITY_2D)
    assert any(isinstance(m, nn.Linear) for m in model.modules())
    assert far_response(model, VELOCITY_2D) > 1e-3
    with pytest.raises(ValueError, match="built for a 8x8 grid"):
        model(history(VELOCITY_2D, size=16))


# --- CLCNN ---------------------------------------------------------------------------------------------------------


def test_locally_connected_layer_applies_each_pixels_own_kernel() -> None:
    """Pixel ``(i, j)`` copies its neighbour at offset number ``(i + 3 j) mod 9``: nine different kernels over the
    grid. The layer computes exactly that map, and the best convolution (least squares, any 3x3 kernel and bias)
    leaves most of it unexplained."""
    layer = LocallyConnected2d(1, 1, 3, grid_size=(6, 7)).double()
    with torch.no_grad():
        layer.weight.zero_()
        for i in range(6):
            for j in range(7):
                d = (i + 3 * j) % 9
                layer.weight[i, j, 0, 0, d // 3, d % 3] = 1.0
    x = torch.randn(4, 1, 6, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    padded = nn.functional.pad(x, (1, 1, 1, 1))
    expected = torch.stack([torch.stack([padded[:, 0, i + (i + 3 * j) % 9 // 3, j + (i + 3 * j) % 9 % 3]
                                         for j in range(7)], -1) for i in range(6)], -2)
    with torch.no_grad():
        y = layer(x)[:, 0]
    assert torch.allclose(y, expected)
    patches = nn.functional.unfold(x, 3, padding=1).transpose(1, 2).reshape(-1, 9)
    design = torch.cat([patches, torch.ones(len(patches), 1, dtype=x.dtype)], 1)
    fit = torch.linalg.lstsq(design, y.reshape(-1, 1)).solution
    assert (design @ fit - y.reshape(-1, 1)).norm() > 0.5 * y.norm()


def local_layers(model: CLCNN) -> list[LocallyConnected2d]:
    return list(model.local)  # type: ignore[arg-type]


@torch.no_grad()
def make_translation_invariant(model: CLCNN) -> None:
    """Every pixel gets pixel (0, 0)'s kernel: the layers become convolutions."""
    for layer in local_layers(model):
        layer.weight.copy_(layer.weight[:1, :1].expand_as(layer.weight).clone())


def interior_shift_error(model: nn.Module, x: Tensor, margin: int) -> float:
    """Relative error of ``f(shift x)`` vs ``shift f(x)`` (one pixel along x and y), on pixels ``margin`` or more
    from the border (a convolution with zero padding is exactly shift-equivariant there)."""
    with torch.no_grad():
        a = model(x.roll((1, 1), dims=(-2, -1)))[..., margin:-margin, margin:-margin]
        b = model(x).roll((1, 1), dims=(-2, -1))[..., margin:-margin, margin:-margin]
    return ((a - b).norm() / b.norm()).item()


def test_clcnn_without_penalty_breaks_translation_equivariance_and_with_equal_kernels_keeps_it() -> None:
    """Independent kernels per pixel: far from shift-equivariant in the interior; with every pixel's kernel equal
    (zero hinge loss) the same network is exactly shift-equivariant there."""
    torch.manual_seed(0)
    model = settle(CLCNN(T_IN, VELOCITY_2D, symmetry="translation", width=4, layers=2, grid_size=12).double(),
                   VELOCITY_2D, size=12)
    x = history(VELOCITY_2D, size=12, seed=9).double()
    assert model.regularization_loss() > 1e-2
    assert interior_shift_error(model, x, margin=3) > 0.1
    make_translation_invariant(model)
    assert model.regularization_loss() == 0
    assert interior_shift_error(model, x, margin=3) < 1e-10


def kernel_spread(model: nn.Module) -> float:
    """``sum_x ||K(x) - mean_x K||^2 / sum_x ||K(x)||^2`` over the locally connected layers: 0 for convolutions."""
    fields = [layer.weight for layer in model.modules() if isinstance(layer, LocallyConnected2d)]
    return (sum((k - k.mean((0, 1))).square().sum() for k in fields) / sum(k.square().sum() for k in fields)).item()


@pytest.mark.parametrize("alpha", [0.0, 1000.0])
def test_clcnn_trained_with_a_large_penalty_becomes_a_convolution(alpha: float) -> None:
    """Training steps of the Lightning module (the hinge loss enters as ``alpha * regularization_loss()``): with a
    large ``alpha`` the per-pixel kernels collapse onto one kernel (the spread left scales as ``alpha^-2``), without
    it they stay spread."""
    torch.manual_seed(0)
    module = ForecastModule("clcnn", dict(symmetry="translation", width=2, layers=2, grid_size=4), in_frames=T_IN,
                            alpha=alpha)
    module.log = lambda *args, **kwargs: None  # type: ignore[method-assign]  # no Trainer attached
    batch = (history(VELOCITY_2D, size=4, seed=2), history(VELOCITY_2D, size=4, seed=3)[:, :1])
    optimizer = torch.optim.SGD(module.parameters(), lr=1.5e-3)  # below 2 / (largest curvature of the penalty)
    before = kernel_spread(module)
    for _ in range(40):
        optimizer.zero_grad()
        module.training_step(batch, 0).backward()
        optimizer.step()
    if alpha:
        assert kernel_spread(module) < 1e-3 * before
    else:
        assert kernel_spread(module) > 0.5 * before


@pytest.mark.parametrize("symmetry", SYMMETRIES)
def test_clcnn_hinge_loss_is_positive_for_random_kernels_and_zero_for_equivariant_ones(symmetry: str) -> None:
    torch.manual_seed(0)
    model = CLCNN(T_IN, VELOCITY_DENSITY, symmetry=symmetry, width=8, grid_size=GRID).double()
    assert model.regularization_loss() > 1e-3
    make_translation_invariant(model)
    if symmetry == "translation":
        assert model.regularization_loss() < 1e-12
        return
    assert model.regularization_loss() > 1e-3  # invariant under translations only
    with torch.no_grad():
        for layer, constraints in zip(local_layers(model), model.constraints):
            if symmetry == "rotation":
                rho_in, rho_out = constraints[0].rho_in.double(), constraints[0].rho_out.double()
                kernels = layer.weight.clone()
                layer.weight.copy_(sum(rotate_kernels(kernels, rho_out[q], rho_in[-q], q) for q in range(4)) / 4)
                if layer.bias is not None:
                    layer.bias.copy_(sum(rho_out[q] @ layer.bias for q in range(4)) / 4)
            else:  # pointwise kernels are the equivariant ones under zooms
                centre = layer.weight[..., 1, 1].clone()
                layer.weight.zero_()
                layer.weight[..., 1, 1] = centre
    assert model.regularization_loss() < 1e-12


def test_clcnn_with_zero_rotation_hinge_loss_is_exactly_equivariant() -> None:
    """End to end, with position-dependent kernels: the group average ``K = 1/4 sum_q h^q . K_0`` of a random
    kernel field (each ``h^q`` turns the field over the grid and every kernel with its field types) has
    ``h . K(h^-1 x) = K(x)``, so the rotation part of the hinge loss is zero while the translation part is not, and
    the network is exactly equivariant under :func:`symbench.symmetry.rot90`: the constraint's action on the kernel
    field is the group action on the data."""
    torch.manual_seed(0)
    layout = VELOCITY_DENSITY
    model = CLCNN(T_IN, layout, symmetry="rotation", width=16, grid_size=GRID).double()
    x = history(layout, seed=5).double()
    assert rotation_error(settle(copy.deepcopy(model), layout), x, layout) > 1e-2
    with torch.no_grad():
        for layer, constraints in zip(local_layers(model), model.constraints):
            rho_in, rho_out = constraints[0].rho_in.double(), constraints[0].rho_out.double()
            field = layer.weight.clone()
            # twice the group average: averaging four independent kernels halves their size, which the layer
            # norms (running statistics in eval mode) would not undo
            layer.weight.copy_(sum(rotate_kernels(torch.rot90(field, q, dims=(0, 1)), rho_out[q], rho_in[-q], q)
                                   for q in range(4)) / 2)
            if layer.bias is not None:
                layer.bias.copy_(sum(rho_out[q] @ layer.bias for q in range(4)) / 4)
            assert constraints[0](layer) < 1e-12
    assert model.regularization_loss() > 1e-3  # the kernels still vary over the grid
    assert rotation_error(settle(model, layout), x, layout) <= 1e-10


def test_clcnn_is_a_convnet_with_a_kernel_per_pixel_capped_at_max_parameters() -> None:
    """ConvNet's parameters times the pixels (equal arithmetic per pixel) while below the cap, else the cap."""
    model = CLCNN(T_IN, VELOCITY_2D, symmetry="translation", width=8, grid_size=GRID)
    assert abs(n_params(model) / (conv_budget(T_IN, VELOCITY_2D, 8) * GRID**2) - 1) < 0.05
    capped = CLCNN(T_IN, VELOCITY_2D, symmetry="translation", width=8, grid_size=GRID, max_parameters=100_000)
    assert abs(n_params(capped) / 100_000 - 1) < 0.1
    with pytest.raises(ValueError, match="built for a 8x8 grid"):
        capped(history(VELOCITY_2D, size=16))


# --- Lift ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("symmetry", SYMMETRIES)
def test_lift_runs_on_the_grid_it_is_built_for_and_names_any_other(symmetry: str) -> None:
    for size in (8, 16):
        model = Lift(T_IN, VELOCITY_DENSITY, symmetry=symmetry, width=4, grid_size=size)
        assert model(history(VELOCITY_DENSITY, size=size)).shape == (2, 3, size, size)
    rectangular = Lift(T_IN, VELOCITY_DENSITY, symmetry=symmetry, width=4, grid_size=(8, 12))
    assert rectangular(torch.randn(2, T_IN, 3, 8, 12)).shape == (2, 3, 8, 12)
    with pytest.raises(ValueError, match="built for a 8x12 grid, got \\(12, 8\\)") as info:
        rectangular(torch.randn(2, T_IN, 3, 12, 8))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("symmetry", SYMMETRIES)
def test_lift_encoder_sees_patterns_that_block_averages_cannot(symmetry: str) -> None:
    """At the cpu preset's sizes (10 frames, 32x32, width 32), a checkerboard on one 2x2 cell of a single frame and
    channel (zero mean over every 4x4 pooling block, and over every 8x8 block the former encoder averaged) moves the
    context ``z`` by at least 1e-3 of its size; the pooled encoder's ``z`` did not move beyond round-off."""
    torch.manual_seed(0)
    frames, size = 10, 32
    model = Lift(frames, VELOCITY_2D, symmetry=symmetry, width=32, grid_size=size)
    x = history(VELOCITY_2D, size=size).repeat(1, 4, 1, 1, 1)[:, :frames]
    bump = torch.zeros_like(x)
    bump[:, 3, 1, 13:15, 5:7] = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
    for block in (4, 8):  # invisible to p x p average pooling at either block size
        assert nn.functional.avg_pool2d(bump.flatten(1, 2), block).abs().max() == 0
    with torch.no_grad():
        z, moved = (model.encoder(stack_frames(v)) for v in (x, x + bump))
    assert (moved - z).norm() > 1e-3 * z.norm(), ((moved - z).norm(), z.norm())


def test_lift_rotation_breaks_equivariance_only_through_its_encoder() -> None:
    torch.manual_seed(0)
    layout = VELOCITY_DENSITY
    x = history(layout, seed=6)
    model = settle(Lift(T_IN, layout, symmetry="rotation", width=8, grid_size=GRID), layout)
    assert rotation_error(model, x, layout) > 1e-3
    with torch.no_grad():
        model.encoder.mlp[-1].weight.zero_()  # constant context: the escnn backbone alone
    assert rotation_error(model, x, layout) <= 1e-5
