"""End to end: `symbench bench rbc --preset tiny` on Dedalus data, best-checkpoint testing, rows, bad input."""

from __future__ import annotations

import csv
import math
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from symbench import cli
from symbench.config import resolve
from symbench.prediction_artifacts import load_artifacts
from symbench.results import ROW_FIELDS, read_rows

pytestmark = pytest.mark.dedalus


@pytest.fixture(scope="session")
def tiny_bench(tiny_root, tmp_path_factory):
    """Every model registered for RBC (plain, Augm, Equ; ~2 min), trained and tested at the tiny preset."""
    out = tmp_path_factory.mktemp("bench")
    args = ["bench", "rbc", "--preset", "tiny", "--root", str(tiny_root), "--results", str(out / "results"),
            "--runs", str(out / "runs"), "--no-progress"]
    assert cli.main(args) == 0
    return out


def test_bench_writes_rows_for_every_model_split_and_metric(tiny_bench, tiny_root):
    rows = read_rows(tiny_bench / "results" / "rbc" / "runs.csv")
    assert list(rows[0]) == ROW_FIELDS
    splits = {"orig", "um", "mag", "rot", "scale"}
    for model in ("resnet", "unet"):
        mine = [r for r in rows if r["model"] == model]
        assert {r["split"] for r in mine} == splits
        for split in splits:
            got = {(r["metric"], r["horizon"]) for r in mine if r["split"] == split}
            assert {("rmse", "3"), ("ese", "3"), ("rmse_step", "1"), ("rmse_step", "2"), ("rmse_step", "3")} <= got
        for r in mine:
            assert math.isfinite(float(r["value"])) and float(r["value"]) >= 0
            assert int(r["params"]) > 0 and r["preset"] == "tiny" and r["git_sha"] and r["versions"]
            data_dir = next((tiny_root / "rbc").iterdir()).name  # <preset>-<key>
            assert len(r["code_rev"]) == 12 and r["data_key"] and data_dir.endswith(r["data_key"])
    for model in ("persistence", "linear"):  # tested, not trained, through the same path: every split and metric
        mine = [r for r in rows if r["model"] == model]
        assert {(r["split"], r["metric"]) for r in mine} >= {(s, m) for s in splits for m in ("rmse", "ese")}
        assert {r["metric"] for r in mine} >= {"eqrel_rot", "eqerr_um", "eqerr_scale"}
        assert {(r["params"], r["epochs"], r["best_epoch"]) for r in mine} == {("0", "0", "-1")}
        # Exactly equivariant to the per-frame actions; not to eq. 3's space-time scaling, which resamples the history
        # in time by lambda^2 (repeating or extrapolating the last frame is not a time-rescaled forecast).
        assert max(float(r["value"]) for r in mine if r["metric"].startswith("eqrel_")
                   and r["metric"] != "eqrel_scale") < 1e-5
    md = (tiny_bench / "results" / "rbc" / "leaderboard.md").read_text()
    assert "| persistence" in md and "| linear" in md
    assert "RMSE Orig" in md and "ESE Scale" in md and "| resnet" in md and "| unet" in md
    for model in {r["model"] for r in rows}:  # prediction artifacts of every run (spectra, snapshots), for the plots
        art = load_artifacts(tiny_bench / "results" / "rbc" / "predictions" / "tiny" / f"{model}-seed0.npz")
        assert art["splits"] == sorted(splits, key=["orig", "um", "mag", "rot", "scale"].index)
        assert art["orig"]["spectrum_pred"].shape[0] == 3 and art["orig"]["snapshot_steps"].tolist() == [1]  # horizon 3
        assert np.isfinite(art["scale"]["spectrum_pred"]).all() and art["orig"]["spectrum_target"].sum() > 0


def test_horizon_rmse_is_the_root_of_the_mean_squared_per_step_rmse(tiny_bench):
    rows = read_rows(tiny_bench / "results" / "rbc" / "runs.csv")
    for split in ("orig", "rot"):
        mine = [r for r in rows if r["model"] == "resnet" and r["split"] == split]
        steps = [float(r["value"]) for r in sorted(mine, key=lambda r: int(r["horizon"])) if r["metric"] == "rmse_step"]
        horizon = next(float(r["value"]) for r in mine if r["metric"] == "rmse")
        assert horizon == pytest.approx(math.sqrt(sum(s * s for s in steps) / len(steps)), rel=1e-5)


