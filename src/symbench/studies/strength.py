"""Strength of the symmetry breaking (issue 22 item 3): as the breaking of the data grows from exact symmetry to strong
breaking, where -- if anywhere -- does a relaxed model (RGroup, RSteer) overtake the strict equivariant model and the
plain ConvNet?

Data: the graded sets of :mod:`datamodules.smoke_strength`, for the ``rotation`` (C4) and ``translation`` families
and, per family, the kind of breaking the history reveals (``buoyancy``: a per-site buoyancy factor) and one it
cannot (rotation ``wind``: a push on the smoke fixed in the lab frame; translation ``field``: a buoyancy field fixed
in the box), each at ``levels`` strengths ``eps`` from 0 (exact symmetry) to ``max_eps``.

Models per family (:data:`DEFAULT_MODELS`), each trained on next-frame prediction from one set exactly as the levels
study trains them (:mod:`symbench.studies.one_step`: residual, normalised, Adam, the preset of
``benchmarks/strength/benchmark.yaml``), once per seed:

* rotation: ConvNet ``conv`` (plain), the strict model ``equiv`` (E2CNN, exactly C4-equivariant), RGroup ``rgroup``
  (relaxed C4 group convolution, ICML 2022 eq. 4-5) and RSteer ``rsteer`` (relaxed C4-steerable convolution, eq. 7);
* translation: ConvNet ``conv`` plays both the plain and the strict model (a convolution is itself
  translation-equivariant, and the smoke-translation benchmark's ``equiv`` *is* ConvNet; with zero padding it is
  equivariant up to the x borders, which a periodic box does not have), and RGroup ``rgroup`` (relaxed translation
  group convolution: per-cell mixing of filter banks). RSteer has no translation variant (``rsteer`` relaxes
  rotation-steerable kernels only); the paper's translation family (Table 1) has RGroup as its relaxed model, so it
  stands alone here;
* both: the parameter-free baselines ``persistence`` (``x_t``) and ``linear`` (``2 x_t - x_{t-1}``).

Measured per (family, kind, level, model, seed): the one-step test RMSE on the held-out last ``test_frames`` frames
(simulation units), and per set the data equivariance error ``E_data``
(:func:`datamodules.smoke_strength.data_equivariance_error`). Every run is appended to ``results/strength/runs.csv``
as soon as it is measured (runs.csv schema with provenance; dataset ``smoke-strength-<family>-<kind>-<level>``,
model :data:`DATA` carries E_data) and a rerun skips those with the same ``config_hash`` (training preset without
seeds, the set's data parameters, device options): a killed study resumes.

Over seeds, each cell is a :class:`~symbench.stats.Estimate` (mean, std, 95 % Student-t interval). "Where does relaxed
overtake strict": for each relaxed model and each reference (the strict model, then ConvNet where it differs), the
smallest ``eps`` at which :func:`symbench.stats.beats` says ``yes`` (lower mean with non-overlapping intervals; with
one seed there are no intervals and a lower value is a ``yes``), else "nowhere". Outputs under
``results/strength/``: ``strength_<preset>.md`` (tables, verdicts, the answer), ``strength_<preset>.csv`` (one row per
family, kind, level and model) and ``strength_<preset>.png`` (RMSE against eps, one panel per family and kind, error
bars the 95 % intervals, E_data on the top axis).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from symbench.files import check_writable
from symbench.stats import Estimate, beats, estimate
from symbench.studies.common import (
    add_experiment_arguments, append_study_rows, check_preset, hardware_of, study_config_hash, study_presets,
    trainer_settings, write_figure, write_text,
)
from symbench.studies.one_step import (
    DATA, OneStepRun, OneStepTraining, check_models, csv_text, describe, grouped_runs, is_baseline, run_rows, score,
    stat_fields,
)

STUDY = "strength"
DEFAULT_MODELS: dict[str, tuple[str, ...]] = {
    "rotation": ("persistence", "linear", "conv", "equiv", "rgroup", "rsteer"),
    "translation": ("persistence", "linear", "conv", "rgroup"),
}
STRICT = {"rotation": "equiv", "translation": "conv"}  # the strictly equivariant model of each family
PLAIN = "conv"
RELAXED = ("rgroup", "rsteer")
StrengthTraining = OneStepTraining  # model sizes and training (benchmarks/strength/benchmark.yaml)


def training_presets() -> dict[str, StrengthTraining]:
    """The study's presets (``benchmarks/strength/benchmark.yaml``)."""
    return study_presets(STUDY, StrengthTraining)


