"""Symmetry discovery with the relaxed octahedral group convolution (Wang, Walters & Smidt, arXiv 2310.02299; the
slides' proposition: the relaxed weights stay tied exactly on the symmetry of the data).

A synthetic task on a small periodic grid has a known symmetry subgroup ``H`` of ``G = O_h``
(:data:`~symbench.symmetry.octahedral.GROUPS`: ``C4v`` by default, the point group ``4mm`` of tetragonal BaTiO3); the
task and its data are :mod:`symbench.studies.discovery.task`, the network (exactly ``O_h``-equivariant at init,
``Stab(w)``-equivariant after training) :mod:`symbench.studies.discovery.model`.

* **Training**: :class:`~symbench.studies.discovery.task.DiscoveryModule` through the studies' Trainer
  (:func:`~symbench.studies.common.fit_test_best`: validation and test on held-out orbits once, after the last step,
  so the weights read are the last step's).
* **Recovery** (:func:`recover_subgroup`): the deviation of each element ``u``, ``max_{l,h} |w_l(u h) - w_l(h)|``,
  in units of the spread of ``w`` (the largest standard deviation over ``h`` of a bank); the elements below
  ``tol`` form the recovered set, checked for closure; the gap between the largest deviation inside and the
  smallest outside says how clear the cut is.
* **Report** (:func:`run_discovery`): a plot of ``w_l(h)`` ordered by the right cosets of the recovered subgroup
  (:func:`plot_weights`) and a markdown table (:func:`discovery_table`), both written atomically, and rows of
  ``<results>/symmetry_discovery/runs.csv`` (:func:`study_rows`). Sizes and training come from the presets of
  ``benchmarks/symmetry_discovery/benchmark.yaml`` (:class:`DiscoveryConfig`).

The control ``run_discovery("Oh")`` trains on fully ``O_h``-equivariant data: the weights stay tied and the whole
group is recovered.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import torch
from torch import Tensor

from datamodules.store import content_key
from symbench.models.budget import n_params
from symbench.provenance import source_revision
from symbench.studies.common import (
    add_trainer_arguments, append_study_rows, check_preset, fit_test_best, study_config_hash, study_presets,
    trainer_settings, write_figure, write_text,
)
from symbench.studies.discovery.model import DiscoveryModel, SubgroupSpec
from symbench.studies.discovery.task import DiscoveryModule, OrbitData, SyntheticTask, make_dataset, smooth_fields
from symbench.symmetry.octahedral import (
    FULL_OCTAHEDRAL,
    GROUPS,
    Element,
    Octahedral,
    as_element,
    cayley_table,
    element_deviations,
    group_elements,
    indices_in,
)

STUDY = "symmetry_discovery"  # the results directory and the rows' benchmark


@dataclass(frozen=True)
class DiscoveryConfig:
    """Sizes and training of one preset (``benchmarks/symmetry_discovery/benchmark.yaml``): the grid ``size``, the
    training orbits ``fields`` and held-out ``test_fields``, the network (``channels``, ``banks``, ``kernel_size``,
    ``extra_convs``), the target's kernel size, Adam's ``lr``, the penalty weight ``alpha`` and the recovery ``tol``."""

    steps: int = 200
    subgroups: tuple[str, ...] = ("C4v", "D4h", "C4", "Oh")
    seed: int = 0
    size: int = 6
    fields: int = 2
    test_fields: int = 1
    channels: int = 1
    banks: int = 2
    kernel_size: int = 3
    target_kernel: int = 5
    extra_convs: int = 0
    lr: float = 1e-2
    alpha: float = 1e-5
    tol: float = 0.01
    nonlinearity: Literal["none", "tanh"] = "none"


def presets() -> dict[str, DiscoveryConfig]:
    """The study's presets as :class:`DiscoveryConfig` records."""
    return study_presets(STUDY, DiscoveryConfig)


