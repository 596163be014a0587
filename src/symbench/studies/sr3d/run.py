"""3D turbulence super-resolution: Trilinear, Conv, Equiv and R-Equiv on isotropic and on symmetry-broken (sheared)
flow (the slides' table, "Relaxed Octahedral Group Convolution for Learning Symmetry Breaking in 3D Physical
Systems", arXiv 2310.02299).

For each flow, model kind (:data:`~symbench.studies.sr3d.model.KINDS`) and seed, a model of
:mod:`symbench.studies.sr3d.model` learns to map the factor-4 block mean of a velocity frame
(:class:`~datamodules.turb3d.Turb3DSRDataModule`) back to the frame, with the L1 loss of the slides' code; the
checkpoint of lowest validation MAE is tested (:func:`~symbench.studies.common.fit_test_best`). Trilinear has no
parameters and is only evaluated. Each run is one row of ``results/sr3d/sr3d_<preset>.csv`` (rewritten atomically
after every run, so a stopped benchmark resumes), with

* ``test_mae``: mean absolute error over the test frames' voxels and components (the slides' metric);
* ``equiv_error``: ``mean_g ||SR(T_g v) - T_g SR(v)|| / ||SR(v)||`` over the 47 non-identity elements of ``O_h`` on
  the first test batch (:func:`equivariance_error`): round-off for Trilinear and Equiv, non-zero for Conv, and for
  R-Equiv a measure of how much symmetry it learned to break;
* for R-Equiv, ``dev_sym`` / ``dev_other``: the mean deviation ``max_{l,h} |w_l(u h) - w_l(h)|`` of the learned
  relaxation weights (:func:`~symbench.symmetry.octahedral.element_deviations`, in units of the weights' RMS) over
  the non-identity elements ``u`` of the flow's own symmetry (all of ``O_h`` for the isotropic flow, the ``C2h`` of
  :data:`~datamodules.turb3d_sim.SHEARED_SUBGROUP` for the sheared one) and over the other elements. The slides'
  proposition says the weights stay tied on the data's symmetry: ``dev_sym < dev_other``.

Entry point: ``symbench sr3d --preset cpu [--flows isotropic sheared] [--models ...] [--seeds 0]`` and
``symbench sr3d --report-only``.
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

from datamodules import turb3d_sim
from datamodules.turb3d import Turb3DSRDataModule, generate_preset
from symbench.models.budget import n_params
from symbench.studies.sr3d.model import KINDS, LABELS, VELOCITY, SRArch, SRNet, build_sr
from symbench.hardware import Hardware
from symbench.provenance import source_revision
from symbench.results import read_records
from symbench.stats import Estimate, beats, estimate
from symbench.studies.common import (
    hardware_of,
    add_experiment_arguments, append_study_rows, check_preset, fit_test_best, make_trainer,
    study_config_hash, study_presets, trainer_settings, write_records, write_text,
)
from symbench.symmetry.octahedral import act_on_fields, element_deviations, group_elements, indices_in

FLOWS: tuple[str, ...] = ("sheared", "isotropic")  # the slides' column order: symmetry-broken flow first
FLOW_TITLES = {"sheared": "Sheared flow (symmetry-broken, C2h)", "isotropic": "Isotropic flow (O_h)"}
SLIDES_MAE = {"sheared": "channel flow (x1e-2)", "isotropic": "isotropic flow (x1e-1): 5.248, 1.215, 1.119, 1.000"}


@dataclass(frozen=True)
class SRTraining:
    """Model sizes and optimisation of one preset. The slides' code trains with L1, Adam (a learning rate per model,
    1e-4 .. 1e-3, weight decay 4e-4) for up to 100 epochs and has no penalty on the relaxed weights (``alpha = 0``:
    they are free to break the symmetry); the cpu preset takes larger steps for a few hundred steps.

    ``lr`` is Conv's learning rate, ``group_lr`` Equiv's and R-Equiv's: a group convolution sums over ``|G|`` times
    more inputs per output than a plain one of the same parameter count, so the same Adam step moves its outputs
    ``|G|``-fold more (at the cpu preset, lr 2e-3 drove every Equiv feature to zero within 20 steps, 8e-7 mean
    |feature|, and the model stayed at Trilinear's error; 5e-4 learns)."""

    arch: SRArch
    steps: int
    lr: float
    group_lr: float
    batch_size: int = 4
    evals: int = 8
    seeds: tuple[int, ...] = (0,)
    alpha: float = 0.0
    weight_decay: float = 0.0

    def lr_for(self, kind: str) -> float:
        """The learning rate of model ``kind``."""
        return self.group_lr if kind in ("equiv", "r_equiv") else self.lr


def training_presets() -> dict[str, SRTraining]:
    """The study's presets (``benchmarks/sr3d/benchmark.yaml``) as :class:`SRTraining` records."""
    return study_presets("sr3d", SRTraining)


class SuperResolver(L.LightningModule):
    """L1 training of a super-resolution model (plus ``alpha`` times its relaxation penalty); validation and test
    MAE."""

    def __init__(self, kind: str, arch: SRArch, lr: float, alpha: float = 0.0, weight_decay: float = 0.0) -> None:
        super().__init__()
        self.save_hyperparameters({"kind": kind, "arch": asdict(arch), "lr": lr, "alpha": alpha,
                                   "weight_decay": weight_decay})
        self.net = build_sr(kind, arch)
        self.lr, self.alpha, self.weight_decay = lr, alpha, weight_decay
        self.val_mae = torchmetrics.MeanAbsoluteError()
        self.test_mae = torchmetrics.MeanAbsoluteError()

    def forward(self, low: Tensor) -> Tensor:
        return self.net(low).contiguous()  # the periodic crop leaves a strided view; metrics flatten with view()

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        low, high = batch
        loss = (self(low) - high).abs().mean()
        if self.alpha and isinstance(self.net, SRNet):
            loss = loss + self.alpha * self.net.regularization_loss()
        self.log("train_l1", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        low, high = batch
        self.val_mae.update(self(low), high)

    def on_validation_epoch_end(self) -> None:
        self.log("val_mae", self.val_mae.compute(), prog_bar=True)
        self.val_mae.reset()

    def test_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        low, high = batch
        self.test_mae.update(self(low), high)

    def on_test_epoch_end(self) -> None:
        self.log("test_mae", self.test_mae.compute())
        self.test_mae.reset()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)


@torch.no_grad()
def equivariance_error(model: torch.nn.Module, low: Tensor, group: str = "Oh") -> float:
    """``mean_g ||SR(T_g v) - T_g SR(v)|| / ||SR(v)||`` over the non-identity elements of ``group``."""
    model.eval()
    out = model(low)
    errors = [float((model(act_on_fields(low, VELOCITY, g)) - act_on_fields(out, VELOCITY, g)).norm() / out.norm())
              for g in group_elements(group)[1:]]
    return float(np.mean(errors))


def flow_symmetry(flow: str) -> tuple:
    """The elements of ``O_h`` that leave ``flow``'s statistics invariant."""
    return group_elements("Oh") if flow == "isotropic" else turb3d_sim.SHEARED_SUBGROUP


def weight_deviations(net: torch.nn.Module, flow: str) -> tuple[float, float]:
    """``(dev_sym, dev_other)``: mean deviation of the relaxation weights (all relaxed layers, in units of their
    RMS) over the non-identity elements of ``flow``'s symmetry and over the rest of ``O_h`` (nan if empty or if the
    model has no relaxed layers)."""
    weights = net.relaxation_weights() if isinstance(net, SRNet) else torch.empty(0)
    if weights.numel() == 0:
        return math.nan, math.nan
    els = group_elements("Oh")
    w = weights.detach().double().reshape(-1, len(els))
    deviation = element_deviations(w, els) / float(w.pow(2).mean().sqrt())
    inside = set(indices_in(els, flow_symmetry(flow))) - {0}
    outside = set(range(len(els))) - inside - {0}

    def mean(idx: set[int]) -> float:
        return float(deviation[sorted(idx)].mean()) if idx else math.nan

    return mean(inside), mean(outside)


@dataclass
class SRRun:
    """One trained (or, for Trilinear, evaluated) model."""

    flow: str
    model: str
    seed: int
    test_mae: float
    val_mae: float
    best_step: int
    params: int
    equiv_error: float
    dev_sym: float
    dev_other: float
    seconds: float

    @property
    def key(self) -> tuple[str, str, int]:
        return self.flow, self.model, self.seed


def study_rows(runs: Sequence[SRRun], preset: str, cfg: SRTraining,
               hardware: Hardware | None = None) -> list[dict[str, Any]]:
    """``runs.csv`` rows of ``runs`` (:func:`~symbench.studies.common.append_study_rows`): dataset
    ``turb3d-<flow>``; ``test``: ``mae``, ``equiv_error`` and (R-Equiv) the weight deviations ``dev_sym`` /
    ``dev_other``; ``val``: ``mae``. NaN entries (no weight deviations) give no row. ``data_key``: the key of the
    flow's generated data (its directory's), ``code_rev``: this study's source."""
    config_hash = study_config_hash(cfg, hardware=hardware)
    rows = []
    for r in runs:
        common = {"dataset": f"turb3d-{r.flow}", "model": r.model, "seed": r.seed, "preset": preset,
                  "params": r.params, "train_seconds": r.seconds, "config_hash": config_hash,
                  "data_key": turb3d_sim.preset_params(preset, r.flow).key(), "code_rev": source_revision(__spec__.name)}
        metrics = [("test", "mae", r.test_mae), ("val", "mae", r.val_mae), ("test", "equiv_error", r.equiv_error),
                   ("test", "dev_sym", r.dev_sym), ("test", "dev_other", r.dev_other)]
        rows += [{**common, "split": s, "metric": m, "value": v} for s, m, v in metrics if not math.isnan(v)]
    return rows


def data_module(preset: str, root: str | Path, flow: str, cfg: SRTraining, seed: int,
                hardware: Hardware | None = None) -> Turb3DSRDataModule:
    """The flow's data; ``cfg.batch_size`` is the global batch, divided over ``hardware``'s processes."""
    batch = (hardware or Hardware()).per_device_batch(cfg.batch_size)
    return Turb3DSRDataModule(preset=preset, root=str(root), flow=flow, factor=cfg.arch.factor, batch_size=batch,
                              seed=seed)


def train_one(flow: str, kind: str, seed: int, data: Turb3DSRDataModule, cfg: SRTraining,
              show_progress: bool = False, trainer_settings: Mapping[str, Any] | None = None) -> SRRun:
    """Train ``kind`` for ``cfg.steps`` steps (Trilinear: evaluate only) and test the best checkpoint;
    ``trainer_settings``: the hardware (:func:`~symbench.studies.common.make_trainer`)."""
    start = time.perf_counter()
    L.seed_everything(seed, workers=True, verbose=False)
    module = SuperResolver(kind, cfg.arch, cfg.lr_for(kind), cfg.alpha, cfg.weight_decay)
    if kind == "trilinear":
        trainer = make_trainer(trainer_settings, logger=False, enable_progress_bar=False, enable_model_summary=False)
        val = trainer.validate(module, datamodule=data, verbose=False)[0]["val_mae"]
        test, best_step = trainer.test(module, datamodule=data, verbose=False)[0], 0
    else:
        fit = fit_test_best(module, data, cfg.steps, cfg.evals, "val_mae", show_progress, trainer_settings)
        val, test, best_step = fit.best_score, fit.test, fit.best_step
    low, _ = next(iter(data.test_dataloader()))
    dev_sym, dev_other = weight_deviations(module.net, flow)
    return SRRun(flow, kind, seed, float(test["test_mae"]), float(val), best_step, n_params(module.net),
                 equivariance_error(module.net, low), dev_sym, dev_other, time.perf_counter() - start)


# ------------------------------------------------------------------------------------------------------- storage

def csv_path(results: str | Path, preset: str) -> Path:
    return Path(results) / "sr3d" / f"sr3d_{preset}.csv"


def read_runs(path: Path) -> list[SRRun]:
    return read_records(path, SRRun)


def write_runs(path: Path, runs: Sequence[SRRun]) -> None:
    write_records(path, sorted(runs, key=lambda r: (FLOWS.index(r.flow), KINDS.index(r.model), r.seed)))


# -------------------------------------------------------------------------------------------------------- report

def _estimate(runs: Sequence[SRRun], flow: str, kind: str, field: str = "test_mae") -> Estimate | None:
    """:class:`~symbench.stats.Estimate` over seeds of ``field`` of the finite runs of (``flow``, ``kind``); None if
    there is none."""
    rows = [r for r in runs if r.flow == flow and r.model == kind and not math.isnan(float(getattr(r, field)))]
    return estimate([float(getattr(r, field)) for r in rows], [r.seed for r in rows]) if rows else None


def _cell(runs: Sequence[SRRun], flow: str, kind: str, field: str, interval: bool = False) -> str:
    e = _estimate(runs, flow, kind, field)
    return "–" if e is None else e.format(".4g", std=".2g", interval=interval)


def mae_table(runs: Sequence[SRRun]) -> list[str]:
    """The slides' layout: one MAE row, a column group per flow (seed means; best per flow in bold)."""
    flows = [f for f in FLOWS if any(r.flow == f for r in runs)]
    header, cells = ["Model"], ["MAE"]
    for flow in flows:
        means = {k: e.mean for k in KINDS if (e := _estimate(runs, flow, k)) is not None}
        best = min(means, key=means.get)
        for k, m in means.items():
            header.append(f"{LABELS[k]} ({flow})")
            cells.append(f"**{m:.4f}**" if k == best else f"{m:.4f}")
    return ["| " + " | ".join(header) + " |", "|---" * len(header) + "|", "| " + " | ".join(cells) + " |"]


def ordering(runs: Sequence[SRRun], flow: str) -> list[str]:
    """Model kinds of ``flow`` from the highest to the lowest mean test MAE."""
    means = {k: e.mean for k in KINDS if (e := _estimate(runs, flow, k)) is not None}
    return sorted(means, key=means.get, reverse=True)


def ordering_table(runs: Sequence[SRRun]) -> list[str]:
    """Each step of the slides' ordering (Trilinear > Conv > Equiv > R-Equiv) per flow: does the later model have
    the lower test MAE, in how many seeds, or is it a tie (:func:`~symbench.stats.beats`)."""
    lines = ["| flow | " + " | ".join(f"{LABELS[b]} < {LABELS[a]}" for a, b in zip(KINDS, KINDS[1:])) + " |",
             "|---" * len(KINDS) + "|"]
    for flow in FLOWS:
        cells = [(_estimate(runs, flow, a), _estimate(runs, flow, b)) for a, b in zip(KINDS, KINDS[1:])]
        if any(e is not None for pair in cells for e in pair):
            lines.append(f"| {flow} | " + " | ".join("–" if a is None or b is None else beats(b, a) for a, b in cells)
                         + " |")
    return lines


def write_report(preset: str, results: str | Path = "results", cfg: SRTraining | None = None) -> Path | None:
    """Render ``sr3d_<preset>.md`` from the CSV; None if there is no run."""
    cfg = cfg or training_presets()[preset]
    runs = read_runs(csv_path(results, preset))
    if not runs:
        return None
    seeds = sorted({r.seed for r in runs})
    lines = [f"# 3D turbulence super-resolution ({preset})", "",
             f"Test MAE of 4x super-resolution of the velocity (simulation units), mean over seeds "
             f"{seeds}; lowest per flow in bold. Layout of the slides' table (sheared flow stands in for their "
             "channel flow). Below it: mean ± std over seeds, and for the test MAE the 95 % Student-t interval of "
             "the mean.", ""]
    lines += mae_table(runs) + ["", "| flow | model | params | test MAE | val MAE | equivariance error | "
                                    "w deviation: symmetry / other | best step | seconds |",
                                "|---|---|---|---|---|---|---|---|---|"]
    for flow in FLOWS:
        for kind in KINDS:
            rows = [r for r in runs if r.flow == flow and r.model == kind]
            if not rows:
                continue
            dev = (f"{_cell(runs, flow, kind, 'dev_sym')} / {_cell(runs, flow, kind, 'dev_other')}"
                   if kind == "r_equiv" else "–")
            lines.append(f"| {flow} | {LABELS[kind]} | {rows[0].params} | "
                         f"{_cell(runs, flow, kind, 'test_mae', interval=True)} | {_cell(runs, flow, kind, 'val_mae')} "
                         f"| {_cell(runs, flow, kind, 'equiv_error')} | {dev} | {_cell(runs, flow, kind, 'best_step')} "
                         f"| {_cell(runs, flow, kind, 'seconds')} |")
    lines += ["", "## Ordering", "",
              "The slides report Trilinear > Conv > Equiv > R-Equiv in MAE on both flows (channel flow: "
              "Trilinear 5.241, then 2.602, 2.540 (x1e-2; the slide lists seven numbers for eight cells); isotropic "
              "flow: 5.248, 1.215, 1.119, 1.000 (x1e-1)).", ""]
    for flow in FLOWS:
        order = ordering(runs, flow)
        if order:
            same = order == [k for k in KINDS if k in order]
            lines.append(f"- {flow}: " + " > ".join(LABELS[k] for k in order) +
                         (" (the slides' ordering, by the means)." if same else
                          " (differs from the slides' ordering, by the means)."))
    lines += ["", "Per step of the slides' ordering: does the later model have the lower test MAE (by the means), "
                  "in how many seeds, and 'tie' where the two 95 % intervals overlap.", "", *ordering_table(runs)]
    lines += ["", "Equivariance error: mean over the 47 non-identity elements of O_h of "
                  "||SR(T_g v) - T_g SR(v)|| / ||SR(v)|| on the first test batch. w deviation (R-Equiv): mean over "
                  "the non-identity elements u of the flow's symmetry (O_h for isotropic, C2h for sheared) and over "
                  "the other elements of max_{l,h} |w_l(u h) - w_l(h)|, in units of the weights' RMS.", "",
              "Training: " + ", ".join(f"{k} {v}" for k, v in asdict(cfg).items()) + ".",
              f"Total time {sum(r.seconds for r in runs) / 60:.1f} min (sum over runs).", ""]
    path = csv_path(results, preset).with_suffix(".md")
    write_text(path, "\n".join(lines))
    return path


def run_sr3d(preset: str, root: str | Path = "data", results: str | Path = "results",
             flows: Sequence[str] = FLOWS, kinds: Sequence[str] = KINDS, seeds: Sequence[int] | None = None,
             show_progress: bool = False, training: SRTraining | None = None,
             trainer: Mapping[str, Any] | None = None) -> list[SRRun]:
    """Generate (or reuse) the flows' data, run every (flow, model, seed) not yet in the CSV, append each row as it
    finishes (one line on stdout per run), then write the report. ``training`` overrides the preset's."""
    cfg = training or training_presets()[preset]
    seeds = tuple(seeds) if seeds is not None else cfg.seeds
    unknown = sorted(set(flows) - set(FLOWS)) + sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown flow or model {unknown}; flows: {', '.join(FLOWS)}; models: {', '.join(KINDS)}")
    path = csv_path(results, preset)
    runs = read_runs(path)
    done = {r.key for r in runs}
    todo = [(f, k, s) for f in flows for s in seeds for k in kinds if (f, k, s) not in done]
    hardware = hardware_of(trainer)  # resolved once, before any training
    finished = []
    for i, (flow, kind, seed) in enumerate(todo, 1):
        generate_preset(preset, Path(root), show_progress, flow)
        data = data_module(preset, root, flow, cfg, seed, hardware)
        run = train_one(flow, kind, seed, data, cfg, show_progress, trainer)
        runs.append(run)
        finished.append(run)
        write_runs(path, runs)
        append_study_rows(results, "sr3d", study_rows([run], preset, cfg, hardware))
        print(f"[sr3d {i}/{len(todo)}] {flow} {LABELS[kind]} seed={seed}: test MAE {run.test_mae:.4f} "
              f"({run.params} params, equivariance error {run.equiv_error:.2g}, {run.seconds:.0f} s)", flush=True)
    write_report(preset, results, cfg)
    return finished


# -- command line (symbench.studies.StudyModule) ------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_experiment_arguments(parser, "sr3d")
    parser.add_argument("--flows", nargs="+", help="sheared and/or isotropic (default: both)")
    parser.add_argument("--models", nargs="+", help="subset of trilinear conv equiv r_equiv (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, help="seeds (default: the preset's)")
    parser.add_argument("--report-only", action="store_true", help="only render the report from the CSV")


def run(args: argparse.Namespace) -> None:
    check_preset(args.preset, training_presets())
    if not args.report_only:
        run_sr3d(args.preset, args.root, args.results, args.flows or FLOWS, args.models or KINDS, args.seeds,
                 show_progress=not args.no_progress, trainer=trainer_settings(args))
    path = write_report(args.preset, args.results)
    if path is None:
        raise FileNotFoundError(f"no sr3d results for preset {args.preset!r} under {args.results}/sr3d; "
                                f"run `symbench sr3d --preset {args.preset}` first")
    print(f"wrote {path}")
