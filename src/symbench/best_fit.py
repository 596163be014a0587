"""Fit for a fixed number of optimiser steps and test the checkpoint of lowest validation score.

The studies outside the leaderboard benchmarks (digits, 3D super-resolution) train many small models; each run validates
``evals`` times, keeps the best checkpoint in a temporary folder (never the live model: the ICLR 2021 and ICML 2022
code, Rose-STL-Lab/Equivariant-Net and Rose-STL-Lab/Approximately-Equivariant-Nets, tested whatever the last epoch left)
and tests it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint


@dataclass(frozen=True)
class BestFit:
    """What a :func:`fit_test_best` run measured: the test metrics of the best checkpoint, its validation score
    and the optimiser step at which it was saved."""

    test: dict[str, float]
    best_score: float
    best_step: int


def fit_test_best(module: L.LightningModule, datamodule: L.LightningDataModule, steps: int, evals: int,
                  monitor: str, show_progress: bool = False) -> BestFit:
    """Train ``module`` for ``steps`` steps on CPU, validating every ``steps // evals`` steps, then test the
    checkpoint with the lowest ``monitor`` (the module's weights are those of that checkpoint afterwards)."""
    with tempfile.TemporaryDirectory(prefix="symbench-fit-") as tmp:
        best = ModelCheckpoint(dirpath=tmp, monitor=monitor, mode="min", save_top_k=1, filename="best")
        trainer = L.Trainer(max_steps=steps, val_check_interval=max(1, steps // max(1, evals)),
                            check_val_every_n_epoch=None, num_sanity_val_steps=0, accelerator="cpu", devices=1,
                            logger=False, callbacks=[best], enable_progress_bar=show_progress,
                            enable_model_summary=False, deterministic=True)
        trainer.fit(module, datamodule=datamodule)
        best_step = int(torch.load(best.best_model_path, map_location="cpu", weights_only=False)["global_step"])
        test = trainer.test(module, datamodule=datamodule, ckpt_path=best.best_model_path, verbose=False)[0]
    return BestFit({k: float(v) for k, v in test.items()}, float(best.best_model_score), best_step)
