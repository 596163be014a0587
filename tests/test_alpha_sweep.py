"""The soft-equivariance weight sweep (ICML 2022 Fig. 7 analog): alpha reaches the loss of every run, rows carry it,
a finished sweep is not retrained, and the table reports mean ± std per split and alpha."""

from __future__ import annotations

import pytest

from symbench import cli
from symbench.studies.alpha_sweep import render_alpha_sweep, run_alpha_sweep, sweep_cells
from symbench.config import ConfigError
from symbench.results import read_rows


def test_sweep_trains_each_alpha_once_and_writes_table_and_plot(smoke_root, tmp_path, capsys):
    kwargs = dict(preset="tiny", root=smoke_root, results_dir=tmp_path / "results", runs_dir=tmp_path / "runs",
                  progress=False)
    written = run_alpha_sweep("smoke-rotation", "rsteer", alphas=(0.0, 0.1), **kwargs)
    rows = read_rows(tmp_path / "results" / "smoke-rotation" / "alpha_sweep.csv")
    rmse = [r for r in rows if r["metric"] == "rmse"]
    assert sorted({(float(r["alpha"]), r["split"]) for r in rmse}) == [
        (0.0, "test_domain"), (0.0, "test_future"), (0.1, "test_domain"), (0.1, "test_future")]
    assert len({r["config_hash"] for r in rmse}) == 2  # alpha is part of the configuration
    table, plot = written
    assert "alpha=0 " in table.read_text() and "alpha=0.1 " in table.read_text()
    assert plot.stat().st_size > 1000
    assert cli.main(["alpha-sweep", "smoke-rotation", "--model", "rsteer", "--alphas", "0.1", "--preset", "tiny",
                     "--root", str(smoke_root), "--results", str(tmp_path / "results"), "--runs",
                     str(tmp_path / "runs"), "--no-progress"]) == 0
    assert "skipped" in capsys.readouterr().out
    assert len(read_rows(tmp_path / "results" / "smoke-rotation" / "alpha_sweep.csv")) == len(rows)


def test_alpha_cells_mean_and_std_over_seeds_and_bold_minimum():
    rows = [{"model": "m", "preset": "cpu", "metric": "rmse", "split": "test_future", "horizon": "20",
             "alpha": str(a), "seed": str(s), "value": str(v)}
            for a, s, v in [(0.0, 0, 1.0), (0.0, 1, 3.0), (1e-4, 0, 0.5), (1e-4, 1, 0.5)]]
    cells = sweep_cells(rows, "m", "cpu")
    assert cells["test_future"][0.0].mean == 2.0 and cells["test_future"][0.0].std == pytest.approx(2**0.5)
    md = render_alpha_sweep("b", "m", "cpu", cells)
    assert "| Future | alpha=0 | 2.000 ± 1.414 | [-10.706, 14.706] | 2 | – |" in md  # 95 % t interval
    # alpha = 1e-4 has the lower mean, in both seeds, but alpha = 0's interval covers it: a tie
    assert "| Future | alpha=0.0001 | **0.500** ± 0.000 | [0.500, 0.500] | 2 | tie 2/2 |" in md
    assert "- Future: best alpha = 0.0001; vs alpha = 0: tie 2/2." in md
    assert "No `persistence` / `linear` rows" in md


def test_alpha_table_carries_the_benchmarks_baseline_rows(tmp_path):
    """The baselines' rows of results/<benchmark>/runs.csv, of the same preset and split and of each model's
    newest code revision, are rows of the table."""
    from symbench.results import ROW_FIELDS
    from symbench.studies.alpha_sweep import baseline_cells
    from symbench.studies.common import write_rows

    base = dict.fromkeys(ROW_FIELDS, "")
    rows = [{**base, "model": m, "preset": p, "metric": "rmse", "split": sp, "horizon": "20", "seed": s,
             "value": v, "code_rev": rev}
            for m, p, sp, s, v, rev in [("persistence", "cpu", "test_future", 2, 0.9, "old"),  # older revision
                                        ("persistence", "cpu", "test_future", 0, 0.7, "new"),
                                        ("persistence", "cpu", "test_future", 1, 0.7, "new"),
                                        ("linear", "cpu", "test_future", 0, 1.4, "new"),
                                        ("linear", "tiny", "test_future", 0, 9.0, "new"),  # another preset
                                        ("conv", "cpu", "test_future", 0, 0.1, "new")]]  # not a baseline
    write_rows(tmp_path / "b" / "runs.csv", rows)
    baselines = baseline_cells(tmp_path, "b", "cpu")
    assert {s: sorted(c) for s, c in baselines.items()} == {"test_future": ["linear", "persistence"]}
    sweep = [{"model": "m", "preset": "cpu", "metric": "rmse", "split": "test_future", "horizon": "20",
              "alpha": str(a), "seed": str(s), "value": str(v)}
             for a in (0.0, 1e-4) for s, v in enumerate([1.0, 1.01, 1.02] if a == 0 else [0.5, 0.51, 0.52])]
    md = render_alpha_sweep("b", "m", "cpu", sweep_cells(sweep, "m", "cpu"), baselines)
    assert "| Future | persistence | 0.700 ± 0.000 | [0.700, 0.700] | 2 | – |" in md
    assert "| Future | linear | 1.400 | – | 1 | – |" in md
    assert "| Future | alpha=0 | 1.010 ± 0.010 | [0.985, 1.035] | 3 | – |" in md
    assert "vs alpha = 0: yes 3/3." in md and "No `persistence`" not in md


@pytest.mark.parametrize("model, alphas, message", [("rgroup_x", (0.0,), "not part of benchmark"),
                                                     ("rsteer", (-1.0,), "alphas must be finite and >= 0")])
def test_bad_sweep_arguments_are_one_line_errors(model, alphas, message):
    with pytest.raises(ConfigError, match=message) as err:
        run_alpha_sweep("smoke-rotation", model, alphas=alphas)
    assert "\n" not in str(err.value)


def test_command_line_devices_reach_every_run(monkeypatch, tmp_path):
    """``--accelerator`` / ``--devices`` / ``--strategy`` / ``--precision`` of `symbench alpha-sweep` reach the
    Trainer section of each run's configuration (what ``run_one`` builds its Trainer from)."""
    from symbench.studies import alpha_sweep

    seen = []
    monkeypatch.setattr(alpha_sweep.datamodules, "generate", lambda *a, **k: None)
    monkeypatch.setattr(alpha_sweep, "is_finished", lambda cfg, rows, runs: seen.append(cfg) or True)
    monkeypatch.setattr(alpha_sweep, "write_alpha_sweep", lambda *a, **k: [])
    assert cli.main(["alpha-sweep", "smoke-rotation", "--model", "rsteer", "--alphas", "0", "0.1", "--preset",
                     "tiny", "--results", str(tmp_path), "--accelerator", "cpu", "--devices", "2", "--strategy",
                     "ddp", "--precision", "bf16-mixed", "--no-progress"]) == 0
    assert len(seen) == 2
    for cfg in seen:
        assert {k: cfg.trainer[k] for k in ("accelerator", "devices", "strategy", "precision")} == {
            "accelerator": "cpu", "devices": 2, "strategy": "ddp", "precision": "bf16-mixed"}
