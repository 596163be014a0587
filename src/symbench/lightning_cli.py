"""``symbench fit|validate|test|predict``: LightningCLI over :class:`ForecastModule` and any registered datamodule.

The datamodule's field declaration, history length, horizons and test split names are linked into the model, so a
config names them once: ``symbench fit --data datamodules.rbc.RBCDataModule --data.preset tiny --model.model unet``.
Checkpoints keep the best validation rollout RMSE (``val/rmse``); test with ``--ckpt_path <best.ckpt>``.
"""

from __future__ import annotations

from typing import Sequence

from lightning.pytorch.cli import LightningCLI

from datamodules.base import ForecastDataModule
from symbench.forecast import ForecastModule
from symbench.last_checkpoint import checkpoint_callbacks


class SymbenchCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        for src, dst in [("fields", "fields"), ("test_splits", "test_splits")]:
            parser.link_arguments(f"data.{src}", f"model.{dst}", apply_on="instantiate")
        for name in ("in_frames", "train_steps", "rollout_steps"):
            parser.link_arguments(f"data.init_args.{name}", f"model.{name}")
        parser.set_defaults({"data": {"class_path": "datamodules.rbc.RBCDataModule"}})


def run_lightning_cli(argv: Sequence[str]) -> SymbenchCLI:
    return SymbenchCLI(ForecastModule, ForecastDataModule, subclass_mode_data=True, args=list(argv),
                       trainer_defaults={"callbacks": list(checkpoint_callbacks()), "num_sanity_val_steps": 0},
                       save_config_kwargs={"overwrite": True}, parser_kwargs={"exit_on_error": False})
