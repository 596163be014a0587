"""Test error against training-set size for CNNs equivariant to subgroups of O(2), on rotated and on flipped-rotated
digits (ICML 2024 workshop, "When is a task a good candidate for an equivariant network?", sec. 4.2, Fig. 2).

For each task, group G in :data:`~symbench.studies.digits.model.GROUPS`, training size n and seed, a
:class:`~symbench.studies.digits.model.GroupCNN` (parameters matched to the plain CNN of ``width`` channels) is trained
for a fixed number of Adam steps on the first n digits; the checkpoint with the lowest validation error is tested.
Each finished run is one row of ``results/digits/digits_<task>_<preset>.csv`` (written atomically after every run,
so a stopped benchmark resumes where it stopped). The report fits, per task and group, the power law of Fig. 2,

    log10 err(n) = a + s log10 n                                                                         (F1)

by least squares on the seed-mean errors, and states for every n whether the group matching the task's symmetry
(SO(2) for "rotated", O(2) for "flipped") has the lowest error, and how far apart the slopes s are.

Entry point: ``symbench digits --preset cpu [--tasks rotated flipped] [--groups ...] [--seeds 0]`` and
``symbench digits --report-only``.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import lightning as L
import numpy as np
import torch
import torchmetrics
from torch import Tensor

from datamodules.digits import PRESETS, TASKS, DigitsDataModule, DigitsSizes
from symbench.models.budget import n_params
from symbench.studies.digits.model import GROUPS, LABELS, GroupCNN, matched_fields, plain_target
from symbench.hardware import Hardware
from symbench.provenance import source_revision
from symbench.results import read_records
from symbench.studies.common import (
    hardware_of,
    add_experiment_arguments, append_study_rows, check_preset, fit_test_best, study_config_hash, study_presets,
    trainer_settings, write_figure, write_records, write_text,
)

MATCHING_GROUP = {"rotated": "SO2", "flipped": "O2"}


@dataclass(frozen=True)
class DigitsTraining:
    """Model size and optimisation of one preset. ``width``: channels of the ``{e}`` CNN, whose parameter count
    every group's network is matched to. The paper uses Adam with lr 5e-5 and batch 64 "to completion"; the cpu
    preset takes a larger step so a few hundred steps get there. A run takes ``steps`` Adam steps, or
    ``min_epochs`` passes over its training set if that is more (:meth:`steps_for`)."""

    width: int
    steps: int
    lr: float
    min_epochs: int = 8
    evals: int = 5
    batch_size: int = 64
    seeds: tuple[int, ...] = (0,)
    scalars: int = 32
    kernel: int = 5

    def steps_for(self, n_train: int) -> int:
        """Optimisation steps for a training set of ``n_train`` digits."""
        return max(self.steps, self.min_epochs * math.ceil(n_train / self.batch_size))


def training_presets() -> dict[str, DigitsTraining]:
    """The study's presets (``benchmarks/digits/benchmark.yaml``) as :class:`DigitsTraining` records."""
    return study_presets("digits", DigitsTraining)


class DigitsClassifier(L.LightningModule):
    """Cross-entropy training of a :class:`GroupCNN`; validation and test misclassification rates."""

    def __init__(self, group: str, fields: int, scalars: int, kernel: int, lr: float) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = GroupCNN(group, fields, scalars, kernel)
        self.lr = lr
        self.val_acc = torchmetrics.Accuracy(task="multiclass", num_classes=10)
        self.test_acc = torchmetrics.Accuracy(task="multiclass", num_classes=10)

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        images, labels = batch
        loss = torch.nn.functional.cross_entropy(self(images), labels)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        images, labels = batch
        self.val_acc.update(self(images), labels)

    def on_validation_epoch_end(self) -> None:
        self.log("val_error", 1.0 - self.val_acc.compute(), prog_bar=True)
        self.val_acc.reset()

    def test_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        images, labels = batch
        self.test_acc.update(self(images), labels)

    def on_test_epoch_end(self) -> None:
        self.log("test_error", 1.0 - self.test_acc.compute())
        self.test_acc.reset()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


@dataclass
class DigitsRun:
    """One trained and tested model."""

    task: str
    group: str
    n_train: int
    seed: int
    test_error: float
    val_error: float
    best_step: int
    params: int
    fields: int
    seconds: float

    @property
    def key(self) -> tuple[str, str, int, int]:
        return self.task, self.group, self.n_train, self.seed


