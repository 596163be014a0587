"""Bad input and faults (issue 24): one parametrised matrix over data generation, every reader, fit /
test / bench, sweep and leaderboard. Each case runs ``symbench`` in-process and asserts the exit status, exactly one
line on stderr naming the file or key and the problem (no traceback), and what is left behind (no partial file, no
lost or repeated row)."""

from __future__ import annotations

import csv
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from symbench import cli
from symbench.files import latest_checkpoint, run_lock
from symbench.results import FAILED_FILE, ROW_FIELDS, append_rows

FIT = ["--model.model", "unet", "--trainer.max_epochs", "1", "--trainer.logger", "false", "--seed_everything",
       "false"]


@dataclass
class Ctx:
    """What a case's setup gets: its temporary folder and the fixtures it may ask for."""

    tmp: Path
    monkeypatch: pytest.MonkeyPatch
    request: pytest.FixtureRequest
    notes: dict = field(default_factory=dict)

    def fixture(self, name: str):
        return self.request.getfixturevalue(name)


@dataclass
class Case:
    id: str
    setup: Callable[[Ctx], list[str]]  # writes the bad input, returns the argv
    rc: int
    needles: tuple[str, ...]  # all must be in the error line ("{tmp}" is the case's folder)
    check: Callable[[Ctx], None] = lambda ctx: None  # the state left behind


# ------------------------------------------------------------------------------------------------ file makers

def _row(model: str = "unet", seed: int = 0, value: object = 1.0, split: str = "orig") -> dict:
    r = dict.fromkeys(ROW_FIELDS, "")
    r.update(benchmark="rbc", dataset="rbc", split=split, model=model, seed=seed, preset="tiny", metric="rmse",
             value=value, horizon=3, params=10, train_seconds=1.0, epochs=1, best_epoch=0, config_hash="h",
             git_sha="g", versions="v", timestamp="t")
    return r


def _runs_csv(ctx: Ctx, tail: str = "", rows: int = 2) -> Path:
    path = ctx.tmp / "results" / "rbc" / "runs.csv"
    append_rows(path, [_row(seed=s) for s in range(rows)])
    if tail:
        path.write_text(path.read_text() + tail)
    ctx.notes["before"] = path.read_text()
    return path


def _unchanged(relative: str) -> Callable[[Ctx], None]:
    def check(ctx: Ctx) -> None:
        assert (ctx.tmp / relative).read_text() == ctx.notes["before"]
    return check


def _cmems(ctx: Ctx, fmt: str) -> Path:
    from datamodules.ocean_io import write_cmems

    lat, lon = np.arange(30, 34, 0.25), np.arange(10, 14, 0.25)
    times = np.arange(np.datetime64("2020-01-01"), np.datetime64("2020-01-21"))
    u = np.random.default_rng(0).random((len(times), len(lat), len(lon)), dtype=np.float32)
    path = write_cmems(ctx.tmp / "full4.nc", u, u, lat, lon, times)
    if fmt == "NETCDF4":
        return path
    import xarray as xr

    with xr.open_dataset(path) as ds:
        ds.load().to_netcdf(ctx.tmp / "full3.nc", format=fmt)
    return ctx.tmp / "full3.nc"


def _cut(src: Path, dst: Path, keep: float | int) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: keep if isinstance(keep, int) else int(len(data) * keep)])
    return dst


def _ocean(path: Path | str) -> list[str]:
    return ["fit", "--data", "datamodules.ocean.OceanDataModule", "--data.source", "netcdf", "--data.path",
            str(path), "--data.preset", "tiny", *FIT]


def _piv(ctx: Ctx, name: str, content: bytes) -> list[str]:
    folder = ctx.tmp / "piv"
    folder.mkdir()
    (folder / name).write_bytes(content)
    return ["fit", "--data", "datamodules.jetflow.JetFlowDataModule", "--data.source", "piv", "--data.path",
            str(folder), "--data.preset", "tiny", *FIT, "--trainer.default_root_dir", str(ctx.tmp / "fit")]


