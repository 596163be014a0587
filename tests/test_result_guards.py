"""Behaviours that decide a result and that an end-to-end test would only catch by accident.

Each test drives one of them directly, with stubs where a trained model would hide the difference:
the checkpoint `bench` tests (the best validation epoch, not the last), the land mask in the validation / test
RMSE, autoregressive rollout at test time (no teacher forcing), the normaliser fitted on the training range only,
and the latest row of a repeated seed in the leaderboard.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from datamodules.base import ForecastDataModule
from datamodules.windows import FieldNormalizer, time_split
from symbench import bench
from symbench.fields import FieldLayout
from symbench.forecast import ForecastModule
from symbench.leaderboard import aggregate

SCRIPTED_VAL = (0.5, 0.1, 0.9)  # validation RMSE logged at epochs 0, 1, 2: the best epoch is 1, not the last


class _WeightsAtTest(L.Callback):
    """Keeps a copy of the network's weights as the test pass starts (after Lightning restored ``ckpt_path``)."""

    def __init__(self) -> None:
        self.state: dict[str, Tensor] = {}

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


def _same(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_run_one_tests_the_best_validation_checkpoint_not_the_last(tiny_root, tmp_path, monkeypatch):
    """Scripted validation values 0.5, 0.1, 0.9: `run_one` must test the weights of epoch 1 and say so in its rows."""
    def scripted_epoch_end(self: ForecastModule) -> None:  # the real rollouts ran; their metric is replaced
        self.val_rmse.reset()
        self.log("val/rmse", SCRIPTED_VAL[self.current_epoch], prog_bar=True)

    recorder = _WeightsAtTest()
    monkeypatch.setattr(ForecastModule, "on_validation_epoch_end", scripted_epoch_end)
    monkeypatch.setattr(bench, "_artifact_callbacks", lambda cfg, path: [recorder])
    cfg = bench.resolve("rbc", "tiny", "unet", 0, tiny_root, overrides={"trainer": {"max_epochs": len(SCRIPTED_VAL)}},
                        use_best=False)
    rows = bench.run_one(cfg, tmp_path / "runs", progress=False, artifacts=None)

    checkpoints = bench.run_directory(cfg, tmp_path / "runs") / "checkpoints"
    best = torch.load(checkpoints / "best-epoch=1.ckpt", map_location="cpu", weights_only=True)
    last = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=True)
    assert best["epoch"] == 1 and last["epoch"] == len(SCRIPTED_VAL) - 1
    assert not _same(best["state_dict"], last["state_dict"])  # training went on after the best epoch
    assert recorder.state, "the test pass never started"
    assert _same(recorder.state, best["state_dict"]), "the test pass did not use the best validation checkpoint"
    assert {int(r["best_epoch"]) for r in rows} == {1}
    assert {int(r["epochs"]) for r in rows} == {len(SCRIPTED_VAL)}


# -- the module's evaluation path, with a stub network -----------------------------------------------------------
class _Drift(nn.Module):
    """``x_{t+1} = x_t + step``: exact on data that grow by ``step`` per frame, wrong by ``(step - true) * s`` at
    step ``s`` of an autoregressive rollout, and by ``step - true`` at every step under teacher forcing."""

    def __init__(self, step: float) -> None:
        super().__init__()
        self.step = step
        self.unused = nn.Parameter(torch.zeros(()))  # so that `n_parameters` and optimisers see a model

    def forward(self, history: Tensor) -> Tensor:
        return history[:, -1] + self.step


def _module(net: nn.Module, rollout_steps: int, splits: tuple[str, ...] = ("orig",)) -> ForecastModule:
    module = ForecastModule(model="conv", model_hparams={"width": 4, "layers": 2}, in_frames=2,
                            rollout_steps=rollout_steps, test_splits=splits)
    module.net = net
    return module


def _trainer() -> L.Trainer:
    return L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False)


def _masked_windows(steps: int = 3, land: float = 0.3) -> tuple[Tensor, Tensor, Tensor]:
    """Windows of a field growing by 1 per frame on a 12 x 12 grid with a fraction ``land`` of land points (zero
    there, like the data)."""
    gen = torch.Generator().manual_seed(0)
    b, t_in, h = 5, 2, 12
    base = torch.randn(b, 1, 2, h, h, generator=gen)
    frames = base + torch.arange(t_in + steps, dtype=torch.float32).view(1, -1, 1, 1, 1)
    mask = torch.rand(b, h, h, generator=gen) >= land
    frames = torch.where(mask[:, None, None], frames, torch.zeros(()))
    return frames[:, :t_in], frames[:, t_in:], mask


def _rollout_rmse(drift: float, steps: int) -> tuple[float, list[float]]:
    """Horizon and per-step RMSE over the valid points of a rollout whose error at step s is ``drift * s``."""
    per_step = [drift * s for s in range(1, steps + 1)]
    horizon = math.sqrt(sum(e * e for e in per_step) / steps)  # every step counts the same valid points
    return horizon, per_step


