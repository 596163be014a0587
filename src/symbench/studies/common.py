"""What every study shares: its presets from ``benchmarks/<study>/benchmark.yaml`` (:func:`study_presets`), the one
Trainer factory, fit-then-test-the-best-checkpoint, and the seed mean / spread.

Trainer settings (``accelerator``, ``devices``, ``num_nodes``, ``strategy``, ``precision``) come from the study's
preset or the command line (:func:`add_trainer_arguments`, :func:`trainer_settings`), never from a literal in a
study. The defaults (:data:`TRAINER_DEFAULTS`) run on one device of whatever accelerator is present; on a CPU-only
machine that is exactly the former ``accelerator="cpu", devices=1``. Float32 stays full float32 on GPUs (TF32 off,
:func:`symbench.hardware.set_float32_precision`), so equivariance errors sit at float32 round-off there too.

Under DDP (``--devices N --strategy ddp``, torchrun, SLURM) every process runs the whole study, as Lightning's
launchers require, with the same seeds and data. What differs by rank:

* **writing**: only global rank 0 writes results: every study writes its rows, tables, plots and resume records
  through :func:`write_rows`, :func:`write_text`, :func:`write_figure` and :func:`write_records`, which do nothing
  on the other ranks, so each exists once whatever the number of processes (every rank still *reads* the same
  results, so resume decisions agree);
* **batches**: a preset's ``batch_size`` is the global batch, divided over the processes
  (``hardware_of(settings).per_device_batch``, the rule of :mod:`symbench.hardware`); evaluation loaders shard
  without padding (:mod:`datamodules.sharding`), so test metrics equal a single process's;
* **checkpoints**: :func:`fit_test_best` reads the best checkpoint on rank 0 and broadcasts its weights, so no rank
  reads a file that only rank 0's node holds;
* **provenance**: a row's ``config_hash`` includes the resolved device options where they differ from one CPU
  process in float32 (:func:`study_config_hash`), as ``bench`` rows do.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from symbench.config import ConfigError, hash_config, load_benchmark
from symbench.files import load_checkpoint
from symbench.hardware import Hardware, is_rank_zero, resolve, set_float32_precision
from symbench.results import ROW_FIELDS, append_rows, atomic_write_text
from symbench.results import write_records as _write_records

R = TypeVar("R")

TRAINER_DEFAULTS: dict[str, Any] = {"accelerator": "auto", "devices": 1, "num_nodes": 1, "strategy": "auto",
                                    "precision": "32-true"}


def add_experiment_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """The options every paper experiment shares: --preset, --root, --results, --no-progress and the Trainer's
    hardware (:func:`add_trainer_arguments`)."""
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--root", default="data", help="data root directory (default: data)")
    parser.add_argument("--results", default="results", help=f"results directory (writes <results>/{name}/)")
    parser.add_argument("--no-progress", action="store_true")
    add_trainer_arguments(parser)


def check_preset(preset: str, presets: Mapping[str, Any]) -> None:
    """One-line ``ValueError`` for a preset the study does not have."""
    if preset not in presets:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(sorted(presets))}")


def study_presets(study: str, record_type: type[R]) -> dict[str, R]:
    """The presets of ``benchmarks/<study>/benchmark.yaml`` (``study: true``; ``presets: {name: {field: value}}``),
    each as a ``record_type`` dataclass: a field left out keeps the dataclass default, a YAML list becomes a tuple,
    a mapping for a tuple field its ``(key, value)`` pairs, a mapping for a dataclass field that dataclass. Presets
    change sizes, never code. Raises :class:`ConfigError` (one line naming the file and key) for an unknown key."""
    doc = load_benchmark(study)
    where = f"benchmarks/{study}/benchmark.yaml"
    if not doc.get("study") or not isinstance(doc.get("presets"), dict):
        raise ConfigError(f"{where} must have 'study: true' and a 'presets' mapping")
    return {name: _record(record_type, values or {}, f"{where} preset {name!r}")
            for name, values in doc["presets"].items()}


def _record(record_type: type[R], values: Mapping[str, Any], where: str) -> R:
    hints = typing.get_type_hints(record_type)
    names = {f.name for f in dataclasses.fields(record_type)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(sorted(names))}")
    try:
        return record_type(**{k: _value(hints[k], v, f"{where} {k}") for k, v in values.items()})
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from None


def _value(hint: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        return _record(hint, value, where)
    if typing.get_origin(hint) is tuple:
        items = list(value.items()) if isinstance(value, Mapping) else value
        inner = typing.get_args(hint)[0] if typing.get_args(hint) else Any
        return tuple(_value(inner, item, where) for item in items)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


# Columns a study may leave out of its rows: empty (no epochs, no horizon; no registry model and dataset to take a
# data key or code revision from) or filled now (provenance).
_OPTIONAL = ("horizon", "train_seconds", "epochs", "best_epoch", "data_key", "code_rev")


def study_config_hash(*configs: Any, hardware: Hardware | None = None) -> str:
    """The ``config_hash`` of a study run: :func:`~symbench.config.hash_config` of its dataclass configurations
    (training preset, data sizes, ...), so rows of the same sizes share it, plus ``hardware``'s device options where
    they differ from one CPU process in float32 (:meth:`~symbench.hardware.Hardware.hashed`; single-CPU hashes are
    those of earlier versions)."""
    doc: dict[str, Any] = {"configs": [dataclasses.asdict(c) if dataclasses.is_dataclass(c) else c for c in configs]}
    if hardware is not None and hardware.hashed():
        doc["hardware"] = hardware.hashed()
    return hash_config(doc)


def study_rows(study: str, rows: Sequence[Mapping[str, Any]],
               provenance: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """``rows`` completed to the ``runs.csv`` schema (:data:`symbench.results.ROW_FIELDS`): ``benchmark`` is the
    study, :data:`_OPTIONAL` columns left out are empty, ``git_sha`` / ``versions`` / ``timestamp`` come from
    ``provenance`` (default: now, :func:`symbench.bench.provenance`) unless a row has them. A row with a column
    outside the schema raises ``ValueError`` naming it."""
    from symbench.bench import provenance as now

    prov = dict(provenance) if provenance is not None else now()
    out = []
    for row in rows:
        unknown = sorted(set(row) - set(ROW_FIELDS))
        if unknown:
            raise ValueError(f"{study} row has columns outside runs.csv's: {', '.join(unknown)}")
        out.append({**dict.fromkeys(_OPTIONAL, ""), **prov, **row, "benchmark": study})
    return out


def append_study_rows(results: str | Path, study: str, rows: Sequence[Mapping[str, Any]],
                      provenance: Mapping[str, str] | None = None) -> Path:
    """Append ``rows`` (:func:`study_rows`) to ``<results>/<study>/runs.csv``, the leaderboard's schema, so
    ``symbench leaderboard --benchmark <study>`` and the interval / provenance tools read them. The one place a
    study writes ``runs.csv`` rows (:func:`write_rows`)."""
    return write_rows(Path(results) / study / "runs.csv", study_rows(study, rows, provenance))


def write_rows(path: str | Path, rows: Sequence[Mapping[str, Any]], fields: Sequence[str] = ROW_FIELDS) -> Path:
    """Append complete ``rows`` with columns ``fields`` to the CSV at ``path`` (:func:`symbench.results.append_rows`:
    locked, atomic, rows of other columns refused) on global rank 0 only. Every study's result rows go through here
    (the alpha sweep's ``alpha_sweep.csv`` too)."""
    if is_rank_zero():
        append_rows(path, rows, fields)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """A study's table or report, written atomically (:func:`symbench.results.atomic_write_text`) on rank 0 only."""
    if is_rank_zero():
        atomic_write_text(Path(path), text)
    return Path(path)


def write_figure(fig: Any, path: str | Path) -> Path:
    """A study's plot (a :func:`symbench.plots.new_figure`) saved by :func:`symbench.plots.save_figure` on rank 0
    only."""
    from symbench.plots import save_figure

    return save_figure(fig, Path(path)) if is_rank_zero() else Path(path)


def write_records(path: str | Path, records: Sequence[Any]) -> Path:
    """A resuming study's per-run records (:func:`symbench.results.write_records`) on rank 0 only."""
    if is_rank_zero():
        _write_records(path, records)
    return Path(path)


def hardware_of(settings: Mapping[str, Any] | None) -> Hardware:
    """The resolved device options (:func:`symbench.hardware.resolve`) of a study's trainer ``settings``; bad values
    raise one-line ``ValueError``\\ s."""
    return resolve(dict(settings or {}))


def add_trainer_arguments(parser: argparse.ArgumentParser) -> None:
    """``--accelerator``, ``--devices``, ``--num-nodes``, ``--strategy``, ``--precision`` (each overrides the
    preset's; absent: the preset's or :data:`TRAINER_DEFAULTS`)."""
    group = parser.add_argument_group("trainer (override the preset's)")
    group.add_argument("--accelerator", help="cpu, gpu, auto, ... (default: auto, one device)")
    group.add_argument("--devices", help="devices per node, e.g. 1, 4, auto (default: 1)")
    group.add_argument("--num-nodes", type=int, help="nodes (default: 1)")
    group.add_argument("--strategy", help="e.g. ddp (default: auto)")
    group.add_argument("--precision", help="e.g. 32-true, bf16-mixed (default: 32-true)")


def _devices(value: Any) -> Any:
    """``"4"`` -> 4; ``"auto"`` or a list such as ``"0,1"`` stay as Lightning reads them."""
    return int(value) if isinstance(value, str) and value.isdigit() else value


def trainer_settings(args: argparse.Namespace | None = None,
                     preset: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The preset's ``trainer`` settings overridden by the command line's (:func:`add_trainer_arguments`)."""
    settings = dict(preset or {})
    if args is not None:
        cli = {"accelerator": getattr(args, "accelerator", None), "devices": getattr(args, "devices", None),
               "num_nodes": getattr(args, "num_nodes", None), "strategy": getattr(args, "strategy", None),
               "precision": getattr(args, "precision", None)}
        settings.update({k: v for k, v in cli.items() if v is not None})
    if "devices" in settings:
        settings["devices"] = _devices(settings["devices"])
    return settings


def make_trainer(settings: Mapping[str, Any] | None = None, **kwargs: Any) -> L.Trainer:
    """The Trainer of every study: :data:`TRAINER_DEFAULTS`, then ``settings`` (preset / command line), then the
    study's own ``kwargs`` (epochs, steps, callbacks, ...), which never name the hardware."""
    clash = sorted(set(kwargs) & set(TRAINER_DEFAULTS))
    if clash:
        raise TypeError(f"make_trainer: pass {', '.join(clash)} in settings (preset or command line)")
    set_float32_precision(False)
    return L.Trainer(**{**TRAINER_DEFAULTS, **(settings or {}), **kwargs})


@dataclass(frozen=True)
class BestFit:
    """What a :func:`fit_test_best` run measured: the test metrics of the best checkpoint, its validation score
    and the optimiser step at which it was saved."""

    test: dict[str, float]
    best_score: float
    best_step: int


def fit_test_best(module: L.LightningModule, datamodule: L.LightningDataModule, steps: int, evals: int,
                  monitor: str, show_progress: bool = False,
                  trainer: Mapping[str, Any] | None = None) -> BestFit:
    """Train ``module`` for ``steps`` steps, validating every ``steps // evals`` steps, keep the checkpoint with the
    lowest ``monitor`` in a temporary folder and test it (never the live model: the ICLR 2021 and ICML 2022
    reference code, Rose-STL-Lab's repositories, tested whatever the last epoch left). The module's weights are
    those of that checkpoint afterwards. ``trainer``: the hardware settings (:func:`make_trainer`).

    Under DDP only rank 0 writes the checkpoint (into rank 0's folder, which Lightning broadcasts); rank 0 reads it
    and broadcasts its weights, step and score, and every rank tests those weights."""
    with tempfile.TemporaryDirectory(prefix="symbench-fit-") as tmp:
        best = ModelCheckpoint(dirpath=tmp, monitor=monitor, mode="min", save_top_k=1, filename="best")
        fit = make_trainer(trainer, max_steps=steps, val_check_interval=max(1, steps // max(1, evals)),
                           check_val_every_n_epoch=None, num_sanity_val_steps=0, logger=False, callbacks=[best],
                           enable_progress_bar=show_progress, enable_model_summary=False, deterministic=True)
        fit.fit(module, datamodule=datamodule)
        saved = None
        if fit.is_global_zero:
            ckpt = load_checkpoint(best.best_model_path)
            saved = (ckpt["state_dict"], int(ckpt["global_step"]), float(best.best_model_score))
        state, best_step, best_score = fit.strategy.broadcast(saved, src=0)
        module.load_state_dict(state)
        test = fit.test(module, datamodule=datamodule, verbose=False)[0]
        fit.strategy.barrier("symbench-fit-test-best")  # rank 0 removes its folder only after every rank is done
    return BestFit({k: float(v) for k, v in test.items()}, best_score, best_step)
