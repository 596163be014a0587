"""Models from outside symbench (issue 28): a package written into a temporary directory, used by reference
(``ownmodels.nets:C4Net``) and by entry point (``own_c4``) in bench, leaderboard, sweep, ``symbench models`` and
``symbench check-model``; bad references end in one line."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from own_package import write_distribution, write_package
from symbench import cli, models
from symbench.config import benchmark_models, resolve
from symbench.conformance import ROUND_OFF
from symbench.fields import VELOCITY_2D
from symbench.forecast import ForecastModule
from symbench.results import read_rows
from symbench.sweep.queue import open_storage
from symbench.sweep.run import SweepSpec, open_study, summarize, work

REPO = Path(__file__).resolve().parents[1]
REF, PLUGIN = "ownmodels.nets:C4Net", "own_c4"
LABELS = {REF: f"{REF}@0.3.0", PLUGIN: f"{PLUGIN}@0.3.0"}


def _forget_package() -> None:
    for name in [m for m in sys.modules if m == "ownmodels" or m.startswith("ownmodels.")]:
        del sys.modules[name]
    importlib.invalidate_caches()


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    """The package on sys.path (and PYTHONPATH, for sweep workers) and a copy of benchmarks/rbc whose tiny preset
    gives the reference its own width (a preset key that is a reference)."""
    root = write_package(tmp_path_factory.mktemp("site"))
    benchmarks = tmp_path_factory.mktemp("benchmarks")
    shutil.copytree(REPO / "benchmarks" / "rbc", benchmarks / "rbc")
    doc = yaml.safe_load((benchmarks / "rbc" / "benchmark.yaml").read_text())
    doc["presets"]["tiny"]["model_hparams"][REF] = {"width": 6}
    doc["presets"]["tiny"]["trainer"].update(limit_train_batches=4, limit_val_batches=2, limit_test_batches=1)
    (benchmarks / "rbc" / "benchmark.yaml").write_text(yaml.safe_dump(doc))
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(root))
        mp.setenv("PYTHONPATH", f"{root}:{':'.join(sys.path)}")
        mp.setenv("SYMBENCH_BENCHMARKS", str(benchmarks))
        _forget_package()
        yield root
    _forget_package()


@pytest.fixture(scope="module")
def own_bench(own, tiny_root, tmp_path_factory):
    """`symbench bench rbc --preset tiny` of the reference and the plug-in (1 epoch each)."""
    out = tmp_path_factory.mktemp("own_bench")
    assert cli.main(["bench", "rbc", "--preset", "tiny", "--root", str(tiny_root), "--results", str(out / "results"),
                     "--runs", str(out / "runs"), "--models", REF, PLUGIN, "--max-epochs", "1", "--no-progress"]) == 0
    return out


def test_reference_and_plugin_are_benchmarked_into_the_leaderboard(own_bench, own):
    rows = read_rows(own_bench / "results" / "rbc" / "runs.csv")
    assert {r["model"] for r in rows} == set(LABELS.values())
    for label in LABELS.values():
        assert {r["split"] for r in rows if r["model"] == label and r["metric"] == "rmse"} == {
            "orig", "um", "mag", "rot", "scale"}
        rot = next(float(r["value"]) for r in rows if r["model"] == label and r["metric"] == "eqrel_rot")
        assert rot <= ROUND_OFF, (label, rot)  # the trained C4 average stays exactly C4-equivariant
    params = {r["model"]: int(r["params"]) for r in rows}
    net = models.build(REF, in_frames=3, layout=VELOCITY_2D, width=6)
    assert params[LABELS[REF]] == sum(p.numel() for p in net.parameters())  # the preset's key for the reference
    assert params[LABELS[PLUGIN]] < params[LABELS[REF]]  # the plug-in got the default width 4
    md = (own_bench / "results" / "rbc" / "leaderboard.md").read_text()
    assert all(f"| {label} |" in md for label in LABELS.values())


def test_plugin_is_listed_with_its_metadata(own, tiny_root, capsys):
    assert PLUGIN in benchmark_models("rbc") and models.declared("rbc") == [PLUGIN] and models.declared("heat") == []
    assert models.spec(PLUGIN).symmetries == ("C4",)
    assert cli.main(["models", "--benchmark", "rbc", "--root", str(tiny_root)]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(f"| {PLUGIN} |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1] == "equivariant" and int(cells[2].replace(",", "")) > 0 and cells[3] == "rbc"
    assert cells[4] == "entry point own_c4 = ownmodels.plugin:OWN_C4 of ownmodels 0.3.0"


def test_the_config_hash_covers_the_package_version(own, tiny_root):
    before = resolve("rbc", "tiny", REF, 0, tiny_root)
    info = own / "ownmodels-0.3.0.dist-info"
    newer = info.rename(own / "ownmodels-0.3.1.dist-info")
    (newer / "METADATA").write_text("Metadata-Version: 2.1\nName: ownmodels\nVersion: 0.3.1\n")
    importlib.invalidate_caches()
    try:
        after = resolve("rbc", "tiny", REF, 0, tiny_root)
        assert (before.model, after.model) == (f"{REF}@0.3.0", f"{REF}@0.3.1")
        assert before.config_hash() != after.config_hash()
        with pytest.raises(ValueError, match="installed package has version 0.3.1"):
            models.spec(f"{REF}@0.3.0")
    finally:
        (newer / "METADATA").write_text("Metadata-Version: 2.1\nName: ownmodels\nVersion: 0.3.0\n")
        newer.rename(info)
        importlib.invalidate_caches()


@pytest.mark.parametrize("clash, first", [("own_c4", "entry point own_c4 = ownmodels.plugin:OWN_C4 of ownmodels"),
                                          ("resnet", "symbench")])
def test_two_models_of_one_name_are_one_line_naming_both(own, clash, first, capsys):
    info = write_distribution(own, "othermodels", "1.0", {clash: "ownmodels.nets:PlainCNN"})
    importlib.invalidate_caches()
    try:
        assert cli.main(["models"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and f"model name {clash!r} is declared twice" in err
        assert first in err and f"entry point {clash} = ownmodels.nets:PlainCNN of othermodels 1.0" in err
    finally:
        shutil.rmtree(info)
        importlib.invalidate_caches()


def test_a_reference_is_swept_for_two_trials(own, tiny_root, tmp_path):
    space = {"benchmark": "rbc", "models": ["ownmodels.*"], "sampler": "grid", "pruner": {"type": "none"},
             "space": {"model.lr": {"low": 1.0e-4, "high": 1.0e-2, "log": True}},
             "grid": {"model.lr": [1.0e-3, 3.0e-3], "trainer.max_epochs": [1]}}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    # what `symbench sweep rbc --model REF` does, with its worker loop in this process instead of a worker process
    spec = SweepSpec("rbc", models.canonical(REF), preset="tiny", space=str(tmp_path / "space.yaml"),
                     root=str(tiny_root), runs=str(tmp_path / "runs"), progress=False).resolved()
    open_study(spec, create=True)
    work(spec)
    summarize(open_study(spec)[0], spec)
    study = f"rbc-tiny-{LABELS[REF]}-grid"
    trials = optuna.load_study(study_name=study, storage=open_storage(
        str(tmp_path / "runs" / "sweeps" / study / "journal.log"))).get_trials()
    assert len(trials) == 2 and all(t.state == TrialState.COMPLETE for t in trials)
    best_file = Path(os.environ["SYMBENCH_BENCHMARKS"]) / "rbc" / "best" / f"{LABELS[REF]}.yaml"
    best = yaml.safe_load(best_file.read_text())
    assert resolve("rbc", "tiny", REF, 0).module["lr"] == best["overrides"]["model.lr"]


def test_check_model_passes_an_exact_c4_model_and_fails_a_false_claim(own, tiny_root, tmp_path, capsys):
    args = ["--root", str(tiny_root), "--results", str(tmp_path)]
    assert cli.main(["check-model", PLUGIN, *args]) == 0
    report = json.loads((tmp_path / "checks" / "rbc" / f"{LABELS[PLUGIN]}.json").read_text())
    assert report["claims"] == ["C4"] and report["failures"] == []
    assert all(c["ok"] is not False for c in report["checks"]) and len(report["checks"]) == 7
    assert report["equivariance"]["rot"]["model"] <= ROUND_OFF < report["equivariance"]["rot"]["plain"]
    assert set(report["equivariance"]) == {"um", "mag", "rot", "rot_any", "reflect", "translate", "scale"}
    capsys.readouterr()
    assert cli.main(["check-model", "ownmodels.nets:PlainCNN", "--no-compile", *args]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ownmodels.nets:PlainCNN@0.3.0: claims rot equivariance" in err[0]
    measured = json.loads((tmp_path / "checks" / "rbc" / "ownmodels.nets:PlainCNN@0.3.0.json").read_text())
    rot = measured["equivariance"]["rot"]["model"]
    assert f"{rot:.2e}" in err[0] and rot > 0.1


@pytest.mark.parametrize("command, needle", [
    (["bench", "rbc", "--models", "ownmodels.nosuch:Net"], "model reference 'ownmodels.nosuch:Net': cannot import"),
    (["check-model", "ownmodels.nets:wrong_signature"],
     "model 'ownmodels.nets:wrong_signature@0.3.0': factory(layout) cannot be called with (in_frames, layout, width)"),
    (["bench", "rbc", "--models", "ownmodels.nets:WrongShape", "--max-epochs", "1"],
     "model 'ownmodels.nets:WrongShape@0.3.0': output (8, 1, 16, 16) for a history (8, 3, 2, 16, 16); expected"),
])
def test_a_bad_reference_is_one_line(own, tiny_root, tmp_path, command, needle, capsys):
    args = [*command, "--preset", "tiny", "--root", str(tiny_root), "--results", str(tmp_path)]
    if command[0] == "bench":
        args += ["--runs", str(tmp_path / "runs"), "--no-progress"]
    assert cli.main(args) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("symbench")]  # not warnings
    assert len(err) == 1 and needle in err[0], err


def test_fit_and_test_take_a_reference_as_the_model(own, tiny_root, tmp_path):
    """`symbench fit` / `test --model.model package.module:Factory`: the checkpoint records the reference (with its
    version) and loads it again for the test."""
    common = ["--data.preset", "tiny", "--data.root", str(tiny_root), "--data.in_frames", "3",
              "--data.rollout_steps", "3", "--model.model", REF, "--model.model_hparams", "{width: 4}",
              "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false",
              "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches",
              "1"]
    assert cli.main(["fit", *common, "--trainer.max_epochs", "1"]) == 0
    ckpt = next(tmp_path.rglob("best-*.ckpt"))
    saved = ForecastModule.load_from_checkpoint(ckpt, map_location="cpu")
    assert type(saved.net).__module__ == "ownmodels.nets" and saved.hparams.model.startswith(REF)
    assert cli.main(["test", *common, "--ckpt_path", str(ckpt)]) == 0
