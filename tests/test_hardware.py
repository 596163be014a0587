"""Device options (symbench.hardware): resolution, hashing, global batch, precision flags, rank, and that the preset's
and the command line's options reach a benchmark's Trainer; the evaluation shards of the datamodules under DDP."""

from __future__ import annotations

import pytest
import torch
import yaml

from symbench import cli, hardware
from symbench.config import load_benchmark, resolve


def test_device_options_resolve_like_lightning_and_only_non_defaults_enter_the_hash():
    plain = resolve("rbc", "cpu", "unet", 0)
    assert plain.hardware() == hardware.Hardware() and plain.hardware().hashed() == {}
    same = resolve("rbc", "cpu", "unet", 0, overrides={"trainer": {"accelerator": "auto", "devices": "auto"}})
    assert same.config_hash() == plain.config_hash()  # 'auto' counts as what it resolves to: one CPU here
    two = resolve("rbc", "cpu", "unet", 0, overrides={"trainer": {"devices": 2, "precision": "bf16"}})
    assert two.hardware() == hardware.Hardware("cpu", 2, 1, "ddp", "bf16-mixed")
    assert two.hardware().describe() == "x2 ddp bf16-mixed"
    tf32 = resolve("rbc", "cpu", "unet", 0, tf32=True)
    hashes = {plain.config_hash(), two.config_hash(), tf32.config_hash(),
              resolve("rbc", "cpu", "unet", 0, overrides={"trainer": {"num_nodes": 2}}).config_hash()}
    assert len(hashes) == 4
    with pytest.raises(ValueError, match="devices 'two' on cpu"):
        hardware.resolve({"devices": "two"})


def test_a_global_batch_that_does_not_divide_over_the_processes_is_one_line(capsys, tmp_path):
    argv = ["bench", "rbc", "--preset", "tiny", "--models", "unet", "--accelerator", "cpu", "--devices", "3",
            "--root", str(tmp_path / "none"), "--results", str(tmp_path), "--runs", str(tmp_path)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["symbench: error: batch_size 8 is the global batch and must divide over the 3 processes (3 devices "
                   "x 1 nodes); choose a multiple of 3 or other --devices"]
    assert not list(tmp_path.iterdir())  # nothing generated or written


class _Reached(Exception):
    pass


@pytest.mark.dedalus
def test_devices_nodes_and_strategy_from_the_preset_and_the_command_line_reach_the_trainer(
        tiny_root, tmp_path, monkeypatch):
    import lightning

    bench = load_benchmark("rbc")
    bench["presets"]["tiny"]["trainer"].update(devices=2, num_nodes=1, strategy="ddp_spawn")
    (tmp_path / "rbc").mkdir()
    (tmp_path / "rbc" / "benchmark.yaml").write_text(yaml.safe_dump(bench))
    monkeypatch.setenv("SYMBENCH_BENCHMARKS", str(tmp_path))
    seen: list[dict] = []

    def trainer(**kwargs):
        seen.append(kwargs)
        raise _Reached

    monkeypatch.setattr(lightning, "Trainer", trainer)
    base = ["bench", "rbc", "--preset", "tiny", "--models", "unet", "--root", str(tiny_root), "--results",
            str(tmp_path / "r"), "--runs", str(tmp_path / "u"), "--no-progress", "--accelerator", "cpu"]
    for extra in ([], ["--devices", "4", "--num-nodes", "2", "--strategy", "ddp", "--precision", "bf16-mixed"]):
        with pytest.raises(_Reached):
            cli.main(base + extra)
    keys = ("accelerator", "devices", "num_nodes", "strategy", "precision", "sync_batchnorm")
    assert [tuple(kw[k] for k in keys) for kw in seen] == [
        ("cpu", 2, 1, "ddp_spawn", "32-true", False), ("cpu", 4, 2, "ddp", "bf16-mixed", False)]


def test_float32_precision_is_set_explicitly_and_probes_run_without_tf32_or_autocast():
    try:
        hardware.set_float32_precision(True)
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
        with hardware.full_float32("cpu"):
            assert not torch.backends.cudnn.allow_tf32 and torch.get_float32_matmul_precision() == "highest"
            assert not torch.is_autocast_enabled("cpu")
        assert torch.backends.cudnn.allow_tf32 and torch.get_float32_matmul_precision() == "high"
    finally:
        hardware.set_float32_precision(False)
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    from symbench.studies.common import make_trainer

    hardware.set_float32_precision(True)
    make_trainer(None, logger=False, enable_progress_bar=False, enable_model_summary=False)  # every study's Trainer
    assert not torch.backends.cudnn.allow_tf32 and torch.get_float32_matmul_precision() == "highest"


@pytest.mark.parametrize("env, zero", [({}, True), ({"LOCAL_RANK": "1"}, False), ({"NODE_RANK": "1"}, False),
                                       ({"RANK": "0", "LOCAL_RANK": "1"}, True), ({"RANK": "3"}, False),
                                       ({"SLURM_NTASKS": "4", "SLURM_PROCID": "2"}, False)])
def test_rank_zero_is_read_from_the_launchers_environment(env, zero, monkeypatch):
    for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_NTASKS", "SLURM_PROCID"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert hardware.is_rank_zero() is zero


def test_evaluation_shards_may_be_empty_but_a_stage_must_reach_every_process():
    from types import SimpleNamespace

    from datamodules.base import ForecastDataModule
    from datamodules.sharding import ShardSampler

    assert [list(ShardSampler(range(5), 3, r)) for r in range(3)] == [[0, 3], [1, 4], [2]]
    assert list(ShardSampler(range(1), 2, 1)) == [] and len(ShardSampler(range(1), 2, 1)) == 0
    dm = ForecastDataModule()
    dm.datasets = {"val": range(3), "orig": range(3), "test_domain": range(1)}
    dm.test_splits = ["orig", "test_domain"]
    dm.trainer = SimpleNamespace(strategy=SimpleNamespace(distributed_sampler_kwargs={"num_replicas": 3, "rank": 2}))
    assert [len(loader) for loader in dm.test_dataloader()] == [1, 0]  # rank 2: no test_domain window, zeros
    dm.trainer.strategy.distributed_sampler_kwargs = {"num_replicas": 4, "rank": 3}
    with pytest.raises(ValueError, match="the validation data have 3 window"):
        dm.val_dataloader()
    with pytest.raises(ValueError, match=r"the test data have 3 window\(s\) \(orig, test_domain\), fewer than the 4"):
        dm.test_dataloader()


def test_the_gpu_check_says_in_one_line_that_there_is_no_cuda_and_writes_nothing(tmp_path, monkeypatch, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    module_spec = importlib.util.spec_from_file_location("gpu_check", path)
    gpu_check = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(gpu_check)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path / "gpu")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("gpu_check: no CUDA device is visible")
    assert not (tmp_path / "gpu").exists()
