"""``symbench bench``: train every listed model on every seed, test the best-validation checkpoint on every split,
append leaderboard rows and regenerate the leaderboard.

A benchmark is a YAML file ``benchmarks/<name>/benchmark.yaml``; :mod:`symbench.config` reads it and resolves one
run's configuration (its presets, per-model sections and a sweep's best configuration).

Devices (:mod:`symbench.hardware`): the Trainer section's ``accelerator`` (default ``auto``: a GPU when one is
visible), ``devices`` (default 1), ``num_nodes``, ``strategy`` and ``precision``; ``batch_size`` is the global batch.
Under DDP every process runs this same program and takes the same decisions (skip, resume) from files that only
rank 0 writes, and only between the runs' collectives: rows, leaderboards, artifacts, set-aside directories, locks.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import datamodules
from symbench import __version__, hardware, models
from symbench.config import RunConfig, benchmark_models, best_config, load_benchmark, resolve, seeds_of
from symbench.data_options import board_name
from symbench.files import check_writable, latest_checkpoint, load_checkpoint, run_lock
from symbench.leaderboard import write_leaderboard
from symbench.provenance import code_revision, git_describe
from symbench.prediction_artifacts import PredictionArtifacts, artifact_path, read_meta
from symbench.results import FAILED_FIELDS, FAILED_FILE, Diverged, RunsFailed, append_rows, read_rows
from symbench.run_config_file import write_lightning_config


def _versions() -> str:
    import lightning
    import torch

    return f"symbench={__version__};torch={torch.__version__};lightning={lightning.__version__}"


def provenance() -> dict[str, str]:
    """The provenance columns of a ``runs.csv`` row written now: ``git_sha`` (``git describe --always --dirty``),
    ``versions``, ``timestamp`` (UTC)."""
    return {"git_sha": git_describe(), "versions": _versions(),
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def run_directory(cfg: RunConfig, runs_dir: str | Path = "runs") -> Path:
    """Where one (configuration, seed) trains: deterministic, so an interrupted run is found again."""
    return Path(runs_dir) / cfg.benchmark / cfg.preset / cfg.model / f"seed{cfg.seed}-{cfg.config_hash()}"


def is_finished(cfg: RunConfig, rows: Sequence[dict[str, str]], runs_dir: str | Path) -> bool:
    """True when this machine already ran ``cfg``: ``rows`` hold its (preset, model, seed, config hash) and its run
    directory holds the best checkpoint (rows alone may come from a committed ``runs.csv`` of another machine)."""
    key = (cfg.preset, cfg.model, str(cfg.seed), cfg.config_hash())
    has_rows = any((r["preset"], r["model"], r["seed"], r["config_hash"]) == key for r in rows)
    return has_rows and any((run_directory(cfg, runs_dir) / "checkpoints").glob("best-*.ckpt"))


def is_stale(cfg: RunConfig, rows: Sequence[dict[str, str]]) -> bool:
    """True when ``rows`` hold results of this (preset, model, seed) but none of the configuration HEAD resolves
    now (its hash covers the code revision of the model and data module): they came from older code or settings."""
    mine = [r for r in rows if (r["preset"], r["model"], r["seed"]) == (cfg.preset, cfg.model, str(cfg.seed))]
    return bool(mine) and all(r["config_hash"] != cfg.config_hash() for r in mine)


def _set_aside(run_dir: Path) -> None:
    """Rename an earlier run directory of this configuration so that a rerun starts fresh and loses nothing (rank 0
    only, before any Trainer exists; the other ranks of a rerun never look for a checkpoint to resume)."""
    if run_dir.exists() and hardware.is_rank_zero():
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        run_dir.rename(run_dir.with_name(f"{run_dir.name}.replaced-{stamp}"))
        print(f"    earlier run moved to {run_dir.name}.replaced-{stamp}", flush=True)


@dataclass
class FittedRun:
    """What :func:`fit_run` leaves behind: the trained module (last epoch), its data and the best checkpoint."""

    module: Any
    datamodule: Any
    trainer: Any
    best_path: str
    best_score: float
    train_seconds: float
    epochs: int


def finished_training(last: dict[str, Any], max_epochs: int | None) -> bool:
    """True when the checkpoint ``last`` was written after the validation of the final epoch: the run is complete,
    and it is tested as it is rather than handed to ``Trainer.fit`` again."""
    return max_epochs is not None and max_epochs >= 0 and int(last["epoch"]) >= max_epochs - 1


def datamodule_args(cfg: RunConfig) -> dict[str, Any]:
    """``cfg.data`` with the global ``batch_size`` / ``eval_batch_size`` divided over the DDP processes."""
    hw, data = cfg.hardware(), dict(cfg.data)
    if "batch_size" in data:
        data["batch_size"] = hw.per_device_batch(int(data["batch_size"]))
    if data.get("eval_batch_size"):
        data["eval_batch_size"] = hardware.eval_batch(int(data["eval_batch_size"]), hw)
    return data


def make_trainer(cfg: RunConfig, **kwargs: Any) -> Any:
    """A Lightning Trainer of ``cfg.trainer`` (device defaults filled in) and ``kwargs``; sets the float32
    precision (TF32 only with ``cfg.tf32``)."""
    import lightning as L

    hardware.set_float32_precision(cfg.tf32)
    return L.Trainer(**kwargs, **hardware.trainer_args(cfg.trainer, cfg.hardware()))


def fit_run(cfg: RunConfig, run_dir: str | Path, progress: bool = True, callbacks: Sequence[Any] = (),
            resume: bool = True) -> FittedRun:
    """Train ``cfg`` in ``run_dir`` (continuing from its ``last.ckpt`` when an earlier attempt was interrupted,
    unless ``resume`` is False) and
    keep the checkpoint of the best validation rollout RMSE. ``callbacks`` are added to the Trainer's (e.g. a
    sweep's pruning callback)."""
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    from symbench import plateau, untrained
    from symbench.divergence import StopOnDivergence
    from symbench.forecast import ForecastModule
    from symbench.last_checkpoint import checkpoint_callbacks

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = datamodules.entry(cfg.dataset).datamodule_class()(**datamodule_args(cfg))
    dm.setup("fit")
    module = ForecastModule(model=cfg.model, model_hparams=cfg.model_hparams, fields=dm.fields,
                            in_frames=dm.in_frames, train_steps=dm.train_steps, rollout_steps=dm.rollout_steps,
                            test_splits=dm.test_splits, **cfg.module)
    run_dir = Path(run_dir)
    write_lightning_config(cfg, run_dir / "config.yaml")  # `symbench fit -c` repeats this run
    ckpt, save_last = checkpoint_callbacks(run_dir / "checkpoints")
    last = run_dir / "checkpoints" / "last.ckpt"
    stopping = [] if cfg.early_stopping_patience is None else [plateau.early_stopping(cfg.early_stopping_patience)]
    callbacks = [StopOnDivergence(plateau.MONITOR), *stopping, ckpt, save_last, *callbacks]
    trainer = make_trainer(cfg, default_root_dir=run_dir, callbacks=callbacks, logger=CSVLogger(run_dir, name="logs"),
                           enable_progress_bar=progress, enable_model_summary=False, num_sanity_val_steps=0)
    if not untrained.trainable(module):  # nothing to fit (a parameter-free baseline): test the module as it is
        path = untrained.write_checkpoint(module, run_dir / "checkpoints")
        return FittedRun(module, dm, trainer, str(path), float("nan"), 0.0, 0)
    best = latest_checkpoint((run_dir / "checkpoints").glob("best-*.ckpt")) if resume else None
    saved = load_checkpoint(last) if last.is_file() and best else None  # read once: the epoch and the best score
    if saved is not None and (finished_training(saved, trainer.max_epochs) or plateau.stopped_early(saved)):
        print(f"    already trained to epoch {int(saved['epoch']) + 1} in {run_dir}; using its best checkpoint",
              flush=True)
        state = next(v for k, v in saved["callbacks"].items() if k.startswith("ModelCheckpoint"))
        score = state.get("best_model_score")
        return FittedRun(module, dm, trainer, str(best), float("nan") if score is None else float(score), 0.0,
                         int(saved["epoch"]) + 1)
    previous = str(last) if resume and last.is_file() else None  # an interrupted run of this configuration
    if previous:
        print(f"    resuming from {last}", flush=True)
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm, ckpt_path=previous, weights_only=True)
    score = ckpt.best_model_score
    return FittedRun(module, dm, trainer, ckpt.best_model_path, float("nan") if score is None else float(score),
                     time.perf_counter() - start, trainer.current_epoch)


