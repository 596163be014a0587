"""``symbench fit|validate|test|predict``: LightningCLI over :class:`ForecastModule` and any registered datamodule.

The datamodule's field declaration, history length, horizons and test split names are linked into the model, so a
config names them once: ``symbench fit --data datamodules.rbc.RBCDataModule --data.preset tiny --model.model unet``.
Checkpoints keep the best validation rollout RMSE (``val/rmse``); test with ``--ckpt_path <best.ckpt>``.
"""

from __future__ import annotations

import warnings
from typing import Sequence

from lightning.pytorch.cli import LightningCLI

from datamodules.base import ForecastDataModule
from symbench.files import load_checkpoint
from symbench.forecast import ForecastModule
from symbench.last_checkpoint import checkpoint_callbacks

DEFAULT_DATA = "datamodules.rbc.RBCDataModule"


class SymbenchCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        for src, dst in [("fields", "fields"), ("test_splits", "test_splits")]:
            parser.link_arguments(f"data.{src}", f"model.{dst}", apply_on="instantiate")
        for name in ("in_frames", "train_steps", "rollout_steps"):
            parser.link_arguments(f"data.init_args.{name}", f"model.{name}")
        if "weights_only" in {a.dest for a in parser._actions}:  # our checkpoints hold plain types only
            parser.set_defaults({"weights_only": True})


def check_checkpoint_argument(argv: Sequence[str]) -> None:
    """Read the file given as ``--ckpt_path`` once before anything is built: an empty, truncated or foreign file
    is one error naming it (Lightning's own message is a long traceback)."""
    for i, arg in enumerate(argv):
        value = argv[i + 1] if arg == "--ckpt_path" and i + 1 < len(argv) else arg.partition("=")[2] \
            if arg.startswith("--ckpt_path=") else None
        if value and value not in ("best", "last", "hpc", "registry", "null", "None"):
            load_checkpoint(value)


def with_default_data(argv: Sequence[str]) -> list[str]:
    """``argv`` with ``--data DEFAULT_DATA`` after the subcommand when it names no datamodule class and no config
    file. Not a parser default: when a later ``--data``/config names another class, jsonargparse keeps the default
    class's init_args that the new class shares (its test splits, fractions, horizon) instead of the new class's own
    defaults."""
    argv = list(argv)
    names_class = any(a in ("--data", "--data.class_path", "-c", "--config")
                      or a.startswith(("--data=", "--data.class_path=", "--config=")) for a in argv)
    return argv if names_class or not argv else [argv[0], "--data", DEFAULT_DATA, *argv[1:]]


def run_lightning_cli(argv: Sequence[str]) -> SymbenchCLI:
    check_checkpoint_argument(argv)
    argv = with_default_data(argv)
    with warnings.catch_warnings():  # `symbench fit ...` hands its own sys.argv over as args: not a mistake
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        return SymbenchCLI(ForecastModule, ForecastDataModule, subclass_mode_data=True, args=list(argv),
                           trainer_defaults={"callbacks": list(checkpoint_callbacks()), "num_sanity_val_steps": 0},
                           save_config_kwargs={"overwrite": True}, parser_kwargs={"exit_on_error": False})
