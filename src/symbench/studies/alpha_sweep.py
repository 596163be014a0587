"""RMSE against the weight ``alpha`` of the soft-equivariance penalty (ICML 2022 sec. 3.3, Fig. 7 of appendix A.4:
"the soft equivariance regularization can further improve its prediction performance on both test sets but large
alpha may also hinder its learning").

One relaxed model of one benchmark is trained at every ``alpha`` (the benchmark preset otherwise unchanged) through
the same :func:`~symbench.bench.run_one` path as ``symbench bench``; its rows, with an ``alpha`` column, are appended
to ``results/<benchmark>/alpha_sweep.csv`` after each run (a finished (alpha, seed) of the same configuration is
skipped, so an interrupted sweep resumes), then ``alpha_sweep_<model>_<preset>.md`` and ``.png`` (rollout RMSE vs
alpha, one line per test split, mean ± std over seeds) are written beside it. The table carries the 95 % interval
of each alpha, whether it beats alpha = 0 and in how many seeds, and the trivial baselines' rows (``persistence``,
``linear``) of the same benchmark, split and preset, read from ``results/<benchmark>/runs.csv`` (``make bench-alpha``
writes them first with ``symbench bench <benchmark> --models persistence linear``).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import datamodules
from symbench.bench import is_finished, run_one
from symbench.config import ConfigError, benchmark_models, resolve, seeds_of
from symbench.leaderboard import BASELINE_MODELS as BASELINES
from symbench.leaderboard import SPLIT_TITLES, aggregate, current_rows
from symbench.results import ROW_FIELDS, read_rows
from symbench.studies.common import add_trainer_arguments, trainer_settings, write_figure, write_rows, write_text
from symbench.stats import Estimate, beats

DEFAULT_ALPHAS = (0.0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2)
SWEEP_FIELDS = [*ROW_FIELDS, "alpha"]


def sweep_csv(results_dir: str | Path, benchmark: str) -> Path:
    return Path(results_dir) / benchmark / "alpha_sweep.csv"


def run_alpha_sweep(benchmark: str, model: str, alphas: Sequence[float] = DEFAULT_ALPHAS, preset: str = "cpu",
                    seeds: Sequence[int] | None = None, root: str | Path = "data", results_dir: str | Path = "results",
                    runs_dir: str | Path = "runs", progress: bool = True, trainer: Mapping[str, Any] | None = None,
                    tf32: bool = False) -> list[Path]:
    """Train ``model`` on ``benchmark`` at every ``alpha`` and seed; returns the table and plot written.
    ``trainer``: device options overriding the preset's (as ``bench``'s); ``tf32``: allow TF32 on CUDA."""
    listed = benchmark_models(benchmark, preset)
    if model not in listed:
        raise ConfigError(f"model {model!r} is not part of benchmark {benchmark!r}; its models: {', '.join(listed)}")
    if not alphas or any(a < 0 or not math.isfinite(a) for a in alphas):
        raise ConfigError(f"alphas must be finite and >= 0, got {list(alphas)}")
    seeds = list(seeds) if seeds is not None else seeds_of(benchmark, preset)[:1]
    overrides = {"trainer": dict(trainer or {})}
    configs = [(a, resolve(benchmark, preset, model, s, root, {**overrides, "module": {"alpha": float(a)}},
                           use_best=False, tf32=tf32))
               for a in alphas for s in seeds]
    first = configs[0][1]
    if first.data.get("source", "generated") == "generated":
        datamodules.generate(first.dataset, first.data.get("preset", preset), root, progress=progress)
    path = sweep_csv(results_dir, benchmark)
    previous = read_rows(path) if path.exists() else []
    for i, (alpha, cfg) in enumerate(configs, start=1):
        print(f"[{i}/{len(configs)}] {benchmark} preset={preset} model={model} alpha={alpha:g} seed={cfg.seed}",
              flush=True)
        if is_finished(cfg, previous, runs_dir):
            print(f"    already in {path}; skipped", flush=True)
            continue
        rows = [{**r, "alpha": alpha} for r in run_one(cfg, runs_dir, progress)]
        write_rows(path, rows, SWEEP_FIELDS)
        rmse = ", ".join(f"{r['split']} RMSE {r['value']:.4f}" for r in rows if r["metric"] == "rmse")
        print(f"    appended {len(rows)} rows to {path} ({rmse})", flush=True)
    return write_alpha_sweep(benchmark, model, preset, results_dir)


def sweep_cells(rows: Sequence[dict[str, str]], model: str, preset: str) -> dict[str, dict[float, Estimate]]:
    """split -> alpha -> mean ± std over seeds of the rollout RMSE (the rows of ``model`` at ``preset``)."""
    mine = [r for r in rows if r["model"] == model and r["preset"] == preset and r["metric"] == "rmse"]
    out: dict[str, dict[float, Estimate]] = {}
    for alpha in sorted({float(r["alpha"]) for r in mine}):
        cells = aggregate([r for r in mine if float(r["alpha"]) == alpha])
        for (_, _, split, _, _), cell in cells.items():
            out.setdefault(split, {})[alpha] = cell
    return out


def baseline_cells(results_dir: str | Path, benchmark: str, preset: str) -> dict[str, dict[str, Estimate]]:
    """split -> baseline -> mean ± std over seeds of the rollout RMSE of the :data:`BASELINES` rows of ``preset`` in
    ``results/<benchmark>/runs.csv`` (each model's newest code revision, as the leaderboard reads them); {} if the
    file has none (``symbench bench <benchmark> --models persistence linear`` writes them in seconds)."""
    path = Path(results_dir) / benchmark / "runs.csv"
    if not path.exists():
        return {}
    rows, _ = current_rows(read_rows(path))
    mine = [r for r in rows if r["model"] in BASELINES and r["preset"] == preset and r["metric"] == "rmse"]
    out: dict[str, dict[str, Estimate]] = {}
    for (_, name, split, _, _), cell in aggregate(mine).items():
        out.setdefault(split, {})[name] = cell
    return out


def _row(split: str, name: str, cell: Estimate, versus: str, bold: bool = False) -> str:
    mean = f"**{cell.mean:.3f}**" if bold else f"{cell.mean:.3f}"
    value = f"{mean} ± {cell.std:.3f}" if cell.n > 1 else mean
    return f"| {SPLIT_TITLES.get(split, split)} | {name} | {value} | {cell.bounds('.3f')} | {cell.n} | {versus} |"


def render_alpha_sweep(benchmark: str, model: str, preset: str, cells: dict[str, dict[float, Estimate]],
                       baselines: dict[str, dict[str, Estimate]] | None = None) -> str:
    """The sweep's table: per split, one row per alpha (mean ± std over seeds, the 95 % Student-t interval, the
    seeds, and whether it beats alpha = 0: :func:`~symbench.stats.beats`, "yes 3/3" / "**no** 1/3" / "tie"
    where the intervals overlap), then the ``baselines`` rows (:func:`baseline_cells`) of the same benchmark, split
    and preset; below it, per split, the best alpha and in how many seeds it beat alpha = 0."""
    baselines = baselines or {}
    lines = [f"# Soft-equivariance weight sweep: `{model}` on `{benchmark}`, preset `{preset}`", "",
             "Generated by `symbench alpha-sweep` (ICML 2022 Fig. 7 analog): RMSE over the rollout horizon against the "
             "weight alpha of the penalty added to the loss, mean ± std over seeds and the 95 % Student-t interval of "
             "the mean. 'vs alpha = 0': does this alpha have the lower mean RMSE, and in how many of the seeds both "
             "ran did it (tie: the intervals overlap). `persistence` / `linear`: the trivial baselines' rows of "
             f"`results/{benchmark}/runs.csv` (no parameters; deterministic, so their std is 0). Bold: the best "
             "alpha per split.", "",
             "| split | alpha / baseline | RMSE | 95 % interval | seeds | vs alpha = 0 |", "|---|---|---|---|---|---|"]
    summary = []
    for split in (s for s in SPLIT_TITLES if s in cells):
        by_alpha = cells[split]
        zero = by_alpha.get(0.0)
        best = min(by_alpha, key=lambda a: by_alpha[a].mean)
        for alpha, cell in sorted(by_alpha.items()):
            versus = "–" if zero is None or alpha == 0.0 else beats(cell, zero)
            lines.append(_row(split, f"alpha={alpha:g}", cell, versus, bold=alpha == best))
        for name in BASELINES:
            if name in baselines.get(split, {}):
                lines.append(_row(split, name, baselines[split][name], "–"))
        if zero is not None and best != 0.0:
            summary.append(f"- {SPLIT_TITLES[split]}: best alpha = {best:g}; vs alpha = 0: "
                           f"{beats(by_alpha[best], zero)}.")
        elif zero is not None:
            summary.append(f"- {SPLIT_TITLES[split]}: alpha = 0 is best.")
    if not baselines:
        summary.append(f"- No `persistence` / `linear` rows of preset `{preset}` in `results/{benchmark}/runs.csv`: "
                       f"`symbench bench {benchmark} --models persistence linear --preset {preset}` writes them.")
    return "\n".join([*lines, "", *summary]) + "\n"


def plot_alpha_sweep(cells: dict[str, dict[float, Any]], path: Path, title: str) -> Path:
    """RMSE vs alpha, one line per split; alpha = 0 is drawn one decade left of the smallest positive alpha."""
    from symbench.plots import new_figure

    positive = [a for by_alpha in cells.values() for a in by_alpha if a > 0]
    zero_at = min(positive) / 10 if positive else 1e-6
    fig = new_figure(5.0, 3.4)
    ax = fig.add_subplot()
    for split, by_alpha in cells.items():
        alphas = sorted(by_alpha)
        xs = [a if a > 0 else zero_at for a in alphas]
        ax.errorbar(xs, [by_alpha[a].mean for a in alphas], yerr=[by_alpha[a].std for a in alphas], marker="o",
                    capsize=3, label=SPLIT_TITLES.get(split, split))
    ax.set_xscale("log")
    ticks = sorted({a if a > 0 else zero_at for by_alpha in cells.values() for a in by_alpha})
    ax.set_xticks(ticks, ["0" if t == zero_at else f"{t:g}" for t in ticks])  # zero_at only stands for alpha = 0
    ax.set_xlabel("alpha (penalty weight)")
    ax.set_ylabel("RMSE")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    return write_figure(fig, path)


def write_alpha_sweep(benchmark: str, model: str, preset: str, results_dir: str | Path = "results") -> list[Path]:
    """The table and plot of the rows in ``results/<benchmark>/alpha_sweep.csv``."""
    rows = read_rows(sweep_csv(results_dir, benchmark))
    cells = sweep_cells(rows, model, preset)
    if not cells:
        raise ConfigError(f"no alpha-sweep rows of {model!r} at preset {preset!r} in {sweep_csv(results_dir, benchmark)}")
    stem = Path(results_dir) / benchmark / f"alpha_sweep_{model}_{preset}"
    baselines = baseline_cells(results_dir, benchmark, preset)
    write_text(stem.with_suffix(".md"), render_alpha_sweep(benchmark, model, preset, cells, baselines))
    png = plot_alpha_sweep(cells, stem.with_suffix(".png"), f"{model} on {benchmark} ({preset})")
    return [stem.with_suffix(".md"), png]


# -- command line (symbench.studies.StudyModule) ------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("benchmark")
    parser.add_argument("--model", required=True, help="registry name of a model with regularization_loss()")
    parser.add_argument("--alphas", nargs="+", type=float, help="penalty weights (default: 0 1e-6 ... 1e-2)")
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--seeds", nargs="+", type=int, help="seeds (default: the preset's first)")
    parser.add_argument("--root", default="data", help="data root directory")
    parser.add_argument("--results", default="results", help="results directory")
    parser.add_argument("--runs", default="runs", help="checkpoints and logs directory")
    parser.add_argument("--no-progress", action="store_true")
    add_trainer_arguments(parser)
    parser.add_argument("--tf32", action="store_true", help="allow TF32 on CUDA (default: full float32)")


def run(args: argparse.Namespace) -> None:
    for path in run_alpha_sweep(args.benchmark, args.model, args.alphas or DEFAULT_ALPHAS, args.preset, args.seeds,
                                args.root, args.results, args.runs, progress=not args.no_progress,
                                trainer=trainer_settings(args), tf32=args.tf32):
        print(f"wrote {path}")
