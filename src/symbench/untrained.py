"""Models with nothing to train (the parameter-free baselines): ``symbench bench`` tests them without fitting.

Whether a model trains is read from the model itself (:func:`trainable`: any parameter with ``requires_grad``),
never from its name. Such a run does no epoch (``epochs = 0``, ``best_epoch = -1``: no epoch was trained), and its
"best checkpoint" is the untrained module written by :func:`write_checkpoint`, so testing, resuming and prediction
artifacts take the same path as for a trained model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

UNTRAINED_EPOCH = -1  # the best_epoch of a run that trained no epoch
CHECKPOINT_NAME = "best-untrained.ckpt"  # matches the best-*.ckpt pattern of trained runs


def trainable(module: Any) -> bool:
    """True when ``module`` has a parameter that an optimiser would update."""
    return any(p.requires_grad for p in module.parameters())


def write_checkpoint(module: Any, directory: str | Path) -> Path:
    """Write ``module`` (its hyperparameters and state) as ``<directory>/best-untrained.ckpt`` at epoch -1, a
    checkpoint that ``Trainer.test(ckpt_path=...)`` and ``load_from_checkpoint`` read like a trained one."""
    import io

    import lightning as L
    import torch

    from symbench.results import atomic_write

    state = {"epoch": UNTRAINED_EPOCH, "global_step": 0, "pytorch-lightning_version": L.__version__,
             "state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams), "callbacks": {}}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return atomic_write(Path(directory) / CHECKPOINT_NAME, lambda f: f.write(buffer.getvalue()))
