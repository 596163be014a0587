"""``symbench tune``: tune every model of some benchmarks the way ICML 2022 did (Table 3 ranges), with one fixed trial
budget for every model, and write what the sweeps found where it can be committed.

For each benchmark and each of its trainable models (the baselines have nothing to tune), one TPE sweep
(:func:`symbench.sweep.run.run_sweep`) of ``trials`` trials over the model's search space in ``sweeps/*/`` (the
objective: the best validation rollout RMSE; the test splits are never read). Every model gets the same budget, so
no model's rank comes from a larger search, and the same first points: TPE starts with random trials
(:data:`START_UP`), and those are enqueued as common random numbers, one seeded draw of the ranges that every model of
the benchmark shares (learning rate, batch size, width, depth, loss steps) for all of them, so that no model's rank
comes from luckier draws; the ranges only some models have (RGroup's banks, the penalty weight alpha) are drawn by
each study itself. Trials after the start-up ones are TPE's. A sweep resumes from its Optuna journal (``<runs>/sweeps/<study>/``), so
``symbench tune`` rerun after a kill continues where it stopped and a finished sweep costs nothing. The best trial's
overrides go to ``benchmarks/<benchmark>/best/<model>.yaml``, which ``symbench bench`` applies at that preset; the
campaign's summary, one row per model, goes to ``results/<benchmark>/tuning_<preset>.{md,csv}`` (rewritten after
every sweep):

* trials complete / pruned / failed (a pruned trial stopped early: its epochs' validation RMSE was worse than the
  median of earlier trials at that epoch);
* the best validation RMSE and the parameters that reached it (how the tuned model does on the test splits, over
  seeds, is ``symbench bench``'s and the leaderboard's job);
* the wall time of the sweep's trials (sum of their start-to-end times).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import optuna
from optuna.trial import TrialState

from symbench import models
from symbench.config import ConfigError, benchmark_models
from symbench.provenance import git_describe
from symbench.results import atomic_write_text
from symbench.sweep.run import SweepSpec, open_study, run_sweep
from symbench.sweep.space import SearchSpace, load_space

START_UP = 10  # TPE's random start-up trials (Optuna's default n_startup_trials)


@dataclass(frozen=True)
class TuningRow:
    """What one model's sweep found."""

    benchmark: str
    model: str
    preset: str
    budget: int
    complete: int
    pruned: int
    failed: int
    best_val_rmse: float
    best_params: str  # JSON of the best trial's overrides; "" when no trial completed
    trial_seconds: float
    study: str
    space: str


def tuned_models(benchmark: str, preset: str, names: Sequence[str] | None = None) -> dict[str, SearchSpace]:
    """The trainable models of ``benchmark`` at ``preset`` (``names`` if given), in order, each with its search space;
    one line naming the models without one (before anything trains)."""
    chosen = [models.canonical(n) for n in names] if names else [
        m for m in benchmark_models(benchmark, preset) if models.spec(m).family != "baseline"]
    baselines = [m for m in chosen if models.spec(m).family == "baseline"]
    if baselines:
        raise ConfigError(f"{', '.join(baselines)} have no parameters to tune; leave them out of --models")
    spaces, uncovered = {}, []
    for m in chosen:
        try:
            spaces[m] = load_space(benchmark, m, preset=preset)
        except ConfigError:
            uncovered.append(m)
    if uncovered:
        raise ConfigError(f"no search space in sweeps/ for {', '.join(uncovered)} of {benchmark}; add the model to "
                          f"the `models` and the benchmark to the `benchmark` list of a sweeps/*/*.yaml file")
    return spaces


def sweep_spec(benchmark: str, model: str, preset: str, trials: int, root: str, runs: str, progress: bool,
               trainer: dict[str, Any] | None = None) -> SweepSpec:
    """The campaign's sweep of one model: TPE with the campaign's budget, the space file that covers the model."""
    return SweepSpec(benchmark=benchmark, model=model, preset=preset, sampler="tpe", trials=trials, root=root,
                     runs=runs, progress=progress, trainer=trainer)


def shared_keys(spaces: Sequence[SearchSpace]) -> list[str]:
    """The search ranges every one of ``spaces`` has, in the first one's order."""
    return [k for k in spaces[0].ranges if all(k in s.ranges for s in spaces[1:])]