@dataclass(frozen=True)
class StrengthRun(OneStepRun):
    """One (family, kind, level, model, seed); ``metrics``: ``rmse``, or ``equiv_error`` (E_data) for :data:`DATA`."""

    family: str = field(kw_only=True)
    kind: str = field(kw_only=True)

    @property
    def key(self) -> tuple[str, str, int, str, int]:
        """What a rerun matches on (E_data has no seed: its seed is left out)."""
        return self.family, self.kind, self.level, self.model, -1 if self.model == DATA else self.seed


@dataclass(frozen=True)
class SetSummary:
    """One family and kind: per level its ``eps`` and ``E_data``, and per (level, model) the RMSE's
    :class:`~symbench.stats.Estimate` over seeds (with each seed's value, for :func:`~symbench.stats.beats`)."""

    family: str
    kind: str
    eps: dict[int, float]
    data: dict[int, float]
    rmse: dict[tuple[int, str], Estimate]
    models: tuple[str, ...]

    def verdicts(self, relaxed: str, reference: str) -> dict[int, str]:
        """:func:`~symbench.stats.beats` of ``relaxed`` against ``reference`` at every level."""
        return {lv: beats(self.rmse[lv, relaxed], self.rmse[lv, reference]) for lv in sorted(self.eps)}

    def overtakes(self, relaxed: str, reference: str) -> int | None:
        """The smallest level at which ``relaxed`` beats ``reference`` (``yes``), None if at none."""
        return next((lv for lv, v in self.verdicts(relaxed, reference).items() if v.startswith("yes")), None)

    def answers(self) -> list[str]:
        """One sentence per (relaxed model, reference) pair present: where it overtakes, or nowhere."""
        refs = list(dict.fromkeys([STRICT[self.family], PLAIN]))
        out = []
        for r in (m for m in RELAXED if m in self.models):
            for ref in (m for m in refs if m in self.models):
                lv = self.overtakes(r, ref)
                role = "strict" if ref == STRICT[self.family] else "plain"
                if ref == STRICT[self.family] == PLAIN:
                    role = "strict = plain"
                where = ("nowhere" if lv is None else
                         f"from eps = {self.eps[lv]:.3g} (level {lv}, E_data {self.data[lv]:.3g}; "
                         f"{self.verdicts(r, ref)[lv]})")
                out.append(f"{self.family} / {self.kind}: `{r}` overtakes `{ref}` ({role}): {where}")
        return out


@dataclass
class StrengthResult:
    preset: str
    runs: list[StrengthRun]
    summaries: list[SetSummary]
    files: list[Path]


# -- selection -------------------------------------------------------------------------------------------------------
def selection(families: Sequence[str] | None, kinds: Sequence[str] | None) -> list[tuple[str, str]]:
    """The (family, kind) pairs asked for (default: every kind of every family); one-line ``ValueError`` for an
    unknown family, or a kind that none of the chosen families has."""
    from datamodules.smoke_strength import KINDS

    fams = list(dict.fromkeys(families or KINDS))
    for f in fams:
        if f not in KINDS:
            raise ValueError(f"unknown family {f!r} (--families); choose from {', '.join(KINDS)}")
    known = {k for f in fams for k in KINDS[f]}
    for k in kinds or ():
        if k not in known:
            raise ValueError(f"unknown kind {k!r} (--kinds) for families {', '.join(fams)}; choose from "
                             f"{', '.join(sorted(known))}")
    return [(f, k) for f in fams for k in KINDS[f] if not kinds or k in kinds]


def set_config_hash(cfg: StrengthTraining, data: Any, hardware: Any = None) -> str:
    """``config_hash`` of a set's rows: the training preset without its seeds (adding seeds keeps finished runs),
    the set's data parameters and the device options."""
    training = {k: v for k, v in asdict(cfg).items() if k != "seeds"}
    return study_config_hash(training, data, hardware=hardware)


# -- runs.csv rows ---------------------------------------------------------------------------------------------------
def dataset_name(family: str, kind: str, level: int) -> str:
    return f"smoke-strength-{family}-{kind}-{level}"


def study_rows(runs: Sequence[StrengthRun], preset: str, config_hash: str, data: Any) -> list[dict[str, Any]]:
    """``runs.csv`` rows (:func:`~symbench.studies.one_step.run_rows`; ``data_key``: the set's key)."""
    return [row for r in runs for row in run_rows(r, dataset_name(r.family, r.kind, r.level), __spec__.name,
                                                  preset=preset, config_hash=config_hash, data_key=data.key())]