def _no_training(ctx: Ctx) -> None:
    assert not list(ctx.tmp.rglob("*.ckpt")), "a checkpoint was written"


def _sweep_file(ctx: Ctx, space: str) -> list[str]:
    path = ctx.tmp / "space.yaml"
    path.write_text("benchmark: rbc\nmodels: [unet]\nsampler: tpe\n" + space + "grid: {}\n")
    return ["sweep", "rbc", "--model", "unet", "--preset", "tiny", "--sampler", "tpe", "--trials", "1", "--space",
            str(path), "--runs", str(ctx.tmp / "runs"), "--no-progress"]


def _no_sweep_state(ctx: Ctx) -> None:
    assert not (ctx.tmp / "runs").exists(), "the sweep created a study before its space was checked"


def _bench(ctx: Ctx, *extra: str, root: str | None = None, results: str = "results", runs: str = "runs") -> list[str]:
    root = root or str(ctx.fixture("tiny_root"))
    return ["bench", "rbc", "--preset", "tiny", "--models", "unet", "--root", root, "--results",
            str(ctx.tmp / results), "--runs", str(ctx.tmp / runs), "--no-progress", *extra]


def _benchmarks_copy(ctx: Ctx) -> Path:
    """A copy of benchmarks/rbc under SYMBENCH_BENCHMARKS, to be broken by the case."""
    from symbench.config import benchmarks_dir

    target = ctx.tmp / "benchmarks"
    shutil.copytree(benchmarks_dir() / "rbc", target / "rbc", ignore=shutil.ignore_patterns("best"))
    ctx.monkeypatch.setenv("SYMBENCH_BENCHMARKS", str(target))
    return target / "rbc"


# ------------------------------------------------------------------------------------------------ the cases

def _diverging(ctx: Ctx) -> list[str]:
    bench = _benchmarks_copy(ctx)
    text = (bench / "benchmark.yaml").read_text().replace("module: {lr: 2.0e-3, weight_decay: 0.0, lr_decay: 0.95}",
                                                          "module: {lr: 1.0e+30, weight_decay: 0.0, lr_decay: 0.95}")
    assert "1.0e+30" in text
    (bench / "benchmark.yaml").write_text(text)
    return _bench(ctx, "--max-epochs", "1")


def _diverged_recorded(ctx: Ctx) -> None:
    results = ctx.tmp / "results" / "rbc"
    assert not (results / "runs.csv").exists(), "a diverged run appended rows"
    failed = list(csv.DictReader((results / FAILED_FILE).open()))
    assert [(r["model"], r["seed"]) for r in failed] == [("unet", "0")] and "diverged" in failed[0]["reason"]
    assert int(failed[0]["step"]) >= 0 and failed[0]["config_hash"]
    # a second run skips it, says so and fails again without a second record
    assert cli.main(_bench(ctx, "--max-epochs", "1")) == 1
    assert len(list(csv.DictReader((results / FAILED_FILE).open()))) == 1


def _nonfinite_old_rows(ctx: Ctx) -> list[str]:
    path = _runs_csv(ctx)
    path.write_text(path.read_text() + ",".join(str(v) for v in {**_row(seed=7), "value": "nan"}.values()) + "\n")
    return ["leaderboard", "--results", str(ctx.tmp / "results")]


def _leaderboard_built(ctx: Ctx) -> None:
    board = (ctx.tmp / "results" / "rbc" / "leaderboard.csv").read_text()
    assert "nan" not in board.lower() and ",1," in board  # seeds 0 and 1 aggregated, seed 7 left out


def _trained_copy(ctx: Ctx) -> list[str]:
    """The ``trained`` run (its runs.csv had no final newline before the bench appended) copied here; the command
    reads the rows back."""
    shutil.copytree(ctx.fixture("trained"), ctx.tmp, dirs_exist_ok=True)
    return ["leaderboard", "--results", str(ctx.tmp / "results")]