def common_points(space: SearchSpace, keys: Sequence[str], n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` draws of ``space``'s ranges of ``keys`` from one seeded random sampler: the same points for every space
    whose ranges of ``keys`` are the same."""
    restricted = dataclasses.replace(space, ranges={k: space.ranges[k] for k in keys})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    points = []
    for _ in range(n):
        trial = study.ask()
        points.append(restricted.suggest(trial, "tpe"))
        study.tell(trial, 0.0)
    return points


def enqueue_common(spec: SweepSpec, points: Sequence[dict[str, Any]]) -> None:
    """Enqueue ``points`` as the first trials of ``spec``'s study, once (a resumed campaign does not add them
    again); they count towards the budget."""
    queue, _ = open_study(spec, create=True)
    if queue.study.user_attrs.get("common_points") is None:
        for point in points:
            queue.study.enqueue_trial(point)
        queue.study.set_user_attr("common_points", len(points))


def tuning_row(spec: SweepSpec) -> TuningRow:
    """The summary of a (resolved) sweep from its study."""
    queue, _ = open_study(spec)
    trials = queue.trials()
    count = {s: sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = min(complete, key=lambda t: t.value) if complete else None
    seconds = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in trials
                  if t.datetime_start and t.datetime_complete)
    return TuningRow(spec.benchmark, spec.model, spec.preset, int(spec.trials or 0), count[TrialState.COMPLETE],
                     count[TrialState.PRUNED], count[TrialState.FAIL],
                     float(best.value) if best else float("nan"),
                     json.dumps(dict(sorted(best.params.items()))) if best else "", round(seconds, 1),
                     spec.study or "", Path(spec.space or "").name)


def summary_paths(results: str | Path, benchmark: str, preset: str) -> tuple[Path, Path]:
    base = Path(results) / benchmark / f"tuning_{preset}"
    return base.with_suffix(".md"), base.with_suffix(".csv")


def render_csv(rows: Sequence[TuningRow]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[f.name for f in fields(TuningRow)], lineterminator="\n")
    writer.writeheader()
    writer.writerows(asdict(r) for r in rows)
    return buf.getvalue()


def _params(text: str) -> str:
    if not text:
        return "–"
    return ", ".join(f"{k.split('.')[-1]} {v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]} {v}"
                     for k, v in json.loads(text).items())


def render_markdown(benchmark: str, preset: str, rows: Sequence[TuningRow], revision: str) -> str:
    budgets = sorted({r.budget for r in rows})
    lines = [f"# Tuning: `{benchmark}`, preset `{preset}`", "",
             f"Generated by `symbench tune` at `{revision}`; do not edit. One TPE sweep per model over its ICML 2022 "
             f"Table 3 search space (`sweeps/`), {' / '.join(map(str, budgets))} trial(s) each (the same budget for "
             "every model), scored on the validation rollout RMSE only. A pruned trial stopped early (median "
             f"rule). The best overrides are in `benchmarks/{benchmark}/best/<model>.yaml`, which `symbench bench` "
             "applies at this preset.", "",
             "| model | trials: complete / pruned / failed | best val RMSE | best parameters | trial time (s) | space |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        value = "–" if r.best_val_rmse != r.best_val_rmse else f"{r.best_val_rmse:.4f}"
        lines.append(f"| {r.model} | {r.complete} / {r.pruned} / {r.failed} | {value} | {_params(r.best_params)} | "
                     f"{r.trial_seconds:.0f} | {r.space} |")
    total = sum(r.trial_seconds for r in rows)
    lines += ["", f"Trial time in all: {total / 60:.1f} min (sum over the sweeps' trials, as run).", ""]
    return "\n".join(lines)


def write_summary(results: str | Path, benchmark: str, preset: str, rows: Sequence[TuningRow]) -> Path:
    """``tuning_<preset>.{md,csv}`` of ``benchmark`` from ``rows`` (written atomically; the md last)."""
    md, table = summary_paths(results, benchmark, preset)
    atomic_write_text(table, render_csv(rows))
    atomic_write_text(md, render_markdown(benchmark, preset, rows, git_describe()))
    return md


def run_tune(benchmarks: Sequence[str], preset: str, trials: int, names: Sequence[str] | None = None,
             root: str = "data", runs: str = "runs", results: str | Path = "results", workers: int = 1,
             progress: bool = True, trainer: dict[str, Any] | None = None) -> list[Path]:
    """Sweep every model of every benchmark (all checked first), writing each benchmark's summary after every sweep;
    returns the summaries' paths."""
    if trials < 1:
        raise ConfigError(f"--trials must be >= 1 (the budget of every model's sweep), got {trials}")
    plan = {b: tuned_models(b, preset, names) for b in benchmarks}
    specs = {(b, m): sweep_spec(b, m, preset, trials, root, runs, progress, trainer).resolved()
             for b, ms in plan.items() for m in ms}
    written = []
    for b, spaces in plan.items():
        keys = shared_keys(list(spaces.values()))
        done: list[TuningRow] = []
        for i, (m, space) in enumerate(spaces.items(), start=1):
            print(f"[{b} {i}/{len(spaces)}] tuning {m}: {trials} TPE trials", flush=True)
            enqueue_common(specs[b, m], common_points(space, keys, min(trials, START_UP)))
            run_sweep(specs[b, m], workers=workers)
            done.append(tuning_row(specs[b, m]))
            path = write_summary(results, b, preset, done)
        written.append(path)
        print(f"wrote {path}", flush=True)
    return written
