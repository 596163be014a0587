"""Leaderboard plots (PNG), generated like the tables by ``symbench leaderboard``, never edited by hand.

From ``results/<benchmark>/runs.csv`` and the prediction artifacts ``results/<benchmark>/predictions/<preset>/*.npz``
(:mod:`symbench.prediction_artifacts`), for each preset, under ``results/<benchmark>/plots/<preset>/``:

* ``rmse_per_step.png``: RMSE per rollout step, mean ± std over seeds; one panel per (model family, split), one
  line per model (a family is a backbone with its Augm and Equ variants, e.g. ``resnet``, ``augm_rot_resnet``,
  ``equ_rot_resnet``; models without a backbone, like the smoke benchmarks' ``conv`` ... ``rgroup``, form one
  family ``all``);
* ``spectra.png``: the isotropic kinetic-energy spectrum ``E(k)`` of target and predictions at the last rollout step,
  averaged over each split's samples (and over seeds), log-log; one panel per (family, split);
* ``spectra_tke.png``: the same for the turbulence kinetic-energy spectrum that the ESE compares (fluctuations about
  the rollout mean, averaged over steps; ICLR 2021 appendix B.7);
* ``snapshots_<family>.png``: the velocity norm ``sqrt(u^2 + v^2)`` of the first test sample of each split at steps
  1, 5, 10, target in the first row and each model of the family below (ICLR 2021 Fig. 8; seed: the lowest); one
  colour scale per split, from 0 to the target's maximum.

Plots without data (no ``rmse_step`` rows, no artifact files) are skipped with a one-line note. The files are
deterministic: fixed sizes and resolution, no timestamp or software tag in the PNG, written atomically.
"""

from __future__ import annotations

import io
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from symbench.leaderboard import SMOKE_MODELS, SPLIT_TITLES, aggregate, current_rows, ordered
from symbench.prediction_artifacts import load_artifacts
from symbench.results import atomic_write, read_rows

GROUP_COLORS = {"um": "tab:blue", "mag": "tab:orange", "rot": "tab:green", "scale": "tab:red"}
# The smoke models of ICML 2022 (Tables 1, 2), one colour each.
MODEL_COLORS = dict(zip(SMOKE_MODELS, [f"C{i}" for i in range(10)] + ["tab:olive", "tab:cyan", "tab:gray", "k"]))
DPI = 100


def family_of(model: str) -> str:
    """The backbone a model belongs to: the last ``_``-separated part of its name (``equ_rot_unet`` -> ``unet``)."""
    return model.rsplit("_", 1)[-1]


def model_style(model: str) -> dict[str, Any]:
    """Line style of a model: colour by symmetry group, dashed for Augm, solid for Equ, thick purple for the plain
    backbone, one colour each for the smoke models (the target is black)."""
    parts = model.split("_")
    if model in MODEL_COLORS:  # one colour each
        return {"color": MODEL_COLORS[model], "linestyle": "-", "linewidth": 1.5}
    if len(parts) == 1:
        return {"color": "tab:purple", "linestyle": "-", "linewidth": 2.0}
    color = GROUP_COLORS.get(parts[1] if len(parts) == 3 else "", None)
    if parts[0] == "augm":
        return {"color": color, "linestyle": "--", "linewidth": 1.3}
    if parts[0] == "equ":
        return {"color": color, "linestyle": "-", "linewidth": 1.3}
    return {"color": color, "linestyle": ":", "linewidth": 1.3}


def _families(models: Sequence[str]) -> dict[str, list[str]]:
    """Models grouped by backbone; models that are nobody's backbone and have none (e.g. the smoke models ``conv``,
    ``rgroup``) share one group, ``all``, so that they are compared in the same panels."""
    backbones = {family_of(m) for m in models if "_" in m and m not in MODEL_COLORS}
    out: dict[str, list[str]] = {}
    for m in models:
        grouped = m not in MODEL_COLORS and ("_" in m or m in backbones)
        out.setdefault(family_of(m) if grouped else "all", []).append(m)
    return out