def read_runs(path: Path, preset: str, hashes: Mapping[tuple[str, str], str]) -> list[StrengthRun]:
    """The runs in ``path`` of ``preset`` whose (family, kind) has the ``config_hash`` in ``hashes`` (a later row
    of the same run and metric wins); [] if the file does not exist."""
    def key(r: Mapping[str, str]) -> tuple[str, str, int, str, int] | None:
        parts = r["dataset"].split("-")
        if r["preset"] != preset or len(parts) != 5 or hashes.get((parts[2], parts[3])) != r["config_hash"]:
            return None
        return parts[2], parts[3], int(parts[4]), r["model"], int(r["seed"])

    return [StrengthRun(lv, m, s, **entry, family=f, kind=k)
            for (f, k, lv, m, s), entry in grouped_runs(path, key).items()]


# -- the experiment --------------------------------------------------------------------------------------------------
def measure(family: str, kind: str, level: int, name: str, seed: int, array: np.ndarray, cfg: StrengthTraining,
            bar: Any = None, trainer: Mapping[str, Any] | None = None) -> StrengthRun:
    """E_data for :data:`DATA`; otherwise the one-step test RMSE of ``name`` (:func:`~symbench.studies.one_step.score`,
    the family's group)."""
    from datamodules import smoke_strength

    if name == DATA:
        return StrengthRun(level, DATA, seed, {"equiv_error": smoke_strength.data_equivariance_error(array, family)},
                           family=family, kind=kind)
    metrics, params, seconds = score(name, array, cfg, smoke_strength.LAYOUT, bar, trainer, seed, family, ks=())
    return StrengthRun(level, name, seed, metrics, params, seconds, family=family, kind=kind)


def run_strength(preset: str = "cpu", root: str | Path = "data", results: str | Path = "results",
                 families: Sequence[str] | None = None, kinds: Sequence[str] | None = None,
                 seeds: Sequence[int] | None = None, epochs: int | None = None, progress: bool = True,
                 data_only: bool = False, trainer: Mapping[str, Any] | None = None) -> StrengthResult:
    """Generate the chosen sets if missing; for every (family, kind, level, model, seed) not yet in
    ``results/strength/runs.csv`` with its configuration hash, train and evaluate it and append its rows at once;
    then write ``strength_<preset>.{md,csv,png}`` from the requested runs."""
    from tqdm.auto import tqdm

    from datamodules import smoke_strength

    presets = training_presets()
    check_preset(preset, presets)
    pairs = selection(families, kinds)
    overrides = {"epochs": epochs, "seeds": None if seeds is None else tuple(seeds)}
    cfg = replace(presets[preset], **{k: v for k, v in overrides.items() if v is not None})
    data = {(f, k): smoke_strength.params(preset, f, k) for f, k in pairs}
    hardware = hardware_of(trainer)  # bad device options fail here, before any simulation
    out = Path(results) / STUDY
    if not data_only:
        check_writable(out, "--results")  # before any long work
    dirs = {}
    for (f, k), p in data.items():
        dirs[f, k] = smoke_strength.generate_preset(preset, f, k, root, progress)
        print(f"smoke-strength {f} / {k}: {p.levels} levels at {dirs[f, k]}", flush=True)
    if data_only:
        return StrengthResult(preset, [], [], [])
    models = {f: check_models(DEFAULT_MODELS[f]) for f in {f for f, _ in pairs}}
    hashes = {fk: set_config_hash(cfg, p, hardware) for fk, p in data.items()}
    path = out / "runs.csv"
    runs = read_runs(path, preset, hashes)
    done = {r.key for r in runs}
    todo = [(f, k, lv, m, s) for s in cfg.seeds for (f, k), p in data.items() for lv in range(p.levels)
            for m in (DATA, *models[f]) if StrengthRun(lv, m, s, {}, family=f, kind=k).key not in done]
    todo = list(dict.fromkeys(t if t[3] != DATA else (*t[:4], cfg.seeds[0]) for t in todo))  # E_data once
    trained = sum(1 for t in todo if t[3] != DATA and not is_baseline(t[3]))
    total = sum(p.levels * (1 + len(models[f]) * len(cfg.seeds)) for (f, _), p in data.items())
    print(f"strength: {len(todo)} of {total} runs to do, {trained} to train; the others are in {path}", flush=True)
    bar = tqdm(total=trained * cfg.epochs, unit="epoch", desc=STUDY, disable=not progress)
    try:
        for f, k, lv, s in dict.fromkeys(t[:3] + (t[4],) for t in todo):
            array = np.array(smoke_strength.load_level(dirs[f, k], lv)[0])
            for name in (t[3] for t in todo if (t[0], t[1], t[2], t[4]) == (f, k, lv, s)):
                bar.set_description(f"{f} {k} level {lv} seed {s} {name}")
                run = measure(f, k, lv, name, s, array, cfg, bar, trainer)
                append_study_rows(results, STUDY, study_rows([run], preset, hashes[f, k], data[f, k]))
                runs.append(run)
                bar.write(f"{f} / {k} level {lv} seed {s} {name}: " +
                          ", ".join(f"{m} {v:.4g}" for m, v in run.metrics.items()))
    finally:
        bar.close()
    mine = [r for r in runs if r.model == DATA or r.seed in cfg.seeds]
    summaries = [summarise(mine, f, k, data[f, k], models[f]) for f, k in pairs]
    files = [*write_outputs(out, preset, summaries, cfg), path]
    for file in files:
        print(f"wrote {file}")
    for s in summaries:
        for line in s.answers():
            print(line)
    return StrengthResult(preset, mine, summaries, files)


