"""The graded-symmetry smoke datasets and the "learning different levels of equivariance" driver (ICML 2022 sec. 5.2),
on the tiny preset (16 x 16, 3 levels, 4 simulations each) generated once by the real solver (PhiFlow, ~5 s)."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from datamodules import smoke_levels
from stand_ins import Asymmetric
from symbench import cli
from symbench.results import read_rows
from symbench.studies import levels, one_step
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


def test_baselines_on_a_quadratic_sequence_have_exact_errors_and_the_models_test_targets():
    """x_t = a + b t + c t^2 per entry: linear extrapolation misses each target by exactly 2 c, persistence by
    x_t - x_{t-1}; both are exactly C4-equivariant and parameter-free, and linear's two-frame windows (the models
    get one frame) hold exactly the models' test targets."""
    g = torch.Generator().manual_seed(3)
    a, b, c = (torch.randn(1, 1, LAYOUT.channels, 6, 6, generator=g) for _ in range(3))
    t = torch.arange(8.0).view(1, 8, 1, 1, 1)
    array = (a + b * t + c * t * t).numpy()
    cfg = levels.LevelsTraining(in_frames=1, test_frames=3, seeds=(0,))
    targets = torch.stack([y for _, y in levels.windows(array, 1, 3)[1]])
    for name in ("persistence", "linear"):
        _, test = levels.baseline_model(name, array, cfg, LAYOUT)
        torch.testing.assert_close(torch.stack([y for _, y in test]), targets, rtol=0, atol=0)
    x = torch.from_numpy(array).double()
    persistence = levels.measure("persistence", 0, 0, array, cfg, LAYOUT)
    linear = levels.measure("linear", 0, 0, array, cfg, LAYOUT)
    assert persistence.metrics["rmse"] == pytest.approx(float((x[:, 5:] - x[:, 4:7]).square().mean().sqrt()), rel=1e-5)
    assert linear.metrics["rmse"] == pytest.approx(float((2 * c.double()).square().mean().sqrt()), rel=1e-4)
    assert persistence.metrics["equiv_error"] == linear.metrics["equiv_error"] == 0.0
    assert persistence.params == linear.params == 0


def _runs(summary_seeds: dict[int, float], levels_data: list[float], model: str,
          error: Callable[[float, int], float]) -> list[levels.LevelRun]:
    out = []
    for s in summary_seeds:
        for lv, d in enumerate(levels_data):
            out.append(levels.LevelRun(lv, levels.DATA, s, {"equiv_error": d}))
            out.append(levels.LevelRun(lv, model, s, {"equiv_error": error(d, s), "equiv_relative": 0.0,
                                                      "rmse": 1.0 + s}))
    return out


def test_gap_and_slope_statistics_on_an_analytic_case():
    """E_model = 2 E_data + o_s (seed offsets o = 0, 0.1, 0.5): every seed's slope is 2 with a zero-width interval
    (not containing 1) and Spearman 1; the gap at each level is E_data + o_s, whose mean over seeds is
    E_data + 0.2 with the std and 95 % t interval of the offsets."""
    data = [0.0, 0.1, 0.2, 0.4]
    offsets = {0: 0.0, 1: 0.1, 2: 0.5}
    summary = levels.summarise(_runs(offsets, data, "m", lambda d, s: 2 * d + offsets[s]), ["m"])["m"]
    assert summary.seeds == 3 and summary.rank_one == 3 and summary.slope_one == 0
    assert (summary.slope.mean, summary.slope.std, summary.slope.lo, summary.slope.hi) == pytest.approx((2, 0, 2, 2))
    std = float(np.std(list(offsets.values()), ddof=1))
    half = 4.302652729749462 * std / math.sqrt(3)
    for lv, d in enumerate(data):
        gap = summary.gap[lv]
        assert (gap.mean, gap.std, gap.lo, gap.hi) == pytest.approx((d + 0.2, std, d + 0.2 - half, d + 0.2 + half))
        assert summary.error[lv].mean == pytest.approx(2 * d + 0.2) and summary.rmse[lv].mean == pytest.approx(2.0)
    # A model that follows the data one for one: slope 1 in every seed (interval contains 1), gap 0.
    follows = levels.summarise(_runs(offsets, data, "f", lambda d, s: d), ["f"])["f"]
    assert follows.slope_one == 3 and all(g.mean == pytest.approx(0) for g in follows.gap.values())
    # Exact lines of slopes 0.5, 1, 1.5 by seed: only seed 1's own interval contains 1 (the mean's does too).
    spread = levels.summarise(_runs(offsets, data, "s", lambda d, s: (0.5 + 0.5 * s) * d), ["s"])["s"]
    assert spread.slope_one == 1 and spread.slope.contains(1.0) and spread.rank_one == 3
    # A seed missing a level is left out, not averaged in.
    partial = [r for r in _runs(offsets, data, "m", lambda d, s: 2 * d) if not (r.seed == 2 and r.level == 3)]
    assert levels.summarise(partial, ["m"])["m"].seeds == 2