def run_one(cfg: RunConfig, runs_dir: str | Path = "runs", progress: bool = True,
            artifacts: str | Path | None = None, resume: bool = True) -> list[dict[str, Any]]:
    """Train (:func:`fit_run`), test the best validation checkpoint on every split; return leaderboard rows (on
    every DDP rank; the metrics are synced). With ``artifacts`` (a path), the test pass also saves the prediction
    artifacts there (spectra, snapshots; rank 0). Rank 0 alone holds the run directory's lock."""
    lock = run_lock(run_directory(cfg, runs_dir)) if hardware.is_rank_zero() else contextlib.nullcontext()
    with lock:
        fitted = fit_run(cfg, run_directory(cfg, runs_dir), progress, callbacks=_artifact_callbacks(cfg, artifacts),
                         resume=resume)
        module, dm, trainer = fitted.module, fitted.datamodule, fitted.trainer
        trainer.test(module, datamodule=dm, ckpt_path=fitted.best_path, verbose=False, weights_only=True)
    best_epoch = int(torch_load_epoch(fitted.best_path))
    facts = dm.describe()
    common = dict(
        benchmark=cfg.benchmark, dataset=facts.get("dataset", cfg.dataset), data_key=facts.get("data_key", ""),
        code_rev=code_revision(cfg.model, cfg.dataset), model=cfg.model, seed=cfg.seed,
        preset=cfg.preset, params=module.n_parameters(), train_seconds=round(fitted.train_seconds, 1),
        epochs=fitted.epochs, best_epoch=best_epoch, config_hash=cfg.config_hash(), **provenance(),
    )
    rows = []
    for split, res in module.test_results.items():
        rows.append({**common, "split": split, "metric": "rmse", "value": res["rmse"], "horizon": dm.rollout_steps})
        for key in (k for k in ("ese", "energy_l1") if k in res):
            rows.append({**common, "split": split, "metric": key, "value": res[key], "horizon": dm.rollout_steps})
        for key in (k for k in res if k.startswith(("eqerr_", "eqrel_"))):
            rows.append({**common, "split": split, "metric": key, "value": res[key], "horizon": 1})
        for step, value in enumerate(res["rmse_step"], start=1):
            rows.append({**common, "split": split, "metric": "rmse_step", "value": value, "horizon": step})
    return rows