def study_rows(runs: Sequence[DigitsRun], preset: str, sizes: DigitsSizes, cfg: DigitsTraining,
               data_key: str = "", hardware: Hardware | None = None) -> list[dict[str, Any]]:
    """``runs.csv`` rows of ``runs`` (:func:`~symbench.studies.common.append_study_rows`): dataset
    ``mnist-<task>-n<n_train>`` (the training-set size is part of the data), model the group, metric ``error``
    (misclassification rate) on the ``test`` and ``val`` splits; ``data_key`` the transformed digits' cache key
    (:attr:`DigitsDataModule.data_key`), ``code_rev`` this study's source."""
    config_hash = study_config_hash(cfg, sizes, hardware=hardware)
    return [{"dataset": f"mnist-{r.task}-n{r.n_train}", "model": r.group, "seed": r.seed, "preset": preset,
             "split": split, "metric": "error", "value": value, "params": r.params, "train_seconds": r.seconds,
             "config_hash": config_hash, "data_key": data_key, "code_rev": source_revision(__spec__.name)}
            for r in runs for split, value in (("test", r.test_error), ("val", r.val_error))]


def train_one(task: str, group: str, n_train: int, seed: int, data: DigitsDataModule, cfg: DigitsTraining,
              show_progress: bool = False, trainer_settings: Mapping[str, Any] | None = None) -> DigitsRun:
    """Train ``group``'s network on the first ``n_train`` digits for ``cfg.steps_for(n_train)`` steps, validating
    ``cfg.evals`` times, and test the checkpoint of lowest validation error."""
    start = time.perf_counter()
    fields = matched_fields(group, plain_target(cfg.width, cfg.scalars, cfg.kernel), cfg.scalars, cfg.kernel)
    L.seed_everything(seed, workers=True, verbose=False)
    module = DigitsClassifier(group, fields, cfg.scalars, cfg.kernel, cfg.lr)
    fit = fit_test_best(module, data, cfg.steps_for(n_train), cfg.evals, "val_error", show_progress,
                        trainer_settings)
    return DigitsRun(task, group, n_train, seed, fit.test["test_error"], fit.best_score, fit.best_step,
                     n_params(module.net), fields, time.perf_counter() - start)


# ------------------------------------------------------------------------------------------------------- storage

def _stem(preset: str, idx_dir: str | Path | None) -> str:
    """File stem of a run's outputs: ``digits_<preset>``, or ``digits-<dir name>_<preset>`` for a user's IDX set."""
    return f"digits_{preset}" if idx_dir is None else f"digits-{Path(idx_dir).resolve().name}_{preset}"


def csv_path(results: str | Path, task: str, preset: str, idx_dir: str | Path | None = None) -> Path:
    stem = _stem(preset, idx_dir)
    return Path(results) / "digits" / f"{stem.replace('_', f'_{task}_', 1)}.csv"


def data_source(root: str | Path, idx_dir: str | Path | None = None) -> str:
    """Where the digits came from: the user's IDX directory, or the ``source`` recorded in the converted npz."""
    if idx_dir is not None:
        return f"IDX files in {idx_dir}"
    path = Path(root) / "digits" / "mnist.npz"
    if not path.exists():
        return "MNIST (not converted yet)"
    with np.load(path) as arrays:
        return f"real MNIST from {arrays['source']}" if "source" in arrays else f"digits in {path}"


def read_runs(path: Path) -> list[DigitsRun]:
    """Rows of one task's CSV ([] if it does not exist)."""
    return read_records(path, DigitsRun)


def write_runs(path: Path, runs: Sequence[DigitsRun]) -> None:
    """Rewrite the CSV with ``runs`` (atomically: a stop mid-write leaves the previous file)."""
    write_records(path, sorted(runs, key=lambda r: (GROUPS.index(r.group), r.n_train, r.seed)))


# -------------------------------------------------------------------------------------------------------- report

def power_law(ns: Sequence[float], errors: Sequence[float]) -> tuple[float, float, float]:
    """Least-squares fit of (F1): returns (slope s, intercept a, R^2) in log10-log10 space."""
    x, y = np.log10(np.asarray(ns, float)), np.log10(np.asarray(errors, float))
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (intercept + slope * x)
    total = float(((y - y.mean()) ** 2).sum())
    return float(slope), float(intercept), 1.0 - float((resid ** 2).sum()) / total if total > 0 else 1.0


def mean_errors(runs: Sequence[DigitsRun]) -> dict[str, dict[int, float]]:
    """Seed-mean test error per group and training size."""
    table: dict[str, dict[int, list[float]]] = {}
    for run in runs:
        table.setdefault(run.group, {}).setdefault(run.n_train, []).append(run.test_error)
    return {g: {n: float(np.mean(v)) for n, v in sorted(by_n.items())} for g, by_n in table.items()}


