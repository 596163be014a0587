"""The checkpoint policy of every forecasting run (:func:`checkpoint_callbacks`): keep the best validation rollout
RMSE, and ``last.ckpt`` after every validation, the training state to resume from.

Lightning 2.6's ``ModelCheckpoint(save_last=True)`` only copies a checkpoint to ``last.ckpt`` when it writes a new
best one, so resuming from it restarts at the best epoch and trains every later epoch again (and a finished run
handed back to ``Trainer.fit`` retrains its tail, which can replace its best checkpoint). :class:`SaveLast` writes
the full state after every validation instead, through a temporary file and a rename.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint

from symbench.plateau import MONITOR


class SaveLast(Checkpoint):
    """Write ``<dirpath>/last.ckpt`` after every validation (not the sanity check). ``dirpath`` defaults to the
    Trainer's best-checkpoint callback's directory. A ``Checkpoint`` subclass: Lightning runs checkpoint callbacks
    last, in the order given, so placed after the best-checkpoint callback the saved state already knows this
    epoch's best."""

    def __init__(self, dirpath: str | Path | None = None) -> None:
        super().__init__()
        self.dirpath = None if dirpath is None else Path(dirpath)

    def path(self, trainer: Any) -> Path:
        directory = self.dirpath or Path(trainer.checkpoint_callback.dirpath)
        return directory / "last.ckpt"

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        path = self.path(trainer)
        tmp = path.with_name(f".{path.name}.tmp")
        trainer.save_checkpoint(tmp)
        if trainer.is_global_zero:
            os.replace(tmp, path)


def checkpoint_callbacks(dirpath: str | Path | None = None) -> tuple[ModelCheckpoint, SaveLast]:
    """``best-{epoch}.ckpt`` of the lowest validation rollout RMSE (:data:`~symbench.plateau.MONITOR`, one kept)
    and :class:`SaveLast`, in that order, writing to ``dirpath`` (None: the Trainer's checkpoint directory)."""
    best = ModelCheckpoint(dirpath=dirpath, filename="best-{epoch}", monitor=MONITOR, mode="min", save_top_k=1)
    return best, SaveLast(dirpath)
