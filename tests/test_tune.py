"""``symbench tune``: one TPE sweep of the same budget per model, resumable, its best configs and its summary; bad
input is one line before anything trains."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import optuna
import pytest
import yaml

from symbench import cli
from symbench.sweep.campaign import TuningRow, render_markdown, summary_paths

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def sandbox(tmp_path, monkeypatch):
    """A copy of benchmarks/, so the best configs land in tmp."""
    shutil.copytree(REPO / "benchmarks", tmp_path / "benchmarks")
    monkeypatch.setenv("SYMBENCH_BENCHMARKS", str(tmp_path / "benchmarks"))
    return tmp_path


def _tune(sandbox: Path, root: Path, *extra: str) -> list[str]:
    return ["tune", "smoke-rotation", "--preset", "tiny", "--root", str(root), "--runs", str(sandbox / "runs"),
            "--results", str(sandbox / "results"), "--no-progress", *extra]


@pytest.mark.slow
def test_every_model_gets_the_budget_and_a_rerun_trains_nothing(sandbox, smoke_root, capfd):
    assert cli.main(_tune(sandbox, smoke_root, "--models", "conv", "rgroup", "--trials", "2")) == 0
    md, table = summary_paths(sandbox / "results", "smoke-rotation", "tiny")
    rows = list(csv.DictReader(table.open()))
    assert [r["model"] for r in rows] == ["conv", "rgroup"]
    for r in rows:
        assert r["budget"] == "2" and int(r["complete"]) + int(r["pruned"]) + int(r["failed"]) == 2
        assert int(r["complete"]) >= 1  # the first trials are never pruned (the median needs earlier trials)
        best = yaml.safe_load((sandbox / "benchmarks" / "smoke-rotation" / "best" / f"{r['model']}.yaml").read_text())
        assert best["preset"] == "tiny" and math.isclose(best["objective"]["val/rmse"], float(r["best_val_rmse"]))
        assert best["overrides"] == json.loads(r["best_params"])
    text = md.read_text()
    assert "| conv | " in text and "| rgroup | " in text and "2 trial(s) each" in text
    assert "[worker" in capfd.readouterr().out  # the trials ran in worker processes
    assert cli.main(_tune(sandbox, smoke_root, "--models", "conv", "rgroup", "--trials", "2")) == 0
    out = capfd.readouterr().out
    assert out.count("(2 finished before)") == 2 and "[worker" not in out  # no worker started
    assert list(csv.DictReader(table.open())) == rows  # resumed: nothing trained again, the same summary
    # common random numbers: both models' trials drew the same shared hyperparameters, in the same order
    trials = {m: _trials(sandbox, f"smoke-rotation-tiny-{m}-tpe") for m in ("conv", "rgroup")}
    shared = [k for k in trials["conv"][0].params if k in trials["rgroup"][0].params]
    assert len(trials["conv"]) == len(trials["rgroup"]) == 2 and "model.lr" in shared
    assert [{k: t.params[k] for k in shared} for t in trials["conv"]] == \
        [{k: t.params[k] for k in shared} for t in trials["rgroup"]]
    assert "model.alpha" in trials["rgroup"][0].params  # RGroup's own ranges are drawn too


def _trials(sandbox: Path, study: str) -> list:
    from symbench.sweep.queue import open_storage

    storage = open_storage(str(sandbox / "runs" / "sweeps" / study / "journal.log"))
    return sorted(optuna.load_study(study_name=study, storage=storage).get_trials(), key=lambda t: t.number)


@pytest.mark.parametrize("extra, message", [
    (("--trials", "0"), "trials must be >= 1 (the budget of every model"),
    (("--trials", "2", "--models", "persistence"), "persistence have no parameters to tune"),
    (("--trials", "2", "--models", "unet"), "no search space in sweeps/ for unet of smoke-rotation"),
])
def test_bad_input_is_one_line_before_anything_trains(sandbox, tmp_path, capsys, extra, message):
    assert cli.main(_tune(sandbox, tmp_path / "no-data", *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (sandbox / "runs").exists() and not (sandbox / "results").exists()


def test_the_summary_names_budget_best_and_trials():
    rows = [TuningRow("b", "conv", "cpu", 6, 4, 2, 0, 0.123456, '{"data.batch_size": 16, "model.lr": 0.00123}',
                      600.0, "b-cpu-conv-tpe", "baselines.yaml"),
            TuningRow("b", "rgroup", "cpu", 6, 0, 0, 6, float("nan"), "", 60.0, "b-cpu-rgroup-tpe", "rgroup.yaml")]
    md = render_markdown("b", "cpu", rows, "abc123")
    assert "| conv | 4 / 2 / 0 | 0.1235 | batch_size 16, lr 0.00123 | 600 | baselines.yaml |" in md
    assert "| rgroup | 0 / 0 / 6 | – | – | 60 | rgroup.yaml |" in md
    assert "6 trial(s) each" in md and "`abc123`" in md and "11.0 min" in md


def test_integer_bounds_sample_integers_also_on_a_log_scale():
    import optuna

    from symbench.sweep.space import load_space

    space = load_space("smoke-rotation", "rgroup", preset="cpu")
    assert space.ranges["model.model_hparams.width"] == {"low": 16, "high": 64, "log": True}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    widths = [space.suggest(study.ask(), "tpe")["model.model_hparams.width"] for _ in range(20)]
    assert all(isinstance(w, int) and 16 <= w <= 64 for w in widths)  # a float width broke grouped convolutions
    assert len(set(widths)) > 5


def test_common_points_are_the_same_draws_for_spaces_sharing_ranges():
    from symbench.sweep.campaign import common_points, shared_keys
    from symbench.sweep.space import load_space

    conv, rgroup = (load_space("smoke-rotation", m, preset="cpu") for m in ("conv", "rgroup"))
    keys = shared_keys([conv, rgroup])
    assert keys == ["model.lr", "data.batch_size", "model.model_hparams.width", "model.model_hparams.layers",
                    "data.train_steps"]
    points = common_points(conv, keys, 4)
    assert points == common_points(rgroup, keys, 4) and len({json.dumps(p) for p in points}) == 4
    assert common_points(conv, keys, 4, seed=1) != points