def subgroup_name(subgroup: SubgroupSpec) -> str:
    return subgroup if isinstance(subgroup, str) else f"H{len(group_elements(subgroup))}"


def element_label(g: Element) -> str:
    """Compact label of an element: the images of ``(x, y, z)`` as signed coordinates, e.g. ``xyz`` (identity),
    ``-yxz`` (quarter turn about +z: ``(x, y, z) -> (-y, x, z)``), ``-x-y-z`` (inversion)."""
    m = as_element(g).matrix
    names = "xyz"
    out = []
    for row in m:
        j = next(c for c in range(3) if row[c])
        out.append(("-" if row[j] < 0 else "") + names[j])
    return "".join(out)


def matrix_set(elements: Sequence[Element]) -> frozenset:
    """The elements as a set of matrices (for comparing groups independently of their order)."""
    return frozenset(as_element(g).matrix for g in elements)


def is_closed(group: Sequence[Element], indices: Sequence[int]) -> bool:
    """Whether the elements ``group[i]`` for ``i`` in ``indices`` contain the identity and are closed under
    composition (a subgroup; finite, so inverses follow)."""
    els = group_elements(group) if isinstance(group, str) else tuple(as_element(g) for g in group)
    table = cayley_table(els)
    s = set(int(i) for i in indices)
    if not any(els[i].matrix == Octahedral.identity().matrix for i in s):
        return False
    return all(int(table[a, b]) in s for a in s for b in s)


def right_cosets(group: Sequence[Element], subgroup: Sequence[Element]) -> list[tuple[int, ...]]:
    """The right cosets ``H h`` of ``subgroup`` in ``group`` as tuples of positions in ``group``: cosets in the
    order of their first element, members in the order ``u h`` for ``u`` in ``subgroup``."""
    els = tuple(as_element(g) for g in group)
    pos = {g.matrix: i for i, g in enumerate(els)}
    sub = tuple(as_element(u) for u in subgroup)
    seen: set[int] = set()
    cosets = []
    for h in els:
        if pos[h.matrix] in seen:
            continue
        coset = tuple(pos[(u @ h).matrix] for u in sub)
        seen.update(coset)
        cosets.append(coset)
    return cosets


@dataclass
class TrainLog:
    steps: int
    seconds: float
    initial_loss: float
    final_loss: float
    losses: list[float] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------- recovery


@dataclass(frozen=True)
class RecoveredSubgroup:
    """The elements whose deviation ``max_{l,h} |w_l(u h) - w_l(h)| / scale`` is at most ``tol``.

    ``deviation (|G|,)``: per element of ``group``; ``scale``: the spread of ``w`` used as the unit; ``indices``:
    positions in ``group``; ``is_subgroup``: closed under composition; ``inside_max`` / ``outside_min``: the
    largest deviation kept and the smallest rejected (``inf`` when all are kept); ``gap = outside_min /
    inside_max``."""

    group: tuple[Octahedral, ...]
    indices: tuple[int, ...]
    deviation: Tensor
    scale: float
    tol: float
    is_subgroup: bool

    @property
    def elements(self) -> tuple[Octahedral, ...]:
        return tuple(self.group[i] for i in self.indices)

    @property
    def order(self) -> int:
        return len(self.indices)

    @property
    def inside_max(self) -> float:
        return float(self.deviation[list(self.indices)].max())

    @property
    def outside_min(self) -> float:
        out = [i for i in range(len(self.group)) if i not in set(self.indices)]
        return float(self.deviation[out].min()) if out else math.inf

    @property
    def gap(self) -> float:
        inside = self.inside_max
        return math.inf if inside == 0 else self.outside_min / inside

    def equals(self, subgroup: SubgroupSpec) -> bool:
        """Same set of matrices as ``subgroup``."""
        return matrix_set(self.elements) == matrix_set(group_elements(subgroup))


