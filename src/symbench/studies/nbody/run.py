"""GNN vs EGNN on charged N-body dynamics in R^n (ICML 2024 workshop, "When is a task a good candidate for an
equivariant network?", section 4.1, Fig. 1).

For each dimension n and seed s both models of :mod:`symbench.studies.nbody.model` are trained on the MSE of the final
positions x^(T) (Adam) and scored by the test MSE. The ratio r_s = MSE_GNN,s / MSE_EGNN,s is summarised by its
geometric mean over seeds with a 95 % Student-t interval on log r_s, exponentiated:

    exp( mean(log r) +- t_{0.975, S-1} * std(log r) / sqrt(S) )                                       (R1)

(ratios are positive and multiplicative, so the interval is taken in log space; with S = 1 seed it is undefined).
``run_nbody`` writes ``results/nbody/nbody_<preset>.md``, ``.csv`` and a Fig. 1-style ``.png``.

Entry point: ``python -m symbench.studies.nbody.run --preset cpu [--root data] [--results results] [--seeds 0 1 2]``.
"""

from __future__ import annotations

import argparse
import csv
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

from datamodules.nbody import PRESETS, NBodyDataModule, NBodySim
from symbench.models.budget import n_params
from symbench.studies.nbody.model import EGNN, GNN
from symbench.hardware import Hardware
from symbench.provenance import source_revision
from symbench.stats import estimate
from symbench.studies.common import (
    hardware_of,
    add_experiment_arguments, append_study_rows, check_preset, make_trainer, study_config_hash,
    study_presets, trainer_settings, write_figure, write_text,
)

MODELS = {"GNN": GNN, "EGNN": EGNN}


@dataclass(frozen=True)
class NBodyTraining:
    """Training hyper-parameters of one preset (appendix A: 4 layers, Adam, lr 5e-4, batch 128)."""

    epochs: int
    seeds: tuple[int, ...] = (0, 1, 2)
    layers: int = 4
    # GNN ~134k parameters, EGNN ~121k: the widths matched 134k each until the EGNN's last layer lost its node
    # update, whose output nothing read (12,416 parameters without a gradient; DDP refuses those).
    hidden: tuple[tuple[str, int], ...] = (("GNN", 74), ("EGNN", 64))
    lr: float = 5e-4
    batch_size: int = 128


def training_presets() -> dict[str, NBodyTraining]:
    """The study's presets (``benchmarks/nbody/benchmark.yaml``) as :class:`NBodyTraining` records."""
    return study_presets("nbody", NBodyTraining)


class NBodyRegressor(L.LightningModule):
    """MSE regression of x^(T) from (x^(0), v^(0), c) with one of :data:`MODELS`."""

    def __init__(self, model: str, n: int, hidden: int, layers: int = 4, lr: float = 5e-4) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = MODELS[model](n, hidden=hidden, layers=layers)
        self.lr = lr
        self.test_mse = torchmetrics.MeanSquaredError()

    def forward(self, x: Tensor, v: Tensor, charges: Tensor) -> Tensor:
        return self.net(x, v, charges)

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        x, v, c, target = batch
        loss = torch.nn.functional.mse_loss(self(x, v, c), target)
        self.log("train_mse", loss, prog_bar=True)
        return loss

    def test_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        x, v, c, target = batch
        self.test_mse.update(self(x, v, c), target)
        self.log("test_mse", self.test_mse)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def train_one(model: str, data: NBodyDataModule, cfg: NBodyTraining, seed: int,
              trainer_settings: Mapping[str, Any] | None = None) -> tuple[float, int]:
    """Train ``model`` on ``data`` from ``seed`` for ``cfg.epochs`` epochs and test the final weights (the paper's
    protocol: no validation split); returns (test MSE, parameter count)."""
    L.seed_everything(seed, workers=True, verbose=False)
    module = NBodyRegressor(model, data.n, dict(cfg.hidden)[model], cfg.layers, cfg.lr)
    trainer = make_trainer(trainer_settings, max_epochs=cfg.epochs, logger=False, enable_checkpointing=False,
                           enable_progress_bar=False, enable_model_summary=False, deterministic=True)
    trainer.fit(module, datamodule=data)
    mse = trainer.test(module, datamodule=data, verbose=False)[0]["test_mse"]
    return float(mse), n_params(module.net)


