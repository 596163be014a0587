"""The studies' shared Trainer factory: hardware from the preset and the command line, never a literal; the CPU
default is the former ``accelerator="cpu", devices=1``; one mean/std helper."""

from __future__ import annotations


import lightning as L
import pytest

from symbench import cli
from symbench.studies import common

STUDIES = ("nbody", "digits", "sr3d", "levels", "strength", "discover")


class _Stop(Exception):
    pass


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict:
    """Replace ``lightning.Trainer`` by a recorder of its keyword arguments."""
    seen: dict = {}

    def fake_trainer(**kwargs):
        seen.update(kwargs)
        return kwargs

    monkeypatch.setattr(L, "Trainer", fake_trainer)
    return seen


def test_cpu_default_is_the_former_literal() -> None:
    ours = common.make_trainer(None, logger=False, enable_progress_bar=False, enable_model_summary=False)
    former = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                       enable_model_summary=False)
    assert type(ours.accelerator) is type(former.accelerator)
    assert ours.num_devices == former.num_devices == 1
    assert type(ours.strategy) is type(former.strategy)
    assert ours.precision == former.precision


@pytest.mark.parametrize("study", STUDIES)
def test_cli_hardware_reaches_the_trainer(study: str, captured: dict) -> None:
    args = cli._parser(study).parse_args([study, "--accelerator", "gpu", "--devices", "4", "--num-nodes", "2",
                                     "--strategy", "ddp", "--precision", "bf16-mixed"])
    common.make_trainer(common.trainer_settings(args), max_epochs=3)
    assert {k: captured[k] for k in common.TRAINER_DEFAULTS} == {
        "accelerator": "gpu", "devices": 4, "num_nodes": 2, "strategy": "ddp", "precision": "bf16-mixed"}
    assert captured["max_epochs"] == 3


def test_command_line_overrides_the_preset(captured: dict) -> None:
    args = cli._parser("nbody").parse_args(["nbody", "--devices", "2"])
    settings = common.trainer_settings(args, {"devices": 8, "strategy": "ddp", "num_nodes": 4})
    common.make_trainer(settings)
    assert (captured["devices"], captured["strategy"], captured["num_nodes"]) == (2, "ddp", 4)
    assert captured["accelerator"] == "auto"


def test_a_study_cannot_name_the_hardware() -> None:
    with pytest.raises(TypeError, match="accelerator"):
        common.make_trainer(None, accelerator="cpu")


def test_every_study_has_the_common_entry_points() -> None:
    from symbench.studies import STUDIES

    assert len({s.command for s in STUDIES}) == len(STUDIES) == 7
    for study in STUDIES:
        module = study.load()
        assert callable(module.add_arguments) and callable(module.run), study.module
