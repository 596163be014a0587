"""The studies under DDP on 2 CPU processes (gloo), run from the command line as a user would (Lightning relaunches
the command in every rank): every row once, tables written once, the single-process numbers where the data order
allows, the best checkpoint read on rank 0 only, and a resumed run on which every rank agrees that nothing is left.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from symbench.results import read_rows

pytestmark = pytest.mark.slow

SYMBENCH = str(Path(sys.executable).with_name("symbench"))


def study(argv: list[str], cwd: Path, devices: int, trains: bool = True) -> str:
    """Run ``symbench <argv>`` on ``devices`` CPU processes (launched at the first fit, if it ``trains``); return
    its stdout."""
    ddp = ["--devices", str(devices), "--strategy", "ddp"] if devices > 1 else []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([SYMBENCH, *argv, "--accelerator", "cpu", "--no-progress", *ddp], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (devices > 1 and trains) == ("Starting with 2 processes" in proc.stdout + proc.stderr)
    return proc.stdout


def values(path: Path) -> dict[tuple[str, ...], list[float]]:
    out: dict[tuple[str, ...], list[float]] = {}
    for r in read_rows(path):
        out.setdefault((r["dataset"], r["model"], r["seed"], r["split"], r["metric"]), []).append(float(r["value"]))
    return out


def test_nbody_on_two_processes_writes_each_row_once_with_the_single_process_values(tmp_path: Path) -> None:
    """The tiny preset trains on the full batch (64 samples, global batch 128), so one DDP step over the two shards
    of 32 equals one single-process step; the 33 test samples shard into 17 + 16 without padding (a repeated sample
    would change the MSE)."""
    runs = {}
    for devices in (1, 2):
        results = tmp_path / f"results{devices}"
        out = study(["nbody", "--preset", "tiny", "--root", str(tmp_path / "data"), "--results", str(results)],
                    tmp_path, devices)
        assert out.count("wrote ") == 1, out  # rank 1 says nothing
        runs[devices] = values(results / "nbody" / "runs.csv")
        assert sorted(p.name for p in (results / "nbody").glob("nbody_tiny.*")) == [
            "nbody_tiny.csv", "nbody_tiny.md", "nbody_tiny.png"]
    one, two = runs[1], runs[2]
    assert set(two) == set(one) and len(one) == 8
    assert all(len(v) == 1 for v in two.values())  # once, never once per rank
    for key, (value,) in two.items():
        assert value == pytest.approx(one[key][0], rel=1e-5), key


def test_digits_best_checkpoint_on_two_processes_and_a_resume_every_rank_agrees_on(tmp_path: Path) -> None:
    """``fit_test_best`` under DDP: rank 0 reads the best checkpoint and broadcasts it; a second run finds every run
    done on every rank (a rank deciding otherwise would train alone and hang in its first reduction: the timeout)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from digit_files import idx_dir

    files = idx_dir(tmp_path / "my-digits", n_train=400, n_test=64)
    results = tmp_path / "results"
    argv = ["digits", "--preset", "tiny", "--root", str(tmp_path / "data"), "--results", str(results),
            "--idx-dir", str(files), "--tasks", "rotated", "--groups", "e"]
    first = study(argv, tmp_path, 2)
    rows = values(results / "digits" / "runs.csv")
    assert len(rows) >= 2 and all(len(v) == 1 for v in rows.values()), rows
    assert all(0.0 <= v[0] <= 1.0 for v in rows.values())
    assert first.count("test error") == 2  # two training sizes, reported once each
    again = study(argv, tmp_path, 2, trains=False)
    assert "test error" not in again and values(results / "digits" / "runs.csv") == rows


def test_sr3d_on_two_processes_writes_each_row_once(tmp_path: Path) -> None:
    """The 3D super-resolution study (best checkpoint of each model, its turb3d evaluation sharded without padding)
    on 2 processes: every (model, split, metric) row once and finite, the report written once."""
    results = tmp_path / "results"
    out = study(["sr3d", "--preset", "tiny", "--flows", "sheared", "--models", "conv", "r_equiv", "--root",
                 str(tmp_path / "data"), "--results", str(results)], tmp_path, 2)
    assert out.count("wrote ") == 1 and out.count("test MAE") == 2, out
    rows = values(results / "sr3d" / "runs.csv")
    assert {k[1] for k in rows} == {"conv", "r_equiv"} and all(len(v) == 1 for v in rows.values()), rows
    assert all(math.isfinite(v[0]) for v in rows.values())
    assert rows[("turb3d-sheared", "conv", "0", "test", "equiv_error")][0] > 1e-3  # the plain conv is not equivariant