def _unterminated_kept(ctx: Ctx) -> None:
    rows = list(csv.DictReader((ctx.tmp / "results" / "rbc" / "runs.csv").open()))
    assert [(r["model"], r["timestamp"]) for r in rows[:2]] == [("resnet", "t")] * 2  # the old last row intact
    assert len(rows) == 2 + 33 and {r["model"] for r in rows[2:]} == {"unet"}
    assert all(None not in r and None not in r.values() for r in rows)  # no glued or short row


def _interrupt(ctx: Ctx) -> list[str]:
    import datamodules.rbc_sim as rbc_sim

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    ctx.monkeypatch.setattr(rbc_sim, "simulate", stop)
    return ["data", "generate", "rbc", "--preset", "tiny", "--root", str(ctx.tmp / "data"), "--no-progress"]


def _nothing_under(relative: str) -> Callable[[Ctx], None]:
    def check(ctx: Ctx) -> None:
        leftovers = [p for p in (ctx.tmp / relative).rglob("*") if p.is_file()] if (ctx.tmp / relative).exists() \
            else []
        assert leftovers == [], f"left behind: {leftovers}"
    return check


def _blocked(ctx: Ctx, name: str) -> str:
    """A directory nobody can create (its parent is a file): unwritable even for root."""
    (ctx.tmp / "afile").write_text("x")
    return str(ctx.tmp / "afile" / name)


def _respelled_root(ctx: Ctx) -> list[str]:
    trained = ctx.fixture("trained")
    shutil.copytree(trained, ctx.tmp, dirs_exist_ok=True)
    ctx.notes["before"] = (ctx.tmp / "results" / "rbc" / "runs.csv").read_text()
    root = Path(ctx.fixture("tiny_root"))
    ctx.monkeypatch.chdir(root)
    return _bench(ctx, "--max-epochs", "1", root=os.path.join("..", root.name))


def _second_run_locked(ctx: Ctx) -> list[str]:
    from symbench.bench import run_directory
    from symbench.config import resolve

    cfg = resolve("rbc", "tiny", "unet", 5, ctx.fixture("tiny_root"), {"trainer": {"max_epochs": 1}})
    lock = run_lock(run_directory(cfg, ctx.tmp / "runs"))
    lock.__enter__()
    ctx.request.addfinalizer(lambda: lock.__exit__(None, None, None))
    return _bench(ctx, "--max-epochs", "1", "--seeds", "5")


def _torch_file(ctx: Ctx, obj: object) -> list[str]:
    torch.save(obj, ctx.tmp / "foreign.ckpt")
    return _test_ckpt(ctx, ctx.tmp / "foreign.ckpt")


def _test_ckpt(ctx: Ctx, path: Path) -> list[str]:
    return ["test", "--data.preset", "tiny", "--data.root", str(ctx.fixture("tiny_root")), "--data.in_frames", "3",
            "--data.train_steps", "2", "--data.rollout_steps", "3", *FIT, "--ckpt_path", str(path)]


def _bytes(path: str, content: bytes) -> Callable[[Ctx], Path]:
    def write(ctx: Ctx) -> Path:
        (ctx.tmp / path).write_bytes(content)
        return ctx.tmp / path
    return write


HDF5 = b"\x89HDF\r\n\x1a\n"
TECPLOT = b'TITLE="t"\nVARIABLES="x","y","u","v"\nZONE I=2, J=2\n0 0 1 1\n1 0 1 1\n0 1 abc 1\n1 1 1 1\n'

