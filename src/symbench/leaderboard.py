"""Leaderboard tables generated from ``results/<benchmark>/runs.csv`` (never edited by hand).

Aggregation: mean ± sample standard deviation over seeds of each (preset, model, split, metric, horizon) and the 95 %
confidence interval of the mean, ``mean ± t_{0.975, n-1} std / sqrt(n)`` (Student t over the n seeds). An ordering
("does Equ beat plain?") is shown per cell with the number of seeds in which it held ("3/3") and marked a tie when
the two cells' intervals overlap. A run whose best epoch is its last may be under-trained and is flagged. The
markdown follows the layout of the paper a benchmark reproduces (for RBC, ICLR 2021 Table 2: RMSE and ESE on the
Orig / UM / Mag / Rot / Scale test sets), one table per preset.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from symbench.config import benchmarks_dir, load_benchmark
from symbench.plateau import under_trained
from symbench.results import FAILED_FILE, atomic_write_text, read_rows
from symbench.stats import t_half_width

SPLIT_TITLES = {"orig": "Orig", "um": "UM", "mag": "Mag", "rot": "Rot", "rot_any": "Rot (any angle)",
                "scale": "Scale", "test_future": "Future", "test_domain": "Domain"}
METRIC_TITLES = {"rmse": "RMSE", "ese": "ESE", "energy_l1": "Energy L1"}


@dataclass(frozen=True)
class Cell:
    mean: float
    std: float
    n: int
    by_seed: tuple[tuple[str, float], ...] = ()  # (seed, value) of each seed

    @property
    def half_width(self) -> float:
        """Half-width of the 95 % Student-t interval of the mean (0 for one seed: no interval)."""
        return t_half_width(self.std, self.n)

    @property
    def interval(self) -> tuple[float, float]:
        return self.mean - self.half_width, self.mean + self.half_width

    def overlaps(self, other: Cell) -> bool:
        """True when the 95 % intervals of the two cells overlap (a tie); never for two single-seed cells."""
        if self.n < 2 and other.n < 2:
            return False
        (lo, hi), (olo, ohi) = self.interval, other.interval
        return lo <= ohi and olo <= hi

    def __str__(self) -> str:
        if self.n < 2:
            return f"{self.mean:.3f}"
        lo, hi = self.interval
        return f"{self.mean:.3f} ± {self.std:.3f} [{lo:.3f}, {hi:.3f}]"


def aggregate(rows: Sequence[dict[str, str]]) -> dict[tuple[str, str, str, str, str], Cell]:
    """(preset, model, split, metric, horizon) -> mean ± std over seeds (last row wins for a repeated seed)."""
    by_seed: dict[tuple[str, ...], dict[str, float]] = defaultdict(dict)
    for r in rows:
        key = (r["preset"], r["model"], r["split"], r["metric"], r["horizon"])
        by_seed[key][r["seed"]] = float(r["value"])
    out = {}
    for key, seeds in by_seed.items():
        values = list(seeds.values())
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        out[key] = Cell(statistics.fmean(values), std, len(values), tuple(seeds.items()))
    return out


def beats(a: Cell, b: Cell) -> str:
    """Does ``a`` have the lower value? ``"yes 3/3"`` / ``"**no** 1/3"`` (by the means; k of n seeds present in both
    where ``a`` was lower), ``"tie 2/3"`` where the 95 % intervals overlap."""
    theirs = dict(b.by_seed)
    common = [(value, theirs[seed]) for seed, value in a.by_seed if seed in theirs]
    held = f"{sum(x < y for x, y in common)}/{len(common)}"
    if a.overlaps(b):
        return f"tie {held}"
    return f"yes {held}" if a.mean < b.mean else f"**no** {held}"


def current_rows(rows: Sequence[dict[str, str]]) -> tuple[list[dict[str, str]], dict[tuple[str, str], tuple[str, int]]]:
    """The rows of one code revision per (preset, model): the ``code_rev`` of its newest (last appended) row; and
    per (preset, model) that revision and how many older rows were left out. Rows written before ``code_rev``
    existed have it empty and count as one revision."""
    newest = {(r["preset"], r["model"]): r.get("code_rev", "") for r in rows}
    kept = [r for r in rows if r.get("code_rev", "") == newest[(r["preset"], r["model"])]]
    left = defaultdict(int)
    for r in rows:
        if r.get("code_rev", "") != newest[(r["preset"], r["model"])]:
            left[(r["preset"], r["model"])] += 1
    return kept, {key: (rev, left[key]) for key, rev in newest.items()}


def ordered(values: Sequence[str], preferred: Sequence[str]) -> list[str]:
    """The distinct ``values``: those in ``preferred`` first, in its order, then the rest as they come."""
    present = list(dict.fromkeys(values))
    return [v for v in preferred if v in present] + [v for v in present if v not in preferred]


def render_markdown(benchmark: str, rows: Sequence[dict[str, str]], model_order: Sequence[str] = (),
                    split_order: Sequence[str] = tuple(SPLIT_TITLES)) -> str:
    rows, revisions = current_rows(rows)
    cells = aggregate(rows)
    lines = [f"# Leaderboard: {benchmark}", "",
             f"Generated by `symbench leaderboard` from `results/{benchmark}/runs.csv`; mean ± std over seeds "
             "[95 % Student-t interval of the mean] where there are several. Each model's rows come from one code "
             "revision, its newest (`revision` in the run facts; — for rows written before revisions were recorded).",
             ""]
    for preset in ordered([r["preset"] for r in rows], ("paper", "cpu", "tiny")):
        prows = [r for r in rows if r["preset"] == preset]
        models = ordered([r["model"] for r in prows], model_order)
        splits = ordered([r["split"] for r in prows], split_order)
        horizon_rows = [r for r in prows if r["metric"] in METRIC_TITLES]
        metrics = ordered([r["metric"] for r in horizon_rows], tuple(METRIC_TITLES))
        seeds = sorted({r["seed"] for r in prows})
        horizon = horizon_rows[0]["horizon"] if horizon_rows else "?"
        lines += [f"## preset `{preset}` ({len(seeds)} seed(s); horizon {horizon} steps)", ""]
        header = ["model"] + [f"{METRIC_TITLES[m]} {SPLIT_TITLES.get(s, s)}" for m in metrics for s in splits]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        table = {model: [_horizon_cell(cells, horizon_rows, preset, model, s, m) for m in metrics for s in splits]
                 for model in models}
        best = [min((c.mean for c in col if c), default=None) for col in zip(*table.values())]
        for model, row in table.items():
            cols = ["" if c is None else (f"**{c}**" if c.mean == b else str(c)) for c, b in zip(row, best)]
            lines.append("| " + " | ".join([model] + cols) + " |")
        lines += ["", "Bold: the lowest mean in each column.", ""]
        lines += _per_step_table(prows, cells, preset, models, splits)
        lines += _orderings_table(prows, cells, preset, models)
        lines += _equivariance_table(prows, cells, preset, models)
        lines += _paper_layout_table(benchmark, prows, cells, preset)
        lines += _run_facts(prows, models, {m: rev for (p, m), rev in revisions.items() if p == preset})
    return "\n".join(lines)


def _bold_lowest(row: Sequence[Cell | None], empty: str) -> list[str]:
    """The cells of one table row as text, the lowest mean in bold and ``empty`` where a cell is missing."""
    best = min((c.mean for c in row if c), default=None)
    return [empty if c is None else (f"**{c}**" if c.mean == best else str(c)) for c in row]


def _horizon_cell(cells, horizon_rows, preset, model, split, metric) -> Cell | None:
    hs = {r["horizon"] for r in horizon_rows if (r["model"], r["split"], r["metric"]) == (model, split, metric)}
    return cells.get((preset, model, split, metric, next(iter(hs)))) if hs else None


def _per_step_table(prows, cells, preset, models, splits) -> list[str]:
    steps = sorted({int(r["horizon"]) for r in prows if r["metric"] == "rmse_step"})
    if not steps or "orig" not in splits:
        return []
    lines = ["RMSE per rollout step on `orig`:", "",
             "| model | " + " | ".join(f"t+{s}" for s in steps) + " |", "|" + "---|" * (len(steps) + 1)]
    for model in models:
        vals = [cells.get((preset, model, "orig", "rmse_step", str(s))) for s in steps]
        lines.append("| " + " | ".join([model] + [f"{v.mean:.3f}" if v else "" for v in vals]) + " |")
    return lines + [""]


def _equivariance_table(prows, cells, preset, models) -> list[str]:
    """ICLR 2021 Table 1 analog: relative and RMSE equivariance error per probe group."""
    probes = [m.removeprefix("eqerr_") for m in dict.fromkeys(r["metric"] for r in prows)
              if m.startswith("eqerr_")]
    if not probes:
        return []
    names = [SPLIT_TITLES.get(p, p) for p in probes]
    header = ["model"] + [f"rel. {n}" for n in names] + [f"RMSE {n}" for n in names]
    lines = ["Equivariance error of the tested checkpoint on `orig` (ICLR 2021 sec. 5.1 / Table 1): "
             "rel. = ||f(gx) - g f(x)|| / ||g f(x)||, RMSE of f(gx) - g f(x); one step, g drawn like the transformed "
             "splits (Scale: the per-frame spatial part, zeros outside the grid):", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model in models:
        rel = [cells.get((preset, model, "orig", f"eqrel_{p}", "1")) for p in probes]
        rmse = [cells.get((preset, model, "orig", f"eqerr_{p}", "1")) for p in probes]
        lines.append("| " + " | ".join([model] + [f"{v.mean:.2e}" if v else "" for v in rel]
                                       + [f"{v.mean:.2e}" if v else "" for v in rmse]) + " |")
    return lines + [""]


def table2_orderings(prows, cells, preset, models) -> list[tuple[str, str, Cell, Cell, Cell | None]]:
    """For each ``equ_<g>_<backbone>`` present: (backbone, g, its RMSE cell on split g, the plain backbone's,
    Augm's)."""
    out = []
    for model in models:
        parts = model.split("_")
        if len(parts) != 3 or parts[0] != "equ":
            continue
        _, group, backbone = parts

        def rmse(name: str) -> Cell | None:
            return _horizon_cell(cells, prows, preset, name, group, "rmse")  # noqa: B023 (called in this iteration)

        equ, plain, augm = rmse(model), rmse(backbone), rmse(f"augm_{group}_{backbone}")
        if equ is not None and plain is not None:
            out.append((backbone, group, equ, plain, augm))
    return out


def _orderings_table(prows, cells, preset, models) -> list[str]:
    found = table2_orderings(prows, cells, preset, models)
    if not found:
        return []
    lines = ["Table 2 ordering: on each transformed split, does the matching Equ model beat the plain backbone and "
             "its Augm counterpart in RMSE? (k/n: the seeds in which it did; tie: the 95 % intervals overlap)", "",
             "| backbone | split | Equ RMSE | plain RMSE | Augm RMSE | Equ < plain | Equ < Augm |",
             "|---|---|---|---|---|---|---|"]
    for backbone, group, equ, plain, augm in found:
        lines.append(f"| {backbone} | {SPLIT_TITLES.get(group, group)} | {equ.mean:.3f} | {plain.mean:.3f} | "
                     f"{'' if augm is None else f'{augm.mean:.3f}'} | {beats(equ, plain)} | "
                     f"{'' if augm is None else beats(equ, augm)} |")
    return lines + [""]


# ICML 2022 Tables 2 (experimental jet flow) and 4 (NEMO ocean currents): RMSE, mean over the paper's runs, in
# the papers' column order (Table 2's layout for the eleven relaxed-family models); the registry name of each column.
ICML_RELAXED_COLUMNS = (("Conv", "conv"), ("Lift", "lift"), ("RGroup", "rgroup"), ("E2CNN", "equiv"),
                        ("Lift-rot", "lift_rot"), ("RSteer", "rsteer"), ("SESN", "sesn"), ("Rpp", "rpp"),
                        ("RSteer-scale", "rsteer_scale"), ("RSteerTR", "rsteer_tr"), ("RSteerTS", "rsteer_ts"))


def paper_values(benchmark: str) -> dict[str, Any] | None:
    """The paper's reference numbers of ``benchmark`` (the ``paper`` section of its ``benchmark.yaml``: ``layout``,
    ``title``, ``rmse: {split: {registry model: value}}``), or None where it has none."""
    path = benchmarks_dir() / benchmark / "benchmark.yaml"
    return (load_benchmark(benchmark).get("paper") or None) if path.is_file() else None


def _paper_layout_table(benchmark, prows, cells, preset) -> list[str]:
    """The RMSE table in the layout of the paper table ``benchmark`` reproduces (one column per paper model, in
    its order; a model without rows is shown as missing, not dropped), followed by the paper's numbers."""
    ref = paper_values(benchmark)
    if ref is None or ref.get("layout") != "leaderboard":
        return []
    title, paper = ref["title"], ref["rmse"]
    lines = [f"{title} layout: RMSE over the horizon (bold: lowest in the row), then the paper's values on its own "
             "data (not the same data, so only orderings compare):", "",
             "| split | " + " | ".join(t for t, _ in ICML_RELAXED_COLUMNS) + " |",
             "|" + "---|" * (len(ICML_RELAXED_COLUMNS) + 1)]
    for split in paper:
        row = [_horizon_cell(cells, prows, preset, model, split, "rmse") for _, model in ICML_RELAXED_COLUMNS]
        lines.append(f"| {SPLIT_TITLES[split]} | " + " | ".join(_bold_lowest(row, "missing")) + " |")
    for split, values in paper.items():
        lines.append(f"| paper {SPLIT_TITLES[split]} | " + " | ".join(f"{values[m]:.2f}" for _, m in ICML_RELAXED_COLUMNS)
                     + " |")
    return lines + [""]


def _run_facts(prows, models, revisions: dict[str, tuple[str, int]]) -> list[str]:
    lines = ["| model | params | epochs | best epoch | train s (mean) | revision |", "|---|---|---|---|---|---|"]
    flagged = []
    for model in models:
        mrows = [r for r in prows if r["model"] == model]
        by_seed = {r["seed"]: r for r in mrows}
        timed = [float(r["train_seconds"]) for r in by_seed.values() if r["train_seconds"] != ""]
        secs = f"{statistics.fmean(timed):.0f}" if timed else ""  # a study's row may have no training time
        best = ",".join(sorted({r["best_epoch"] for r in by_seed.values()}))
        epochs = ",".join(sorted({r["epochs"] for r in by_seed.values()}))
        latest = list(by_seed.values())[-1]  # a repeated seed: the last row wins, as in the tables
        last = sorted(s for s, r in by_seed.items()
                      if r["epochs"] != "" != r["best_epoch"] and under_trained(int(r["epochs"]), int(r["best_epoch"])))
        if last:
            flagged.append(f"{model} (seed {', '.join(last)})")
        rev, left = revisions.get(model, ("", 0))
        revision = (rev or "—") + (f" ({left} older rows left out)" if left else "")
        lines.append(f"| {model}{' ⚠' if last else ''} | {latest['params']} | {epochs} | {best} | {secs} | {revision} |")
    if flagged:
        lines += ["", "⚠ may be under-trained: the best validation epoch was the last one trained ("
                  + "; ".join(flagged) + ")."]
    return lines + [""]


def _failed_section(failed: Sequence[dict[str, str]]) -> str:
    """The runs recorded in ``failed_runs.csv`` (e.g. diverged), which have no rows in the tables above."""
    if not failed:
        return ""
    lines = ["", f"## Failed runs ({FAILED_FILE}; not in the tables above)", "",
             "| preset | model | seed | config | step | reason |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['preset']} | {r['model']} | {r['seed']} | {r['config_hash']} | {r['step']} | {r['reason']} |"
              for r in failed]
    return "\n".join(lines) + "\n"


def render_csv(rows: Sequence[dict[str, str]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["preset", "model", "split", "metric", "horizon", "mean", "std", "n_seeds", "ci95_low", "ci95_high"])
    for (preset, model, split, metric, horizon), c in sorted(aggregate(current_rows(rows)[0]).items()):
        w.writerow([preset, model, split, metric, horizon, f"{c.mean:.6g}", f"{c.std:.6g}", c.n,
                    *(f"{v:.6g}" for v in c.interval)])
    return buf.getvalue()


def write_leaderboard(benchmark: str, results_dir: str | Path = "results",
                      model_order: Sequence[str] = ()) -> list[Path]:
    """Regenerate ``leaderboard.md`` and ``leaderboard.csv`` of ``benchmark`` from its ``runs.csv``."""
    bdir = Path(results_dir) / benchmark
    rows = read_rows(bdir / "runs.csv")
    failed = read_rows(bdir / FAILED_FILE) if (bdir / FAILED_FILE).is_file() else []
    md, table = bdir / "leaderboard.md", bdir / "leaderboard.csv"
    atomic_write_text(md, render_markdown(benchmark, rows, model_order) + _failed_section(failed))
    atomic_write_text(table, render_csv(rows))
    return [md, table]


# ICML 2022 Table 1 (Wang, Walters & Yu) columns; the paper's numbers are in benchmarks/smoke-*/benchmark.yaml.
TABLE1_MODELS = ("mlp", "conv", "equiv", "rpp", "combo", "clcnn", "lift", "rgroup", "rsteer")
# The other smoke models (ICML 2022 Table 2's combinations and SESN); in Table 1 the scaling RSteer is rsteer_scale.
SMOKE_MODELS = TABLE1_MODELS + ("rsteer_tr", "sesn", "rsteer_scale", "rsteer_ts")
BASELINE_MODELS = ("persistence", "linear")
TABLE1_COLUMN_MODEL = {("scaling", "rsteer"): "rsteer_scale"}
# A family table: one file combining several benchmarks in the layout of a paper table.
FAMILY_TABLES = {"smoke": {"translation": "smoke-translation", "rotation": "smoke-rotation",
                           "scaling": "smoke-scaling"}}


def render_table1(rows_by_symmetry: dict[str, Sequence[dict[str, str]]], preset: str) -> str:
    """ICML 2022 Table 1 layout: one row per (symmetry, Future/Domain), one column per model, 20-step RMSE
    mean ± std over seeds (bold: the row's lowest mean), followed by the paper's numbers."""
    rows_by_symmetry = {sym: current_rows(rows)[0] for sym, rows in rows_by_symmetry.items()}
    present = {r["model"] for rows in rows_by_symmetry.values() for r in rows if r["preset"] == preset}
    columns = {column for (_, column), model in TABLE1_COLUMN_MODEL.items() if model in present}
    # sorted, then the papers' order: a set's order changes with the process's string hash seed
    models = ordered(sorted(present - set(TABLE1_COLUMN_MODEL.values()) | columns), SMOKE_MODELS + BASELINE_MODELS)
    seeds = sorted({r["seed"] for rows in rows_by_symmetry.values() for r in rows if r["preset"] == preset})
    lines = [f"# ICML 2022 Table 1 layout: smoke plumes, preset `{preset}`", "",
             "Generated by `symbench leaderboard` from `results/smoke-*/runs.csv`: RMSE over the rollout horizon, "
             f"mean ± std over {len(seeds)} seed(s) ({', '.join(seeds)}). Bold: lowest in the row. Column "
             "`rsteer` holds the relaxed steerable model of each symmetry (rotation: `rsteer`, scaling: "
             "`rsteer_scale`); the columns after it are the other smoke models.", "",
             "| symmetry | split | " + " | ".join(models) + " |", "|" + "---|" * (len(models) + 2)]
    for symmetry, rows in rows_by_symmetry.items():
        cells = aggregate([r for r in rows if r["preset"] == preset and r["metric"] == "rmse"])
        for split in ("test_future", "test_domain"):
            sources = [TABLE1_COLUMN_MODEL.get((symmetry, model), model) for model in models]
            row = [next((c for (p, m, s, met, h), c in cells.items() if m == source and s == split), None)
                   for source in sources]
            lines.append(f"| {symmetry} | {SPLIT_TITLES[split]} | " + " | ".join(_bold_lowest(row, "")) + " |")
    lines += ["", "The paper's Table 1 (ICML 2022; 64x64, < 1e7 parameters, 3 runs):", "",
              "| symmetry | split | " + " | ".join(TABLE1_MODELS) + " |", "|" + "---|" * (len(TABLE1_MODELS) + 2)]
    for symmetry, benchmark in FAMILY_TABLES["smoke"].items():
        for split, values in (paper_values(benchmark) or {}).get("rmse", {}).items():
            cells = [values.get(TABLE1_COLUMN_MODEL.get((symmetry, m), m)) for m in TABLE1_MODELS]
            lines.append(f"| {symmetry} | {SPLIT_TITLES[split]} | "
                         + " | ".join("—" if v is None else f"{v:.2f}" for v in cells) + " |")
    return "\n".join(lines) + "\n"


def write_family_tables(results_dir: str | Path = "results") -> list[Path]:
    """Write ``results/<family>/table1_<preset>.md`` for every family table with rows in any of its benchmarks."""
    written = []
    for family, members in FAMILY_TABLES.items():
        rows = {sym: read_rows(Path(results_dir) / bench / "runs.csv")
                if (Path(results_dir) / bench / "runs.csv").is_file() else [] for sym, bench in members.items()}
        presets = ordered([r["preset"] for rs in rows.values() for r in rs], ("paper", "cpu", "tiny"))
        for preset in presets:
            path = Path(results_dir) / family / f"table1_{preset}.md"
            atomic_write_text(path, render_table1(rows, preset))
            written.append(path)
    return written