def _floor(error: float, n_test: int) -> float:
    """An error of 0 on n_test digits is reported as < 1/n_test: use half of that on the log axis."""
    return max(error, 0.5 / n_test)


def task_report(task: str, runs: Sequence[DigitsRun], n_test: int) -> list[str]:
    """Markdown section of one task: errors per size, the winner per size, slopes."""
    errors = mean_errors(runs)
    groups = [g for g in GROUPS if g in errors]
    sizes = sorted({run.n_train for run in runs})
    seeds = sorted({run.seed for run in runs})
    lines = [f"## {task} digits ({'SO(2)' if task == 'rotated' else 'O(2)'}-invariant task)", "",
             f"Test error (%) on {n_test} transformed test digits, mean over seeds {seeds}; best per size in bold.", "",
             "| n train | " + " | ".join(LABELS[g] for g in groups) + " | lowest |",
             "|---" * (len(groups) + 2) + "|"]
    matching = MATCHING_GROUP[task]
    wins = []
    for n in sizes:
        row = {g: errors[g].get(n) for g in groups}
        present = {g: e for g, e in row.items() if e is not None}
        winner = min(present, key=present.get)
        wins.append((n, winner))
        cells = [("**%.2f**" if g == winner else "%.2f") % (100 * e) if e is not None else "–" for g, e in row.items()]
        lines.append(f"| {n} | " + " | ".join(cells) + f" | {LABELS[winner]} |")
    params = {run.group: run.params for run in runs}
    lines += ["", "| group | params | slope s (F1) | R² | err at smallest n / largest n (%) |", "|---|---|---|---|---|"]
    slopes = {}
    for g in groups:
        ns = sorted(errors[g])
        if len(ns) >= 2:
            s, _, r2 = power_law(ns, [_floor(errors[g][n], n_test) for n in ns])
            slopes[g] = s
            lines.append(f"| {LABELS[g]} | {params[g]} | {s:.3f} | {r2:.3f} | "
                         f"{100 * errors[g][ns[0]]:.2f} / {100 * errors[g][ns[-1]]:.2f} |")
    matched_wins = [n for n, w in wins if w == matching]
    lines += ["", f"- The matching group {LABELS[matching]} has the lowest error at {len(matched_wins)} of "
                  f"{len(wins)} sizes" + (f" ({', '.join(map(str, matched_wins))})." if matched_wins else ".")]
    if slopes:
        values = np.array(list(slopes.values()))
        lines.append(f"- Slopes: mean {values.mean():.3f}, std {values.std(ddof=1) if len(values) > 1 else 0:.3f}, "
                     f"range {values.min():.3f} ({LABELS[min(slopes, key=slopes.get)]}) to {values.max():.3f} "
                     f"({LABELS[max(slopes, key=slopes.get)]}).")
    return lines + [""]


def plot(path: Path, preset: str, by_task: dict[str, list[DigitsRun]], n_test: int) -> Path:
    """Fig. 2: test error against training size on log-log axes, one panel per task, one line per group."""
    from symbench.plots import new_figure

    fig = new_figure(5.2 * len(by_task), 4.0)
    for i, (task, runs) in enumerate(by_task.items()):
        ax = fig.add_subplot(1, len(by_task), i + 1)
        for g, by_n in mean_errors(runs).items():
            ns = sorted(by_n)
            ax.plot(ns, [_floor(by_n[n], n_test) for n in ns], marker="o", label=LABELS[g],
                    linewidth=2.5 if g == MATCHING_GROUP[task] else 1.2)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training examples")
        ax.set_ylabel("test error")
        ax.set_title(f"{task} digits ({preset})")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    return write_figure(fig, path)


