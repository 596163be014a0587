"""Learning different levels of equivariance (ICML 2022 sec. 5.2, Fig. 4): do models learn the data's amount of
C4 symmetry breaking?

For every dataset of :mod:`datamodules.smoke_levels` (level ``i``: buoyancy factors ``1 + eps_i d_j`` per inflow
site), each model of ``models`` (default ConvNet ``conv``, E2CNN ``equiv``, RSteer ``rsteer``; two layers) is trained
on next-frame prediction (``in_frames`` input frames; every simulation, all frames but the last ``test_frames``
targets) with the project's :class:`~symbench.forecast.ForecastModule` (MSE + ``alpha * regularization_loss()``,
Adam). With ``residual`` (default) the registry network predicts the increment, ``f(x) = x_last + net(x)``: the
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

Outputs under ``results/levels/``: ``levels_<preset>.csv`` (one row per level), ``levels_<preset>.md`` (the table and
the Spearman rank correlation of each model's ``E_model`` with ``E_data`` over the levels) and ``levels_<preset>.png``
(``E_model`` against ``E_data``, one line per model). A strictly equivariant model (registry family
``equivariant``) must have ``E_model / mean|f(x)| <= EXACT_TOLERANCE`` on every level; the run fails after writing
its files otherwise.
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
from symbench.studies.common import (
    add_experiment_arguments, append_study_rows, make_trainer, study_config_hash, study_presets, trainer_settings,
    write_figure, write_text,
)
from symbench.symmetry import rot90

DEFAULT_MODELS = ("conv", "equiv", "rsteer")
QUARTER_TURNS = (1, 2, 3)  # the non-trivial elements of C4
EXACT_TOLERANCE = 1e-5  # relative L1 equivariance error allowed for a strictly equivariant model (float32 round-off)
RSTEER_GOAL = 0.9  # Spearman rank correlation with the data error that RSteer should reach (Fig. 4)


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
    seed: int = 0

    def __post_init__(self) -> None:
        if self.in_frames < 1 or self.test_frames < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError("need in_frames, test_frames, epochs and batch_size >= 1")
        if self.alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")


def training_presets() -> dict[str, LevelsTraining]:
    """The study's presets (``benchmarks/levels/benchmark.yaml``) as :class:`LevelsTraining` records."""
    return study_presets("levels", LevelsTraining)


@dataclass
class LevelRow:
    """One dataset's results: ``models[name] = {"equiv_error", "equiv_relative", "rmse", "train_seconds"}``."""

    level: int
    eps: float
    data_error: float
    models: dict[str, dict[str, float]]


@dataclass
class LevelsResult:
    preset: str
    rows: list[LevelRow]
    spearman: dict[str, float]
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


