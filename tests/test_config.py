"""Benchmark configs: every preset resolves for every model; presets change sizes only."""

import pytest

from symbench import models
from symbench.bench import ConfigError, available_benchmarks, load_benchmark, resolve


@pytest.mark.parametrize("bench_name", available_benchmarks())
def test_every_preset_resolves_for_every_model(bench_name):
    bench = load_benchmark(bench_name)
    assert {"tiny", "cpu", "paper"} <= set(bench["presets"])
    for preset in bench["presets"]:
        for model in models.available(bench_name):
            cfg = resolve(bench_name, preset, model, seed=0)
            assert cfg.data["test_splits"] == bench["splits"]
            assert cfg.trainer["max_epochs"] >= 1
            # same configuration -> same hash, whatever the seed; another preset -> another hash
            assert cfg.config_hash() == resolve(bench_name, preset, model, seed=1).config_hash()


def test_per_model_sizes_and_overrides():
    resnet, unet = resolve("rbc", "cpu", "resnet", 0), resolve("rbc", "cpu", "unet", 0)
    assert resnet.model_hparams == {"width": 8} and unet.model_hparams == {"width": 16}
    assert resnet.trainer["max_epochs"] < unet.trainer["max_epochs"]
    assert resnet.config_hash() != unet.config_hash()
    over = resolve("rbc", "cpu", "unet", 0, overrides={"trainer": {"max_epochs": 1}})
    assert over.trainer["max_epochs"] == 1 and over.config_hash() != unet.config_hash()


def test_unknown_names():
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        resolve("rbc", "huge", "resnet", 0)
    with pytest.raises(ConfigError, match="unknown benchmark 'nope'"):
        resolve("nope", "cpu", "resnet", 0)
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        resolve("rbc", "cpu", "nope", 0)
