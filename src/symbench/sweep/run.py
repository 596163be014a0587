"""``symbench sweep``: an Optuna study over one model's search space, run by N worker processes sharing it.

The coordinator creates (or loads) the study, enqueues the grid manifest once (grid sampler: one trial per point,
however many workers), starts ``workers`` processes (one per visible GPU, ``CUDA_VISIBLE_DEVICES=i``, else CPU
processes splitting the cores), shows progress, and when they are done writes the best trial's parameters to
``benchmarks/<benchmark>/best/<model>.yaml``, which ``symbench bench`` applies at that preset.

A trial is one :func:`symbench.bench.fit_run` of the benchmark's run configuration with the trial's overrides; its
value is the best validation rollout RMSE, reported every epoch to Optuna's Lightning pruning callback. Workers
keep a heartbeat on their trial (:mod:`symbench.sweep.queue`); a trial whose worker was killed is failed and
retried, and the retry continues from the killed trial's last checkpoint.

Devices: a sweep runs in parallel over trials, so each trial is one process on one device (``--accelerator``,
``--precision`` and ``--tf32`` reach every worker's Trainer; ``--devices`` / ``--num-nodes`` other than 1 are refused
with one line). Sweeps on many machines share one study through a database ``--storage`` (PostgreSQL).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import Trial, TrialState

from symbench import hardware
from symbench.bench import fit_run
from symbench.config import ConfigError, benchmarks_dir, resolve, seeds_of, to_overrides
from symbench.results import atomic_write_text
from symbench.sweep.queue import RETRY_OF, Heartbeat, TrialQueue, open_storage
from symbench.sweep.space import PRUNERS, SAMPLERS, SearchSpace, check_choice, load_space

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


@dataclass
class SweepSpec:
    """Everything a worker needs (passed to worker processes as JSON)."""

    benchmark: str
    model: str
    preset: str = "cpu"
    sampler: str | None = None  # None: the sweep file's
    trials: int | None = None  # TPE budget (the grid's size for grid sweeps)
    storage: str | None = None  # None: a journal file under the sweep directory
    study: str | None = None  # None: <benchmark>-<preset>-<model>-<sampler>
    root: str = "data"
    runs: str = "runs"
    space: str | None = None  # a sweep file; None: the one of sweeps/<benchmark>/ covering the model
    pruner: str | None = None  # None: the sweep file's
    heartbeat: float = 20.0
    grace: float = 90.0
    max_retry: int = 3
    seed: int | None = None  # None: the preset's first seed
    progress: bool = True
    trainer: dict[str, Any] | None = None  # device options of every trial's Trainer (accelerator, precision, ...)
    tf32: bool = False

    def resolved(self) -> "SweepSpec":
        """Defaults filled in from the sweep file and the benchmark; bad input raises one-line errors."""
        space = load_space(self.benchmark, self.model, self.space, self.preset)
        cfg = resolve(self.benchmark, self.preset, self.model, 0, self.root,  # unknown preset / model -> one line
                      {"trainer": {"devices": 1, **(self.trainer or {})}}, tf32=self.tf32)
        if cfg.hardware().world_size != 1:
            raise ConfigError(f"a sweep trains each trial in one process; --devices {cfg.trainer['devices']} x "
                              f"--num-nodes {cfg.trainer.get('num_nodes', 1)} given: use --workers N (one GPU each) "
                              "and more machines sharing the --storage")
        spec = SweepSpec(**asdict(self))
        spec.trainer = {k: v for k, v in cfg.trainer.items() if k in hardware.DEVICE_KEYS}
        spec.space = str(space.path)
        spec.sampler = spec.sampler or space.sampler
        check_choice("sampler", spec.sampler, SAMPLERS)
        spec.pruner = spec.pruner or space.pruner.get("type", "none")
        check_choice("pruner", spec.pruner, PRUNERS)
        if spec.sampler == "grid":
            if spec.trials not in (None, len(space.grid_points())):
                raise ConfigError(f"--trials {spec.trials}: a grid sweep runs its {len(space.grid_points())} points; "
                                  f"drop --trials or use --sampler tpe")
            spec.trials = len(space.grid_points())
        elif spec.trials is None or spec.trials < 1:
            raise ConfigError("a TPE sweep needs --trials N (N >= 1)")
        spec.study = spec.study or f"{spec.benchmark}-{spec.preset}-{spec.model}-{spec.sampler}"
        spec.storage = spec.storage or str(self.directory(spec.study) / "journal.log")
        spec.seed = spec.seed if spec.seed is not None else seeds_of(spec.benchmark, spec.preset)[0]
        return spec

    def directory(self, study: str | None = None) -> Path:
        return Path(self.runs) / "sweeps" / (study or self.study or "")


def _sampler(spec: SweepSpec, worker: int) -> optuna.samplers.BaseSampler:
    """TPE seeded per worker (workers with one seed would propose the same start-up points); grid trials are all
    enqueued with fixed parameters, so their sampler is never asked."""
    if spec.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=1000 * (spec.seed or 0) + worker)
    return optuna.samplers.RandomSampler()


def _pruner(spec: SweepSpec, space: SearchSpace) -> optuna.pruners.BasePruner:
    if spec.pruner == "none":
        return optuna.pruners.NopPruner()
    args = {k: v for k, v in space.pruner.items() if k != "type"}
    return optuna.pruners.MedianPruner(**args)


def open_study(spec: SweepSpec, create: bool = False, worker: int = 0) -> tuple[TrialQueue, SearchSpace]:
    """Load (``create``: create or load) the study; the coordinator also enqueues the grid manifest once."""
    space = load_space(spec.benchmark, spec.model, spec.space, spec.preset)
    storage = open_storage(spec.storage)
    kwargs = dict(study_name=spec.study, storage=storage, sampler=_sampler(spec, worker), pruner=_pruner(spec, space))
    study = (optuna.create_study(direction="minimize", load_if_exists=True, **kwargs) if create
             else optuna.load_study(**kwargs))
    identity = {"benchmark": spec.benchmark, "model": spec.model, "preset": spec.preset, "sampler": spec.sampler,
                "space": space.grid if spec.sampler == "grid" else space.ranges}
    if create and not study.user_attrs.get("symbench"):
        study.set_user_attr("symbench", identity)
    if study.user_attrs.get("symbench") != json.loads(json.dumps(identity)):
        raise ConfigError(f"study {spec.study!r} in {spec.storage} was made for another sweep "
                          f"({study.user_attrs.get('symbench')}); choose another --study name")
    queue = TrialQueue(study, storage)
    if create and spec.sampler == "grid" and not study.user_attrs.get("manifest"):
        for point in space.grid_points():
            study.enqueue_trial(point)
        study.set_user_attr("manifest", len(space.grid_points()))
    return queue, space


def run_trial(queue: TrialQueue, trial: Trial, spec: SweepSpec, space: SearchSpace) -> None:
    """Train one trial and tell the study its outcome (COMPLETE with the best val RMSE, PRUNED or FAIL)."""
    from optuna_integration import PyTorchLightningPruningCallback

    root = trial.user_attrs.get(RETRY_OF, trial.number)  # a retry continues in its first attempt's directory
    run_dir = spec.directory() / f"trial{root}"
    label = f"trial {trial.number}" + (f" (retry of {root})" if root != trial.number else "")
    try:  # from the first suggestion on: a bad range fails the trial instead of leaving it RUNNING
        params = space.suggest(trial, spec.sampler)
        print(f"[worker {os.getpid()}] {label}: {json.dumps(params)}", flush=True)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        overrides = to_overrides(params)
        overrides["trainer"] = {**overrides.get("trainer", {}), **(spec.trainer or {})}
        cfg = resolve(spec.benchmark, spec.preset, spec.model, spec.seed, spec.root, overrides, use_best=False,
                      tf32=spec.tf32)
        with Heartbeat(trial, spec.heartbeat):
            pruning = PyTorchLightningPruningCallback(trial, monitor=space.objective)
            fitted = fit_run(cfg, run_dir, progress=False, callbacks=[pruning])
        for key, value in {"train_seconds": round(fitted.train_seconds, 1), "run_dir": str(run_dir),
                           "config_hash": cfg.config_hash(), "best_checkpoint": fitted.best_path}.items():
            trial.set_user_attr(key, value)
        queue.study.tell(trial, fitted.best_score)
        print(f"[worker {os.getpid()}] {label}: val/rmse {fitted.best_score:.5f}", flush=True)
    except optuna.TrialPruned:
        queue.study.tell(trial, state=TrialState.PRUNED)
        print(f"[worker {os.getpid()}] {label}: pruned", flush=True)
    except Exception as err:  # a failing configuration (e.g. windows longer than the data) must not stop the sweep
        trial.set_user_attr("error", f"{type(err).__name__}: {err}".splitlines()[0][:500])
        queue.study.tell(trial, state=TrialState.FAIL)
        print(f"[worker {os.getpid()}] {label}: failed: {type(err).__name__}: {err}".splitlines()[0], flush=True)


def work(spec: SweepSpec, worker: int = 0) -> None:
    """One worker: claim enqueued trials (or ask TPE for new ones) until the study is done."""
    for name in ("lightning.pytorch", "lightning.fabric"):  # one line per trial is enough in a sweep's output
        logging.getLogger(name).setLevel(logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    queue, space = open_study(spec, worker=worker)
    while True:
        queue.fail_stale(spec.grace, spec.max_retry)
        trial = queue.claim_waiting()
        if trial is None and spec.sampler == "tpe" and queue.counted() < spec.trials:
            trial = queue.study.ask()
        if trial is not None:
            run_trial(queue, trial, spec, space)
        elif _has_work(queue, spec):
            time.sleep(min(spec.heartbeat, 5.0))  # others are running: wait, and retry theirs if their worker dies
        else:
            return


def _worker_env(index: int, workers: int) -> dict[str, str]:
    """One GPU per worker where GPUs are visible (round robin), and an equal share of the CPU cores each."""
    env = dict(os.environ)
    visible = [d for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    if "CUDA_VISIBLE_DEVICES" not in env:
        import torch

        visible = [str(i) for i in range(torch.cuda.device_count())]
    env["CUDA_VISIBLE_DEVICES"] = visible[index % len(visible)] if visible else ""
    env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))
    return env


def run_sweep(spec: SweepSpec, workers: int = 1) -> dict[str, Any]:
    """Run the sweep with ``workers`` processes; returns the summary (also written as the best config file)."""
    from tqdm import tqdm

    spec = spec.resolved()
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    queue, space = open_study(spec, create=True)
    done = _finished(queue)
    print(f"sweep {spec.study}: {spec.sampler}, {spec.trials} trials ({done} finished before), storage "
          f"{spec.storage}, {workers} worker(s)", flush=True)
    if not _has_work(queue, spec):
        return summarize(queue, spec)
    cmd = [sys.executable, "-m", "symbench.sweep.run", "--worker", json.dumps(asdict(spec))]
    procs = [subprocess.Popen([*cmd, "--index", str(i)], env=_worker_env(i, workers)) for i in range(workers)]
    bar = tqdm(total=spec.trials, desc=f"sweep {spec.model}", unit="trial", disable=not spec.progress)
    try:
        while any(p.poll() is None for p in procs):
            bar.n = min(spec.trials, _finished(queue))
            bar.refresh()
            time.sleep(2.0)
    finally:
        bar.close()
        for p in procs:
            if p.poll() is None:
                p.terminate()
    codes = [p.wait() for p in procs]
    if all(c != 0 for c in codes):
        raise RuntimeError(f"every sweep worker failed (exit codes {codes}); rerun the same command to resume")
    return summarize(queue, spec)


def _has_work(queue: TrialQueue, spec: SweepSpec) -> bool:
    """Trials to run or to watch (a RUNNING one may belong to a dead worker and need a retry), or TPE budget left."""
    pending = queue.trials(TrialState.WAITING, TrialState.RUNNING)
    return bool(pending) or (spec.sampler == "tpe" and queue.counted() < (spec.trials or 0))


def _finished(queue: TrialQueue) -> int:
    """Finished trials, a failed trial that a retry replaced not counted."""
    return len(queue.trials(*FINISHED)) - queue.retries()


def summarize(queue: TrialQueue, spec: SweepSpec) -> dict[str, Any]:
    """Counts by state and the best trial; writes ``benchmarks/<benchmark>/best/<model>.yaml``."""
    trials = queue.trials()
    counts = {state.name.lower(): sum(t.state == state for t in trials) for state in TrialState}
    summary: dict[str, Any] = {"study": spec.study, "storage": spec.storage, "trials": counts}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if complete:
        best = min(complete, key=lambda t: t.value)
        summary.update(best_trial=best.number, best_value=best.value, best_params=best.params,
                       best_config=str(write_best(spec, best)))
    print(f"sweep {spec.study}: " + ", ".join(f"{n} {k}" for k, n in counts.items() if n), flush=True)
    if complete:
        print(f"best trial {summary['best_trial']}: val/rmse {summary['best_value']:.5f} "
              f"{json.dumps(summary['best_params'])} -> wrote {summary['best_config']}", flush=True)
    return summary


def write_best(spec: SweepSpec, best: optuna.trial.FrozenTrial) -> Path:
    """The best trial's overrides as the config file ``symbench bench`` applies to ``spec.model`` at ``spec.preset``."""
    path = benchmarks_dir() / spec.benchmark / "best" / f"{spec.model}.yaml"
    doc = {"benchmark": spec.benchmark, "model": spec.model, "preset": spec.preset,
           "objective": {"val/rmse": best.value}, "study": spec.study, "trial": best.number,
           "overrides": dict(sorted(best.params.items()))}
    header = (f"# Written by `symbench sweep {spec.benchmark} --model {spec.model} --preset {spec.preset}` "
              f"(study {spec.study}, best of {spec.trials} trials).\n"
              f"# `symbench bench {spec.benchmark} --preset {spec.preset}` applies these overrides to {spec.model}.\n")
    atomic_write_text(path, header + yaml.safe_dump(doc, sort_keys=False))
    return path


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="symbench sweep worker (started by `symbench sweep`)")
    parser.add_argument("--worker", required=True, help="the SweepSpec as JSON")
    parser.add_argument("--index", type=int, default=0, help="this worker's number (seeds its TPE sampler)")
    args = parser.parse_args(argv)
    work(SweepSpec(**json.loads(args.worker)), args.index)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
