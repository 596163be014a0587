"""Learning different levels of equivariance (ICML 2022 sec. 5.2, Fig. 4): do models learn the data's amount of
C4 symmetry breaking?

For every dataset of :mod:`datamodules.smoke_levels` (level ``i``: buoyancy factors ``1 + eps_i d_j`` per inflow
site) and every seed (the preset's ``seeds`` or ``--seeds``), each model of ``models`` (default ConvNet ``conv``,
E2CNN ``equiv``, RSteer ``rsteer``; two layers) is trained on next-frame prediction (``in_frames`` input frames;
every simulation, all frames but the last ``test_frames`` targets) with the project's
:class:`~symbench.forecast.ForecastModule` (MSE + ``alpha * regularization_loss()``, Adam). With ``residual`` (default) the registry network predicts the increment, ``f(x) = x_last + net(x)``: the
skip is exactly equivariant, so ``f`` and ``net`` have the same equivariance error, and two-layer networks beat
persistence only this way (measured: test RMSE 0.027 vs 0.043 for persistence, 0.041-0.046 predicting the frame
directly with the same budget). In evaluation mode on the held-out windows it gets the model equivariance error of Definition 2.1 with
``G = C4`` and the L1 norm,

    E_model = mean_{x, k = 1..3} mean |f(rot90(x, k)) - rot90(f(x), k)|,

(as in Rose-STL-Lab/Approximately-Equivariant-Nets's ``run_equiv_test.py``: one step, mean over samples and the three
non-trivial rotations), and the one-step test RMSE (:class:`~symbench.metrics.rmse.RolloutRMSE`, one step), both in
simulation units like the data equivariance error ``E_data`` (:func:`datamodules.smoke_levels.data_equivariance_error`).
Windows are the benchmarks' (:class:`datamodules.windows.WindowDataset` over disjoint time ranges); the data are
normalised for training as in every benchmark (:class:`datamodules.windows.FieldNormalizer`, fitted on the training
range: one RMS scale per vector field, mean and std per scalar), which commutes with rotations, and the trained network
is evaluated through the inverse map.

The trivial baselines ``persistence`` (``x_t``) and ``linear`` (``2 x_t - x_{t-1}``, from the same windows with one
more frame of history) of :mod:`symbench.models.baselines` are evaluated beside them (no parameters, no training;
exactly C4-equivariant, so their E_model is 0 and only their RMSE is informative).

Every (level, model, seed) is appended to ``results/levels/runs.csv`` as soon as it is measured (the runs.csv schema
with provenance; model ``data`` carries E_data), and a rerun skips those already there with the same
``config_hash`` (:func:`level_config_hash`): a stopped study resumes, as ``bench`` does from its rows. Then, over the
seeds (:class:`ModelSummary`): per level, mean ± std and the 95 % Student-t interval of E_model, the RMSE and the gap
``E_model - E_data``; per seed, the least-squares slope of E_model on E_data over the levels with its 95 % interval
and the Spearman rank correlation; over seeds, the slope's mean ± std and interval and how many seeds have Spearman
1.0 / a slope interval containing 1. Outputs under ``results/levels/``: ``levels_<preset>.md`` (tables and how to
read them), ``levels_<preset>.csv`` (one row per level and model), ``levels_<preset>_models.csv`` (one row per
model) and ``levels_<preset>.png`` (``E_model`` against ``E_data`` with error bars over seeds, and ``y = x``). A
strictly equivariant model (registry family ``equivariant``) and the baselines must have
``E_model / mean|f(x)| <= EXACT_TOLERANCE`` on every level; the run fails after writing its files otherwise.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import math
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
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
from symbench.provenance import source_revision
from symbench.results import read_rows
from symbench.stats import Estimate, SlopeFit, estimate, slope_fit, spearman
from symbench.studies.common import (
    add_experiment_arguments, append_study_rows, hardware_of, make_trainer, study_config_hash, study_presets,
    trainer_settings, write_figure, write_text,
)
from symbench.symmetry import rot90

DEFAULT_MODELS = ("persistence", "linear", "conv", "equiv", "rsteer")
DATA = "data"  # the pseudo-model of E_data's rows
QUARTER_TURNS = (1, 2, 3)  # the non-trivial elements of C4
EXACT_TOLERANCE = 1e-5  # relative L1 equivariance error allowed for a strictly equivariant model (float32 round-off)


@dataclass(frozen=True)
class LevelsTraining:
    """Model sizes and training of the experiment (one per data preset)."""

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


def training_presets() -> dict[str, LevelsTraining]:
    """The study's presets (``benchmarks/levels/benchmark.yaml``) as :class:`LevelsTraining` records."""
    return study_presets("levels", LevelsTraining)