def test_seeds_give_one_row_per_level_model_seed_and_a_stopped_run_resumes(tiny_dir, tmp_path, monkeypatch):
    root, results = tiny_dir.parent.parent, tmp_path / "results"
    trained = []

    def fake_train(name, train, layout, cfg, bar=None, trainer=None, seed=0, symmetry="rotation"):
        trained.append((name, seed))
        if len(trained) == stop_at:
            raise KeyboardInterrupt  # a kill in the middle of the study
        return Asymmetric().eval()

    monkeypatch.setattr(one_step, "train_model", fake_train)
    run = dict(root=root, results=results, models=("persistence", "conv"), progress=False)
    stop_at = 2
    with pytest.raises(KeyboardInterrupt):
        levels.run_levels("tiny", seeds=[0, 1], **run)
    stop_at = 0
    levels.run_levels("tiny", seeds=[0, 1], **run)
    # killed at seed 0 level 1; the rerun trains seed 0's levels 1 and 2, not level 0 again, then seed 1's three
    assert trained == [("conv", 0)] * 2 + [("conv", 0)] * 2 + [("conv", 1)] * 3
    rows = read_rows(results / "levels" / "runs.csv")
    keys = [(r["dataset"], r["model"], r["seed"], r["metric"]) for r in rows]
    assert len(keys) == len(set(keys)) == 3 * 2 * (1 + 3 + 3)  # (level, model, seed) once: data, persistence, conv
    assert {(r["preset"], r["config_hash"]) for r in rows} == {("tiny", rows[0]["config_hash"])}
    assert {r["params"] for r in rows if r["model"] == "conv"} == {"1"}
    trained.clear()
    result = levels.run_levels("tiny", seeds=[0, 1, 2], **run)  # one more seed: only it trains
    assert trained == [("conv", 2)] * 3 and result.summaries["conv"].seeds == 3
    trained.clear()
    levels.run_levels("tiny", seeds=[0], epochs=1, **run)  # another configuration: trained again
    assert trained == [("conv", 0)] * 3


def test_cli_levels_at_tiny_writes_tables_csv_and_plot(tiny_dir, tmp_path, capsys):
    root = tiny_dir.parent.parent  # <root>/smoke-levels/<preset>-<key>
    argv = ["levels", "--preset", "tiny", "--root", str(root), "--results", str(tmp_path), "--models", "persistence",
            "linear", "conv", "--seeds", "0", "1", "--no-progress"]
    assert cli.main(argv) == 0
    out = tmp_path / "levels"
    with open(out / "levels_tiny.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["level"]), r["model"]) for r in rows] == [
        (lv, m) for lv in range(3) for m in ("persistence", "linear", "conv")]
    assert [float(r["eps"]) for r in rows[::3]] == [0.0, 0.5, 1.0]
    for r in rows:
        assert r["seeds"] == "2" and float(r["gap_lo"]) <= float(r["gap_mean"]) <= float(r["gap_hi"])
        assert float(r["gap_mean"]) == pytest.approx(float(r["equiv_error_mean"]) - float(r["data_equiv_error"]),
                                                     rel=1e-4, abs=1e-12)
        if r["model"] in ("persistence", "linear"):
            assert float(r["equiv_error_mean"]) == 0.0 and float(r["rmse_std"]) == 0.0  # deterministic
        elif r["model"] == "conv":
            assert float(r["equiv_error_mean"]) > 0 and float(r["rmse_std"]) > 0  # seeds differ
    models = {r["model"]: r for r in csv.DictReader(open(out / "levels_tiny_models.csv"))}
    assert list(models) == ["persistence", "linear", "conv"]
    assert float(models["persistence"]["slope_mean"]) == 0.0
    md = (out / "levels_tiny.md").read_text()
    assert "## Gap E_model - E_data" in md and "How to read it" in md and "| `conv` |" in md
    assert (out / "levels_tiny.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*"))  # no temporary files left behind
    runs = [r for r in csv.DictReader(open(out / "runs.csv")) if r["metric"] == "rmse"]  # the runs.csv schema
    by_run = {(r["dataset"], r["model"], r["seed"]): float(r["value"]) for r in runs}
    assert len(by_run) == len(runs) == 3 * 3 * 2
    for r in rows:
        mean = np.mean([by_run[f"smoke-levels-{r['level']}", r["model"], s] for s in "01"])
        assert float(r["rmse_mean"]) == pytest.approx(mean, rel=1e-5)
    assert "wrote" in capsys.readouterr().out


def test_committed_levels_rows_still_read_and_summarise():
    """The committed results/levels/runs.csv (cpu preset, 3 seeds, models and baselines) reads back as complete
    (level, model, seed) runs of its configuration hash and summarises."""
    path = Path(__file__).resolve().parents[1] / "results" / "levels" / "runs.csv"
    rows = read_rows(path)
    runs = levels.read_runs(path, "cpu", rows[-1]["config_hash"])
    names = sorted({r.model for r in runs} - {levels.DATA})
    summaries = levels.summarise(runs, names)
    assert {"persistence", "linear", "conv", "equiv", "rsteer"} <= set(names)
    assert {s.seeds for s in summaries.values()} == {3} and len(next(iter(summaries.values())).gap) == 10


def test_cli_levels_unknown_model_is_one_line(tmp_path, capsys):
    assert cli.main(["levels", "--preset", "tiny", "--root", str(tmp_path), "--models", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0] and "--models" in err[0]
    assert not (tmp_path / "smoke-levels").exists()  # nothing generated for a bad request