@dataclass
class NBodyRow:
    """Results of one dimension n: per-seed test MSEs of each model and parameter counts."""

    n: int
    mse: dict[str, list[float]]
    params: dict[str, int]

    def ratio_interval(self) -> tuple[float, float, float]:
        """Geometric mean of r_s and its 95 % interval (R1); the interval is NaN with one seed."""
        from scipy import stats

        logs = np.log(np.asarray(self.mse["GNN"]) / np.asarray(self.mse["EGNN"]))
        centre = float(logs.mean())
        if len(logs) < 2:
            return math.exp(centre), math.nan, math.nan
        half = float(stats.t.ppf(0.975, len(logs) - 1) * logs.std(ddof=1) / math.sqrt(len(logs)))
        return math.exp(centre), math.exp(centre - half), math.exp(centre + half)


CSV_FIELDS = ("n", "seeds", "mse_gnn_mean", "mse_gnn_std", "mse_egnn_mean", "mse_egnn_std", "ratio_gmean",
              "ratio_lo95", "ratio_hi95", "params_gnn", "params_egnn")


def render_csv(rows: Sequence[NBodyRow]) -> str:
    lines = [",".join(CSV_FIELDS)]
    for r in rows:
        g, e = estimate(r.mse["GNN"]), estimate(r.mse["EGNN"])
        vals = (r.n, len(r.mse["GNN"]), g.mean, g.std, e.mean, e.std, *r.ratio_interval(), r.params["GNN"],
                r.params["EGNN"])
        lines.append(",".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in vals))
    return "\n".join(lines) + "\n"


def study_rows(rows: Sequence[NBodyRow], seeds: Sequence[int], preset: str, sim: NBodySim,
               cfg: NBodyTraining, hardware: Hardware | None = None) -> list[dict[str, Any]]:
    """``runs.csv`` rows of ``rows`` (:func:`~symbench.studies.common.append_study_rows`): dataset ``nbody-n<n>``,
    split ``test``, metric ``mse`` of the final positions, one row per model and seed (``seeds`` in run order);
    ``data_key`` the simulation's digest (its data directory's), ``code_rev`` this study's source."""
    config_hash = study_config_hash(sim, cfg, hardware=hardware)
    return [{"dataset": f"nbody-n{r.n}", "model": model, "seed": seed, "preset": preset, "split": "test",
             "metric": "mse", "value": value, "params": r.params[model], "config_hash": config_hash,
             "data_key": sim.digest(), "code_rev": source_revision(__spec__.name)}
            for r in rows for model in MODELS for seed, value in zip(seeds, r.mse[model], strict=True)]


def read_report_rows(md: Path, csv_file: Path) -> list[NBodyRow]:
    """The :class:`NBodyRow` s of a committed report: per-seed MSEs from the ``.md``'s "Per-seed test MSE" list
    (4 significant digits, as printed) and parameter counts from the ``.csv`` (:func:`render_csv`)."""
    params = {int(r["n"]): {"GNN": int(r["params_gnn"]), "EGNN": int(r["params_egnn"])}
              for r in csv.DictReader(csv_file.open(newline=""))}
    rows = []
    for line in md.read_text().splitlines():
        if line.startswith("- n = "):
            head, _, pairs = line.removeprefix("- n = ").partition(": ")
            values = [tuple(float(v) for v in p.split(" / ")) for p in pairs.split(", ")]
            rows.append(NBodyRow(int(head), {"GNN": [g for g, _ in values], "EGNN": [e for _, e in values]},
                                 params[int(head)]))
    return rows