def summarise(runs: Sequence[StrengthRun], family: str, kind: str, data: Any, models: Sequence[str]) -> SetSummary:
    """:class:`SetSummary` of one family and kind from ``runs`` (every level of ``data`` must have E_data and at
    least one seed of every model; one-line ``ValueError`` otherwise)."""
    mine = [r for r in runs if (r.family, r.kind) == (family, kind)]
    e_data = {r.level: r.metrics["equiv_error"] for r in mine if r.model == DATA}
    rmse: dict[tuple[int, str], Estimate] = {}
    for lv in range(data.levels):
        if lv not in e_data:
            raise ValueError(f"strength: no E_data for {family} / {kind} level {lv}")
        for m in models:
            got = sorted((r.seed, r.metrics["rmse"]) for r in mine if r.model == m and r.level == lv)
            if not got:
                raise ValueError(f"strength: no run of {m!r} on {family} / {kind} level {lv}")
            rmse[lv, m] = estimate([v for _, v in got], [s for s, _ in got])
    return SetSummary(family, kind, {lv: data.eps(lv) for lv in range(data.levels)}, e_data, rmse, tuple(models))


# -- outputs ---------------------------------------------------------------------------------------------------------
def records(summaries: Sequence[SetSummary]) -> list[dict[str, str]]:
    """``strength_<preset>.csv``: one row per (family, kind, level, model): eps, E_data, seeds and the RMSE's mean,
    std and 95 % interval over seeds."""
    return [{"family": s.family, "kind": s.kind, "level": str(lv), "eps": f"{s.eps[lv]:.6g}",
             "data_equiv_error": f"{s.data[lv]:.6g}", "model": m, "seeds": str(s.rmse[lv, m].n),
             **stat_fields("rmse", s.rmse[lv, m])} for s in summaries for lv in sorted(s.eps) for m in s.models]


