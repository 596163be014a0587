"""Training to a plateau: early stopping on the validation rollout RMSE under the preset's ``max_epochs`` cap.

A preset's ``early_stopping_patience: N`` (N >= 1) stops a run once ``val/rmse`` has not improved for N validations;
without it a run trains all ``max_epochs``. A run whose best epoch is its last one (it stopped at the cap while
still improving) may be under-trained: :func:`under_trained` says so and the leaderboard flags it.
"""

from __future__ import annotations

from typing import Any

MONITOR = "val/rmse"


def early_stopping(patience: int) -> Any:
    """Lightning's ``EarlyStopping`` on :data:`MONITOR` (lower is better). Non-finite values are left to the
    divergence check. It decides after each validation (not at the end of the training epoch), before the checkpoint
    callbacks run, so ``last.ckpt`` records that the run stopped and a second call does not train on."""
    from lightning.pytorch.callbacks import EarlyStopping

    return EarlyStopping(monitor=MONITOR, mode="min", patience=patience, check_finite=False,
                         check_on_train_epoch_end=False)


def stopped_early(checkpoint: dict[str, Any]) -> bool:
    """True when ``checkpoint`` (a Lightning checkpoint dict) was written after early stopping ended the run."""
    return any(key.startswith("EarlyStopping") and int(state.get("stopped_epoch", 0)) > 0
               for key, state in checkpoint.get("callbacks", {}).items())


def under_trained(epochs: int, best_epoch: int) -> bool:
    """True when a run that trained ``epochs`` epochs (0-based ``best_epoch``) had its best at the last one."""
    return epochs > 0 and best_epoch == epochs - 1
