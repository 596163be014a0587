"""`symbench fit|validate|test` keep every datamodule's own defaults (test splits, split fractions, rollout horizon):
``--print_config`` shows the class's values, whichever class was named and however (flag or config file)."""

from __future__ import annotations

import pytest
import yaml

import datamodules
from symbench.lightning_cli import run_lightning_cli

KEYS = ("test_splits", "split_fractions", "rollout_steps")


def printed_data(argv: list[str], capsys) -> dict:
    with pytest.raises(SystemExit):
        run_lightning_cli(argv + ["--print_config"])
    return yaml.safe_load(capsys.readouterr().out)["data"]


@pytest.mark.parametrize("dataset", ["ocean", "jetflow", "smoke-rotation", "heat", "rbc"])
def test_print_config_shows_the_datamodule_defaults(dataset, capsys, tmp_path):
    cls = datamodules.entry(dataset).datamodule_class()
    path = f"{cls.__module__}.{cls.__name__}"
    own = cls()
    expected = {"test_splits": list(own.test_splits), "split_fractions": list(own.split_fractions),
                "rollout_steps": own.rollout_steps}
    data = printed_data(["fit", "--model.model", "unet", "--data", path], capsys)
    assert data["class_path"] == path and {k: data["init_args"][k] for k in KEYS} == expected
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"model": {"model": "unet"}, "data": {"class_path": path}}))
    data = printed_data(["test", "-c", str(config)], capsys)
    assert {k: data["init_args"][k] for k in KEYS} == expected


def test_the_default_datamodule_is_rbc(capsys):
    data = printed_data(["validate", "--model.model", "unet", "--data.preset", "tiny"], capsys)
    assert data["class_path"] == "datamodules.rbc.RBCDataModule" and data["init_args"]["preset"] == "tiny"
