"""The studies' presets live in benchmarks/<study>/benchmark.yaml and equal the Python dicts they replaced (copied
here once, as they were in the study modules before the move); a bad key is one line naming the file and key."""

from __future__ import annotations

import pytest

from symbench.config import ConfigError, available_benchmarks, resolve
from symbench.studies.common import study_presets
from symbench.studies.digits.run import DigitsTraining
from symbench.studies.digits.run import training_presets as digits_presets
from symbench.studies.levels import LevelsTraining
from symbench.studies.levels import training_presets as levels_presets
from symbench.studies.nbody.run import NBodyTraining
from symbench.studies.nbody.run import training_presets as nbody_presets
from symbench.studies.sr3d.model import SRArch
from symbench.studies.sr3d.run import SRTraining
from symbench.studies.sr3d.run import training_presets as sr3d_presets

OLD = {
    "nbody": (nbody_presets, {
        "paper": NBodyTraining(epochs=10_000),
        "cpu": NBodyTraining(epochs=40),
        "tiny": NBodyTraining(epochs=2, seeds=(0, 1)),
    }),
    "digits": (digits_presets, {
        "paper": DigitsTraining(width=32, steps=40_000, lr=5e-5, evals=40, seeds=(0, 1, 2)),
        "cpu": DigitsTraining(width=12, steps=160, lr=2e-3),
        "tiny": DigitsTraining(width=4, steps=2, lr=1e-3, min_epochs=1, evals=1, scalars=4, kernel=3),
    }),
    "levels": (levels_presets, {
        "tiny": LevelsTraining(width=8, test_frames=3, epochs=2, batch_size=8, seeds=(0,)),
        "cpu": LevelsTraining(),  # seeds 0, 1, 2 (issue 21: committed cpu tables with >= 3 seeds)
        "paper": LevelsTraining(width=64, kernel_size=5, epochs=100, seeds=(0, 1, 2, 3, 4)),
    }),
    "sr3d": (sr3d_presets, {
        "tiny": SRTraining(SRArch(fields=1, layers=(1,)), steps=2, lr=1e-3, group_lr=1e-3, batch_size=2, evals=1),
        "cpu": SRTraining(SRArch(fields=2, layers=(3, 1)), steps=400, lr=2e-3, group_lr=5e-4, batch_size=4, evals=8),
        "paper": SRTraining(SRArch(fields=8, layers=(4, 2)), steps=20_000, lr=5e-4, group_lr=1e-4, batch_size=8,
                            evals=40, seeds=(0, 1, 2), weight_decay=4e-4),
    }),
}


@pytest.mark.parametrize("study", sorted(OLD))
def test_yaml_presets_equal_the_old_dicts(study: str) -> None:
    load, old = OLD[study]
    new = load()
    assert new == old
    assert all(type(a) is type(b) for r in new for a, b in zip(vars(new[r]).values(), vars(old[r]).values()))


def test_studies_are_not_leaderboard_benchmarks() -> None:
    assert not set(OLD) & set(available_benchmarks())
    with pytest.raises(ConfigError, match="is a study"):
        resolve("nbody", "tiny", "resnet", 0)


def test_bad_preset_key_is_one_line(tmp_path, monkeypatch) -> None:
    (tmp_path / "nbody").mkdir()
    (tmp_path / "nbody" / "benchmark.yaml").write_text("study: true\npresets:\n  tiny: {epochs: 2, epoch: 3}\n")
    monkeypatch.setenv("SYMBENCH_BENCHMARKS", str(tmp_path))
    with pytest.raises(ConfigError, match=r"benchmarks/nbody/benchmark.yaml preset 'tiny': unknown key 'epoch'") as e:
        study_presets("nbody", NBodyTraining)
    assert "\n" not in str(e.value)