def recover_subgroup(weights: Tensor, group: SubgroupSpec = "Oh", tol: float = 0.01,
                     floor: float = 1e-2) -> RecoveredSubgroup:
    """The subgroup read off learned relaxed weights ``w (L, |G|)`` (several layers: concatenate along ``L``).

    Deviation of ``u``: ``max_{l,h} |w_l(u h) - w_l(h)|`` divided by the spread of ``w``,
    ``scale = max(max_l std_h w_l(h), floor * rms(w))`` (the floor keeps tied weights, whose spread is only
    round-off, from being read as random: a spread under 1% of the weights' size counts as tied; the control's
    weights, tied to ~4e-6 after 200 steps, then deviate by < 1e-3 in this unit). ``u`` is kept when its
    deviation is at most ``tol``: it moves ``w`` by less than ``tol`` of its typical variation over the group. The
    kept set is checked for closure (``is_subgroup``); for weights constant on the right cosets ``H h`` with
    distinct coset values it is ``H``, for random weights the identity alone. After :func:`train` the elements of
    the data's symmetry deviate by ~1e-5..1e-4 (round-off, and the penalty's subgradient switching on at
    round-off differences; ~1e-3 with ``alpha = 1e-4``), the others by 0.06 (the weakly broken mirrors of the
    ``C4`` task) to ~2; the default ``tol = 0.01`` sits between."""
    els = group_elements(group)
    w = weights.detach().to(torch.float64).cpu().reshape(-1, len(els))
    spread = float(w.std(dim=1, unbiased=False).max())
    scale = max(spread, floor * float(w.pow(2).mean().sqrt()), 1e-300)
    deviation = element_deviations(w, els) / scale
    indices = tuple(int(i) for i in torch.nonzero(deviation <= tol).view(-1))
    return RecoveredSubgroup(els, indices, deviation, scale, tol, is_closed(els, indices))


# ------------------------------------------------------------------------------------------------------ reporting


def plot_weights(weights: Tensor, group: SubgroupSpec, subgroup: SubgroupSpec, path: Path,
                 title: str = "", recovered: RecoveredSubgroup | None = None, subgroup_title: str = "") -> Path:
    """PNG (atomic) of ``w_l(h)`` for each bank ``l`` (one panel each) against the elements of ``group`` ordered by
    the right cosets ``H h`` of ``subgroup`` (vertical lines between cosets, tick labels :func:`element_label`);
    with ``recovered``, a last panel of the per-element deviations (log scale) and the tolerance.
    ``subgroup_title`` names ``subgroup`` on the axis (default: its name or order)."""
    from symbench.plots import new_figure

    els = group_elements(group)
    sub = group_elements(subgroup)
    w = weights.detach().to(torch.float64).cpu().reshape(-1, len(els))
    cosets = right_cosets(els, sub)
    order = [i for c in cosets for i in c]
    banks = w.shape[0]
    panels = banks + (recovered is not None)
    fig = new_figure(max(8.0, 0.2 * len(els) + 1.5), 2.2 * panels + 0.8)
    axes = fig.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
    xs = list(range(len(order)))
    for l in range(banks):
        ax = axes[l]
        ax.plot(xs, w[l, order].numpy(), "o", markersize=4, color="C0")
        for j, c in enumerate(cosets):  # each coset's mean as a short line
            lo = sum(len(d) for d in cosets[:j])
            ax.hlines(float(w[l, list(c)].mean()), lo - 0.4, lo + len(c) - 0.6, color="C1", linewidth=1)
        ax.set_ylabel(f"$w_{l}(h)$")
        ax.grid(True, axis="y", alpha=0.3)
    if recovered is not None:
        ax = axes[-1]
        dev = recovered.deviation[order].clamp_min(1e-12).numpy()
        ax.semilogy(xs, dev, "s", markersize=4, color="C2")
        ax.axhline(recovered.tol, color="C3", linestyle="--", linewidth=1, label=f"tol = {recovered.tol:g}")
        ax.set_ylabel("deviation of u = h\n(units of spread)")
        ax.legend(loc="lower right", fontsize=7)
        ax.grid(True, axis="y", alpha=0.3)
    for ax in axes:
        pos = 0
        for c in cosets[:-1]:
            pos += len(c)
            ax.axvline(pos - 0.5, color="0.5", linewidth=0.8)
    axes[-1].set_xticks(xs)
    axes[-1].set_xticklabels([element_label(els[i]) for i in order], rotation=90, fontsize=6, family="monospace")
    sub_title = subgroup_title or subgroup_name(subgroup)
    axes[-1].set_xlabel(f"element h of {subgroup_name(group)} by right coset H h of H = {sub_title} (|H| = {len(sub)})")
    if title:
        fig.suptitle(title, fontsize=10)
    return write_figure(fig, Path(path))


