"""Stop a run at the first non-finite training loss or validation metric: a diverged run is recorded as failed,
never as leaderboard rows.

:class:`StopOnDivergence` raises :class:`Diverged` from inside ``Trainer.fit``; Lightning ends the fit there, before
the checkpoint callbacks of that validation run, so the run directory keeps the last finite state.
"""

from __future__ import annotations

import math
from typing import Any

from lightning.pytorch.callbacks import Callback

from symbench.results import Diverged


class StopOnDivergence(Callback):
    """Raise :class:`Diverged` after a training batch whose loss, or a validation whose ``monitor``, is not
    finite."""

    def __init__(self, monitor: str = "val/rmse") -> None:
        self.monitor = monitor

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None and not math.isfinite(float(loss)):
            raise Diverged("train/loss", float(loss), trainer.global_step)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if not trainer.sanity_checking and value is not None and not math.isfinite(float(value)):
            raise Diverged(self.monitor, float(value), trainer.global_step)