def _artifact_callbacks(cfg: RunConfig, path: str | Path | None) -> list[Any]:
    """The :class:`~symbench.prediction_artifacts.PredictionArtifacts` callback writing ``path`` (none without)."""
    if path is None:
        return []
    meta = {"benchmark": cfg.benchmark, "model": cfg.model, "seed": cfg.seed, "preset": cfg.preset,
            "config_hash": cfg.config_hash()}
    return [PredictionArtifacts(path, meta)]


def has_artifacts(cfg: RunConfig, path: str | Path) -> bool:
    """True when ``path`` holds prediction artifacts of this very configuration."""
    meta = read_meta(path) if Path(path).is_file() else None
    return meta is not None and meta.get("config_hash") == cfg.config_hash()


def write_artifacts(cfg: RunConfig, path: str | Path, runs_dir: str | Path = "runs", progress: bool = True) -> Path:
    """Prediction artifacts of a finished run: a test pass of its best checkpoint on every split (no rows)."""
    import lightning as L

    from symbench.forecast import ForecastModule

    best = latest_checkpoint((run_directory(cfg, runs_dir) / "checkpoints").glob("best-*.ckpt"))
    if best is None:
        raise FileNotFoundError(f"no best checkpoint under {run_directory(cfg, runs_dir)}; run `symbench bench` first")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = datamodules.entry(cfg.dataset).datamodule_class()(**datamodule_args(cfg))
    module = ForecastModule.load_from_checkpoint(best, map_location="cpu", weights_only=True)
    trainer = make_trainer(cfg, default_root_dir=run_directory(cfg, runs_dir), callbacks=_artifact_callbacks(cfg, path),
                           logger=False, enable_checkpointing=False, enable_progress_bar=progress,
                           enable_model_summary=False)
    trainer.test(module, datamodule=dm, verbose=False)
    return Path(path)