@dataclass
class DiscoveryResult:
    subgroup: str
    true_elements: tuple[Octahedral, ...]
    recovered: RecoveredSubgroup
    weights: Tensor
    log: TrainLog
    seed: int
    task_errors: Tensor
    test_fit: float = math.nan  # normalised MSE on held-out orbits
    params: int = 0
    plot_path: Path | None = None
    table_path: Path | None = None

    @property
    def equal(self) -> bool:
        return self.recovered.equals(self.true_elements)


def _fmt(v: float) -> str:
    return "inf" if math.isinf(v) else f"{v:.3g}"


def discovery_table(result: DiscoveryResult) -> str:
    """Markdown: a summary table and the per-element deviations (in units of the spread of ``w``)."""
    r = result.recovered
    true = matrix_set(result.true_elements)
    lines = [
        f"## Symmetry discovery: H = {result.subgroup}",
        "",
        "| true subgroup | true order | recovered order | equal | closed | max dev. inside | min dev. outside "
        "| gap | tol | spread of w | steps | seconds | fit loss (first -> last) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {result.subgroup} | {len(result.true_elements)} | {r.order} | {'yes' if result.equal else 'no'} "
        f"| {'yes' if r.is_subgroup else 'no'} | {_fmt(r.inside_max)} | {_fmt(r.outside_min)} | {_fmt(r.gap)} "
        f"| {r.tol:g} | {r.scale:.3g} | {result.log.steps} | {result.log.seconds:.1f} "
        f"| {result.log.initial_loss:.3g} -> {result.log.final_loss:.3g} |",
        "",
        f"Task equivariance error ||T(T_g x) - T_g T(x)|| / ||T(x)||: max over H {_fmt(_max_inside(result))}, "
        f"min outside H {_fmt(_min_outside(result.task_errors, result.true_elements))}.",
        "",
        "| element | in H | recovered | deviation |",
        "|---|---|---|---|",
    ]
    kept = set(r.indices)
    for i, g in enumerate(r.group):
        lines.append(f"| {element_label(g)} | {'yes' if g.matrix in true else ''} | {'yes' if i in kept else ''} "
                     f"| {float(r.deviation[i]):.3g} |")
    return "\n".join(lines) + "\n"


def _max_inside(result: DiscoveryResult) -> float:
    return float(result.task_errors[list(indices_in(FULL_OCTAHEDRAL, result.true_elements))].max())


def _min_outside(errors: Tensor, subgroup: Sequence[Octahedral]) -> float:
    inside = set(indices_in(FULL_OCTAHEDRAL, subgroup))
    out = [i for i in range(len(FULL_OCTAHEDRAL)) if i not in inside]
    return float(errors[out].min()) if out else math.inf


