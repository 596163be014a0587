"""A bench run's resolved configuration as a LightningCLI ``config.yaml``: ``symbench fit -c <file>`` trains the same
model on the same data with the same optimiser, Trainer and seed.

Sections: ``seed_everything``; ``trainer`` (the run's Trainer arguments, CPU unless the preset says otherwise, and the
early-stopping callback of a preset with ``early_stopping_patience``);
``model`` (:class:`~symbench.forecast.ForecastModule`'s registry name, model hyperparameters and module arguments;
the field declaration, history and horizons are linked from the datamodule by :mod:`symbench.lightning_cli`);
``data`` (the datamodule's ``class_path`` and every resolved ``init_args``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

import datamodules
from symbench import plateau
from symbench.config import RunConfig
from symbench.results import atomic_write_text


def _plain(value: Any) -> Any:
    """Tuples -> lists, paths -> text: what YAML's safe dumper and jsonargparse both read."""
    return json.loads(json.dumps(value, default=str))


def lightning_config(cfg: RunConfig) -> dict[str, Any]:
    """The LightningCLI configuration of ``cfg`` (see the module docstring)."""
    cls = datamodules.entry(cfg.dataset).datamodule_class()
    trainer: dict[str, Any] = {"accelerator": "cpu", "devices": 1, **cfg.trainer}
    if cfg.early_stopping_patience is not None:  # the same callback as symbench.plateau.early_stopping
        trainer["callbacks"] = [{"class_path": "lightning.pytorch.callbacks.EarlyStopping", "init_args": {
            "monitor": plateau.MONITOR, "mode": "min", "patience": cfg.early_stopping_patience,
            "check_finite": False, "check_on_train_epoch_end": False}}]
    return _plain({
        "seed_everything": cfg.seed,
        "trainer": trainer,
        "model": {"model": cfg.model, "model_hparams": cfg.model_hparams, **cfg.module},
        "data": {"class_path": f"{cls.__module__}.{cls.__name__}", "init_args": cfg.data},
    })


def write_lightning_config(cfg: RunConfig, path: str | Path) -> Path:
    """Write :func:`lightning_config` to ``path`` (atomically) with a header naming the run; returns the path."""
    path = Path(path)
    header = (f"# symbench bench {cfg.benchmark} --preset {cfg.preset} --models {cfg.model} --seeds {cfg.seed} "
              f"(configuration {cfg.config_hash()}); repeat with `symbench fit -c {path.name}`\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, header + yaml.safe_dump(lightning_config(cfg), sort_keys=False))
    return path
