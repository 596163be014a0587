"""`symbench fit|validate|test` under DDP on 2 CPU processes (gloo) log the single-process metrics exactly.

On the tiny RBC preset the validation and test splits have an odd number of windows, so a padded
``DistributedSampler`` would count a window twice, and the windows of a batch differ between 1 and 2 processes, so
equivariance probes keyed on the batch index instead of the window index would differ.
"""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from symbench.prediction_artifacts import load_artifacts

pytestmark = [pytest.mark.slow, pytest.mark.dedalus]

SYMBENCH = str(Path(sys.executable).with_name("symbench"))
EVAL_BATCH = 4
DATA = ["--data.preset", "tiny", "--data.in_frames", "3", "--data.train_steps", "1", "--data.rollout_steps", "3",
        "--data.train_stride", "4", "--data.batch_size", "8", "--data.eval_batch_size", str(EVAL_BATCH),
        "--data.test_splits", "[orig, mag]"]
MODEL = ["--model.model", "unet", "--model.model_hparams", "{width: 4}"]  # not equivariant: eqerr > 0
TRAINER = ["--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
           "--trainer.enable_model_summary", "false"]


def symbench(cmd: str, devices: int, root: Path, out: Path, *args: str) -> dict[str, float]:
    """Run ``symbench <cmd>`` on ``devices`` CPU processes; return the metrics its CSVLogger wrote."""
    argv = [SYMBENCH, cmd, *DATA, "--data.root", str(root), *MODEL, *TRAINER, "--trainer.devices", str(devices),
            "--trainer.strategy", "ddp" if devices > 1 else "auto", "--trainer.default_root_dir", str(out),
            "--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", str(out), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(argv, cwd=out.parent, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert devices == 1 or f"Starting with {devices} processes" in proc.stdout + proc.stderr
    metrics: dict[str, float] = {}
    for path in out.glob("lightning_logs/version_*/metrics.csv"):
        with open(path) as f:
            metrics.update({k: float(v) for row in csv.DictReader(f) for k, v in row.items() if v and "/" in k})
    return metrics


def test_fit_validate_and_test_on_two_gloo_processes_match_one_process(tiny_root, tmp_path):
    from datamodules.rbc import RBCDataModule

    dm = RBCDataModule(preset="tiny", root=str(tiny_root), in_frames=3, train_steps=1, rollout_steps=3,
                       test_splits=("orig", "mag"))
    dm.setup()
    n_test, n_val = len(dm.datasets["orig"]), len(dm.datasets["val"])
    assert n_test % 2 == 1 and n_val % 2 == 1 and n_test % (2 * EVAL_BATCH) != 0  # padding would count a window twice

    symbench("fit", 2, tiny_root, tmp_path / "fit", "--trainer.max_epochs", "1")
    ckpt = next((tmp_path / "fit").rglob("best-*.ckpt"))
    logged = {}
    for cmd, prefix in [("test", "test/"), ("validate", "val/")]:
        runs = (symbench(cmd, d, tiny_root, tmp_path / f"{cmd}{d}", "--ckpt_path", str(ckpt)) for d in (1, 2))
        one, two = ({k: v for k, v in run.items() if k.startswith(prefix)} for run in runs)
        assert set(two) == set(one) and all(math.isfinite(v) for v in one.values()), (one, two)
        assert two == pytest.approx(one, rel=1e-6, abs=1e-9), cmd
        logged.update(one)
    expected = {f"test/{s}/{m}" for s in ("orig", "mag") for m in ("rmse", "rmse_step1", "rmse_step3", "ese")}
    expected |= {f"test/orig/{e}_{g}" for e in ("eqerr", "eqrel") for g in ("um", "mag", "rot", "scale")}
    assert expected | {"val/rmse"} <= set(logged) and logged["test/orig/eqerr_mag"] > 0



def ddp_benchmark(tmp_path: Path, name: str, **data: object) -> Path:
    """A copy of benchmark ``name`` (for ``SYMBENCH_BENCHMARKS``) whose only preset, ``ddp``, is its tiny one with
    ``data`` keys changed, one epoch and width-4 models (the U-net: no batch norm, whose statistics are per process
    under DDP on CPUs, where PyTorch has no SyncBatchNorm)."""
    import yaml

    from symbench.config import load_benchmark

    bench = load_benchmark(name)
    tiny = bench["presets"]["tiny"]
    bench["presets"] = {"ddp": {**tiny, "data": {**tiny["data"], **data}, "trainer": {"max_epochs": 1},
                                "model_hparams": {"default": {"width": 4}}}}
    (tmp_path / "benchmarks" / name).mkdir(parents=True)
    (tmp_path / "benchmarks" / name / "benchmark.yaml").write_text(yaml.safe_dump(bench))
    return tmp_path / "benchmarks"


BENCH = "smoke-rotation"


def bench_argv(root: Path, out: Path, *args: str) -> list[str]:
    return ["bench", BENCH, "--preset", "ddp", "--models", "unet", "--root", str(root), "--results",
            str(out / "results"), "--runs", str(out / "runs"), "--no-progress", "--accelerator", "cpu", *args]


def rows_by_key(path: Path) -> dict[tuple[str, ...], list[float]]:
    """``runs.csv`` values by (model, seed, split, metric, horizon), in file order."""
    from symbench.results import read_rows

    out: dict[tuple[str, ...], list[float]] = {}
    for r in read_rows(path):
        out.setdefault((r["model"], r["seed"], r["split"], r["metric"], r["horizon"]), []).append(float(r["value"]))
    return out


def test_bench_on_two_gloo_processes_writes_each_row_once_and_matches_one_process(smoke_root, tmp_path, monkeypatch):
    """Full-batch training (28 windows, 14 per rank) makes one DDP step equal one single-process step. The test_domain
    split has one window, so rank 1 has none of it and adds zeros to its sums (a skipped reduction would hang: the
    timeout). The rerun renames the earlier run directory once and appends each row once more."""
    from symbench import cli

    benchmarks = ddp_benchmark(tmp_path, BENCH, train_stride=3, batch_size=28, eval_stride=1000, domain_sims=[4])
    monkeypatch.setenv("SYMBENCH_BENCHMARKS", str(benchmarks))
    assert cli.main(bench_argv(smoke_root, tmp_path / "one")) == 0
    one = rows_by_key(tmp_path / "one" / "results" / BENCH / "runs.csv")

    out = tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for rerun in ([], ["--rerun"]):
        argv = [SYMBENCH, *bench_argv(smoke_root, out, "--devices", "2", "--strategy", "ddp", *rerun)]
        proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "Starting with 2 processes" in proc.stdout + proc.stderr
    two = rows_by_key(out / "results" / BENCH / "runs.csv")
    assert set(two) == set(one) and all(len(v) == 1 for v in one.values())
    assert {k[2] for k in one} == {"test_future", "test_domain"}
    assert all(len(v) == 2 for v in two.values())  # once per run, never once per rank
    for key, (first, again) in two.items():
        assert first == pytest.approx(one[key][0], rel=1e-4, abs=1e-7), key
        assert again == pytest.approx(first, rel=1e-6, abs=1e-9), key
    runs = sorted(p.name for p in (out / "runs" / BENCH / "ddp" / "unet").iterdir())
    assert len(runs) == 2 and ".replaced-" in runs[1], runs
    art = [load_artifacts(d / "results" / BENCH / "predictions" / "ddp" / "unet-seed0.npz") for d in (tmp_path / "one", out)]
    for split in ("test_future", "test_domain"):
        assert art[1][split]["n_samples"] == art[0][split]["n_samples"]
        np.testing.assert_allclose(art[1][split]["spectrum_pred"], art[0][split]["spectrum_pred"], rtol=1e-4)
