"""Benchmark configs: every preset resolves for every model; presets change sizes only."""

import pytest

from symbench import models
from symbench.config import ConfigError, available_benchmarks, benchmark_models, load_benchmark, per_model, resolve


@pytest.mark.parametrize("bench_name", available_benchmarks())
def test_every_preset_resolves_for_every_model(bench_name):
    bench = load_benchmark(bench_name)
    assert {"tiny", "cpu", "paper"} <= set(bench["presets"])
    for preset in bench["presets"]:
        for model in benchmark_models(bench_name, preset):
            cfg = resolve(bench_name, preset, model, seed=0)
            assert cfg.data["test_splits"] == bench["splits"]
            assert cfg.trainer["max_epochs"] >= 1
            # same configuration -> same hash, whatever the seed; another preset -> another hash
            assert cfg.config_hash() == resolve(bench_name, preset, model, seed=1).config_hash()


def test_per_model_sizes_and_overrides():
    resnet, unet = resolve("rbc", "cpu", "resnet", 0), resolve("rbc", "cpu", "unet", 0)
    assert resnet.model_hparams == {"width": 4} and unet.model_hparams == {"width": 16}
    assert resnet.trainer["max_epochs"] < unet.trainer["max_epochs"]
    assert resnet.config_hash() != unet.config_hash()
    over = resolve("rbc", "cpu", "unet", 0, overrides={"trainer": {"max_epochs": 1}})
    assert over.trainer["max_epochs"] == 1 and over.config_hash() != unet.config_hash()


def test_augm_models_get_their_backbone_sizes_epochs_and_schedule_and_the_augmentation():
    for name, backbone in ((n, b) for n in ("rbc", "ocean") for b in ("resnet", "unet")):
        plain = resolve(name, "cpu", backbone, 0)
        for group in ("um", "mag", "rot", "scale"):
            augm = resolve(name, "cpu", f"augm_{group}_{backbone}", 0)
            assert augm.data == {**plain.data, "augment": group}
            assert augm.model_hparams == plain.model_hparams
            # an Augm epoch is one pass's worth of the original windows: same epochs, same lr schedule
            assert (augm.trainer, augm.module) == (plain.trainer, plain.module)
    assert resolve("rbc", "cpu", "equ_rot_unet", 0).model_hparams == {"width": 16, "group_order": 4}
    assert resolve("rbc", "paper", "equ_rot_unet", 0).model_hparams == {"width": 64}  # the paper's C8 default


def test_per_model_entries_apply_in_file_order_with_the_exact_name_last():
    section = {"resnet": {"a": 3}, "default": {"a": 1, "b": 1}, "*resnet": {"a": 2, "c": 2}}
    assert per_model(section, "resnet") == {"a": 3, "b": 1, "c": 2}
    assert per_model(section, "equ_um_resnet") == {"a": 2, "b": 1, "c": 2}
    assert per_model(section, "unet") == {"a": 1, "b": 1}


def test_unknown_names():
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        resolve("rbc", "huge", "resnet", 0)
    with pytest.raises(ConfigError, match="unknown benchmark 'nope'"):
        resolve("nope", "cpu", "resnet", 0)
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        resolve("rbc", "cpu", "nope", 0)


@pytest.mark.parametrize("preset", ["tiny", "cpu", "paper"])
def test_every_equ_model_is_within_10_percent_of_its_backbones_parameters_at_every_preset(preset):
    """The issue's budget rule (ICLR 2021 Table 6 compares models of about equal size), at the sizes each preset uses."""
    from symbench.fields import VELOCITY_2D

    def params(model: str) -> int:
        cfg = resolve("rbc", preset, model, 0)
        net = models.build(model, in_frames=cfg.data["in_frames"], layout=VELOCITY_2D, **cfg.model_hparams)
        return sum(p.numel() for p in net.parameters())

    for backbone in ("resnet", "unet"):
        plain = params(backbone)
        for group in ("um", "mag", "rot", "scale"):
            equ = params(f"equ_{group}_{backbone}")
            assert abs(equ - plain) <= 0.1 * plain, f"{preset}: equ_{group}_{backbone} {equ:,} vs {backbone} {plain:,}"


def test_the_model_list_is_the_benchmark_files(tmp_path, monkeypatch):
    """``models:`` of benchmark.yaml, in its order; a preset's own list replaces it there; `symbench bench` runs
    exactly that list; a bad list is one line naming the file."""
    import shutil

    import yaml

    from symbench import bench
    from symbench.config import benchmarks_dir

    shutil.copytree(benchmarks_dir() / "heat", tmp_path / "heat", ignore=shutil.ignore_patterns("best"))
    monkeypatch.setenv("SYMBENCH_BENCHMARKS", str(tmp_path))
    path = tmp_path / "heat" / "benchmark.yaml"
    doc = yaml.safe_load(path.read_text())

    def write(listed, tiny=None):
        doc["models"] = listed
        doc["presets"]["tiny"].pop("models", None)
        doc["presets"]["tiny"].update({} if tiny is None else {"models": tiny})
        path.write_text(yaml.safe_dump(doc))

    write(["cnn", "persistence"], tiny=["linear"])
    assert benchmark_models("heat") == benchmark_models("heat", "cpu") == ["cnn", "persistence"]
    assert benchmark_models("heat", "tiny") == ["linear"]
    ran = []

    def stop(cfg):  # bench resolves every (model, seed) first, then checks each: stop there
        raise StopIteration

    monkeypatch.setattr(bench, "resolve", lambda name, preset, model, seed, *a, **k: ran.append(model))
    monkeypatch.setattr(bench, "datamodule_args", stop)
    with pytest.raises(StopIteration):
        bench.run_benchmark("heat", "cpu", seeds=[0])
    assert ran == ["cnn", "persistence"]
    for listed, problem in ((["cnn", "nope"], "models lists unknown model 'nope'"),
                            (["cnn", "cnn"], "models lists 'cnn' twice"), (None, "'models' must be a non-empty list")):
        write(listed)
        with pytest.raises(ConfigError, match=f"heat/benchmark.yaml: {problem}"):
            benchmark_models("heat")