@pytest.mark.parametrize("stage", ["validate", "test"])
def test_validation_and_test_rmse_count_valid_points_only(stage):
    """A masked batch (~30 % land): the logged RMSE is the RMSE over the valid points, not diluted by land."""
    history, target, mask = _masked_windows()
    module = _module(_Drift(1.25), rollout_steps=target.shape[1])
    loader = DataLoader(TensorDataset(history, target, mask), batch_size=2)
    expected, per_step = _rollout_rmse(0.25, target.shape[1])
    diluted = expected * math.sqrt(float(mask.float().mean()))  # what counting land points would give
    assert abs(expected - diluted) > 0.05
    if stage == "validate":
        logged = _trainer().validate(module, dataloaders=loader, verbose=False)[0]["val/rmse"]
        assert float(logged) == pytest.approx(expected, rel=1e-5)
    else:
        _trainer().test(module, dataloaders=[loader], verbose=False)
        result = module.test_results["orig"]
        assert result["rmse"] == pytest.approx(expected, rel=1e-5)
        assert result["rmse_step"] == pytest.approx(per_step, rel=1e-5)


def test_test_rmse_comes_from_an_autoregressive_rollout():
    """Errors grow linearly with the step when predictions are fed back (teacher forcing would give a flat 0.25)."""
    history, target, _ = _masked_windows(steps=4, land=0.0)
    module = _module(_Drift(1.25), rollout_steps=target.shape[1], splits=("test_future",))
    _trainer().test(module, dataloaders=[DataLoader(TensorDataset(history, target), batch_size=3)], verbose=False)
    assert module.test_results["test_future"]["rmse_step"] == pytest.approx([0.25, 0.5, 0.75, 1.0], rel=1e-5)


# -- the shared data module's normaliser ----------------------------------------------------------------------------
class _ShiftingData(ForecastDataModule):
    """A scalar and a vector field whose statistics change after the training range (later frames 10x larger and
    shifted), so a normaliser fitted on more than the training range is visibly different."""

    def __init__(self, frames: int = 40, **kwargs: Any) -> None:
        super().__init__(in_frames=2, train_steps=1, rollout_steps=2, batch_size=4, **kwargs)
        rng = np.random.default_rng(3)
        data = rng.normal(size=(2, frames, 3, 8, 8)).astype(np.float32)
        self.train_stop = time_split(frames, self.split_fractions)["train"].stop
        data[:, self.train_stop:] = data[:, self.train_stop:] * 10.0 + 5.0
        self.array = data

    def load(self) -> tuple[np.ndarray, FieldLayout]:
        return self.array, FieldLayout.of("t:scalar", "velocity:vector")


def test_normaliser_is_fitted_on_the_training_range_only():
    dm = _ShiftingData()
    dm.setup("fit")
    expected = FieldNormalizer.fit(dm.layout, torch.from_numpy(dm.array[:, : dm.train_stop]))
    assert torch.allclose(dm.normalizer.scale, expected.scale) and torch.allclose(dm.normalizer.shift, expected.shift)
    everything = FieldNormalizer.fit(dm.layout, torch.from_numpy(dm.array))
    assert not torch.allclose(dm.normalizer.scale, everything.scale, rtol=0.1)
    history, target = dm.datasets["train"][0]
    train = torch.cat([history, target]).double()
    assert abs(float(train[:, 0].mean())) < 0.5 and abs(float(train[:, 0].std()) - 1.0) < 0.3


# -- the leaderboard's aggregation --------------------------------------------------------------------------------------
def _row(seed: int, value: float, model: str = "unet") -> dict[str, str]:
    return {"preset": "cpu", "model": model, "split": "orig", "metric": "rmse", "horizon": "10", "seed": str(seed),
            "value": repr(value)}


def test_the_latest_row_of_a_repeated_seed_wins():
    """A rerun appends new rows after the old ones: the mean uses the newest value of each seed, once."""
    rows = [_row(0, 1.0), _row(1, 3.0), _row(0, 2.0), _row(0, 5.0, model="resnet")]
    cell = aggregate(rows)[("cpu", "unet", "orig", "rmse", "10")]
    assert cell.n == 2
    assert cell.mean == pytest.approx(2.5)
    assert cell.std == pytest.approx(statistics.stdev([2.0, 3.0]))


# -- early stopping ---------------------------------------------------------------------------------------------------
PLATEAU_VAL = (0.5, 0.1, 0.2, 0.3, 0.4, 0.05)  # best at epoch 1, then 2 epochs without improvement: stop after epoch 3


def test_early_stopping_ends_a_run_on_its_plateau_and_a_second_call_does_not_train_on(tiny_root, tmp_path,
                                                                                      monkeypatch):
    def scripted_epoch_end(self: ForecastModule) -> None:
        self.val_rmse.reset()
        self.log("val/rmse", PLATEAU_VAL[self.current_epoch], prog_bar=True)

    monkeypatch.setattr(ForecastModule, "on_validation_epoch_end", scripted_epoch_end)
    cfg = bench.resolve("rbc", "tiny", "unet", 0, tiny_root, use_best=False,
                        overrides={"trainer": {"max_epochs": len(PLATEAU_VAL)}, "data": {"train_stride": 16, "eval_stride": 16}})
    cfg.early_stopping_patience = 2
    fitted = bench.fit_run(cfg, tmp_path / "runs", progress=False)
    assert fitted.epochs == 4 and "epoch=1" in fitted.best_path  # epoch 5's 0.05 is never reached
    again = bench.fit_run(cfg, tmp_path / "runs", progress=False)  # resumed: the saved state says it stopped
    assert again.epochs == 4 and again.train_seconds == 0.0 and again.best_path == fitted.best_path