def test_test_metrics_come_from_the_best_validation_checkpoint(tiny_bench, tiny_root):
    """Rose-STL-Lab/Equivariant-Net kept a reference to the live model, not the best one; we test the best
    checkpoint."""
    run_dir = next((tiny_bench / "runs" / "rbc" / "tiny" / "resnet").iterdir())
    best = next((run_dir / "checkpoints").glob("best-*.ckpt"))
    with open(next(run_dir.glob("logs/version_*/metrics.csv"))) as f:
        val = [(int(r["epoch"]), float(r["val/rmse"])) for r in csv.DictReader(f) if r.get("val/rmse")]
    best_epoch = min(val, key=lambda e: e[1])[0]
    assert best.name == f"best-epoch={best_epoch}.ckpt"
    rows = read_rows(tiny_bench / "results" / "rbc" / "runs.csv")
    row = next(r for r in rows if r["model"] == "resnet" and r["split"] == "orig" and r["metric"] == "rmse")
    assert int(row["best_epoch"]) == best_epoch

    # Re-evaluate the best checkpoint by hand on the orig split: same RMSE as the row.
    from datamodules.rbc import RBCDataModule
    from symbench.forecast import ForecastModule

    module = ForecastModule.load_from_checkpoint(best, map_location="cpu").eval()
    cfg = resolve("rbc", "tiny", "resnet", 0, tiny_root)
    dm = RBCDataModule(**cfg.data)
    dm.setup("test")
    sq, n = 0.0, 0
    with torch.no_grad():
        for history, target in dm.test_dataloader()[0]:
            pred = module.rollout(history, target.shape[1])
            sq += float((pred - target).pow(2).sum())
            n += target.numel()
    assert float(row["value"]) == pytest.approx(math.sqrt(sq / n), rel=1e-4)
    # and the last checkpoint is a different model whenever training went on after the best epoch
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == cfg.trainer["max_epochs"] - 1  # the final epoch, not a copy of the best
    if last["epoch"] != best_epoch:
        best_sd = torch.load(best, map_location="cpu", weights_only=False)["state_dict"]
        assert any(not torch.equal(best_sd[k], last["state_dict"][k]) for k in best_sd)


def test_plain_models_show_a_generalisation_gap_on_magnitude_and_motion(tiny_bench):
    """Even after a few tiny epochs a plain CNN predicts the transformed splits worse than orig (Table 2)."""
    rows = read_rows(tiny_bench / "results" / "rbc" / "runs.csv")
    for model in ("resnet", "unet"):
        rmse = {r["split"]: float(r["value"]) for r in rows if r["model"] == model and r["metric"] == "rmse"}
        assert rmse["um"] > rmse["orig"]


def _relative_errors(rows, model: str) -> dict[str, float]:
    return {r["metric"].removeprefix("eqrel_"): float(r["value"]) for r in rows
            if r["model"] == model and r["metric"].startswith("eqrel_")}


@pytest.mark.parametrize("backbone", ["resnet", "unet"])
def test_table1_equivariance_errors_of_the_tested_checkpoints(tiny_bench, backbone):
    """ICLR 2021 Table 1 at the tiny preset: each Equ model is exact on its group (float32), EquScal is clearly
    below the plain backbone on scalings, and the plain backbone is clearly non-equivariant on all four groups."""
    rows = read_rows(tiny_bench / "results" / "rbc" / "runs.csv")
    plain = _relative_errors(rows, backbone)
    assert set(plain) == {"um", "mag", "rot", "scale"}
    assert min(plain.values()) > 1e-3, plain
    for group in ("um", "mag", "rot"):
        own = _relative_errors(rows, f"equ_{group}_{backbone}")[group]
        assert own <= 1e-5, f"equ_{group}_{backbone}: relative {group} error {own:.2e}"
    scal = _relative_errors(rows, f"equ_scale_{backbone}")["scale"]
    assert scal < 0.8 * plain["scale"], (scal, plain["scale"])
    md = (tiny_bench / "results" / "rbc" / "leaderboard.md").read_text()
    assert "Table 1" in md and "rel. Rot" in md and "Table 2 ordering" in md


def test_augm_epochs_are_one_pass_of_the_original_windows(tiny_bench):
    """The Augm runs' Lightning logs count as many training batches per epoch as their backbone's (each epoch draws
    the original number of windows from the 3x set)."""
    def batches_per_epoch(model: str) -> int:
        run_dir = next((tiny_bench / "runs" / "rbc" / "tiny" / model).iterdir())
        with open(next(run_dir.glob("logs/version_*/metrics.csv"))) as f:
            steps = [int(r["step"]) for r in csv.DictReader(f) if r.get("val/rmse") and r["epoch"] == "0"]
        return steps[0] + 1

    for group in ("um", "rot"):
        assert batches_per_epoch(f"augm_{group}_unet") == batches_per_epoch("unet")