CASES = [
    # ---- the issue's table
    Case("diverging-lr", _diverging, 1, ("unet seed 0", "diverged", FAILED_FILE), _diverged_recorded),
    Case("netcdf4-truncated", lambda c: _ocean(_cut(_cmems(c, "NETCDF4"), c.tmp / "a.nc", 0.6)), 2,
         ("a.nc", "cannot open as NetCDF"), _no_training),
    Case("netcdf3-truncated-in-data", lambda c: _ocean(_cut(_cmems(c, "NETCDF3_CLASSIC"), c.tmp / "a.nc", 0.7)), 2,
         ("a.nc", "truncated classic NetCDF", "header describes"), _no_training),
    Case("netcdf3-truncated-in-coordinates", lambda c: _ocean(_cut(_cmems(c, "NETCDF3_64BIT"), c.tmp / "a.nc", 1500)),
         2, ("a.nc", "truncated classic NetCDF"), _no_training),
    Case("vec-given-as-netcdf", lambda c: _ocean(_bytes("run.vec", TECPLOT)(c)), 2,
         ("run.vec", "cannot open as NetCDF"), _no_training),
    Case("piv-non-numeric-token", lambda c: _piv(c, "f0001.vec", TECPLOT), 2, ("f0001.vec", "non-numeric"),
         _no_training),
    Case("vc7-garbage", lambda c: _piv(c, "f0001.vc7", b"garbage" * 50), 2, ("f0001.vc7", "not a readable"),
         _no_training),
    Case("mat-hdf5-signature-garbage", lambda c: _piv(c, "f0001.mat", HDF5 + b"garbage" * 80), 2,
         ("f0001.mat", "not a readable"), _no_training),
    Case("checkpoint-garbage", lambda c: _test_ckpt(c, _bytes("g.ckpt", b"garbage" * 30)(c)), 2,
         ("g.ckpt", "not a PyTorch checkpoint")),
    Case("checkpoint-empty", lambda c: _test_ckpt(c, _bytes("e.ckpt", b"")(c)), 2, ("e.ckpt", "empty file")),
    Case("runs-csv-no-final-newline-then-append", _trained_copy, 0, (), _unterminated_kept),
    Case("runs-csv-short-row", lambda c: (_runs_csv(c, "rbc,rbc,orig\n"), ["leaderboard", "--results",
                                                                             str(c.tmp / "results")])[1], 2,
         ("runs.csv:4", "3 columns", str(len(ROW_FIELDS))), _unchanged("results/rbc/runs.csv")),
    Case("runs-csv-extra-column",
         lambda c: (_runs_csv(c, ",".join(["x"] * (len(ROW_FIELDS) + 1)) + "\n"),
                    ["leaderboard", "--results", str(c.tmp / "results")])[1], 2,
         ("runs.csv:4", f"{len(ROW_FIELDS) + 1} columns"), _unchanged("results/rbc/runs.csv")),
    Case("sweep-yaml-syntax-error", lambda c: _sweep_file(c, "space:\n  model.lr: {low: 1.0e-4, high: [\n"), 2,
         ("space.yaml:", "YAML syntax error"), _no_sweep_state),
    Case("sweep-range-without-high", lambda c: _sweep_file(c, "space:\n  model.lr: {low: 1.0e-4}\n"), 2,
         ("space.yaml", "'model.lr'", "lacks high"), _no_sweep_state),
    Case("generate-unwritable-root", lambda c: ["data", "generate", "rbc", "--preset", "tiny", "--root",
                                                _blocked(c, "data"), "--no-progress"], 2,
         ("afile/data", "cannot write"), _nothing_under("afile")),
    Case("bench-unwritable-results", lambda c: _bench(c, results=_blocked(c, "results")), 2,
         ("afile/results", "cannot write", "--results"), _nothing_under("runs")),
    Case("generate-interrupted", _interrupt, 130, ("interrupted; rerun the same command to resume",),
         _nothing_under("data")),
    Case("bench-max-epochs-0", lambda c: _bench(c, "--max-epochs", "0"), 2, ("max_epochs 0", "at least one epoch"),
         _nothing_under("runs")),
    Case("same-data-spelled-differently", _respelled_root, 0, (), _unchanged("results/rbc/runs.csv")),
    # ---- also found by reading
    Case("second-run-of-a-locked-run-directory", _second_run_locked, 1, ("in use by", "seed5-"),
         _nothing_under("results")),
    # ---- more
    Case("old-nonfinite-rows-left-out", _nonfinite_old_rows, 0, (), _leaderboard_built),
    Case("sweep-range-low-above-high", lambda c: _sweep_file(c, "space:\n  model.lr: {low: 1.0, high: 0.1}\n"), 2,
         ("'model.lr'", "low < high"), _no_sweep_state),
    Case("sweep-log-range-from-zero", lambda c: _sweep_file(c, "space:\n  model.lr: {low: 0.0, high: 0.1, log: true}\n"),
         2, ("'model.lr'", "low > 0"), _no_sweep_state),
    Case("sweep-empty-choice", lambda c: _sweep_file(c, "space:\n  data.batch_size: []\n"), 2,
         ("'data.batch_size'", "empty list"), _no_sweep_state),
    Case("sweep-range-not-a-mapping", lambda c: _sweep_file(c, "space:\n  model.lr: 0.1\n"), 2,
         ("'model.lr'", "list of values"), _no_sweep_state),
    Case("benchmark-yaml-syntax-error", lambda c: (_benchmarks_copy(c).joinpath("benchmark.yaml").write_text(
        "name: rbc\nsplits: [orig\n"), _bench(c))[1], 2, ("benchmark.yaml:", "YAML syntax error"),
         _nothing_under("results")),
    Case("best-config-yaml-syntax-error", lambda c: (_benchmarks_copy(c).joinpath("best").mkdir(),
                                                     (c.tmp / "benchmarks/rbc/best/unet.yaml").write_text(
                                                         "preset: tiny\noverrides: {a: [}\n"), _bench(c))[2], 2,
         ("best/unet.yaml:2", "YAML syntax error"), _nothing_under("results")),
    Case("bench-unwritable-runs", lambda c: _bench(c, runs=_blocked(c, "runs")), 2, ("--runs", "cannot write"),
         _nothing_under("results")),
    Case("checkpoint-missing", lambda c: _test_ckpt(c, c.tmp / "missing.ckpt"), 2,
         ("missing.ckpt", "no such checkpoint")),
    Case("checkpoint-not-lightning", lambda c: _torch_file(c, {"weights": torch.zeros(2)}), 2,
         ("foreign.ckpt", "not a Lightning checkpoint")),
    Case("checkpoint-with-pickled-code", lambda c: _torch_file(c, {"state_dict": {}, "f": Path("x")}), 2,
         ("foreign.ckpt", "not a PyTorch checkpoint")),
    Case("netcdf3-cut-inside-header", lambda c: _ocean(_cut(_cmems(c, "NETCDF3_CLASSIC"), c.tmp / "a.nc", 40)), 2,
         ("a.nc", "ends inside its header"), _no_training),
    Case("netcdf-missing", lambda c: _ocean(c.tmp / "nowhere.nc"), 2, ("nowhere.nc", "no such NetCDF")),
    Case("mat-v5-garbage", lambda c: _piv(c, "f0001.mat", b"MATLAB 5.0 MAT-file" + b"\0" * 200 + b"junk" * 20), 2,
         ("f0001.mat", "not a readable MATLAB file"), _no_training),
    Case("piv-txt-garbage", lambda c: _piv(c, "f0001.txt", b"1 2 3 4\n1 2 x 4\n"), 2, ("f0001.txt", "non-numeric"),
         _no_training),
    Case("leaderboard-without-rows", lambda c: ["leaderboard", "--results", str(c.tmp / "empty")], 2,
         ("no results/<benchmark>/runs.csv",)),
]


