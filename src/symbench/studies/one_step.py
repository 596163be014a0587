"""One-step forecasting on small trajectory sets, shared by the studies that train many small models on generated
data (:mod:`symbench.studies.levels`, :mod:`symbench.studies.strength`).

* :class:`OneStepTraining`: model sizes and training of such a study (one per preset, from its benchmark.yaml);
* :func:`windows`: train / test one-step windows of ``(sims, T, C, H, W)`` over disjoint time ranges;
* :func:`train_model`: a registry model trained on next-frame prediction with the project's
  :class:`~symbench.forecast.ForecastModule` (MSE + ``alpha * regularization_loss()``, Adam), on data normalised by
  :class:`~datamodules.windows.FieldNormalizer` (fitted on the training range), optionally residual
  (``f(x) = x_last + net(x)``), returned in data units;
* :func:`evaluate`: the one-step test RMSE (:class:`~symbench.metrics.rmse.RolloutRMSE`) and the model equivariance
  error of Definition 2.1 (ICML 2022) with ``G = C4`` and the L1 norm,
  ``E_model = mean_{x, k} mean |f(rot90(x, k)) - rot90(f(x), k)|``;
* the parameter-free baselines ``persistence`` and ``linear`` (:func:`baseline_model`) on the same test targets;
* small CSV helpers for the studies' tables.
"""

from __future__ import annotations

import csv
import io
import logging
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from datamodules.windows import FieldNormalizer, TimeRange, WindowDataset
from symbench.fields import FieldLayout
from symbench.forecast import ForecastModule
from symbench.metrics.equivariance import EquivarianceError, equivariance_pair
from symbench.metrics.rmse import RolloutRMSE
from symbench.stats import Estimate
from symbench.studies.common import make_trainer
from symbench.symmetry import rot90

QUARTER_TURNS = (1, 2, 3)  # the non-trivial elements of C4


@dataclass(frozen=True)
class OneStepTraining:
    """Model sizes and training of a one-step study (one per data preset)."""

    width: int = 32
    layers: int = 2
    kernel_size: int = 3
    in_frames: int = 1
    test_frames: int = 10  # the last targets of every simulation are held out (test windows)
    epochs: int = 25
    batch_size: int = 32
    lr: float = 3e-3
    lr_decay: float = 0.95  # per epoch
    weight_decay: float = 0.0
    alpha: float = 1e-4  # weight of regularization_loss() for relaxed models (RSteer: 1e-3 pins it near C4)
    residual: bool = True  # f(x) = x_last + net(x) (the skip is exactly equivariant: E_model is the network's)
    seeds: tuple[int, ...] = (0, 1, 2)  # every (level, model) is trained once per seed

    def __post_init__(self) -> None:
        if self.in_frames < 1 or self.test_frames < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError("need in_frames, test_frames, epochs and batch_size >= 1")
        if self.alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and at least one, got {list(self.seeds)}")



@dataclass(frozen=True)
class OneStepRun:
    """One (level, model, seed) of a one-step study: ``metrics`` (e.g. ``rmse``, ``equiv_error``; for the
    pseudo-model :data:`DATA` only ``equiv_error``, E_data); ``params``: trainable parameters (0 for baselines)."""

    level: int
    model: str
    seed: int
    metrics: dict[str, float]
    params: int = 0
    train_seconds: float = 0.0


DATA = "data"  # the pseudo-model of E_data's rows


def run_rows(run: OneStepRun, dataset: str, study_module: str, **columns: Any) -> list[dict[str, Any]]:
    """``runs.csv`` rows of ``run`` (:func:`~symbench.studies.common.append_study_rows`): ``dataset``, split
    ``test``, horizon 1, one row per metric, plus ``columns`` (preset, config_hash, data_key); ``code_rev``: the
    source of ``study_module`` and, for a model, of the model's module."""
    from symbench.models.registry import spec
    from symbench.provenance import source_revision

    rev = (source_revision(study_module) if run.model == DATA else
           source_revision(study_module, spec(run.model).target.partition(":")[0]))
    common = {"dataset": dataset, "model": run.model, "seed": run.seed, "split": "test", "horizon": 1,
              "params": run.params, "code_rev": rev, **columns}
    if run.model != DATA:
        common["train_seconds"] = f"{run.train_seconds:.6g}"
    return [{**common, "metric": k, "value": v} for k, v in run.metrics.items()]


def grouped_runs(path: Path, key: Callable[[Mapping[str, str]], tuple[Any, ...] | None],
                 ) -> dict[tuple[Any, ...], dict[str, Any]]:
    """The ``runs.csv`` rows at ``path`` grouped by ``key(row)`` (None: the row is not wanted) into ``{"metrics",
    "params", "train_seconds"}`` (a later row of the same key and metric wins); {} if the file does not exist."""
    from symbench.results import read_rows

    found: dict[tuple[Any, ...], dict[str, Any]] = {}
    if not path.exists():
        return found
    for r in read_rows(path):
        k = key(r)
        if k is None:
            continue
        entry = found.setdefault(k, {"metrics": {}, "params": 0, "train_seconds": 0.0})
        entry["metrics"][r["metric"]] = float(r["value"])
        entry["params"] = int(r["params"] or 0)
        entry["train_seconds"] = float(r["train_seconds"] or 0.0)
    return found


