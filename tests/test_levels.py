"""The graded-symmetry smoke datasets and the "learning different levels of equivariance" driver (ICML 2022 sec. 5.2),
on the tiny preset (16 x 16, 3 levels, 4 simulations each) generated once by the real solver (PhiFlow, ~5 s)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules import smoke_levels
from symbench import cli
from symbench.studies import levels
from symbench.models.registry import build
from symbench.symmetry import rot90

LAYOUT = smoke_levels.LAYOUT
# Level 0 is C4-symmetric up to solver round-off: float64 PhiFlow (CG tolerance 1e-5 but identical rotated iterates)
# stored as float32; measured ~6e-10 against field magnitudes ~0.03 (mean |value|). Allowed: 1e-6 absolute.
ROUND_OFF = 1e-6


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("levels")
    return smoke_levels.generate_preset("tiny", root, progress=False)


def _level(directory: Path, i: int) -> np.ndarray:
    return np.array(smoke_levels.load_level(directory, i)[0])


def test_level_zero_is_symmetric_and_data_error_grows_with_level(tiny_dir):
    errors = [smoke_levels.data_equivariance_error(_level(tiny_dir, i)) for i in range(3)]
    assert errors[0] < ROUND_OFF
    assert errors[0] < errors[1] < errors[2]
    assert errors[1] > 100 * ROUND_OFF  # a real, not a round-off, difference from level 1 on


def test_bottom_site_turned_a_quarter_counter_clockwise_is_the_right_site(tiny_dir):
    x = torch.from_numpy(_level(tiny_dir, 0))  # strength-major: sims 0..3 = bottom, right, top, left
    bottom, right = x[0], x[1]
    scale = right.abs().mean()
    assert (rot90(bottom, LAYOUT, 1) - right).abs().mean() < ROUND_OFF
    # The other sense of rotation (or forgetting to turn the vectors) is far off: the test can tell them apart.
    assert (rot90(bottom, LAYOUT, -1) - right).abs().mean() > 0.1 * scale
    assert (torch.rot90(bottom, 1, dims=(-2, -1)) - right).abs().mean() > 0.1 * scale


def test_level_configs_scale_buoyancy_per_site():
    p = smoke_levels.preset("tiny")
    assert p.site_factors(0) == (1.0, 1.0, 1.0, 1.0)
    last = smoke_levels.level_configs(p, p.levels - 1)
    forces = [math.hypot(c.force_x, c.force_y) for c in last]
    assert forces == pytest.approx([p.buoyancy * (1 + d) for d in smoke_levels.OFFSETS])
    assert (last[1].force_x, last[1].force_y) == (-forces[1], 0.0)  # right site pushes -x


def test_regeneration_skips_finished_levels(tiny_dir, monkeypatch):
    calls = []
    real = smoke_levels.simulate_group
    monkeypatch.setattr(smoke_levels, "simulate_group", lambda *a, **k: calls.append(1) or real(*a, **k))
    smoke_levels.generate(smoke_levels.preset("tiny"), tiny_dir, progress=False)
    assert calls == []


def test_model_equivariance_error_zero_for_e2cnn_and_not_for_a_conv():
    torch.manual_seed(0)
    x = torch.randn(6, 1, LAYOUT.channels, 16, 16)
    kw = dict(in_frames=1, layout=LAYOUT, symmetry="rotation", width=8, layers=2, kernel_size=3, grid_size=16)
    equiv = build("equiv", **kw).eval()
    conv = build("conv", **kw).eval()
    exact = levels.model_equivariance_error(equiv, x, LAYOUT)
    plain = levels.model_equivariance_error(conv, x, LAYOUT)
    assert exact["relative"] < levels.EXACT_TOLERANCE
    assert plain["relative"] > 0.1 and plain["mae"] > 1e4 * exact["mae"]


def test_training_normalises_like_the_benchmarks_and_evaluates_in_data_units():
    """The levels study uses the shared FieldNormalizer, fitted on the training windows' time range (density
    standardised with its mean: the former RMS-only rule left it unshifted), and maps back to data units: a residual
    network with a zero increment is persistence in data units."""
    from datamodules.windows import FieldNormalizer

    torch.manual_seed(0)
    array = torch.randn(2, 8, LAYOUT.channels, 8, 8) * 0.1 + torch.tensor([0.0, 0.0, 3.0]).view(3, 1, 1)
    train, test = levels.windows(array, 1, 2)
    cfg = levels.LevelsTraining(width=4, layers=2, epochs=1, batch_size=8, test_frames=2)
    model = levels.train_model("conv", train, LAYOUT, cfg)
    expected = FieldNormalizer.fit(LAYOUT, array[:, :6])
    assert torch.equal(model.normalizer.scale, expected.scale) and torch.equal(model.normalizer.shift, expected.shift)
    assert model.normalizer.shift[2] == pytest.approx(3.0, abs=0.02)
    for p in model.net.net.parameters():
        p.data.zero_()
    history, target = test[0]
    torch.testing.assert_close(model(history[None]), history[None, -1], rtol=0, atol=1e-6)


def test_evaluate_pools_squared_errors_over_every_entry():
    """RMSE of the shared RolloutRMSE (squared errors pooled, not per-batch means), E_model 0 for persistence."""
    torch.manual_seed(1)
    data = torch.randn(1, 9, LAYOUT.channels, 8, 8) * torch.arange(1.0, 10.0).view(1, 9, 1, 1, 1)
    _, test = levels.windows(data, 1, 5)
    out = levels.evaluate(lambda h: h[:, -1], test, LAYOUT, batch_size=2)  # batches of 2, 2, 1 windows
    assert out["rmse"] == pytest.approx(float((data[:, 4:] - data[:, 3:-1]).double().square().mean().sqrt()))
    assert out["mae"] == 0.0


def test_spearman_and_slope_against_hand_computed_values():
    # ranks of b with a tie: (1, 2, 3.5, 5, 3.5); centred products sum 8, squares 10 and 9.5.
    assert levels.spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(8 / math.sqrt(95))
    assert levels.spearman([0.1, 0.2, 0.3], [20, 30, 10]) == pytest.approx(-0.5)  # ranks (1,2,3) vs (2,3,1)
    assert levels.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(levels.spearman([1, 2, 3], [4, 4, 4]))
    assert levels.slope([0.0, 1.0, 2.0], [1.0, 3.0, 5.0]) == pytest.approx(2.0)


def test_cli_levels_at_tiny_writes_table_csv_and_plot(tiny_dir, tmp_path, capsys):
    root = tiny_dir.parent.parent  # <root>/smoke-levels/<preset>-<key>
    argv = ["levels", "--preset", "tiny", "--root", str(root), "--results", str(tmp_path), "--models", "conv",
            "equiv", "rgroup", "--no-progress"]
    assert cli.main(argv) == 0
    out = tmp_path / "levels"
    with open(out / "levels_tiny.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["level"]) for r in rows] == [0, 1, 2]
    assert [float(r["eps"]) for r in rows] == [0.0, 0.5, 1.0]
    for r in rows:
        assert float(r["equiv_equiv_relative"]) < levels.EXACT_TOLERANCE
        assert float(r["conv_equiv_error"]) > 0 and float(r["rgroup_rmse"]) > 0
    md = (out / "levels_tiny.md").read_text()
    assert "| level | eps | E_data |" in md and "Spearman" in md and "`rgroup`" in md
    assert (out / "levels_tiny.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*"))  # no temporary files left behind
    runs = [r for r in csv.DictReader(open(out / "runs.csv")) if r["metric"] == "rmse"]  # the runs.csv schema
    assert [(r["dataset"], r["model"], float(r["value"])) for r in runs] == [
        (f"smoke-levels-{r['level']}", m, pytest.approx(float(r[f"{m}_rmse"]), rel=1e-5)) for r in rows for m in ("conv", "equiv", "rgroup")]
    assert "wrote" in capsys.readouterr().out


def test_cli_levels_unknown_model_is_one_line(tmp_path, capsys):
    assert cli.main(["levels", "--preset", "tiny", "--root", str(tmp_path), "--models", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0] and "--models" in err[0]
    assert not (tmp_path / "smoke-levels").exists()  # nothing generated for a bad request
