"""Optuna sweeps: search-space files, the grid manifest run once per point by many workers, TPE budgets, pruning,
heartbeat retries of a killed worker's trial, the best configuration written back, and a PostgreSQL study."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from symbench import cli, models
from symbench.config import ConfigError, benchmark_models, resolve, to_overrides
from symbench.sweep.queue import RETRY_OF, open_storage
from symbench.sweep.run import SweepSpec, open_study, run_trial
from symbench.sweep.space import load_space

REPO = Path(__file__).resolve().parents[1]
SYMBENCH = str(Path(sys.executable).with_name("symbench"))


# ---------------------------------------------------------------------------------------------- search spaces


def test_dotted_keys_map_onto_the_run_configuration_sections():
    got = to_overrides({"model.lr": 1e-3, "model.model_hparams.width": 8, "data.batch_size": 4,
                        "data.init_args.in_frames": 5, "trainer.max_epochs": 3})
    assert got == {"module": {"lr": 1e-3}, "model_hparams": {"width": 8}, "data": {"batch_size": 4, "in_frames": 5},
                   "trainer": {"max_epochs": 3}}
    with pytest.raises(ConfigError, match="names no argument"):
        to_overrides({"model.learning_rate": 1e-3})


def test_every_rbc_model_has_exactly_one_search_space_with_the_papers_ranges():
    files = sorted((REPO / "sweeps" / "rbc").glob("*.yaml"))
    for model in (m for m in benchmark_models("rbc") if models.spec(m).family != "baseline"):  # nothing to tune
        covering = [f for f in files if load_space("rbc", model, f).covers(model)]
        assert len(covering) == 1, (model, covering)
        space = load_space("rbc", model)
        assert space.ranges["model.lr"] == {"low": 1e-6, "high": 1e-1, "log": True}  # ICLR 2021 Table 7
        assert space.ranges["data.in_frames"] == {"low": 1, "high": 30}
        assert len(space.grid_points()) == len({json.dumps(p, sort_keys=True) for p in space.grid_points()})
        for point in space.grid_points():
            rng = space.ranges
            assert rng["model.lr"]["low"] <= point["model.lr"] <= rng["model.lr"]["high"]
            assert point["data.batch_size"] in rng["data.batch_size"]


def test_a_yaml_number_without_a_dot_is_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("benchmark: rbc\nmodels: [unet]\nspace: {model.lr: [1e-3]}\ngrid: {model.lr: [1e-3]}\n")
    with pytest.raises(ConfigError, match="write it with a dot"):
        load_space("rbc", "unet", bad)


def test_bad_sweep_input_is_one_line(capsys):
    assert cli.main(["sweep", "rbc", "--model", "nosuch"]) == 2
    assert cli.main(["sweep", "rbc", "--model", "unet", "--sampler", "tpe"]) == 2
    assert cli.main(["sweep", "rbc", "--model", "unet", "--trials", "3"]) == 2  # a grid runs all its points
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("symbench: error: ") for line in lines)
    assert "unknown model 'nosuch'" in lines[0] and "--trials" in lines[1] and "grid" in lines[2]


# ----------------------------------------------------------------------------------------------- real sweeps


@pytest.fixture()
def sandbox(tmp_path, monkeypatch):
    """A copy of benchmarks/ (so best configs land in tmp) and a small grid: 2 learning rates x 2 batch sizes."""
    shutil.copytree(REPO / "benchmarks", tmp_path / "benchmarks")
    monkeypatch.setenv("SYMBENCH_BENCHMARKS", str(tmp_path / "benchmarks"))
    space = {"benchmark": "rbc", "models": ["unet"], "sampler": "grid",
             "pruner": {"type": "median", "n_startup_trials": 2, "n_warmup_steps": 1},
             "space": {"model.lr": {"low": 1.0e-4, "high": 1.0e-2, "log": True}, "data.batch_size": [4, 8]},
             "grid": {"model.lr": [1.0e-3, 3.0e-3], "data.batch_size": [4, 8], "trainer.max_epochs": [2]}}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    return tmp_path


def _sweep(sandbox: Path, root: Path, *extra: str) -> list[str]:
    return ["sweep", "rbc", "--model", "unet", "--preset", "tiny", "--space", str(sandbox / "space.yaml"),
            "--root", str(root), "--runs", str(sandbox / "runs"), "--no-progress", *extra]


def _load(storage: str, study: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study, storage=open_storage(storage)).get_trials()


def _grid_keys(trials) -> list[str]:
    return sorted(json.dumps(t.params, sort_keys=True) for t in trials if t.state == TrialState.COMPLETE)


@pytest.mark.slow
def test_grid_sweep_runs_every_point_once_with_two_workers_and_writes_the_best_config(sandbox, tiny_root):
    assert cli.main(_sweep(sandbox, tiny_root, "--workers", "2", "--pruner", "none")) == 0
    journal = str(sandbox / "runs" / "sweeps" / "rbc-tiny-unet-grid" / "journal.log")
    trials = _load(journal, "rbc-tiny-unet-grid")
    space = load_space("rbc", "unet", sandbox / "space.yaml")
    expected = sorted(json.dumps(p, sort_keys=True) for p in space.grid_points())
    assert len(trials) == 4 and _grid_keys(trials) == expected  # each point exactly once, none lost
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both workers took trials
    best = min(trials, key=lambda t: t.value)
    doc = yaml.safe_load((sandbox / "benchmarks" / "rbc" / "best" / "unet.yaml").read_text())
    assert doc["preset"] == "tiny" and doc["trial"] == best.number and doc["overrides"] == best.params
    # the benchmark applies it at that preset only, and --no-best (use_best=False) ignores it
    tuned = resolve("rbc", "tiny", "unet", 0)
    assert tuned.module["lr"] == best.params["model.lr"] and tuned.data["batch_size"] == best.params["data.batch_size"]
    assert tuned.trainer["max_epochs"] == 2
    untuned = resolve("rbc", "tiny", "unet", 0, use_best=False)
    assert (untuned.module["lr"], untuned.data["batch_size"]) == (2.0e-3, 8)  # the preset's own values
    assert resolve("rbc", "cpu", "unet", 0) == resolve("rbc", "cpu", "unet", 0, use_best=False)  # other preset
    # a second run of the same command adds nothing
    assert cli.main(_sweep(sandbox, tiny_root, "--workers", "2", "--pruner", "none")) == 0
    assert len(_load(journal, "rbc-tiny-unet-grid")) == 4


@pytest.mark.slow
def test_tpe_sweep_keeps_its_budget_and_pruning_reports_every_epoch(sandbox, tiny_root):
    assert cli.main(_sweep(sandbox, tiny_root, "--sampler", "tpe", "--trials", "3", "--pruner", "none")) == 0
    journal = str(sandbox / "runs" / "sweeps" / "rbc-tiny-unet-tpe" / "journal.log")
    trials = _load(journal, "rbc-tiny-unet-tpe")
    assert len(trials) == 3 and all(t.state == TrialState.COMPLETE for t in trials)
    for t in trials:  # Optuna's Lightning callback reported val/rmse after every epoch; the value is the best one
        assert sorted(t.intermediate_values) == [0, 1]
        assert t.value == pytest.approx(min(t.intermediate_values.values()))
        assert 1e-4 <= t.params["model.lr"] <= 1e-2 and t.params["data.batch_size"] in (4, 8)
    # a pruner that stops everything after the first report: the trial ends PRUNED after epoch 0
    spec = SweepSpec("rbc", "unet", preset="tiny", sampler="tpe", trials=4, space=str(sandbox / "space.yaml"),
                     root=str(tiny_root), runs=str(sandbox / "runs"), progress=False).resolved()
    queue, space = open_study(spec)
    queue.study.pruner = optuna.pruners.ThresholdPruner(upper=1e-9)
    run_trial(queue, queue.study.ask(), spec, space)
    last = queue.trials()[-1]
    assert last.state == TrialState.PRUNED and list(last.intermediate_values) == [0]


@pytest.mark.slow
def test_a_killed_workers_trial_is_failed_and_retried_from_its_checkpoint(sandbox, tiny_root):
    """SIGKILL one of two workers mid-trial: its heartbeat stops, the other worker fails the trial and runs a retry
    (continuing from the last checkpoint); every grid point ends COMPLETE exactly once."""
    space = yaml.safe_load((sandbox / "space.yaml").read_text())
    space["grid"] = {"model.lr": [1.0e-3, 3.0e-3], "trainer.max_epochs": [6]}
    space["pruner"] = {"type": "none"}
    (sandbox / "space.yaml").write_text(yaml.safe_dump(space))
    cmd = [SYMBENCH, *_sweep(sandbox, tiny_root, "--workers", "2", "--heartbeat", "0.5", "--grace", "4")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    journal = sandbox / "runs" / "sweeps" / "rbc-tiny-unet-grid" / "journal.log"
    victim = None
    deadline = time.time() + 120
    while victim is None and time.time() < deadline:
        time.sleep(0.5)
        if not journal.exists():
            continue
        for t in _load(str(journal), "rbc-tiny-unet-grid"):
            ckpts = list((sandbox / "runs" / "sweeps" / "rbc-tiny-unet-grid" / f"trial{t.number}" / "checkpoints")
                         .glob("last.ckpt"))
            if t.state == TrialState.RUNNING and "worker" in t.user_attrs and ckpts:
                victim = t
                os.kill(int(t.user_attrs["worker"].rsplit(":", 1)[1]), signal.SIGKILL)
                break
    assert victim is not None, "no running trial with a checkpoint to kill"
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    trials = _load(str(journal), "rbc-tiny-unet-grid")
    killed = next(t for t in trials if t.number == victim.number)
    retry = next(t for t in trials if t.user_attrs.get(RETRY_OF) == victim.number)
    assert killed.state == TrialState.FAIL and retry.state == TrialState.COMPLETE
    assert retry.params == victim.params
    assert f"trial {retry.number} (retry of {victim.number})" in out and "resuming from" in out
    assert len(_grid_keys(trials)) == 2 and len(set(_grid_keys(trials))) == 2


# ------------------------------------------------------------------------------------------------ PostgreSQL


def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@pytest.fixture()
def postgres_url():
    """A throw-away PostgreSQL server (Debian's postgresql, installed with apt-get when missing and we are root)."""
    pytest.importorskip("psycopg2", reason="psycopg2 missing: `pip install -e .[test]` installs psycopg2-binary")
    if _postgres_bin() is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "postgresql"], capture_output=True, timeout=600,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    pg = _postgres_bin()
    if pg is None:
        pytest.skip("PostgreSQL cannot be installed here (no /usr/lib/postgresql/*/bin/initdb, apt-get failed)")
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    base = Path(subprocess.run(["mktemp", "-d", "/tmp/symbench-pg.XXXXXX"], capture_output=True, text=True,
                               check=True).stdout.strip())
    if as_user:
        shutil.chown(base, "postgres")
    port = str(20000 + os.getpid() % 20000)
    subprocess.run([*as_user, str(pg / "initdb"), "-D", str(base / "db"), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    subprocess.run([*as_user, str(pg / "pg_ctl"), "-D", str(base / "db"), "-l", str(base / "log"), "-w", "-o",
                    f"-p {port} -k {base} -c listen_addresses=localhost", "start"], check=True, capture_output=True)
    try:
        subprocess.run([*as_user, str(pg / "createdb"), "-h", "localhost", "-p", port, "-U", "postgres", "optuna"],
                       check=True, capture_output=True)
        yield f"postgresql+psycopg2://postgres@localhost:{port}/optuna"
    finally:
        subprocess.run([*as_user, str(pg / "pg_ctl"), "-D", str(base / "db"), "-m", "fast", "stop"],
                       capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
def test_three_workers_share_one_postgresql_study_and_record_every_trial_once(sandbox, tiny_root, postgres_url):
    space = yaml.safe_load((sandbox / "space.yaml").read_text())
    space["grid"] = {"model.lr": [1.0e-3, 2.0e-3, 3.0e-3], "data.batch_size": [4, 8], "trainer.max_epochs": [1]}
    space["pruner"] = {"type": "none"}
    (sandbox / "space.yaml").write_text(yaml.safe_dump(space))
    assert cli.main(_sweep(sandbox, tiny_root, "--workers", "3", "--storage", postgres_url)) == 0
    trials = _load(postgres_url, "rbc-tiny-unet-grid")
    expected = sorted(json.dumps(p, sort_keys=True) for p in load_space("rbc", "unet", sandbox / "space.yaml")
                      .grid_points())
    assert len(trials) == 6 and _grid_keys(trials) == expected
    assert len({t.user_attrs["worker"] for t in trials}) == 3


def test_workers_get_one_visible_gpu_each_and_a_share_of_the_cores(monkeypatch):
    from symbench.sweep.run import _worker_env

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert [_worker_env(i, 4)["CUDA_VISIBLE_DEVICES"] for i in range(4)] == ["3", "5", "3", "5"]
    assert _worker_env(0, 1)["OMP_NUM_THREADS"] == str(os.cpu_count())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert _worker_env(1, 2)["CUDA_VISIBLE_DEVICES"] == ""


def test_preset_entries_narrow_the_space_where_the_data_are_short():
    cpu, paper = load_space("rbc", "unet", preset="cpu"), load_space("rbc", "unet", preset="paper")
    assert cpu.ranges["data.in_frames"] == {"low": 1, "high": 16} and cpu.grid["data.in_frames"] == [5, 10]
    assert paper.ranges["data.in_frames"] == {"low": 1, "high": 30} and paper.grid["data.in_frames"] == [10, 25]
    assert cpu.ranges["model.lr"] == paper.ranges["model.lr"]  # other keys untouched


def test_tpe_workers_propose_different_points():
    from symbench.sweep.run import _sampler

    spec = SweepSpec("rbc", "unet", sampler="tpe", trials=2, seed=0)
    first = [optuna.create_study(sampler=_sampler(spec, w)).ask().suggest_float("x", 0, 1) for w in (0, 1, 0)]
    assert first[0] != first[1] and first[0] == first[2]  # distinct per worker, reproducible per worker


def test_a_sweep_worker_gives_the_command_lines_device_options_to_every_trials_trainer(sandbox, monkeypatch, capsys):
    """`symbench sweep --accelerator cpu --precision bf16` -> the worker's JSON spec -> each trial's Trainer (the
    training itself replaced: the Trainer is made and its value told); more than one device per worker is refused."""
    from dataclasses import asdict

    from symbench.bench import FittedRun, make_trainer
    from symbench.sweep import run as sweep_run

    specs: list[SweepSpec] = []
    monkeypatch.setattr(sweep_run, "run_sweep", lambda spec, workers: specs.append(spec.resolved()))
    argv = _sweep(sandbox, sandbox / "data", "--accelerator", "cpu", "--precision", "bf16", "--pruner", "none")
    assert cli.main(argv) == 0 and specs[0].trainer == {"accelerator": "cpu", "devices": 1, "precision": "bf16"}
    trainers = []

    def fit_run(cfg, run_dir, progress=True, callbacks=(), resume=True):
        trainers.append(make_trainer(cfg, logger=False, enable_checkpointing=False, enable_progress_bar=False))
        return FittedRun(None, None, trainers[-1], "", 1.0 / len(trainers), 0.0, 1)

    monkeypatch.setattr(sweep_run, "fit_run", fit_run)
    open_study(specs[0], create=True)
    assert sweep_run._main(["--worker", json.dumps(asdict(specs[0]))]) == 0
    assert len(trainers) == 4  # the grid's points
    assert all(type(t.accelerator).__name__ == "CPUAccelerator" and t.precision == "bf16-mixed" for t in trainers)
    assert all(t.num_devices == 1 for t in trainers)
    assert cli.main(_sweep(sandbox, sandbox / "data", "--devices", "2")) == 2
    assert "a sweep trains each trial in one process" in capsys.readouterr().err
