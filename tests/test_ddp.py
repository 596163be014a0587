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

import pytest

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