@pytest.fixture(scope="module")
def trained(tiny_root, tmp_path_factory) -> Path:
    """One finished tiny bench run (unet, seed 0, one epoch) appended to a runs.csv without a final newline:
    results/ and runs/ to copy."""
    out = tmp_path_factory.mktemp("trained")
    path = out / "results" / "rbc" / "runs.csv"
    append_rows(path, [_row(model="resnet", seed=s) for s in range(2)])
    path.write_text(path.read_text().rstrip("\n"))  # a hand edit without a final newline
    args = ["bench", "rbc", "--preset", "tiny", "--models", "unet", "--root", str(tiny_root), "--results",
            str(out / "results"), "--runs", str(out / "runs"), "--no-progress", "--max-epochs", "1"]
    assert cli.main(args) == 0
    return out


@pytest.fixture
def quiet_lightning():
    """Lightning's INFO lines (accelerator found, tips) go to stderr ahead of a bench's own output; they are not
    errors, so the cases count stderr lines without them."""
    import lightning.pytorch  # noqa: F401  (its import sets its loggers' level: set ours after it)

    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    yield
    for logger, level in zip(loggers, levels):
        logger.setLevel(level)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_one_line_and_loses_nothing(case: Case, tmp_path, monkeypatch, request, capsys,
                                                    quiet_lightning):
    ctx = Ctx(tmp_path, monkeypatch, request)
    argv = case.setup(ctx)
    capsys.readouterr()
    rc = cli.main(argv)
    err = capsys.readouterr().err
    assert rc == case.rc, err
    if case.rc:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("symbench: "), err
        for needle in case.needles:
            assert needle in lines[0], lines[0]
    case.check(ctx)