def test_rerun_appends_without_losing_rows(tiny_bench, tiny_root):
    path = tiny_bench / "results" / "rbc" / "runs.csv"
    before = read_rows(path)
    args = ["bench", "rbc", "--preset", "tiny", "--root", str(tiny_root), "--results", str(tiny_bench / "results"),
            "--runs", str(tiny_bench / "runs2"), "--models", "resnet", "--seeds", "1", "--max-epochs", "1",
            "--no-progress"]
    assert cli.main(args) == 0
    after = read_rows(path)
    assert after[: len(before)] == before and len(after) > len(before)
    assert {r["seed"] for r in after[len(before):]} == {"1"}


@pytest.mark.parametrize(
    "args, needle",
    [
        (["bench", "rbc", "--preset", "tiny", "--models", "nosuchnet"], "unknown model 'nosuchnet'"),
        (["bench", "rbc", "--preset", "huge"], "unknown preset 'huge'"),
        (["bench", "nosuchbench"], "unknown benchmark 'nosuchbench'"),
        (["data", "generate", "rbc", "--preset", "huge"], "unknown preset 'huge'"),
        (["data", "generate", "nosuchdata"], "unknown dataset 'nosuchdata'"),
    ],
)
def test_bad_input_gives_one_clear_line(args, needle, capsys, tmp_path):
    assert cli.main(args + ["--root", str(tmp_path)] if args[0] == "data" else args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("symbench: error:") and needle in err[0]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--data.augment", "shear"], "unknown augmentation 'shear'; choose one of um, mag, rot"),
        (["--data.preset", "huge"], "unknown RBC preset 'huge'"),
        (["--model.model", "nosuchnet"], "unknown model 'nosuchnet'"),
    ],
)
def test_lightning_cli_bad_input_gives_the_datamodule_or_registry_message(args, needle, tiny_root, tmp_path):
    """Not jsonargparse's multi-line report: the one line our datamodule or registry wrote, exit status 2."""
    cmd = [str(Path(sys.executable).with_name("symbench")), "fit", "--data.preset", "tiny", "--data.root",
           str(tiny_root), "--model.model", "unet", *args]
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    errors = [line for line in out.stderr.splitlines() if line.startswith("symbench: error:")]
    assert out.returncode == 2 and len(errors) == 1 and needle in errors[0], out.stderr[-2000:]
    assert "Traceback" not in out.stderr


def test_missing_data_directory_and_too_long_history(tiny_root, tmp_path, capsys):
    from datamodules.rbc import RBCDataModule
    from datamodules.store import DataNotFoundError

    with pytest.raises(DataNotFoundError, match="symbench data generate"):
        RBCDataModule(preset="tiny", root=str(tmp_path / "empty")).setup()
    with pytest.raises(ValueError, match="does not fit"):
        RBCDataModule(preset="tiny", root=str(tiny_root), in_frames=500).setup()
    results = tmp_path / "results"
    assert cli.main(["leaderboard", "--results", str(results)]) == 2
    assert "run `symbench bench` first" in capsys.readouterr().err


def test_lightning_cli_fit_and_test(tiny_root, tmp_path):
    """`symbench fit` / `symbench test` follow LightningCLI conventions (dotted overrides)."""
    common = ["--data.preset", "tiny", "--data.root", str(tiny_root), "--data.in_frames", "3",
              "--data.rollout_steps", "3", "--model.model_hparams", "{width: 4}"]
    root = tmp_path / "fit"
    assert cli.main(["fit", *common, "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(root),
                     "--trainer.enable_progress_bar", "false"]) == 0
    ckpt = next(root.rglob("best-*.ckpt"))
    assert (ckpt.parent / "last.ckpt").is_file()  # SaveLast, beside the best checkpoint
    assert cli.main(["test", *common, "--ckpt_path", str(ckpt), "--trainer.default_root_dir", str(root),
                     "--trainer.enable_progress_bar", "false"]) == 0


def test_two_cpu_runs_with_the_same_seed_give_identical_metrics(tiny_root, tmp_path):
    values = []
    for run in ("a", "b"):
        args = ["bench", "rbc", "--preset", "tiny", "--root", str(tiny_root), "--results", str(tmp_path / run),
                "--runs", str(tmp_path / run / "runs"), "--models", "unet", "--seeds", "3", "--max-epochs", "1",
                "--no-progress"]
        assert cli.main(args) == 0
        rows = read_rows(tmp_path / run / "rbc" / "runs.csv")
        values.append({(r["split"], r["metric"], r["horizon"]): r["value"] for r in rows})
    assert values[0] == values[1] and len(values[0]) > 20