# -- data ------------------------------------------------------------------------------------------------------------
def windows(array: np.ndarray | Tensor, in_frames: int, test_frames: int) -> tuple[WindowDataset, WindowDataset]:
    """``(train, test)`` windows of ``(sims, T, C, H, W)`` (:class:`~datamodules.windows.WindowDataset`, one-step
    targets): the test windows are those whose target is one of the last ``test_frames`` frames (their histories
    reach back into the training range), the training windows lie in the frames before."""
    x = torch.as_tensor(np.array(array, dtype=np.float32))
    t = x.shape[1]
    first_test = t - test_frames
    if first_test - in_frames < 1:
        raise ValueError(f"{t} frames leave no training window for in_frames={in_frames}, test_frames={test_frames}")
    return (WindowDataset(x, TimeRange(0, first_test), in_frames, 1),
            WindowDataset(x, TimeRange(first_test - in_frames, t), in_frames, 1))


class Residual(nn.Module):
    """``f(x) = x_last + net(x)``: the network predicts the increment of the last frame. The identity commutes with
    every group action, so ``f`` has exactly the equivariance error of ``net``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, history: Tensor) -> Tensor:
        return history[:, -1] + self.net(history)

    def regularization_loss(self) -> Tensor:
        return self.net.regularization_loss()


class Normalized(nn.Module):
    """``f(x) = N^-1(net(N(x)))``: a network trained on data normalised by ``normalizer`` (``N``), in data units."""

    def __init__(self, net: nn.Module, normalizer: FieldNormalizer) -> None:
        super().__init__()
        self.net, self.normalizer = net, normalizer

    def forward(self, history: Tensor) -> Tensor:
        return self.normalizer.denormalize(self.net(self.normalizer.normalize(history)))


# -- metrics ---------------------------------------------------------------------------------------------------------
def model_equivariance_error(model: nn.Module | Callable[[Tensor], Tensor], histories: Tensor, layout: FieldLayout,
                             ks: Sequence[int] = QUARTER_TURNS, batch_size: int = 64) -> dict[str, float]:
    """``E_model`` (L1, Definition 2.1 with ``G = C4``) of ``model`` as it is (call ``eval()`` first) over
    ``histories`` ``(N, T_in, C, H, W)``: ``{"mae": mean |f(gx) - g f(x)|, "relative": mae / mean |f(x)|}``."""
    errors = evaluate(model, TensorDataset(histories, histories[:, -1:]), layout, ks, batch_size)  # no targets
    return {"mae": errors["mae"], "relative": errors["relative"]}


def evaluate(model: nn.Module | Callable[[Tensor], Tensor], windows: Dataset, layout: FieldLayout,
             ks: Sequence[int] = QUARTER_TURNS, batch_size: int = 64) -> dict[str, float]:
    """Over one-step ``windows`` (``(history, target (1, C, H, W))`` items): ``E_model`` as
    :func:`model_equivariance_error` (``mae``, ``relative``) and the test RMSE (``rmse``,
    :class:`~symbench.metrics.rmse.RolloutRMSE`: squared errors pooled over every entry)."""
    equivariance, error = EquivarianceError(), RolloutRMSE(steps=1)
    magnitude, count = 0.0, 0
    with torch.no_grad():
        for x, target in DataLoader(windows, batch_size=batch_size):
            out = model(x)
            magnitude, count = magnitude + float(out.double().abs().sum()), count + out.numel()
            error.update(out.unsqueeze(1), target)
            for k in ks:
                equivariance.update(*equivariance_pair(model, x, lambda v, k=k: rot90(v, layout, k)))
    mae = float(equivariance.compute()["mae"]) if ks else float("nan")  # no quarter turns: RMSE only
    return {"mae": mae, "relative": mae / max(magnitude / count, 1e-30), "rmse": float(error.compute()["horizon"])}


# -- training --------------------------------------------------------------------------------------------------------
@contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Silence Lightning's per-fit banners (accelerator info, few-workers hints) for the 30 short fits."""
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*small.*log_every_n_steps.*")
            warnings.filterwarnings("ignore", message=".*`validation_step` but have no `val_dataloader`.*")
            warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*")
            yield
    finally:
        logger.setLevel(level)