def write_report(preset: str, results: str | Path = "results", sizes: DigitsSizes | None = None,
                 cfg: DigitsTraining | None = None, root: str | Path = "data",
                 idx_dir: str | Path | None = None) -> Path | None:
    """Render ``digits_<preset>.md`` and ``.png`` from every task CSV of ``preset``; None if there is none."""
    sizes, cfg = sizes or PRESETS[preset], cfg or training_presets()[preset]
    by_task = {t: runs for t in TASKS if (runs := read_runs(csv_path(results, t, preset, idx_dir)))}
    if not by_task:
        return None
    out = Path(results) / "digits"
    lines = [f"# Digits: test error vs training size over symmetry groups ({preset})", "",
             "CNNs of six (G-steerable conv, batch norm, ELU) blocks with average pooling after blocks 2 and 4, "
             "parameters matched to the {e} CNN; the checkpoint with the lowest validation error is tested.", ""]
    for task, runs in by_task.items():
        lines += task_report(task, runs, sizes.n_test)
    hours = sum(run.seconds for runs in by_task.values() for run in runs) / 3600
    lines += [f"Data: train sizes {sizes.train_sizes}, {sizes.n_val} validation and {sizes.n_test} test digits "
              f"({data_source(root, idx_dir)}), seed {sizes.seed}.",
              "Training: " + ", ".join(f"{k} {v}" for k, v in asdict(cfg).items()) + ".",
              f"Total training time {hours:.2f} h (sum over runs).", ""]
    stem = _stem(preset, idx_dir)
    write_text(out / f"{stem}.md", "\n".join(lines))
    plot(out / f"{stem}.png", preset, by_task, sizes.n_test)
    return out / f"{stem}.md"


def run_digits(preset: str, root: str | Path = "data", results: str | Path = "results",
               tasks: Sequence[str] = TASKS, groups: Sequence[str] = GROUPS, seeds: Sequence[int] | None = None,
               show_progress: bool = False, sizes: DigitsSizes | None = None,
               training: DigitsTraining | None = None, idx_dir: str | Path | None = None,
               trainer: Mapping[str, Any] | None = None) -> list[DigitsRun]:
    """Train every (task, group, size, seed) not yet in the task's CSV, append each row as it finishes (one line on
    stdout per run; ``show_progress`` adds Lightning's bars), then write the report. ``sizes`` / ``training`` override the preset's (tests use smaller ones)."""
    sizes, cfg = sizes or PRESETS[preset], training or training_presets()[preset]
    seeds = tuple(seeds) if seeds is not None else cfg.seeds
    unknown = sorted(set(groups) - set(GROUPS)) + sorted(set(tasks) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown group or task {unknown}; groups: {', '.join(GROUPS)}; tasks: {', '.join(TASKS)}")
    hardware = hardware_of(trainer)  # resolved once: a batch that does not divide fails before any training
    batch = hardware.per_device_batch(cfg.batch_size)
    finished: list[DigitsRun] = []
    for task in tasks:
        path = csv_path(results, task, preset, idx_dir)
        runs = read_runs(path)
        done = {run.key for run in runs}
        todo = [(g, n, s) for n in sizes.train_sizes for g in groups for s in seeds if (task, g, n, s) not in done]
        for i, (group, n, seed) in enumerate(todo, 1):
            data = DigitsDataModule(root, task, n, sizes, batch, shuffle_seed=seed,
                                    idx_dir=idx_dir, show_progress=show_progress)
            run = train_one(task, group, n, seed, data, cfg, show_progress, trainer)
            runs.append(run)
            finished.append(run)
            write_runs(path, runs)
            append_study_rows(results, "digits", study_rows([run], preset, sizes, cfg, data.data_key, hardware))
            print(f"[{task} {i}/{len(todo)}] {LABELS[group]} n={n} seed={seed}: test error "
                  f"{100 * run.test_error:.2f} % ({run.params} params, {run.seconds:.0f} s)", flush=True)
    write_report(preset, results, sizes, cfg, root, idx_dir)
    return finished


# -- command line (symbench.studies.StudyModule) ------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_experiment_arguments(parser, "digits")
    parser.add_argument("--tasks", nargs="+", help="rotated and/or flipped (default: both)")
    parser.add_argument("--groups", nargs="+", help="subset of e C4 D4 C8 D8 SO2 O2 (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, help="seeds (default: the preset's)")
    parser.add_argument("--idx-dir", help="a directory of MNIST-format IDX files (train-images-idx3-ubyte[.gz], ...) "
                                          "to use instead of MNIST; outputs are named after it")
    parser.add_argument("--report-only", action="store_true", help="only render the report from the CSVs")


def run(args: argparse.Namespace) -> None:
    check_preset(args.preset, PRESETS)
    check_preset(args.preset, training_presets())
    if not args.report_only:
        run_digits(args.preset, args.root, args.results, args.tasks or TASKS, args.groups or GROUPS, args.seeds,
                   show_progress=not args.no_progress, idx_dir=args.idx_dir, trainer=trainer_settings(args))
    path = write_report(args.preset, args.results, root=args.root, idx_dir=args.idx_dir)
    if path is None:
        raise FileNotFoundError(f"no digits results for preset {args.preset!r} under {args.results}/digits; "
                                f"run `symbench digits --preset {args.preset}` first")
    print(f"wrote {path}")