def run_discovery(subgroup: SubgroupSpec = "C4v", steps: int = 200, seed: int = 0, out_dir: Path | None = None,
                  size: int = 6, fields: int = 2, channels: int = 1, banks: int = 2, kernel_size: int = 3,
                  target_kernel: int = 5, extra_convs: int = 0, lr: float = 1e-2, alpha: float = 1e-5,
                  tol: float = 0.01, nonlinearity: Literal["none", "tanh"] = "none",
                  dtype: torch.dtype = torch.float32, test_fields: int = 1,
                  trainer: dict | None = None) -> DiscoveryResult:
    """Train :class:`DiscoveryModel` on the ``subgroup``-equivariant :class:`SyntheticTask` and read the subgroup
    off its relaxed weights. With ``out_dir``, writes ``<name>_weights.png`` (:func:`plot_weights`, cosets of the
    recovered subgroup when it is one, else of the true one) and ``<name>.md`` (:func:`discovery_table`).
    ``trainer``: the hardware settings (:func:`~symbench.studies.common.make_trainer`)."""
    name = subgroup_name(subgroup)
    task = SyntheticTask.random(subgroup, target_kernel, seed, nonlinearity)
    with torch.no_grad():
        probe = smooth_fields(1, size, torch.Generator().manual_seed(seed + 1000), dtype=torch.float64)
        errors = task.equivariance_errors(probe)
    data = OrbitData(make_dataset(task, fields, size, seed + 1, dtype), make_dataset(task, test_fields, size,
                                                                                     seed + 2, dtype))
    torch.manual_seed(seed)
    module = DiscoveryModule(DiscoveryModel(channels, kernel_size, banks, "Oh", extra_convs).to(dtype), lr, alpha)
    start = time.perf_counter()
    fit = fit_test_best(module, data, steps, 1, "val_fit", trainer=trainer)  # one evaluation: after the last step
    losses = module.losses
    log = TrainLog(steps, time.perf_counter() - start, losses[0] if losses else math.nan,
                   losses[-1] if losses else math.nan, losses)
    w = module.net.relaxation_weights().detach().clone()
    rec = recover_subgroup(w, "Oh", tol)
    result = DiscoveryResult(name, task.subgroup, rec, w, log, seed, errors, fit.test["test_fit"],
                             n_params(module.net))
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        cosets_of = rec.elements if rec.is_subgroup else task.subgroup
        if not rec.is_subgroup:
            cosets_title = f"true {name}"
        else:
            cosets_title = f"recovered {name}" if result.equal else f"recovered (order {rec.order})"
        result.plot_path = plot_weights(
            w, "Oh", cosets_of, out_dir / f"{name}_weights.png", recovered=rec,
            subgroup_title=cosets_title,
            title=f"relaxed weights after {steps} steps on {name}-equivariant data: recovered order {rec.order} "
                  f"({'=' if result.equal else '!='} {name}), gap {_fmt(rec.gap)}")
        result.table_path = out_dir / f"{name}.md"
        write_text(result.table_path, discovery_table(result))
    return result


# -- rows in the runs.csv schema ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunSummary:
    """What a ``runs.csv`` row set says about one run (from a :class:`DiscoveryResult` or a committed table)."""

    subgroup: str
    seed: int
    recovered_order: int
    equal: bool
    closed: bool
    dev_inside: float
    dev_outside: float
    gap: float
    train_fit: float
    seconds: float
    test_fit: float = math.nan
    params: int | str = ""

    @classmethod
    def of(cls, r: DiscoveryResult) -> "RunSummary":
        rec = r.recovered
        return cls(r.subgroup, r.seed, rec.order, r.equal, rec.is_subgroup, rec.inside_max, rec.outside_min, rec.gap,
                   r.log.final_loss, r.log.seconds, r.test_fit, r.params)