def markdown(preset: str, summaries: Sequence[SetSummary], cfg: StrengthTraining) -> str:
    seeds = sorted({int(seed) for s in summaries for e in s.rmse.values() for seed, _ in e.by_seed})
    lines = [
        f"# Strength of the symmetry breaking -- preset `{preset}`", "",
        "Generated by `symbench strength`; do not edit. Issue 22 item 3: as the breaking of the data grows from exact "
        "symmetry (eps = 0) to strong breaking, where does a relaxed model (RGroup, RSteer) overtake the strict "
        "equivariant model and the plain ConvNet? Data: `datamodules/smoke_strength.py` (kinds `buoyancy`: a "
        "per-site buoyancy factor, which the history reveals; `wind` / `field`: a push or a buoyancy field fixed in "
        "the lab frame, which it cannot). Cells: one-step test RMSE on the held-out last frames (simulation units), "
        f"mean ± std [95 % Student-t interval] over seeds {seeds}. E_data: mean |simulation brought back to site 0 - "
        "site-0 simulation| (L1). Strict model: `equiv` (E2CNN, C4) for rotation, `conv` for translation (a "
        "convolution is translation-equivariant). Verdicts: `symbench.stats.beats` (yes: lower mean and "
        "non-overlapping intervals, k/n seeds lower; tie: overlapping; **no**: higher; with one seed there are no "
        "intervals and a lower value is a yes).", "",
        "## Where does relaxed overtake strict?", "",
        *[f"- {line}" for s in summaries for line in s.answers()], "",
    ]
    for s in summaries:
        head = "| level | eps | E_data | " + " | ".join(f"`{m}`" for m in s.models) + " |"
        lines += [f"## {s.family} / {s.kind}", "", head, "|" + "---:|" * (3 + len(s.models))]
        lines += [f"| {lv} | {s.eps[lv]:.3g} | {s.data[lv]:.3g} | " +
                  " | ".join(s.rmse[lv, m].format(".4f", std=".2g") for m in s.models) + " |" for lv in sorted(s.eps)]
        pairs = [(r, ref) for r in RELAXED if r in s.models
                 for ref in dict.fromkeys([STRICT[s.family], PLAIN]) if ref in s.models]
        if pairs:
            lines += ["", "| level | eps | " + " | ".join(f"`{r}` vs `{ref}`" for r, ref in pairs) + " |",
                      "|" + "---:|" * (2 + len(pairs))]
            verdicts = [s.verdicts(r, ref) for r, ref in pairs]
            lines += [f"| {lv} | {s.eps[lv]:.3g} | " + " | ".join(v[lv] for v in verdicts) + " |"
                      for lv in sorted(s.eps)]
        lines.append("")
    lines += [f"Training: {describe(cfg)}.", ""]
    return "\n".join(lines)


def plot(path: Path, preset: str, summaries: Sequence[SetSummary]) -> Path:
    """RMSE against eps, one panel per family and kind, error bars the 95 % intervals over seeds, E_data of each
    level on the top axis (PNG, written atomically)."""
    from symbench.plots import model_style, new_figure

    fig = new_figure(5.0 * min(2, len(summaries)), 3.8 * ((len(summaries) + 1) // 2))
    for i, s in enumerate(summaries):
        ax = fig.add_subplot((len(summaries) + 1) // 2, min(2, len(summaries)), i + 1)
        levels = sorted(s.eps)
        eps = [s.eps[lv] for lv in levels]
        for m in s.models:
            est = [s.rmse[lv, m] for lv in levels]
            style = model_style(m)
            if is_baseline(m):  # the two baselines share a colour: dotted persistence, dash-dotted linear
                style = {**style, "linestyle": ":" if m == "persistence" else "-."}
            ax.errorbar(eps, [e.mean for e in est], yerr=[e.half_width for e in est], marker="o", markersize=3,
                        capsize=2, label=m, **style)
        ax.set_xlabel("breaking strength eps")
        ax.set_ylabel("one-step test RMSE")
        top = ax.secondary_xaxis("top")
        top.set_xticks(eps, [f"{s.data[lv]:.2g}" for lv in levels], fontsize=6)
        top.set_xlabel("E_data", fontsize=7)
        ax.set_title(f"{s.family} / {s.kind}", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6)
    fig.suptitle(f"RMSE against breaking strength ({preset})", fontsize=10)
    return write_figure(fig, path)


def write_outputs(out: Path, preset: str, summaries: Sequence[SetSummary], cfg: StrengthTraining) -> list[Path]:
    """Write ``strength_<preset>.{md,csv,png}`` under ``out`` atomically; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{STUDY}_{preset}"
    rows = records(summaries)
    return [write_text(stem.with_suffix(".md"), markdown(preset, summaries, cfg)),
            write_text(stem.with_suffix(".csv"), csv_text(list(rows[0]), rows)),
            plot(stem.with_suffix(".png"), preset, summaries)]


# -- command line (symbench.studies.StudyModule) ---------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_experiment_arguments(parser, STUDY)
    parser.add_argument("--families", nargs="+", help="rotation and / or translation (default: both)")
    parser.add_argument("--kinds", nargs="+",
                        help="kinds of breaking (default: every kind of the families: rotation buoyancy wind, "
                             "translation buoyancy field)")
    parser.add_argument("--seeds", nargs="+", type=int, help="seeds (default: the preset's)")
    parser.add_argument("--epochs", type=int, help="override the preset's training epochs")
    parser.add_argument("--data-only", action="store_true", help="only generate (or reuse) the datasets")


def run(args: argparse.Namespace) -> None:
    run_strength(args.preset, args.root, args.results, args.families, args.kinds, args.seeds, args.epochs,
                 progress=not args.no_progress, data_only=args.data_only, trainer=trainer_settings(args))
