"""Behaviour of every registered forecaster (shape contract, training signal, bad input, checkpoints) and of the two
ICLR 2021 baselines (parameter counts of Table 6, no rotation equivariance)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from symbench.fields import VELOCITY_2D, FieldLayout
from symbench.layers import stack_frames
from symbench.config import benchmark_models, model_benchmarks
from symbench.models import available, build, spec

ROOT = Path(__file__).resolve().parents[1]
T_IN = 3
GRID = 32
VELOCITY_TEMPERATURE = FieldLayout.of("velocity:vector", "temperature:scalar")
LAYOUTS = {"velocity": VELOCITY_2D, "velocity+temperature": VELOCITY_TEMPERATURE}
# Small hyperparameters per model (later models may need other keys); anything not listed gets SMALL_DEFAULT.
SMALL_HPARAMS: dict[str, dict] = {}
SMALL_DEFAULT = {"width": 8}
# Table 6 of Wang et al. (ICLR 2021): parameters at the paper size (width 64, l = 25 velocity frames).
PAPER_PARAMS = {"resnet": 11.0e6, "unet": 6.2e6}
# The RBC models (any grid, any history); the smoke models are sized to one grid and have their own tests
# (tests/test_smoke_models.py, tests/test_rgroup.py).
PLAIN = [n for n in benchmark_models("rbc") if spec(n).family == "plain"]
# Augm entries build their backbone's class (checked below), so the per-model tests run once per class.
# The parameter-free baselines have their own tests (tests/test_baselines.py).
DISTINCT = [n for n in benchmark_models("rbc") if spec(n).family not in ("augmented", "baseline")]
# U-nets that zero-pad odd grids (equ_um_unet replicates instead, so that a uniform motion stays one; its own
# test covers odd grids).
ZERO_PADDED_UNETS = [n for n in DISTINCT if n.endswith("unet") and n != "equ_um_unet"]


def small(name: str, layout: FieldLayout = VELOCITY_2D, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build(name, in_frames=T_IN, layout=layout, **SMALL_HPARAMS.get(name, SMALL_DEFAULT))


def history(layout: FieldLayout, batch: int = 2, h: int = GRID, w: int = GRID, seed: int = 1) -> Tensor:
    return torch.randn(batch, T_IN, layout.channels, h, w, generator=torch.Generator().manual_seed(seed))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def rot90_fields(x: Tensor, layout: FieldLayout) -> Tensor:
    """Rotate ``(..., C, H, W)`` by +90 degrees: grid by ``torch.rot90`` (rows run towards -y, so this turns the
    domain counter-clockwise) and each vector ``(u, v) -> (-v, u)``; scalars only move with the grid."""
    y = torch.rot90(x, 1, dims=(-2, -1)).clone()
    for s in layout.vector_slices:
        u, v = y[..., s.start, :, :].clone(), y[..., s.start + 1, :, :].clone()
        y[..., s.start, :, :], y[..., s.start + 1, :, :] = -v, u
    return y


def rotation_error(model: nn.Module, x: Tensor, layout: FieldLayout) -> float:
    """``|f(g x) - g f(x)| / |f(x)|`` for the +90 degree rotation ``g`` (ICLR 2021 sec. 5.1)."""
    with torch.no_grad():
        fx = model(x)
        return ((model(rot90_fields(x, layout)) - rot90_fields(fx, layout)).norm() / fx.norm()).item()


@pytest.mark.parametrize("layout_name", LAYOUTS)
@pytest.mark.parametrize("name", DISTINCT)
def test_maps_history_to_next_frame_using_every_frame(name: str, layout_name: str) -> None:
    layout = LAYOUTS[layout_name]
    model = small(name, layout).eval()
    for h, w in [(GRID, GRID), (16, 48)]:
        x = history(layout, h=h, w=w)
        with torch.no_grad():
            y = model(x)
            assert y.shape == (2, layout.channels, h, w)
            assert torch.isfinite(y).all()
            # The oldest frame and the last channel must both reach the output (frame-major stacking, no dropped
            # channel): perturbing either changes the prediction.
            for t, c in [(0, 0), (T_IN - 1, layout.channels - 1)]:
                x2 = x.clone()
                x2[:, t, c] += 1.0
                assert (model(x2) - y).abs().max() > 1e-4, f"frame {t}, channel {c} does not reach the output"


@pytest.mark.parametrize("name", DISTINCT)
def test_training_step_reaches_every_parameter_and_lowers_the_loss(name: str) -> None:
    # float64, so that a gradient that is zero in exact arithmetic (e.g. a conv bias right before batch norm, which
    # float32 leaves at ~1e-8 round-off) is told apart from a small true one (~1e-7 deep in a randomly initialised
    # U-net).
    layout = VELOCITY_TEMPERATURE
    model = small(name, layout).double().train()
    x = history(layout, batch=4, h=16, w=16).double()
    target = history(layout, batch=4, h=16, w=16, seed=2)[:, -1].double()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for step in range(6):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), target)
        loss.backward()
        if step == 0:
            dead = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().max() < 1e-12]
            assert not dead, f"parameters without gradient: {dead}"
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.98 * losses[0], losses


def resnet_params(width: int, in_channels: int, out_channels: int, k: int = 3) -> int:
    """Analytic count: per block two bias-free convs + two BN (2 params per channel), a biased projection conv when
    the width changes; biased head conv."""
    total, c = 0, in_channels
    for w in (width * m for m in (1, 1, 2, 2, 4, 4, 8, 8)):
        total += c * w * k * k + w * w * k * k + 4 * w + (c * w * k * k + w if c != w else 0)
        c = w
    return total + c * out_channels * k * k + out_channels


def unet_params(width: int, in_channels: int, out_channels: int, k: int = 3) -> int:
    """Analytic count: 7 biased encoder convs, 4 biased 4x4 transposed convs, biased head conv."""
    w, c = width, in_channels
    conv = [(c, w), (w, 2 * w), (2 * w, 2 * w), (2 * w, 4 * w), (4 * w, 4 * w), (4 * w, 8 * w), (8 * w, 8 * w)]
    deconv = [(8 * w, 2 * w), (6 * w, w), (3 * w, w // 2), (3 * w // 2, w // 4)]
    return (sum(a * b * k * k + b for a, b in conv) + sum(a * b * 16 + b for a, b in deconv)
            + (w // 4 + c) * out_channels * k * k + out_channels)


ANALYTIC = {"resnet": resnet_params, "unet": unet_params}


@pytest.mark.parametrize("width, in_frames, k", [(8, 3, 3), (12, 5, 5), (64, 25, 3)])
@pytest.mark.parametrize("name", ANALYTIC)
def test_parameter_count_matches_the_reference_architecture(name: str, width: int, in_frames: int, k: int) -> None:
    layout = VELOCITY_TEMPERATURE
    model = build(name, in_frames=in_frames, layout=layout, width=width, kernel_size=k)
    assert n_params(model) == ANALYTIC[name](width, in_frames * layout.channels, layout.channels, k)


@pytest.mark.parametrize("name", PAPER_PARAMS)
def test_paper_size_parameter_count_is_near_table_6(name: str) -> None:
    count = n_params(build(name, in_frames=25, layout=VELOCITY_2D, width=64))
    print(f"{name}: {count / 1e6:.2f} M parameters at the paper size (Table 6: {PAPER_PARAMS[name] / 1e6:.1f} M)")
    # The ResNet of Rose-STL-Lab/Equivariant-Net has 12.57 M (its 3x3 projection skips: 1x1 ones would give
    # 11.17 M), hence 15 %.
    assert abs(count / PAPER_PARAMS[name] - 1) < 0.15


def test_rotation_helper_is_an_exact_group_action() -> None:
    layout = VELOCITY_TEMPERATURE
    x = history(layout)
    x4 = x
    for _ in range(4):
        x4 = rot90_fields(x4, layout)
    assert torch.equal(x4, x)
    assert not torch.allclose(rot90_fields(x, layout), x)
    # The periodic centred gradient of a scalar p is a vector field (d/dx along columns; rows run towards -y, so
    # d/dy = -d/drow): it commutes with the rotation exactly iff grid and components rotate consistently.
    def grad_of_temperature(h: Tensor) -> Tensor:
        p = h[:, -1, 2]
        gx = (p.roll(-1, -1) - p.roll(1, -1)) / 2
        gy = -(p.roll(-1, -2) - p.roll(1, -2)) / 2
        return torch.stack([gx, gy, p], dim=1)

    assert rotation_error(grad_of_temperature, x, layout) < 1e-6


@pytest.mark.parametrize("layout_name", LAYOUTS)
@pytest.mark.parametrize("name", PLAIN)
def test_plain_model_is_not_rotation_equivariant(name: str, layout_name: str) -> None:
    layout = LAYOUTS[layout_name]
    err = rotation_error(small(name, layout).eval(), history(layout), layout)
    assert err > 1e-2, f"{name}: rotation equivariance error {err:.2e} is suspiciously small for a plain CNN"


@pytest.mark.parametrize("name", DISTINCT)
def test_bad_history_raises_one_clear_line(name: str) -> None:
    model = small(name, VELOCITY_2D)
    bad = [
        torch.randn(2, T_IN + 1, 2, GRID, GRID),  # wrong history length
        torch.randn(2, T_IN, 3, GRID, GRID),  # wrong channel count
        torch.randn(2, T_IN * 2, GRID, GRID),  # already stacked on channels
    ]
    for x in bad:
        with pytest.raises(ValueError) as info:
            model(x)
        msg = str(info.value)
        assert "\n" not in msg and str(tuple(x.shape)) in msg and f"T_in={T_IN}" in msg, msg


@pytest.mark.parametrize("name", ZERO_PADDED_UNETS)
def test_unets_pad_a_grid_not_divisible_by_16_and_crop_back(name: str) -> None:
    """A 24 x 32 grid runs as the centred 32 x 32 zero-padded grid; the output is its central 24 x 32 crop."""
    model = small(name).eval()
    x = torch.randn(1, T_IN, 2, 24, GRID)
    padded = torch.nn.functional.pad(x, (0, 0, 4, 4))
    with torch.no_grad():
        out, ref = model(x), model(padded)
    assert out.shape == (1, 2, 24, GRID)
    torch.testing.assert_close(out, ref[..., 4:28, :], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", [n for n in available() if spec(n).family == "augmented"])
def test_augm_entries_are_their_backbone_with_a_training_augmentation(name: str) -> None:
    _, group, backbone = name.split("_")
    assert spec(name).target == spec(backbone).target
    assert spec(name).data == {"augment": group}
    # everywhere the backbone runs, except the temperature benchmark: ICLR 2021 Table 8 has no Augm column
    assert model_benchmarks(name) == [b for b in model_benchmarks(backbone) if b != "ocean-temperature"]


@pytest.mark.parametrize("hparams", [{"width": 6}, {"kernel_size": 4}])
def test_unet_rejects_bad_hyperparameters(hparams: dict) -> None:
    with pytest.raises(ValueError):
        build("unet", in_frames=T_IN, layout=VELOCITY_2D, **{"width": 8, **hparams})


def test_resnet_rejects_an_unknown_padding_mode() -> None:
    with pytest.raises(ValueError, match="padding_mode"):
        build("resnet", in_frames=T_IN, layout=VELOCITY_2D, width=4, padding_mode="mirror")


def test_circular_resnet_commutes_with_periodic_shifts() -> None:
    torch.manual_seed(0)
    model = build("resnet", in_frames=T_IN, layout=VELOCITY_2D, width=4, padding_mode="circular").eval()
    x = history(VELOCITY_2D)
    with torch.no_grad():
        err = (model(x.roll((5, -3), (-2, -1))) - model(x).roll((5, -3), (-2, -1))).abs().max()
    assert err < 1e-5


@pytest.mark.parametrize("name", DISTINCT)
def test_state_dict_round_trip_gives_identical_outputs(name: str) -> None:
    layout = VELOCITY_TEMPERATURE
    source = small(name, layout, seed=0)
    x = history(layout, batch=4)
    source.train()
    source(x)  # moves batch-norm running statistics away from their initial values
    source.eval()
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    buffer.seek(0)
    target = small(name, layout, seed=1).eval()
    with torch.no_grad():
        assert not torch.allclose(target(x), source(x))
        target.load_state_dict(torch.load(buffer, weights_only=True))
        assert torch.equal(target(x), source(x))


def test_stack_frames_is_frame_major() -> None:
    x = torch.arange(2 * 3 * 2 * 1 * 1.0).reshape(2, 3, 2, 1, 1)
    stacked = stack_frames(x)
    for t in range(3):
        for c in range(2):
            assert torch.equal(stacked[:, 2 * t + c], x[:, t, c])


def test_speed_script_writes_a_table_and_json(tmp_path: Path) -> None:
    out = tmp_path / "speed.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "speed.py"), "--models", "unet", "--width", "4", "--size", "16",
           "--batch", "2", "--frames", "2", "--repeats", "2", "--warmup", "1", "--threads", "1", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    rows = {r["model"]: r for r in json.loads(out.read_text())["results"]}
    assert set(rows) == {"resnet", "unet"}  # the reference model is always measured in the same run
    assert rows["resnet"]["train_ratio"] == 1.0 and rows["resnet"]["eval_ratio"] == 1.0
    assert all(r["train_ms"] > r["eval_ms"] > 0 for r in rows.values())
    assert "| unet |" in proc.stdout