@dataclass(frozen=True)
class LevelRun:
    """One (level, model, seed): ``metrics`` ``equiv_error`` (E_model), ``equiv_relative`` and ``rmse``; for the
    pseudo-model :data:`DATA` only ``equiv_error`` (E_data). ``params``: trainable parameters (0 for baselines)."""

    level: int
    model: str
    seed: int
    metrics: dict[str, float]
    params: int = 0
    train_seconds: float = 0.0


@dataclass
class LevelsResult:
    preset: str
    runs: list[LevelRun]
    summaries: dict[str, ModelSummary]
    files: list[Path]
    seconds: float


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
    mae = float(equivariance.compute()["mae"])
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


def train_model(name: str, train: WindowDataset, layout: FieldLayout, cfg: LevelsTraining, bar: Any = None,
                trainer_settings: Mapping[str, Any] | None = None, seed: int = 0) -> nn.Module:
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
        model_hparams={"symmetry": "rotation", "width": cfg.width, "layers": cfg.layers,
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


# -- the experiment --------------------------------------------------------------------------------------------------
def check_models(models: Sequence[str]) -> list[str]:
    """The registry names in ``models`` (one-line ``KeyError`` for an unknown one), without duplicates."""
    from symbench.models.registry import available

    names = list(dict.fromkeys(models))
    if not names:
        raise ValueError("levels: no models given")
    unknown = [n for n in names if n not in available()]
    if unknown:
        raise KeyError(f"unknown model {unknown[0]!r}; choose registered models with --models "
                       f"(available: {', '.join(available())})")
    return names


def is_baseline(name: str) -> bool:
    """Registry family ``baseline`` (persistence, linear): evaluated, never trained."""
    from symbench.models.registry import spec

    return spec(name).family == "baseline"


def baseline_model(name: str, array: np.ndarray | Tensor, cfg: LevelsTraining,
                   layout: FieldLayout) -> tuple[nn.Module, WindowDataset]:
    """Baseline ``name`` (:mod:`symbench.models.baselines`) and its test windows: those of :func:`windows` with the
    history the baseline needs (``linear``: two frames even at ``in_frames = 1``), so their targets are exactly the
    trained models' test targets."""
    from symbench.models.baselines import LinearExtrapolation
    from symbench.models.registry import build

    frames = max(cfg.in_frames, LinearExtrapolation.min_frames if name == "linear" else 1)
    return build(name, in_frames=frames, layout=layout).eval(), windows(array, frames, cfg.test_frames)[1]


def measure(name: str, level: int, seed: int, array: np.ndarray, cfg: LevelsTraining, layout: FieldLayout,
            bar: Any = None, trainer: Mapping[str, Any] | None = None) -> LevelRun:
    """One (level, model, seed): E_data for :data:`DATA`; a baseline evaluated on the test windows; a registry
    model trained (:func:`train_model`) and evaluated (:func:`evaluate`)."""
    from datamodules import smoke_levels

    if name == DATA:
        return LevelRun(level, DATA, seed, {"equiv_error": smoke_levels.data_equivariance_error(array)})
    t0 = time.perf_counter()
    if is_baseline(name):
        model, test = baseline_model(name, array, cfg, layout)
    else:
        train, test = windows(array, cfg.in_frames, cfg.test_frames)
        model = train_model(name, train, layout, cfg, bar, trainer, seed)
    seconds = time.perf_counter() - t0
    ee = evaluate(model, test, layout)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return LevelRun(level, name, seed, {"equiv_error": ee["mae"], "equiv_relative": ee["relative"],
                                        "rmse": ee["rmse"]}, params, seconds)


def level_config_hash(cfg: LevelsTraining, data: Any, hardware: Any = None) -> str:
    """``config_hash`` of the study's rows: the training preset without its seeds (a seed is a column of its own,
    so adding seeds keeps the finished ones), the data preset and the device options
    (:func:`~symbench.studies.common.study_config_hash`)."""
    training = {k: v for k, v in asdict(cfg).items() if k != "seeds"}
    return study_config_hash(training, data, hardware=hardware)


def run_levels(preset: str = "cpu", root: str | Path = "data", results: str | Path = "results",
               models: Sequence[str] = DEFAULT_MODELS, alpha: float | None = None, epochs: int | None = None,
               progress: bool = True, data_only: bool = False, trainer: Mapping[str, Any] | None = None,
               seeds: Sequence[int] | None = None) -> LevelsResult:
    """Generate the preset's datasets if missing; for every seed, level and model not yet in
    ``results/levels/runs.csv`` with this configuration hash (:func:`level_config_hash`), train and evaluate it and
    append its rows at once (a stopped run resumes); then write the table, CSV and plot of the requested
    (level, model, seed)s under ``results/levels/``. ``alpha``, ``epochs`` and ``seeds`` override the preset's;
    ``trainer``: the hardware settings (:func:`~symbench.studies.common.make_trainer`)."""
    from tqdm.auto import tqdm

    from datamodules import smoke_levels
    from symbench.models.registry import spec

    start = time.perf_counter()
    names = check_models(models)
    presets = training_presets()
    if preset not in presets:
        raise KeyError(f"unknown levels preset {preset!r}; available presets: {', '.join(presets)}")
    overrides = {"alpha": alpha, "epochs": epochs, "seeds": None if seeds is None else tuple(seeds)}
    cfg = replace(presets[preset], **{k: v for k, v in overrides.items() if v is not None})
    params = smoke_levels.preset(preset)
    data_dir = smoke_levels.generate_preset(preset, root, progress)
    print(f"smoke-levels data ({params.levels} levels) at {data_dir}", flush=True)
    if data_only:
        return LevelsResult(preset, [], {}, [], time.perf_counter() - start)
    config_hash = level_config_hash(cfg, params, hardware_of(trainer))
    path = Path(results) / "levels" / "runs.csv"
    runs = read_runs(path, preset, config_hash)
    done = {(r.level, r.model, r.seed) for r in runs}
    entries = [DATA, *names]
    todo = [(s, lv, m) for s in cfg.seeds for lv in range(params.levels) for m in entries if (lv, m, s) not in done]
    trained = sum(1 for _, _, m in todo if m != DATA and not is_baseline(m))
    print(f"levels: {len(todo)} of {len(entries) * params.levels * len(cfg.seeds)} (level, model, seed) to run, "
          f"{trained} to train; the others are in {path}", flush=True)
    bar = tqdm(total=trained * cfg.epochs, unit="epoch", desc="levels", disable=not progress)
    try:
        for seed, level in dict.fromkeys((s, lv) for s, lv, _ in todo):
            array = np.array(smoke_levels.load_level(data_dir, level)[0])
            for name in (m for s, lv, m in todo if (s, lv) == (seed, level)):
                bar.set_description(f"seed {seed} level {level} {name}")
                run = measure(name, level, seed, array, cfg, smoke_levels.LAYOUT, bar, trainer)
                append_study_rows(results, "levels", study_rows([run], preset, config_hash, params))
                runs.append(run)
                bar.write(_run_line(run))
    finally:
        bar.close()
    mine = [r for r in runs if r.model in entries and r.seed in cfg.seeds]
    summaries = summarise(mine, names)
    exact = [m for m in names if spec(m).family in ("equivariant", "baseline")]
    files = write_outputs(Path(results) / "levels", preset, mine, summaries, params, cfg, exact,
                          time.perf_counter() - start)
    files.append(path)
    for file in files:
        print(f"wrote {file}")
    for m, summary in summaries.items():
        print(f"{m}: {summary.describe()}")
    _check_exact(mine, exact)
    return LevelsResult(preset, mine, summaries, files, time.perf_counter() - start)


def _run_line(run: LevelRun) -> str:
    text = ", ".join(f"{k} {v:.4g}" for k, v in run.metrics.items())
    return f"seed {run.seed} level {run.level} {run.model}: {text}"


def _check_exact(runs: Sequence[LevelRun], exact: Sequence[str]) -> None:
    """Strictly equivariant models and the baselines must be equivariant to round-off on every level (escnn C4 with
    rot90 is exact; persistence and linear extrapolation commute with rot90 exactly)."""
    for m in exact:
        worst = max(r.metrics["equiv_relative"] for r in runs if r.model == m)
        if worst > EXACT_TOLERANCE:
            raise RuntimeError(f"{m} is strictly equivariant but its relative equivariance error reaches {worst:.2e} "
                               f"> {EXACT_TOLERANCE:g}: the rotation convention of the model and rot90 disagree")
        print(f"{m}: exactly C4-equivariant on every level (max relative error {worst:.1e} <= {EXACT_TOLERANCE:g})")


# -- runs.csv rows ---------------------------------------------------------------------------------------------------
def study_rows(runs: Sequence[LevelRun], preset: str, config_hash: str, data: Any) -> list[dict[str, Any]]:
    """``runs.csv`` rows of ``runs`` (:func:`~symbench.studies.common.append_study_rows`): dataset
    ``smoke-levels-<level>``, split ``test``, horizon 1, one row per metric; model :data:`DATA` carries E_data as
    ``equiv_error``. ``data``: the smoke-levels preset, whose key is the rows' ``data_key``; ``code_rev``: the
    source of this study and of the model's module."""
    from symbench.models.registry import spec

    out: list[dict[str, Any]] = []
    for r in runs:
        rev = (source_revision(__spec__.name) if r.model == DATA else
               source_revision(__spec__.name, spec(r.model).target.partition(":")[0]))
        common = {"dataset": f"smoke-levels-{r.level}", "model": r.model, "seed": r.seed, "preset": preset,
                  "split": "test", "horizon": 1, "params": r.params, "config_hash": config_hash,
                  "data_key": data.key(), "code_rev": rev}
        if r.model != DATA:
            common["train_seconds"] = f"{r.train_seconds:.6g}"
        out += [{**common, "metric": k, "value": v} for k, v in r.metrics.items()]
    return out


def read_runs(path: Path, preset: str, config_hash: str) -> list[LevelRun]:
    """The :class:`LevelRun` s in a levels ``runs.csv`` of ``preset`` and ``config_hash`` (a later row of the
    same (level, model, seed, metric) wins); [] if the file does not exist."""
    if not path.exists():
        return []
    found: dict[tuple[int, str, int], dict[str, Any]] = {}
    for r in read_rows(path):
        if r["preset"] != preset or r["config_hash"] != config_hash:
            continue
        key = (int(r["dataset"].rpartition("-")[2]), r["model"], int(r["seed"]))
        entry = found.setdefault(key, {"metrics": {}, "params": 0, "train_seconds": 0.0})
        entry["metrics"][r["metric"]] = float(r["value"])
        entry["params"] = int(r["params"] or 0)
        entry["train_seconds"] = float(r["train_seconds"] or 0.0)
    return [LevelRun(*key, **entry) for key, entry in found.items()]


# -- statistics ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSummary:
    """What separates a model that learns the data's level of symmetry breaking from one that does not, over the
    seeds in which it ran every level:

    * ``error`` / ``rmse`` / ``gap``: per level, :class:`~symbench.stats.Estimate` over seeds of E_model, the test
      RMSE and ``E_model - E_data`` (mean, std, 95 % t-interval);
    * ``fits``: per seed, the least-squares slope of E_model on E_data over the levels with its 95 % interval
      (:func:`~symbench.stats.slope_fit`), and ``slope``: the Estimate of those slopes over seeds;
    * ``rho``: per seed, the Spearman rank correlation of E_model with E_data (NaN for a constant E_model)."""

    model: str
    data: dict[int, float]
    error: dict[int, Estimate]
    rmse: dict[int, Estimate]
    gap: dict[int, Estimate]
    fits: dict[int, SlopeFit]
    slope: Estimate
    rho: dict[int, float]

    @property
    def seeds(self) -> int:
        return len(self.fits)

    @property
    def rank_one(self) -> int:
        """Seeds whose Spearman is 1.0 (E_model ranks the levels exactly as E_data)."""
        return sum(1 for v in self.rho.values() if v >= 1 - 1e-12)

    @property
    def slope_one(self) -> int:
        """Seeds whose slope interval contains 1 (E_model grows with E_data one for one)."""
        return sum(1 for f in self.fits.values() if f.contains(1.0))

    def describe(self) -> str:
        return (f"slope {self.slope}, Spearman 1.0 in {self.rank_one}/{self.seeds} seeds, slope interval contains 1 "
                f"in {self.slope_one}/{self.seeds}")


def summarise(runs: Sequence[LevelRun], names: Sequence[str]) -> dict[str, ModelSummary]:
    """:class:`ModelSummary` of every model in ``names`` from ``runs`` (E_data: the :data:`DATA` runs of the same
    seed). Seeds missing a level of a model (or its E_data) are left out; a model with no complete seed raises a
    one-line ``ValueError``."""
    data = {(r.level, r.seed): r.metrics["equiv_error"] for r in runs if r.model == DATA}
    levels = sorted({lv for lv, _ in data})
    if len(levels) < 2:
        raise ValueError(f"levels: E_data of at least two levels needed, got levels {levels}")
    out = {}
    for m in names:
        mine = {(r.level, r.seed): r.metrics for r in runs if r.model == m}
        seeds = sorted(s for s in {s for _, s in mine} if all((lv, s) in mine and (lv, s) in data for lv in levels))
        if not seeds:
            raise ValueError(f"levels: no seed of {m!r} has every level {levels}")
        err = {s: [mine[lv, s]["equiv_error"] for lv in levels] for s in seeds}
        dat = {s: [data[lv, s] for lv in levels] for s in seeds}
        fits = {s: slope_fit(dat[s], err[s]) for s in seeds}
        out[m] = ModelSummary(
            m, {lv: float(np.mean([data[lv, s] for s in seeds])) for lv in levels},
            {lv: estimate([err[s][i] for s in seeds]) for i, lv in enumerate(levels)},
            {lv: estimate([mine[lv, s]["rmse"] for s in seeds]) for lv in levels},
            {lv: estimate([err[s][i] - dat[s][i] for s in seeds]) for i, lv in enumerate(levels)},
            fits, estimate([f.slope for f in fits.values()]), {s: spearman(err[s], dat[s]) for s in seeds})
    return out


# -- outputs ---------------------------------------------------------------------------------------------------------
def _csv(header: Sequence[str], records: Sequence[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(header), lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buf.getvalue()


def _stat_fields(prefix: str, e: Estimate) -> dict[str, str]:
    return {f"{prefix}_mean": f"{e.mean:.6g}", f"{prefix}_std": f"{e.std:.6g}", f"{prefix}_lo": f"{e.lo:.6g}",
            f"{prefix}_hi": f"{e.hi:.6g}"}


def level_records(summaries: Mapping[str, ModelSummary], data: Any) -> list[dict[str, str]]:
    """``levels_<preset>.csv``: one row per (level, model): eps, E_data, the seeds, and mean / std / 95 % interval
    over seeds of E_model (``equiv_error``), the test RMSE and the gap E_model - E_data."""
    return [{"level": str(lv), "eps": f"{data.eps(lv):.6g}", "data_equiv_error": f"{s.data[lv]:.6g}",
             "model": m, "seeds": str(s.seeds), **_stat_fields("equiv_error", s.error[lv]),
             **_stat_fields("rmse", s.rmse[lv]), **_stat_fields("gap", s.gap[lv])}
            for lv in sorted(next(iter(summaries.values())).data) for m, s in summaries.items()]


def model_records(summaries: Mapping[str, ModelSummary]) -> list[dict[str, str]]:
    """``levels_<preset>_models.csv``: one row per model: the slope over seeds (mean / std / 95 % interval), the
    seeds whose Spearman is 1.0 and whose own slope interval contains 1, and the mean Spearman."""
    return [{"model": m, "seeds": str(s.seeds), **_stat_fields("slope", s.slope),
             "spearman_mean": f"{np.mean(list(s.rho.values())):.6g}", "spearman_one_seeds": str(s.rank_one),
             "slope_contains_one_seeds": str(s.slope_one)} for m, s in summaries.items()]


def markdown(preset: str, summaries: Mapping[str, ModelSummary], data: Any, cfg: LevelsTraining,
             exact: Sequence[str], runs: Sequence[LevelRun], seconds: float) -> str:
    names = list(summaries)
    levels = sorted(next(iter(summaries.values())).data)
    first = summaries[names[0]]
    seeds = sorted({r.seed for r in runs if r.model != DATA})
    head = "| level | eps | E_data | " + " | ".join(f"`{m}`" for m in names) + " |"
    rule = "|" + "---:|" * (3 + len(names))

    def table(cell: Callable[[ModelSummary, int], str]) -> list[str]:
        return [head, rule] + [f"| {lv} | {data.eps(lv):.3f} | {first.data[lv]:.4g} | " +
                               " | ".join(cell(summaries[m], lv) for m in names) + " |" for lv in levels]

    lines = [
        f"# Learning different levels of equivariance (ICML 2022 sec. 5.2, Fig. 4) -- preset `{preset}`", "",
        "Generated by `symbench levels`; do not edit. E_data: mean |rotated-back simulation - reference-site "
        "simulation| (L1, all frames, velocity and density). E_model: mean over held-out windows and k = 1, 2, 3 of "
        "mean |f(rot90(x, k)) - rot90(f(x), k)| (L1, one step, Definition 2.1 with G = C4). RMSE: one-step test RMSE "
        f"on the held-out last frames. All in simulation units. Seeds {seeds}: mean ± std over seeds; [95 % "
        "Student-t interval of the mean]. `persistence` (repeat the last frame) and `linear` (2 x_t - x_{t-1}, from "
        "the same windows with one more frame of history) have no parameters and are exactly C4-equivariant "
        "(E_model = 0: they are linear in the history and commute with rot90), so they differ only in RMSE.", "",
        "## Test RMSE", "", *table(lambda s, lv: s.rmse[lv].format(".3g", std=".2g", interval=False)), "",
        "## E_model", "", *table(lambda s, lv: s.error[lv].format(".3g", std=".2g", interval=False)), "",
        "## Gap E_model - E_data", "", *table(lambda s, lv: s.gap[lv].format(".3g", std=None)), "",
        "## Does E_model follow E_data?", "",
        "How to read it: a model that learned the data's level of symmetry breaking has E_model close to E_data at "
        "every level, i.e. gaps whose intervals contain 0 and a slope dE_model/dE_data near 1. The Spearman rank "
        "correlation only says that E_model grows with E_data: a ConvNet whose error is mostly its own, "
        "level-independent asymmetry plus a small part of the data's reaches 1.0 with a slope far below 1 and a "
        f"gap that shrinks, then turns negative, as the level grows. Slope: least squares over the {len(levels)} "
        "levels per seed, then over seeds; 'slope ∋ 1': the seeds whose own slope interval (t, n - 2 degrees of "
        "freedom) contains 1.", "",
        "| model | slope (mean ± std [95 %]) | Spearman = 1.0 | slope ∋ 1 | mean Spearman | mean gap |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for m, s in summaries.items():
        rho = np.mean(list(s.rho.values()))
        note = (" (baseline: E_model = 0 exactly)" if is_baseline(m) else
                " (exactly equivariant: E_model is round-off)" if m in exact else "")
        slope = s.slope.format(".4g", std=".2g")
        lines.append(f"| `{m}`{note} | {slope} | {s.rank_one}/{s.seeds} | {s.slope_one}/{s.seeds} | "
                     f"{'–' if math.isnan(rho) else f'{rho:.3f}'} | "
                     f"{np.mean([g.mean for g in s.gap.values()]):.3g} |")
    lines.append("")
    for m in exact:
        worst = max(r.metrics["equiv_relative"] for r in runs if r.model == m)
        lines.append(f"- `{m}` max relative equivariance error {worst:.1e} (required <= {EXACT_TOLERANCE:g})")
    lines += ["", f"Training: {_describe(cfg)}. Run time of this invocation {seconds:.0f} s.", ""]
    return "\n".join(lines)


def _describe(cfg: LevelsTraining) -> str:
    return ", ".join(f"{k} {v}" for k, v in asdict(cfg).items())


def plot(path: Path, preset: str, summaries: Mapping[str, ModelSummary]) -> Path:
    """``E_model`` against ``E_data``, one line per model with its std over seeds as error bars, and ``y = x``
    dashed (PNG, written atomically)."""
    from symbench.plots import model_style, new_figure

    fig = new_figure(5.5, 4.2)
    ax = fig.add_subplot()
    levels = sorted(next(iter(summaries.values())).data)
    data = [next(iter(summaries.values())).data[lv] for lv in levels]
    top = max([*data, *(s.error[lv].mean + s.error[lv].std for s in summaries.values() for lv in levels)])
    ax.plot([0, top], [0, top], color="0.6", linestyle="--", linewidth=1, label="y = x (model = data)")
    for m, s in summaries.items():
        ax.errorbar(data, [s.error[lv].mean for lv in levels], yerr=[s.error[lv].std for lv in levels], marker="o",
                    markersize=4, capsize=2, label=f"{m} (slope {s.slope.mean:.2g})", **model_style(m))
    ax.set_xlabel("data equivariance error")
    ax.set_ylabel("model equivariance error (L1, C4)")
    ax.set_title(f"Learning levels of equivariance ({preset}, {max(s.seeds for s in summaries.values())} seeds)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return write_figure(fig, path)


def write_outputs(out: Path, preset: str, runs: Sequence[LevelRun], summaries: Mapping[str, ModelSummary],
                  data: Any, cfg: LevelsTraining, exact: Sequence[str], seconds: float) -> list[Path]:
    """Write ``levels_<preset>.{md,csv,png}`` and ``levels_<preset>_models.csv`` under ``out`` atomically; returns
    their paths."""
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"levels_{preset}"
    paths = [stem.with_suffix(".md"), stem.with_suffix(".csv"), out / f"levels_{preset}_models.csv"]
    levels_csv, models_csv = level_records(summaries, data), model_records(summaries)
    write_text(paths[0], markdown(preset, summaries, data, cfg, exact, runs, seconds))
    write_text(paths[1], _csv(list(levels_csv[0]), levels_csv))
    write_text(paths[2], _csv(list(models_csv[0]), models_csv))
    return [*paths, plot(stem.with_suffix(".png"), preset, summaries)]


# -- command line (symbench.studies.StudyModule) ------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_experiment_arguments(parser, "levels")
    parser.add_argument("--models", nargs="+", help=f"registry names (default: {' '.join(DEFAULT_MODELS)})")
    parser.add_argument("--seeds", nargs="+", type=int, help="seeds (default: the preset's seeds)")
    parser.add_argument("--alpha", type=float,
                        help="weight of relaxed models' regularization_loss() (default: the preset's, 1e-4)")
    parser.add_argument("--epochs", type=int, help="override the preset's training epochs")
    parser.add_argument("--data-only", action="store_true", help="only generate (or reuse) the datasets")


def run(args: argparse.Namespace) -> None:
    run_levels(args.preset, args.root, args.results, args.models or DEFAULT_MODELS, alpha=args.alpha,
               epochs=args.epochs, progress=not args.no_progress, data_only=args.data_only,
               trainer=trainer_settings(args), seeds=args.seeds)