def test_a_killed_bench_resumes_from_its_last_checkpoint_and_loses_or_repeats_no_row(tiny_root, tmp_path):
    """SIGKILL at a random moment after the first checkpoint is written, then rerun: the interrupted model continues
    from ``last.ckpt`` (or, killed after its last epoch, is tested without training again), finished ones are
    skipped, and every row exists exactly once."""
    cmd = [str(Path(sys.executable).with_name("symbench")), "bench", "rbc", "--preset", "tiny", "--root",
           str(tiny_root), "--results", str(tmp_path / "results"), "--runs", str(tmp_path / "runs"), "--models",
           "unet", "equ_mag_unet", "--max-epochs", "4", "--no-progress"]
    delay = random.Random().uniform(0.0, 3.0)
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 240
        while not list((tmp_path / "runs").glob("rbc/tiny/unet/*/checkpoints/last.ckpt")):
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "first.log").read_text()
            time.sleep(0.05)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    last = next((tmp_path / "runs").glob("rbc/tiny/unet/*/checkpoints/last.ckpt"))
    trained = torch.load(last, map_location="cpu", weights_only=False)["epoch"] == 3  # the last of 4 epochs
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    rows = read_rows(tmp_path / "results" / "rbc" / "runs.csv")
    keys = [(r["model"], r["split"], r["metric"], r["horizon"]) for r in rows]
    assert len(keys) == len(set(keys)), f"duplicated rows after a kill {delay:.2f} s after the first checkpoint"
    for model in ("unet", "equ_mag_unet"):
        mine = [r for r in rows if r["model"] == model]
        assert {r["split"] for r in mine} == {"orig", "um", "mag", "rot", "scale"}
        assert {r["epochs"] for r in mine} == {"4"}
    first = (tmp_path / "first.log").read_text()
    if "appended" not in first and not trained:  # killed while the U-net was training: it must have resumed
        assert "resuming from" in second.stdout
    elif "appended" not in first:  # killed after its last epoch (testing): tested as it is, not trained again
        assert "already trained to epoch 4" in second.stdout and "resuming from" not in second.stdout
    else:  # the U-net had finished: skipped, not trained again
        assert "skipped" in second.stdout


def test_rerun_skips_runs_finished_here_but_not_rows_from_elsewhere(tiny_bench, tiny_root, tmp_path):
    """Rows alone (e.g. a committed runs.csv) do not count as done: without this machine's checkpoint it trains."""
    results = tmp_path / "results"
    shutil.copytree(tiny_bench / "results", results)
    before = read_rows(results / "rbc" / "runs.csv")
    base = ["bench", "rbc", "--preset", "tiny", "--root", str(tiny_root), "--results", str(results), "--models",
            "unet", "--no-progress"]
    artifact = results / "rbc" / "predictions" / "tiny" / "unet-seed0.npz"
    artifact.unlink()  # a run finished before artifacts existed: a test pass of its best checkpoint, no training
    assert cli.main(base + ["--runs", str(tiny_bench / "runs")]) == 0
    assert read_rows(results / "rbc" / "runs.csv") == before and load_artifacts(artifact)["meta"]["model"] == "unet"
    assert cli.main(base + ["--runs", str(tmp_path / "fresh_runs")]) == 0
    after = read_rows(results / "rbc" / "runs.csv")
    assert after[: len(before)] == before and {r["model"] for r in after[len(before):]} == {"unet"}
    # --rerun trains again from scratch; the earlier run directory is renamed, not deleted
    assert cli.main(base + ["--runs", str(tmp_path / "fresh_runs"), "--rerun"]) == 0
    assert len(read_rows(results / "rbc" / "runs.csv")) == len(after) + (len(after) - len(before))
    run_dirs = sorted(p.name for p in (tmp_path / "fresh_runs" / "rbc" / "tiny" / "unet").iterdir())
    assert len(run_dirs) == 2 and ".replaced-" in run_dirs[1] and run_dirs[1].startswith(run_dirs[0])


def test_running_a_finished_run_again_keeps_its_best_checkpoint_and_numbers(smoke_root, tmp_path, capsys):
    """Lightning's save_last copies only best checkpoints: 'resuming' a finished run from it retrained every epoch
    after the best and could replace the best checkpoint. last.ckpt now holds the final epoch, and a finished run is
    tested as it is (what `symbench alpha-sweep` relies on when a benchmark run has the same configuration)."""
    from symbench.bench import run_directory, run_one
    from symbench.config import resolve

    cfg = resolve("smoke-rotation", "tiny", "conv", 0, smoke_root, {"trainer": {"max_epochs": 4}})
    first = run_one(cfg, tmp_path, progress=False)
    checkpoints = run_directory(cfg, tmp_path) / "checkpoints"
    before = {p.name: p.stat().st_mtime_ns for p in checkpoints.iterdir()}
    second = run_one(cfg, tmp_path, progress=False)
    assert "already trained to epoch 4" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in checkpoints.iterdir()} == before
    keys = ("split", "metric", "horizon", "value", "best_epoch", "epochs")
    assert [tuple(r[k] for k in keys) for r in second] == [tuple(r[k] for k in keys) for r in first]