def train_model(name: str, train: WindowDataset, layout: FieldLayout, cfg: OneStepTraining, bar: Any = None,
                trainer_settings: Mapping[str, Any] | None = None, seed: int = 0,
                symmetry: str = "rotation") -> nn.Module:
    """Train registry model ``name`` on the ``train`` windows, normalised by a :class:`FieldNormalizer` fitted on
    their time range, with :class:`~symbench.forecast.ForecastModule`; returns the network in evaluation mode, in
    data units (:class:`Normalized`). ``bar`` (tqdm) ticks once per epoch; ``trainer_settings``: the hardware
    (:func:`~symbench.studies.common.make_trainer`); ``seed``: of the initialisation and the batch order."""
    from symbench.models.registry import spec

    normalizer = FieldNormalizer.fit(layout, train.data[:, train.range.start:train.range.stop])
    normalized = WindowDataset(normalizer.normalize(train.data), train.range, train.in_frames, train.out_frames)
    alpha = cfg.alpha if spec(name).family == "relaxed" else 0.0  # only relaxed models have a regulariser
    L.seed_everything(seed, verbose=False)
    module = ForecastModule(
        model=name, fields=[str(f) for f in layout.fields], in_frames=cfg.in_frames, train_steps=1,
        rollout_steps=1, lr=cfg.lr, weight_decay=cfg.weight_decay, lr_decay=cfg.lr_decay, alpha=alpha,
        model_hparams={"symmetry": symmetry, "width": cfg.width, "layers": cfg.layers,
                       "kernel_size": cfg.kernel_size, "grid_size": int(train.data.shape[-1])},
    )
    if cfg.residual:
        module.net = Residual(module.net)
    loader = DataLoader(normalized, batch_size=cfg.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    callbacks = [] if bar is None else [EpochTicks(bar)]
    with _quiet_lightning():
        trainer = make_trainer(trainer_settings, max_epochs=cfg.epochs, logger=False, enable_checkpointing=False,
                               enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                               num_sanity_val_steps=0, callbacks=callbacks)
        trainer.fit(module, train_dataloaders=loader)
    return Normalized(module.net, normalizer).eval()


class EpochTicks(Callback):
    """Advance a tqdm bar by one per training epoch, showing the last training MSE."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        mse = trainer.callback_metrics.get("train/mse")
        if mse is not None:
            self.bar.set_postfix(mse=f"{float(mse):.3g}", refresh=False)
        self.bar.update(1)


def check_models(models: Sequence[str]) -> list[str]:
    """The registry names in ``models`` (one-line ``KeyError`` for an unknown one), without duplicates."""
    from symbench.models.registry import available

    names = list(dict.fromkeys(models))
    if not names:
        raise ValueError("no models given")
    unknown = [n for n in names if n not in available()]
    if unknown:
        raise KeyError(f"unknown model {unknown[0]!r}; choose registered models with --models "
                       f"(available: {', '.join(available())})")
    return names


def is_baseline(name: str) -> bool:
    """Registry family ``baseline`` (persistence, linear): evaluated, never trained."""
    from symbench.models.registry import spec

    return spec(name).family == "baseline"


def baseline_model(name: str, array: np.ndarray | Tensor, cfg: OneStepTraining,
                   layout: FieldLayout) -> tuple[nn.Module, WindowDataset]:
    """Baseline ``name`` (:mod:`symbench.models.baselines`) and its test windows: those of :func:`windows` with the
    history the baseline needs (``linear``: two frames even at ``in_frames = 1``), so their targets are exactly the
    trained models' test targets."""
    from symbench.models.baselines import LinearExtrapolation
    from symbench.models.registry import build

    frames = max(cfg.in_frames, LinearExtrapolation.min_frames if name == "linear" else 1)
    return build(name, in_frames=frames, layout=layout).eval(), windows(array, frames, cfg.test_frames)[1]


def score(name: str, array: np.ndarray | Tensor, cfg: OneStepTraining, layout: FieldLayout, bar: Any = None,
          trainer: Mapping[str, Any] | None = None, seed: int = 0, symmetry: str = "rotation",
          ks: Sequence[int] = QUARTER_TURNS) -> tuple[dict[str, float], int, float]:
    """Model ``name`` on the trajectories ``array``: a baseline built (:func:`baseline_model`), a registry model
    trained on the training windows (:func:`train_model`, ``symmetry`` picks its group), then evaluated on the test
    windows (:func:`evaluate`). Returns ``(metrics, trainable parameters, seconds to build or train)``; metrics
    ``rmse`` and, unless ``ks`` is empty, ``equiv_error`` (E_model) and ``equiv_relative``."""
    t0 = time.perf_counter()
    if is_baseline(name):
        model, test = baseline_model(name, array, cfg, layout)
    else:
        train, test = windows(array, cfg.in_frames, cfg.test_frames)
        model = train_model(name, train, layout, cfg, bar, trainer, seed, symmetry)
    seconds = time.perf_counter() - t0
    ee = evaluate(model, test, layout, ks)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    metrics = {"equiv_error": ee["mae"], "equiv_relative": ee["relative"], "rmse": ee["rmse"]} if ks else {
        "rmse": ee["rmse"]}
    return metrics, params, seconds


def csv_text(header: Sequence[str], records: Sequence[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(header), lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buf.getvalue()


def stat_fields(prefix: str, e: Estimate) -> dict[str, str]:
    return {f"{prefix}_mean": f"{e.mean:.6g}", f"{prefix}_std": f"{e.std:.6g}", f"{prefix}_lo": f"{e.lo:.6g}",
            f"{prefix}_hi": f"{e.hi:.6g}"}


def describe(cfg: OneStepTraining) -> str:
    return ", ".join(f"{k} {v}" for k, v in asdict(cfg).items())