def render_markdown(preset: str, rows: Sequence[NBodyRow], sim: NBodySim, cfg: NBodyTraining,
                    seconds: float) -> str:
    lines = [f"# N-body dynamics in R^n: GNN vs EGNN ({preset})", "",
             "Test MSE of the final positions x^(T), mean ± std over seeds; ratio = MSE_GNN / MSE_EGNN as the "
             "geometric mean of the per-seed ratios with a 95 % Student-t interval on their logarithms "
             "(exponentiated; n/a with one seed).", "",
             "| n | seeds | MSE GNN | MSE EGNN | ratio | 95 % interval | params GNN | params EGNN |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        g, e = estimate(r.mse["GNN"]), estimate(r.mse["EGNN"])
        mid, lo, hi = r.ratio_interval()
        ci = "n/a" if math.isnan(lo) else f"[{lo:.3g}, {hi:.3g}]"
        lines.append(f"| {r.n} | {len(r.mse['GNN'])} | {g.mean:.3e} ± {g.std:.1e} | {e.mean:.3e} ± {e.std:.1e} | "
                     f"{mid:.3g} | {ci} | {r.params['GNN']} | {r.params['EGNN']} |")
    lines += ["", "Per-seed test MSE (GNN / EGNN):", ""]
    for r in rows:
        pairs = ", ".join(f"{g:.3e} / {e:.3e}" for g, e in zip(r.mse["GNN"], r.mse["EGNN"]))
        lines.append(f"- n = {r.n}: {pairs}")
    sim_desc = ", ".join(f"{k} {v}" for k, v in asdict(sim).items() if k != "chunk")
    train_desc = ", ".join(f"{k} {v}" for k, v in asdict(cfg).items())
    lines += ["", f"Data: {sim_desc} (hash {sim.digest()}).", f"Training: {train_desc}.",
              f"Run time {seconds:.0f} s.", ""]
    return "\n".join(lines)


def plot(path: Path, preset: str, rows: Sequence[NBodyRow]) -> Path:
    """Fig. 1: MSE_GNN / MSE_EGNN against n on a log axis, the 95 % interval shaded (PNG, written atomically)."""
    from symbench.plots import new_figure

    ns = [r.n for r in rows]
    mid, lo, hi = zip(*(r.ratio_interval() for r in rows))
    fig = new_figure(5.0, 3.8)
    ax = fig.add_subplot()
    if not any(math.isnan(x) for x in lo):
        ax.fill_between(ns, lo, hi, alpha=0.25, label="95 % interval over seeds")
    ax.plot(ns, mid, marker="o", label="MSE$_{GNN}$ / MSE$_{EGNN}$")
    ax.axhline(1.0, color="0.5", linestyle="--", linewidth=1)
    ax.set_yscale("log")
    ax.set_xticks(ns)
    ax.set_xlabel("dimension n")
    ax.set_ylabel("MSE$_{GNN}$ / MSE$_{EGNN}$")
    ax.set_title(f"N-body in R$^n$: non-equivariant / equivariant ({preset})")
    ax.grid(True, alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return write_figure(fig, path)


def run_nbody(preset: str, root: str | Path = "data", results: str | Path = "results",
              seeds: Sequence[int] | None = None, show_progress: bool = False,
              sim: NBodySim | None = None, training: NBodyTraining | None = None,
              trainer: Mapping[str, Any] | None = None) -> list[NBodyRow]:
    """Train GNN and EGNN for every dimension of ``preset`` and seed; write the table, CSV and plot under
    ``<results>/nbody/``. ``sim`` / ``training`` override the preset's (tests use smaller ones); ``trainer``: the
    hardware settings (:func:`~symbench.studies.common.make_trainer`)."""
    sim = sim or PRESETS[preset]
    cfg = training or training_presets()[preset]
    seeds = tuple(seeds) if seeds is not None else cfg.seeds
    hardware = hardware_of(trainer)  # resolved once: a batch that does not divide fails before any training
    batch = hardware.per_device_batch(cfg.batch_size)
    start = time.perf_counter()
    rows = []
    for n in sim.dims:
        row = NBodyRow(n, {m: [] for m in MODELS}, {})
        for seed in seeds:
            data = NBodyDataModule(root, preset, n, batch, show_progress, sim, shuffle_seed=seed)
            for model in MODELS:
                mse, count = train_one(model, data, cfg, seed, trainer)
                row.mse[model].append(mse)
                row.params[model] = count
                if show_progress:
                    print(f"n={n} seed={seed} {model}: test MSE {mse:.4e} ({time.perf_counter() - start:.0f} s)")
        rows.append(row)
    seconds = time.perf_counter() - start
    out = Path(results) / "nbody"
    write_text(out / f"nbody_{preset}.md", render_markdown(preset, rows, sim, cfg, seconds))
    write_text(out / f"nbody_{preset}.csv", render_csv(rows))
    plot(out / f"nbody_{preset}.png", preset, rows)
    append_study_rows(results, "nbody", study_rows(rows, seeds, preset, sim, cfg, hardware))
    return rows


# -- command line (symbench.studies.StudyModule) ------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_experiment_arguments(parser, "nbody")
    parser.add_argument("--seeds", nargs="+", type=int, help="seeds (default: the preset's)")


def run(args: argparse.Namespace) -> None:
    check_preset(args.preset, PRESETS)
    check_preset(args.preset, training_presets())
    run_nbody(args.preset, args.root, args.results, args.seeds, show_progress=not args.no_progress,
              trainer=trainer_settings(args))
    print(f"wrote {Path(args.results) / 'nbody'}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="GNN vs EGNN on N-body dynamics in R^n (paper section 4.1).")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--root", default="data")
    parser.add_argument("--results", default="results")
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    run_nbody(args.preset, args.root, args.results, args.seeds, show_progress=not args.no_progress)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
