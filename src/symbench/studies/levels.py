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
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from symbench.fields import FieldLayout
from symbench.stats import Estimate, SlopeFit, estimate, slope_fit, spearman
from symbench.studies.common import (
    add_experiment_arguments, append_study_rows, hardware_of, study_config_hash, study_presets, trainer_settings,
    write_figure, write_text,
)
from symbench.studies.one_step import (  # noqa: F401 (windows, Residual, ...: this study's API, used by its tests)
    DATA, QUARTER_TURNS, EpochTicks, Normalized, OneStepRun, OneStepTraining, Residual, baseline_model,
    check_models, csv_text, describe, evaluate, grouped_runs, is_baseline, model_equivariance_error, run_rows, score,
    stat_fields, train_model, windows,
)

DEFAULT_MODELS = ("persistence", "linear", "conv", "equiv", "rsteer")
EXACT_TOLERANCE = 1e-5  # relative L1 equivariance error allowed for a strictly equivariant model (float32 round-off)
LevelsTraining = OneStepTraining  # the model sizes and training of this study (benchmarks/levels/benchmark.yaml)



def training_presets() -> dict[str, LevelsTraining]:
    """The study's presets (``benchmarks/levels/benchmark.yaml``) as :class:`LevelsTraining` records."""
    return study_presets("levels", LevelsTraining)


LevelRun = OneStepRun  # one (level, model, seed): metrics equiv_error (E_model), equiv_relative, rmse


@dataclass
class LevelsResult:
    preset: str
    runs: list[LevelRun]
    summaries: dict[str, ModelSummary]
    files: list[Path]
    seconds: float


# -- the experiment --------------------------------------------------------------------------------------------------
def measure(name: str, level: int, seed: int, array: np.ndarray, cfg: LevelsTraining, layout: FieldLayout,
            bar: Any = None, trainer: Mapping[str, Any] | None = None) -> LevelRun:
    """One (level, model, seed): E_data for :data:`DATA`; otherwise the model scored by
    :func:`~symbench.studies.one_step.score` (a baseline evaluated, a registry model trained and evaluated)."""
    from datamodules import smoke_levels

    if name == DATA:
        return LevelRun(level, DATA, seed, {"equiv_error": smoke_levels.data_equivariance_error(array)})
    metrics, params, seconds = score(name, array, cfg, layout, bar, trainer, seed)
    return LevelRun(level, name, seed, metrics, params, seconds)


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
    """``runs.csv`` rows of ``runs`` (:func:`~symbench.studies.one_step.run_rows`): dataset ``smoke-levels-<level>``;
    model :data:`DATA` carries E_data as ``equiv_error``. ``data``: the smoke-levels preset, whose key is the rows'
    ``data_key``."""
    return [row for r in runs for row in run_rows(r, f"smoke-levels-{r.level}", __spec__.name, preset=preset,
                                                  config_hash=config_hash, data_key=data.key())]


def read_runs(path: Path, preset: str, config_hash: str) -> list[LevelRun]:
    """The :class:`LevelRun` s in a levels ``runs.csv`` of ``preset`` and ``config_hash`` (a later row of the
    same (level, model, seed, metric) wins); [] if the file does not exist."""
    def key(r: Mapping[str, str]) -> tuple[int, str, int] | None:
        if r["preset"] != preset or r["config_hash"] != config_hash:
            return None
        return int(r["dataset"].rpartition("-")[2]), r["model"], int(r["seed"])

    return [LevelRun(*k, **entry) for k, entry in grouped_runs(path, key).items()]


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
def level_records(summaries: Mapping[str, ModelSummary], data: Any) -> list[dict[str, str]]:
    """``levels_<preset>.csv``: one row per (level, model): eps, E_data, the seeds, and mean / std / 95 % interval
    over seeds of E_model (``equiv_error``), the test RMSE and the gap E_model - E_data."""
    return [{"level": str(lv), "eps": f"{data.eps(lv):.6g}", "data_equiv_error": f"{s.data[lv]:.6g}",
             "model": m, "seeds": str(s.seeds), **stat_fields("equiv_error", s.error[lv]),
             **stat_fields("rmse", s.rmse[lv]), **stat_fields("gap", s.gap[lv])}
            for lv in sorted(next(iter(summaries.values())).data) for m, s in summaries.items()]


def model_records(summaries: Mapping[str, ModelSummary]) -> list[dict[str, str]]:
    """``levels_<preset>_models.csv``: one row per model: the slope over seeds (mean / std / 95 % interval), the
    seeds whose Spearman is 1.0 and whose own slope interval contains 1, and the mean Spearman."""
    return [{"model": m, "seeds": str(s.seeds), **stat_fields("slope", s.slope),
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
    lines += ["", f"Training: {describe(cfg)}. Run time of this invocation {seconds:.0f} s.", ""]
    return "\n".join(lines)


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
    write_text(paths[1], csv_text(list(levels_csv[0]), levels_csv))
    write_text(paths[2], csv_text(list(models_csv[0]), models_csv))
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