def test_the_matrix_covers_every_case_of_the_issue():
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)


def test_debug_switch_prints_the_traceback(tmp_path, monkeypatch, capsys):
    path = tmp_path / "results" / "rbc" / "runs.csv"
    append_rows(path, [_row()])
    path.write_text(path.read_text() + "short,row\n")
    monkeypatch.setenv("SYMBENCH_DEBUG", "1")
    assert cli.main(["leaderboard", "--results", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.rstrip().splitlines()[-1].startswith("symbench: error")


def test_the_message_behind_raise_from_none_is_the_designed_one():
    def designed() -> None:
        try:
            {}["inner"]
        except KeyError:
            raise ValueError("data.nc: the designed message") from None

    with pytest.raises(ValueError) as info:
        designed()
    assert cli._root_message(info.value) == "data.nc: the designed message"


def test_best_checkpoint_is_the_highest_epoch_number():
    names = [Path(f"best-epoch={n}.ckpt") for n in (9, 10, 2)]
    assert latest_checkpoint(names) == Path("best-epoch=10.ckpt")
    assert latest_checkpoint([]) is None


@pytest.mark.parametrize("command, simulator", [
    (["data", "generate", "smoke-rotation"], "datamodules.smoke_sim.simulate_group"),
    (["data", "generate", "jetflow"], "datamodules.jetflow_sim.simulate"),
    (["data", "generate", "ocean"], "datamodules.fetch.fetch"),
    (["levels", "--data-only"], "datamodules.smoke_levels.simulate_group"),
    (["strength", "--data-only"], "datamodules.smoke_levels.simulate_group"),
])
def test_every_generator_checks_its_root_before_simulating(command, simulator, tmp_path, monkeypatch, capsys):
    """An unwritable --root is one line before any simulation (or download) starts, for the generators that do not
    go through ``store.generate_once`` too."""
    def must_not_run(*args, **kwargs):
        raise AssertionError(f"{simulator} ran before the root was checked")

    monkeypatch.setattr(simulator, must_not_run)
    (tmp_path / "afile").write_text("x")
    root = tmp_path / "afile" / "data"
    assert cli.main([*command, "--preset", "tiny", "--root", str(root), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / "afile") in err[0], err