def study_rows(runs: Sequence[RunSummary], preset: str, cfg: DiscoveryConfig) -> list[dict[str, object]]:
    """``runs.csv`` rows (:func:`~symbench.studies.common.append_study_rows`): dataset ``discovery-<subgroup>``,
    model ``relaxed_oh``; split ``test``: ``recovered_order``, ``equal`` / ``closed`` (1 or 0, the recovered set is
    the true subgroup / a subgroup), the deviations ``dev_inside`` (largest kept) and ``dev_outside`` (smallest
    rejected), ``gap`` and ``fit`` (normalised MSE on held-out orbits); split ``train``: ``fit`` after the last step.
    A value that is not finite gives no row (no held-out fit; every element kept: no smallest rejected, no gap). ``data_key``: the task and data parameters' content key."""
    config_hash = study_config_hash(cfg)
    rows: list[dict[str, object]] = []
    for r in runs:
        common = {"dataset": f"discovery-{r.subgroup}", "model": "relaxed_oh", "seed": r.seed, "preset": preset,
                  "params": r.params, "train_seconds": r.seconds, "epochs": "", "config_hash": config_hash,
                  "data_key": content_key(r.subgroup, r.seed, cfg.size, cfg.fields, cfg.test_fields,
                                          cfg.target_kernel, cfg.nonlinearity),
                  "code_rev": source_revision(__spec__.name)}
        values = [("test", "recovered_order", r.recovered_order), ("test", "equal", int(r.equal)),
                  ("test", "closed", int(r.closed)), ("test", "dev_inside", r.dev_inside),
                  ("test", "dev_outside", r.dev_outside), ("test", "gap", r.gap), ("test", "fit", r.test_fit),
                  ("train", "fit", r.train_fit)]
        rows += [{**common, "split": split, "metric": metric, "value": value} for split, metric, value in values
                 if not isinstance(value, float) or math.isfinite(value)]
    return rows


def read_table(path: Path, cfg: DiscoveryConfig) -> RunSummary:
    """The :class:`RunSummary` of a committed ``<subgroup>.md`` (:func:`discovery_table`'s summary line, 3
    significant digits as printed; no held-out fit, which the tables did not report) of a run at ``cfg``'s sizes."""
    lines = path.read_text().splitlines()
    head = lines.index(next(line for line in lines if line.startswith("| true subgroup |")))
    cells = [c.strip() for c in lines[head + 2].strip("|").split("|")]
    net = DiscoveryModel(cfg.channels, cfg.kernel_size, cfg.banks, "Oh", cfg.extra_convs)
    return RunSummary(cells[0], cfg.seed, int(cells[2]), cells[3] == "yes", cells[4] == "yes", float(cells[5]),
                      float(cells[6]), float(cells[7]), float(cells[12].split("->")[1]), float(cells[11]),
                      params=n_params(net))


# -- command line (symbench.studies.StudyModule) ------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--subgroups", nargs="+", help="known symmetry of the synthetic data (named subgroups of O_h; "
                        "default: the preset's, C4v D4h C4 Oh)")
    parser.add_argument("--steps", type=int, help="training steps (default: the preset's, 200)")
    parser.add_argument("--seed", type=int, help="seed (default: the preset's, 0)")
    parser.add_argument("--results", default="results", help=f"results directory (writes <results>/{STUDY}/)")
    add_trainer_arguments(parser)


def run(args: argparse.Namespace) -> None:
    check_preset(args.preset, presets())
    cfg = presets()[args.preset]
    overrides = {"subgroups": tuple(args.subgroups) if args.subgroups else None, "steps": args.steps,
                 "seed": args.seed}
    cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    unknown = [g for g in cfg.subgroups if g not in GROUPS]
    if unknown:
        raise ValueError(f"unknown subgroup(s) {unknown}; choose from {', '.join(GROUPS)}")
    out = Path(args.results) / STUDY
    sizes = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("subgroups",)}
    for name in cfg.subgroups:
        result = run_discovery(name, out_dir=out, trainer=trainer_settings(args), **sizes)
        append_study_rows(args.results, STUDY, study_rows([RunSummary.of(result)], args.preset, cfg))
        print(f"{name}: true order {len(result.true_elements)}, recovered order {len(result.recovered.elements)}, "
              f"equal: {'yes' if result.equal else 'no'} ({result.table_path})")