def save_figure(fig: Any, path: Path) -> Path:
    """PNG through a temporary file and a rename; no metadata that changes between runs. The image is reduced to a
    256-colour palette (no dithering; the plots have few colours besides anti-aliasing blends): ~3.5x smaller
    files for committing, the same picture."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    with Image.open(buf) as rendered:
        image = rendered.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                                                 dither=Image.Dither.NONE)
    return atomic_write(path, lambda f: image.save(f, format="png", optimize=True))


def _log_axes(ax: Any, x: bool = False) -> None:
    """Log scale with plain tick labels (0.03, not 3 x 10^-2) at 1-2-5 steps that fit the data (call after
    plotting); ``x``: also a log2 wavenumber axis with ticks 1, 2, 4, 8, ..."""
    from matplotlib import ticker

    ax.set_yscale("log")
    lo, hi = ax.get_ylim()
    ticks: list[float] = []
    for mantissas, enough in (((1,), 3), ((1, 2, 5), 2), ((1, 2, 3, 4, 5, 6, 7, 8, 9), 0)):  # the coarsest that fits
        ticks = [m * 10.0**e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
                 for m in mantissas if lo <= m * 10.0**e <= hi]
        if len(ticks) >= enough:
            break
    ax.yaxis.set_major_locator(ticker.FixedLocator(ticks))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:.3g}"))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    if x:
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(ticker.LogLocator(base=2))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.grid(True, which="both", alpha=0.3)


def new_figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


# -- per-step RMSE -------------------------------------------------------------------------------------------------
def rmse_per_step(rows: Sequence[dict[str, str]]) -> dict[tuple[str, str], dict[int, tuple[float, float, int]]]:
    """(model, split) -> step -> (mean, std, n_seeds) of the ``rmse_step`` rows of one preset
    (:func:`~symbench.leaderboard.aggregate` of each model's newest code revision: last row wins for a repeated seed)."""
    out: dict[tuple[str, str], dict[int, tuple[float, float, int]]] = defaultdict(dict)
    for (_, model, split, metric, horizon), cell in aggregate(current_rows(rows)[0]).items():
        if metric == "rmse_step":
            out[(model, split)][int(horizon)] = (cell.mean, cell.std, cell.n)
    return {key: dict(sorted(steps.items())) for key, steps in out.items()}


def plot_rmse_per_step(rows: Sequence[dict[str, str]], path: Path, title: str, model_order: Sequence[str] = (),
                       split_order: Sequence[str] = tuple(SPLIT_TITLES)) -> Path | None:
    curves = rmse_per_step(rows)
    if not curves:
        return None
    models = ordered([m for m, _ in curves], model_order)
    splits = ordered([s for _, s in curves], split_order)
    families = _families(models)
    fig = new_figure(2.9 * len(splits) + 1.6, 2.6 * len(families) + 0.4)
    axes = fig.subplots(len(families), len(splits), squeeze=False, sharex=True)
    for row, (family, members) in enumerate(families.items()):
        for col, split in enumerate(splits):
            ax = axes[row][col]
            for model in members:
                curve = curves.get((model, split))
                if not curve:
                    continue
                steps = np.array(sorted(curve))
                mean = np.array([curve[s][0] for s in steps])
                std = np.array([curve[s][1] for s in steps])
                style = model_style(model)
                ax.plot(steps, mean, label=model, marker=".", markersize=3, **style)
                if any(curve[s][2] > 1 for s in steps):
                    ax.fill_between(steps, mean - std, mean + std, color=style["color"], alpha=0.15, linewidth=0)
            _log_axes(ax)
            ax.set_title(f"{SPLIT_TITLES.get(split, split)} ({family})", fontsize=10)
            if row == len(families) - 1:
                ax.set_xlabel("rollout step")
            if col == 0:
                ax.set_ylabel("RMSE")
        axes[row][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    fig.suptitle(title, fontsize=11)
    return save_figure(fig, path)


# -- spectra ---------------------------------------------------------------------------------------------------------
def _mean_over_seeds(arrays: Sequence[np.ndarray]) -> np.ndarray:
    return np.mean(np.stack([a.astype(np.float64) for a in arrays]), axis=0)


def plot_spectra(artifacts: dict[str, list[dict[str, Any]]], path: Path, title: str, kind: str = "final",
                 model_order: Sequence[str] = (), split_order: Sequence[str] = tuple(SPLIT_TITLES)) -> Path | None:
    """``kind="final"``: ``spectrum_*`` at the last rollout step; ``kind="tke"``: ``tke_*`` (the ESE's spectrum)."""
    key = "spectrum" if kind == "final" else "tke"
    models = ordered(list(artifacts), model_order)
    splits = ordered([s for runs in artifacts.values() for a in runs for s in a["splits"]
                       if f"{key}_pred" in a[s]], split_order)
    if not splits:
        return None
    families = _families(models)
    fig = new_figure(2.9 * len(splits) + 1.6, 2.6 * len(families) + 0.4)
    axes = fig.subplots(len(families), len(splits), squeeze=False)
    for row, (family, members) in enumerate(families.items()):
        for col, split in enumerate(splits):
            ax = axes[row][col]
            target = None
            for model in members:
                runs = [a[split] for a in artifacts[model] if split in a["splits"] and f"{key}_pred" in a[split]]
                if not runs:
                    continue
                pred = _mean_over_seeds([r[f"{key}_pred"] for r in runs])
                if target is None:
                    target = _mean_over_seeds([r[f"{key}_target"] for r in runs])
                if kind == "final":
                    pred = pred[-1]
                k = np.arange(1, pred.shape[-1])
                ax.plot(k, np.maximum(pred[1:], 1e-30), label=model, **model_style(model))
            if target is not None:
                if kind == "final":
                    target = target[-1]
                k = np.arange(1, target.shape[-1])
                ax.plot(k, np.maximum(target[1:], 1e-30), color="black", linewidth=1.6, label="target", zorder=5)
            _log_axes(ax, x=True)
            ax.set_title(f"{SPLIT_TITLES.get(split, split)} ({family})", fontsize=10)
            if row == len(families) - 1:
                ax.set_xlabel("k (cycles per tile)")
            if col == 0:
                ax.set_ylabel("E(k)")
        handles, labels = axes[row][0].get_legend_handles_labels()
        order = sorted(range(len(labels)), key=lambda i: labels[i] != "target")
        axes[row][-1].legend([handles[i] for i in order], [labels[i] for i in order], fontsize=7,
                             loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    fig.suptitle(title, fontsize=11)
    return save_figure(fig, path)


# -- snapshots -------------------------------------------------------------------------------------------------------
def plot_snapshots(artifacts: dict[str, list[dict[str, Any]]], members: Sequence[str], path: Path, title: str,
                   split_order: Sequence[str] = tuple(SPLIT_TITLES)) -> Path | None:
    """Rows: target, then ``members``; columns: each split's snapshot steps (ICLR 2021 Fig. 8 layout)."""
    first = {m: min(artifacts[m], key=lambda a: int(a["meta"].get("seed", 0))) for m in members if artifacts.get(m)}
    members = [m for m in members if m in first]
    splits = ordered([s for a in first.values() for s in a["splits"] if "snapshot_target" in a[s]], split_order)
    if not members or not splits:
        return None
    columns = [(split, i, int(step)) for split in splits
               for i, step in enumerate(next(a[split]["snapshot_steps"] for a in first.values() if split in a))]
    rows = ["target", *members]
    fig = new_figure(0.95 * len(columns) + 1.9, 0.95 * len(rows) + 1.2)
    axes = fig.subplots(len(rows), len(columns), squeeze=False)
    for c, (split, i, step) in enumerate(columns):
        ref = next(a[split] for a in first.values() if split in a["splits"])
        vmax = float(np.max(ref["snapshot_target"].astype(np.float32))) or 1.0
        for r, name in enumerate(rows):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            art = ref if name == "target" else first[name].get(split)
            if art is None or "snapshot_pred" not in art:
                ax.set_axis_off()
                continue
            image = art["snapshot_target" if name == "target" else "snapshot_pred"][i].astype(np.float32)
            im = ax.imshow(image, cmap="viridis", vmin=0.0, vmax=vmax, origin="upper", interpolation="nearest")
            if r == 0:
                ax.set_title(f"{SPLIT_TITLES.get(split, split)} t+{step}", fontsize=8)
            if c == 0:
                ax.set_ylabel(name, fontsize=8, rotation=0, ha="right", va="center")
        if i == len(ref["snapshot_steps"]) - 1:  # one colour bar per split, under its columns
            cols = [axes[r][cc] for r in range(len(rows)) for cc, col in enumerate(columns) if col[0] == split]
            bar = fig.colorbar(im, ax=cols, orientation="horizontal", location="bottom", shrink=0.9, aspect=12)
            bar.ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


# -- all of them -----------------------------------------------------------------------------------------------------
def _load_all(directory: Path, rows: Sequence[dict[str, str]], notes: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Artifacts under ``directory`` whose configuration is the latest of its (model, seed) in ``rows``."""
    latest = {(r["model"], r["seed"]): r["config_hash"] for r in rows}
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path in sorted(directory.glob("*.npz")):
        try:
            art = load_artifacts(path)
        except (OSError, KeyError, ValueError) as err:
            notes.append(f"skipped {path}: unreadable ({err})")
            continue
        meta = art["meta"]
        key = (str(meta.get("model")), str(meta.get("seed")))
        if latest.get(key) != meta.get("config_hash"):
            notes.append(f"skipped {path}: not the configuration of the rows of {key[0]} seed {key[1]}")
            continue
        out[key[0]].append(art)
    return dict(out)


def write_plots(benchmark: str, results_dir: str | Path = "results",
                model_order: Sequence[str] = ()) -> tuple[list[Path], list[str]]:
    """Regenerate the plots of ``benchmark``; return the paths written and one-line notes on what was skipped."""
    bdir = Path(results_dir) / benchmark
    rows = read_rows(bdir / "runs.csv")
    written: list[Path | None] = []
    notes: list[str] = []
    for preset in dict.fromkeys(r["preset"] for r in rows):
        prows = [r for r in rows if r["preset"] == preset]
        out = bdir / "plots" / preset
        seeds = len({r["seed"] for r in prows})
        name = f"{benchmark}, preset {preset}"
        path = plot_rmse_per_step(prows, out / "rmse_per_step.png",
                                  f"{name}: RMSE per rollout step (mean ± std over {seeds} seed(s))", model_order)
        if path is None:
            notes.append(f"skipped {out / 'rmse_per_step.png'}: no rmse_step rows for preset {preset}")
        written.append(path)
        pred_dir = bdir / "predictions" / preset
        artifacts = _load_all(pred_dir, prows, notes)
        if not artifacts:
            notes.append(f"skipped spectra and snapshots of preset {preset}: no prediction artifacts in {pred_dir} "
                         f"(`symbench bench {benchmark} --preset {preset}` writes them)")
            continue
        for kind, fname, what in (("final", "spectra.png", "energy spectrum at the last rollout step"),
                                  ("tke", "spectra_tke.png", "turbulence kinetic-energy spectrum (the ESE's)")):
            path = plot_spectra(artifacts, out / fname, f"{name}: {what}, mean over each split's samples", kind,
                                model_order)
            if path is None:
                notes.append(f"skipped {out / fname}: the artifacts hold no such spectra")
            written.append(path)
        for family, members in _families(ordered(list(artifacts), model_order)).items():
            fname = f"snapshots_{family}.png"
            path = plot_snapshots(artifacts, members, out / fname,
                                  f"{name}: velocity norm |v| of the first test sample of each split\n"
                                  f"first row the target, then the predictions (ICLR 2021 Fig. 8)")
            if path is None:
                notes.append(f"skipped {out / fname}: the artifacts hold no snapshots")
            written.append(path)
    return [p for p in written if p is not None], notes