def ranks(values: Sequence[float]) -> np.ndarray:
    """Ranks 1..n, tied values sharing the mean of their ranks."""
    v = np.asarray(values, dtype=np.float64)
    order = np.argsort(v, kind="stable")
    out = np.empty(len(v))
    i = 0
    while i < len(v):
        j = i
        while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
            j += 1
        out[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation (Pearson correlation of the ranks); NaN when either side is constant."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"spearman needs two sequences of equal length >= 2, got {len(a)} and {len(b)}")
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = math.sqrt(float((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of ``y`` on ``x``."""
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    xc = xs - xs.mean()
    return float((xc * (ys - ys.mean())).sum() / (xc * xc).sum())


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
                trainer_settings: Mapping[str, Any] | None = None) -> nn.Module:
    """Train registry model ``name`` on the ``train`` windows, normalised by a :class:`FieldNormalizer` fitted on
    their time range, with :class:`~symbench.forecast.ForecastModule`; returns the network in evaluation mode, in
    data units (:class:`Normalized`). ``bar`` (tqdm) ticks once per epoch; ``trainer_settings``: the hardware
    (:func:`~symbench.studies.common.make_trainer`)."""
    from symbench.models.registry import spec

    normalizer = FieldNormalizer.fit(layout, train.data[:, train.range.start:train.range.stop])
    normalized = WindowDataset(normalizer.normalize(train.data), train.range, train.in_frames, train.out_frames)
    alpha = cfg.alpha if spec(name).family == "relaxed" else 0.0  # only relaxed models have a regulariser
    L.seed_everything(cfg.seed, verbose=False)
    module = ForecastModule(
        model=name, fields=[str(f) for f in layout.fields], in_frames=cfg.in_frames, train_steps=1,
        rollout_steps=1, lr=cfg.lr, weight_decay=cfg.weight_decay, lr_decay=cfg.lr_decay, alpha=alpha,
        model_hparams={"symmetry": "rotation", "width": cfg.width, "layers": cfg.layers,
                       "kernel_size": cfg.kernel_size, "grid_size": int(train.data.shape[-1])},
    )
    if cfg.residual:
        module.net = Residual(module.net)
    loader = DataLoader(normalized, batch_size=cfg.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(cfg.seed))
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


def run_levels(preset: str = "cpu", root: str | Path = "data", results: str | Path = "results",
               models: Sequence[str] = DEFAULT_MODELS, alpha: float | None = None, epochs: int | None = None,
               progress: bool = True, data_only: bool = False,
               trainer: Mapping[str, Any] | None = None) -> LevelsResult:
    """Generate the preset's datasets if missing, train and evaluate every model on every level, and write the
    table, CSV and plot under ``results/levels/``. ``alpha`` and ``epochs`` override the preset's training;
    ``trainer``: the hardware settings (:func:`~symbench.studies.common.make_trainer`)."""
    from tqdm.auto import tqdm

    from datamodules import smoke_levels
    from symbench.models.registry import spec

    start = time.perf_counter()
    names = check_models(models)
    presets = training_presets()
    if preset not in presets:
        raise KeyError(f"unknown levels preset {preset!r}; available presets: {', '.join(presets)}")
    cfg = presets[preset]
    cfg = replace(cfg, **{k: v for k, v in {"alpha": alpha, "epochs": epochs}.items() if v is not None})
    params = smoke_levels.preset(preset)
    data_dir = smoke_levels.generate_preset(preset, root, progress)
    print(f"smoke-levels data ({params.levels} levels) at {data_dir}", flush=True)
    if data_only:
        return LevelsResult(preset, [], {}, [], time.perf_counter() - start)
    layout = smoke_levels.LAYOUT
    rows: list[LevelRow] = []
    bar = tqdm(total=params.levels * len(names) * cfg.epochs, unit="epoch", desc="levels", disable=not progress)
    try:
        for level in range(params.levels):
            array, meta = smoke_levels.load_level(data_dir, level)
            row = LevelRow(level, float(meta["eps"]), smoke_levels.data_equivariance_error(array), {})
            train, test = windows(array, cfg.in_frames, cfg.test_frames)
            for name in names:
                bar.set_description(f"level {level} {name}")
                t0 = time.perf_counter()
                model = train_model(name, train, layout, cfg, bar, trainer)
                seconds = time.perf_counter() - t0
                ee = evaluate(model, test, layout)
                row.models[name] = {"equiv_error": ee["mae"], "equiv_relative": ee["relative"], "rmse": ee["rmse"],
                                    "train_seconds": seconds}
            rows.append(row)
            bar.write(_row_line(row))
    finally:
        bar.close()
    data = [r.data_error for r in rows]
    rho = {m: spearman([r.models[m]["equiv_error"] for r in rows], data) for m in names}
    exact = [m for m in names if spec(m).family == "equivariant"]
    out = Path(results) / "levels"
    files = write_outputs(out, preset, rows, names, rho, cfg, exact, time.perf_counter() - start)
    files.append(append_study_rows(results, "levels", study_rows(rows, preset, cfg, params)))
    result = LevelsResult(preset, rows, rho, files, time.perf_counter() - start)
    for path in files:
        print(f"wrote {path}")
    for m in names:
        print(f"Spearman(E_model, E_data) {m}: {rho[m]:.3f}")
    _check_exact(rows, exact)
    return result


def _row_line(row: LevelRow) -> str:
    parts = [f"level {row.level} eps {row.eps:.3f} E_data {row.data_error:.4g}"]
    parts += [f"{m}: E {v['equiv_error']:.3g} rmse {v['rmse']:.3g}" for m, v in row.models.items()]
    return " | ".join(parts)


def _check_exact(rows: Sequence[LevelRow], exact: Sequence[str]) -> None:
    """Strictly equivariant models must be equivariant to round-off on every level (escnn C4 with rot90 is exact)."""
    for m in exact:
        worst = max(r.models[m]["equiv_relative"] for r in rows)
        if worst > EXACT_TOLERANCE:
            raise RuntimeError(f"{m} is strictly equivariant but its relative equivariance error reaches {worst:.2e} "
                               f"> {EXACT_TOLERANCE:g}: the rotation convention of the model and rot90 disagree")
        print(f"{m}: exactly C4-equivariant on every level (max relative error {worst:.1e} <= {EXACT_TOLERANCE:g})")


# -- outputs ---------------------------------------------------------------------------------------------------------
def csv_rows(rows: Sequence[LevelRow], names: Sequence[str]) -> tuple[list[str], list[dict[str, Any]]]:
    header = ["level", "eps", "data_equiv_error"]
    for m in names:
        header += [f"{m}_equiv_error", f"{m}_equiv_relative", f"{m}_rmse", f"{m}_train_seconds"]
    out = []
    for r in rows:
        rec: dict[str, Any] = {"level": r.level, "eps": f"{r.eps:.6g}", "data_equiv_error": f"{r.data_error:.6g}"}
        for m in names:
            for key in ("equiv_error", "equiv_relative", "rmse", "train_seconds"):
                rec[f"{m}_{key}"] = f"{r.models[m][key]:.6g}"
        out.append(rec)
    return header, out


def study_rows(rows: Sequence[LevelRow], preset: str, cfg: LevelsTraining, data: Any) -> list[dict[str, Any]]:
    """``runs.csv`` rows of ``rows`` (:func:`~symbench.studies.common.append_study_rows`): dataset
    ``smoke-levels-<level>``, split ``test``; per model ``equiv_error`` (E_model), ``equiv_relative`` and ``rmse``
    (one step, horizon 1); model ``data`` carries E_data as ``equiv_error``. ``data``: the smoke-levels preset, whose
    key is the rows' ``data_key``; ``code_rev``: the source of this study and of the model's module."""
    from symbench.models.registry import spec

    config_hash = study_config_hash(cfg, data)
    out: list[dict[str, Any]] = []
    for r in rows:
        common = {"dataset": f"smoke-levels-{r.level}", "seed": cfg.seed, "preset": preset, "split": "test",
                  "horizon": 1, "config_hash": config_hash, "data_key": data.key()}
        out.append({**common, "model": "data", "metric": "equiv_error", "value": r.data_error, "params": 0,
                    "code_rev": source_revision(__spec__.name)})
        for m, v in r.models.items():
            rev = source_revision(__spec__.name, spec(m).target.partition(":")[0])
            out += [{**common, "model": m, "metric": k, "value": v[k], "params": "", "train_seconds": v["train_seconds"],
                     "code_rev": rev} for k in ("equiv_error", "equiv_relative", "rmse")]
    return out


def read_csv_rows(path: Path) -> list[LevelRow]:
    """The :class:`LevelRow` s of a ``levels_<preset>.csv`` (:func:`csv_rows`), e.g. to convert committed results."""
    with path.open(newline="") as handle:
        records = list(csv.DictReader(handle))
    names = [k.removesuffix("_equiv_error") for k in records[0] if k.endswith("_equiv_error") and k != "data_equiv_error"]
    return [LevelRow(int(r["level"]), float(r["eps"]), float(r["data_equiv_error"]),
                     {m: {k: float(r[f"{m}_{k}"]) for k in ("equiv_error", "equiv_relative", "rmse", "train_seconds")}
                      for m in names}) for r in records]


def markdown(preset: str, rows: Sequence[LevelRow], names: Sequence[str], rho: dict[str, float],
             cfg: LevelsTraining, exact: Sequence[str], seconds: float) -> str:
    lines = [
        f"# Learning different levels of equivariance (ICML 2022 sec. 5.2, Fig. 4) -- preset `{preset}`",
        "",
        "Generated by `symbench levels`; do not edit. E_data: mean |rotated-back simulation - reference-site "
        "simulation| (L1, all frames, velocity and density). E_model: mean over held-out windows and k = 1, 2, 3 of "
        "mean |f(rot90(x, k)) - rot90(f(x), k)| (L1, one step, Definition 2.1 with G = C4). RMSE: one-step test RMSE "
        "on the held-out last frames. All in simulation units.",
        "",
        "| level | eps | E_data | " + " | ".join(f"E_model {m} | RMSE {m}" for m in names) + " |",
        "|" + "---:|" * (3 + 2 * len(names)),
    ]
    for r in rows:
        cells = [str(r.level), f"{r.eps:.3f}", f"{r.data_error:.4g}"]
        for m in names:
            cells += [f"{r.models[m]['equiv_error']:.4g}", f"{r.models[m]['rmse']:.4g}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Spearman rank correlation of E_model with E_data over the levels "
                  f"(goal for RSteer: >= {RSTEER_GOAL}); the least-squares slope dE_model/dE_data and E_model on "
                  "the symmetric level 0 say how much of the data's symmetry breaking a model picked up:", ""]
    data = [r.data_error for r in rows]
    for m in names:
        errors = [r.models[m]["equiv_error"] for r in rows]
        note = " (exactly equivariant: E_model is float32 round-off, its ranks are noise)" if m in exact else ""
        lines.append(f"- `{m}`: Spearman {rho[m]:.3f}, slope {slope(data, errors):.3g}, E_model at level 0 "
                     f"{errors[0]:.3g}{note}")
    for m in exact:
        worst = max(r.models[m]["equiv_relative"] for r in rows)
        lines.append(f"- `{m}` max relative equivariance error {worst:.1e} (required <= {EXACT_TOLERANCE:g})")
    lines += ["", f"Training: {_describe(cfg)}. Run time {seconds:.0f} s.", ""]
    return "\n".join(lines)


def _describe(cfg: LevelsTraining) -> str:
    return ", ".join(f"{k} {v}" for k, v in asdict(cfg).items())


def plot(path: Path, preset: str, rows: Sequence[LevelRow], names: Sequence[str], rho: dict[str, float]) -> Path:
    """``E_model`` against ``E_data``, one line per model, the diagonal dashed (PNG, written atomically)."""
    from symbench.plots import model_style, new_figure

    fig = new_figure(5.5, 4.2)
    ax = fig.add_subplot()
    data = [r.data_error for r in rows]
    top = max([*data, *(r.models[m]["equiv_error"] for r in rows for m in names)])
    ax.plot([0, top], [0, top], color="0.6", linestyle="--", linewidth=1, label="model = data")
    for m in names:
        ax.plot(data, [r.models[m]["equiv_error"] for r in rows], marker="o", markersize=4,
                label=f"{m} (Spearman {rho[m]:.2f})", **model_style(m))
    ax.set_xlabel("data equivariance error")
    ax.set_ylabel("model equivariance error (L1, C4)")
    ax.set_title(f"Learning levels of equivariance ({preset})")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return write_figure(fig, path)


def write_outputs(out: Path, preset: str, rows: Sequence[LevelRow], names: Sequence[str], rho: dict[str, float],
                  cfg: LevelsTraining, exact: Sequence[str], seconds: float) -> list[Path]:
    """Write ``levels_<preset>.{csv,md,png}`` under ``out`` atomically; returns their paths."""
    header, records = csv_rows(rows, names)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    csv_path, md_path = out / f"levels_{preset}.csv", out / f"levels_{preset}.md"
    out.mkdir(parents=True, exist_ok=True)
    write_text(csv_path, buf.getvalue())
    write_text(md_path, markdown(preset, rows, names, rho, cfg, exact, seconds))
    return [md_path, csv_path, plot(out / f"levels_{preset}.png", preset, rows, names, rho)]


# -- command line (symbench.studies.StudyModule) ------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_experiment_arguments(parser, "levels")
    parser.add_argument("--models", nargs="+", help="registry names (default: conv equiv rsteer)")
    parser.add_argument("--alpha", type=float,
                        help="weight of relaxed models' regularization_loss() (default: the preset's, 1e-4)")
    parser.add_argument("--epochs", type=int, help="override the preset's training epochs")
    parser.add_argument("--data-only", action="store_true", help="only generate (or reuse) the datasets")


def run(args: argparse.Namespace) -> None:
    run_levels(args.preset, args.root, args.results, args.models or DEFAULT_MODELS, alpha=args.alpha,
               epochs=args.epochs, progress=not args.no_progress, data_only=args.data_only,
               trainer=trainer_settings(args))