def torch_load_epoch(path: str) -> int:
    """The epoch stored in a Lightning checkpoint."""
    return int(load_checkpoint(path)["epoch"])


def run_benchmark(name: str, preset: str = "cpu", model_names: Sequence[str] | None = None,
                  seeds: Sequence[int] | None = None, root: str | Path = "data", results_dir: str | Path = "results",
                  runs_dir: str | Path = "runs", overrides: dict[str, dict[str, Any]] | None = None,
                  progress: bool = True, rerun: bool = False, use_best: bool = True,
                  rerun_stale: bool = False, tf32: bool = False, width_factor: int = 1) -> list[dict[str, Any]]:
    """Run ``name`` at ``preset`` for every model and seed; rows are appended after each run (a crash keeps them).

    Resumable: a (model, seed) of a configuration that already has rows in ``runs.csv`` and a best checkpoint under
    ``runs_dir`` is skipped, and an interrupted one continues from its last checkpoint. ``rerun=True`` trains every
    pair from scratch (an earlier run directory is renamed, not deleted) and appends new rows. ``rerun_stale=True``
    trains only the pairs whose rows are all stale (:func:`is_stale`: from older code or settings) and skips the rest,
    e.g. after a model fix on a clone whose ``runs.csv`` came from another machine. ``width_factor`` multiplies every
    model's widths (about its square in parameters; give such runs their own ``results_dir``, since the leaderboard
    keys rows by preset and model).
    Under DDP only global rank 0 generates data and writes rows, tables and directories (``--rerun`` renames
    every earlier run directory before the first Trainer starts).
    """
    load_benchmark(name)
    names = list(model_names) if model_names else benchmark_models(name, preset)
    seeds = list(seeds) if seeds is not None else seeds_of(name, preset)
    configs = [resolve(name, preset, m, s, root, overrides, use_best, tf32, width_factor) for m in names
               for s in seeds]
    for cfg in configs:  # check all: impossible devices or a global batch that does not divide -> one line
        datamodule_args(cfg)
    writer = hardware.is_rank_zero()
    say = print if writer else (lambda *args, **kwargs: None)
    board = board_name(name, configs[0].data)  # a user's files: a leaderboard of their own
    check_writable(Path(results_dir) / board, "--results")  # before any simulation or training
    check_writable(runs_dir, "--runs")
    for m, best in ((m, best_config(name, m, preset)) for m in dict.fromkeys(c.model for c in configs) if use_best):
        if best:
            say(f"{m}: sweep's best configuration {best} (benchmarks/{name}/best/{m}.yaml; --no-best ignores it)",
                  flush=True)
    if configs[0].data.get("source", "generated") == "generated" and writer:  # reuses data of the same parameters
        datamodules.generate(configs[0].dataset, configs[0].data.get("preset", preset), root, progress=progress)
    if board != name:
        print(f"{name} on the files at {configs[0].data['path']}: dataset id {board[len(name) + 1:]}, rows in "
              f"{Path(results_dir) / board}", flush=True)
    csv_path, failed_path = Path(results_dir) / board / "runs.csv", Path(results_dir) / board / FAILED_FILE
    all_rows, failures = [], []
    previous = read_rows(csv_path) if csv_path.exists() and not rerun else []
    failed_before = read_rows(failed_path) if failed_path.exists() and not rerun else []
    for cfg in configs if rerun else ():
        _set_aside(run_directory(cfg, runs_dir))
    for i, cfg in enumerate(configs, start=1):
        say(f"[{i}/{len(configs)}] {name} preset={preset} model={cfg.model} seed={cfg.seed}", flush=True)
        if failed := _failure_of(cfg, failed_before):
            say(f"    failed before ({failed['reason']}; {failed_path}); skipped (--rerun tries again)", flush=True)
            failures.append(f"{cfg.model} seed {cfg.seed} ({failed['reason']})")
            continue
        if rerun_stale and not is_stale(cfg, previous):
            say(f"    no stale rows in {csv_path}; skipped (--rerun-stale retrains only those)", flush=True)
            continue
        if not rerun_stale and is_finished(cfg, previous, runs_dir):
            say(f"    already in {csv_path} (same configuration); skipped (--rerun trains it again)", flush=True)
            art = artifact_path(results_dir, board, cfg.preset, cfg.model, cfg.seed)
            if not has_artifacts(cfg, art):  # runs finished before artifacts existed: a test pass, no rows
                written = write_artifacts(cfg, art, runs_dir, progress)
                say(f"    wrote {written} (test pass of the best checkpoint; no rows appended)", flush=True)
            continue
        if rerun_stale:
            _set_aside(run_directory(cfg, runs_dir))
        try:
            art = artifact_path(results_dir, board, cfg.preset, cfg.model, cfg.seed)
            rows = run_one(cfg, runs_dir, progress, artifacts=art, resume=not (rerun or rerun_stale))
        except Diverged as err:  # recorded as failed, never as rows; the next run goes on
            if writer:
                append_rows(failed_path, [_failure_row(cfg, err)], FAILED_FIELDS)
            failures.append(f"{cfg.model} seed {cfg.seed} ({err})")
            say(f"    {err}; recorded in {failed_path}; going on with the next run", flush=True)
            continue
        all_rows += rows
        if not writer:
            continue
        append_rows(csv_path, rows)
        rmse = ", ".join(f"{r['split']} RMSE {r['value']:.4f}" for r in rows if r["metric"] == "rmse")
        print(f"    appended {len(rows)} rows to {csv_path} ({rmse}; {rows[0]['train_seconds']} s training)", flush=True)
    if csv_path.exists() and writer:
        written = write_leaderboard(board, results_dir, model_order=models.available())
        print("wrote " + ", ".join(str(p) for p in written))
    if failures:
        raise RunsFailed(f"{len(failures)} run(s) of {name} failed: {'; '.join(failures)}; recorded in {failed_path} "
                         f"(change the configuration, e.g. a lower learning rate, and rerun with --rerun)")
    return all_rows


def _failure_of(cfg: RunConfig, failed: Sequence[dict[str, str]]) -> dict[str, str] | None:
    """The ``failed_runs.csv`` row of ``cfg`` (same preset, model, seed and configuration hash), if any."""
    key = (cfg.preset, cfg.model, str(cfg.seed), cfg.config_hash())
    return next((r for r in failed if (r["preset"], r["model"], r["seed"], r["config_hash"]) == key), None)


def _failure_row(cfg: RunConfig, err: Diverged) -> dict[str, Any]:
    return dict(benchmark=cfg.benchmark, dataset=cfg.dataset, model=cfg.model, seed=cfg.seed, preset=cfg.preset,
                config_hash=cfg.config_hash(), step=err.step, reason=str(err), git_sha=git_describe(),
                timestamp=datetime.now(timezone.utc).isoformat(timespec="seconds"))
