"""Symmetry discovery with the relaxed octahedral group convolution (Wang, Walters & Smidt, arXiv 2310.02299; the
slides' proposition: the relaxed weights stay tied exactly on the symmetry of the data).

A synthetic task on a small periodic grid has a known symmetry subgroup ``H`` of ``G = O_h``
(:data:`~symbench.symmetry.octahedral.GROUPS`: ``C4v`` by default, the point group ``4mm`` of tetragonal BaTiO3):

* **Task** (:class:`SyntheticTask`): inputs are random smooth scalar fields ``x`` on an ``N^3`` torus (white noise
  under a Gaussian low-pass in Fourier space, unit variance); the target is the ``H``-average of a plain periodic
  convolution with a fixed random kernel ``k``, ``T(x) = 1/|H| sum_{u in H} T_u (k * T_u^-1 x)`` (optionally
  followed by a pointwise ``tanh``; pointwise maps keep the symmetry). ``T`` commutes with every ``u`` in ``H`` by
  construction and, for a generic ``k`` of size 5, with no element outside ``H``
  (:meth:`SyntheticTask.equivariance_errors` checks it numerically). A size-3 ``k`` is not enough for chiral
  subgroups: the ``C4`` orbits of the 27 taps are the ``C4v`` orbits, so the ``C4``-average of a 3^3 kernel is
  also mirror-symmetric.
* **Data** (:func:`make_dataset`): every random field comes with its 48 images ``T_g x`` under all of ``O_h``
  (with targets ``T(T_g x)``). This uses nothing about ``H``: it only makes the empirical input distribution
  exactly ``O_h``-invariant, so the empirical loss is invariant under exactly the symmetry of ``T`` (the
  permutation ``w_l(h) -> w_l(u^-1 h)`` of the relaxed weights for ``u`` in ``H``) and full-orbit batches give
  gradients with that symmetry up to round-off. Without it the finite sample breaks every symmetry a little.
* **Model** (:class:`DiscoveryModel`): strict lift ``Z^3 -> O_h`` -> activation -> relaxed group convolution
  (``L`` banks, weights tied at init, so the model is exactly ``O_h``-equivariant at init) -> [activation ->
  strict group convolutions] -> mean over the group: a scalar field. Its symmetry is ``Stab(w)``, the elements
  ``u`` with ``w_l(u h) = w_l(h)``: ``w`` constant on the right cosets ``H h``
  (:func:`~symbench.layers.octahedral_conv.weight_stabilizer`).
* **Training** (:func:`train`): Adam on the normalised MSE plus ``alpha`` times the ICML 2022 penalty
  ``sum_l sum_{g,h} |w_l(g) - w_l(h)|``; one orbit of 48 fields per step.
* **Recovery** (:func:`recover_subgroup`): the deviation of each element ``u``, ``max_{l,h} |w_l(u h) - w_l(h)|``,
  in units of the spread of ``w`` (the largest standard deviation over ``h`` of a bank); the elements below
  ``tol`` form the recovered set, checked for closure; the gap between the largest deviation inside and the
  smallest outside says how clear the cut is.
* **Report** (:func:`run_discovery`): a plot of ``w_l(h)`` ordered by the right cosets of the recovered subgroup
  (:func:`plot_weights`) and a markdown table (:func:`discovery_table`), both written atomically.

The control ``run_discovery("Oh")`` trains on fully ``O_h``-equivariant data: the weights stay tied and the whole
group is recovered.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from symbench.layers.octahedral_conv import (
    OctahedralGroupConv3d,
    OctahedralGroupPool3d,
    OctahedralLift3d,
    RelaxedOctahedralGroupConv3d,
)
from symbench.studies.common import write_figure, write_text
from symbench.symmetry.octahedral import (
    FULL_OCTAHEDRAL,
    GROUPS,
    Element,
    Octahedral,
    act_on_grid,
    as_element,
    cayley_table,
    element_deviations,
    group_elements,
    indices_in,
)

SubgroupSpec = str | Sequence[Element]
"""A named group of :data:`~symbench.symmetry.octahedral.GROUPS` (``"C4v"``, ``"D4h"``, ``"C4"``, ``"D4"``,
``"O"``, ``"Oh"``, ``"trivial"``) or a closed list of elements, identity first."""


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


# ------------------------------------------------------------------------------------------------------- the task


def periodic_conv(x: Tensor, kernel: Tensor) -> Tensor:
    """Cross-correlation of ``x (B, 1, N, N, N)`` with ``kernel (k, k, k)`` (odd ``k``) on the torus."""
    k = kernel.shape[-1]
    pad = k // 2
    return F.conv3d(F.pad(x, (pad,) * 6, mode="circular"), kernel.view(1, 1, k, k, k).to(x.dtype))


def smooth_fields(count: int, size: int, generator: torch.Generator, length: float = 1.0,
                  dtype: torch.dtype = torch.float32) -> Tensor:
    """``(count, 1, N, N, N)`` random smooth periodic fields: white noise times ``exp(-(length |k|)^2 / 2)`` in
    Fourier space (an isotropic filter, so the distribution is ``O_h``-invariant), each normalised to zero mean and
    unit standard deviation."""
    noise = torch.randn(count, 1, size, size, size, generator=generator, dtype=torch.float64)
    k = 2 * math.pi * torch.fft.fftfreq(size, dtype=torch.float64)
    k2 = k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2
    x = torch.fft.ifftn(torch.fft.fftn(noise, dim=(-3, -2, -1)) * torch.exp(-0.5 * length**2 * k2),
                        dim=(-3, -2, -1)).real
    x = x - x.mean(dim=(-3, -2, -1), keepdim=True)
    return (x / x.std(dim=(-3, -2, -1), keepdim=True)).to(dtype)


@dataclass(frozen=True)
class SyntheticTask:
    """``T(x) = act(1/|H| sum_{u in H} T_u (k * T_u^-1 x))`` on scalar fields ``(B, 1, N, N, N)``: exactly
    ``H``-equivariant by construction (the ``H``-average of a plain periodic convolution with the random kernel
    ``kernel (k, k, k)``), ``act`` the identity or ``tanh``."""

    subgroup: tuple[Octahedral, ...]
    kernel: Tensor
    nonlinearity: Literal["none", "tanh"] = "none"

    @classmethod
    def random(cls, subgroup: SubgroupSpec = "C4v", kernel_size: int = 5, seed: int = 0,
               nonlinearity: Literal["none", "tanh"] = "none") -> "SyntheticTask":
        g = torch.Generator().manual_seed(seed)
        kernel = torch.randn(kernel_size, kernel_size, kernel_size, generator=g, dtype=torch.float64)
        return cls(group_elements(subgroup), kernel / kernel.norm(), nonlinearity)

    def averaged_kernel(self) -> Tensor:
        """``1/|H| sum_u T_u k``: the same map as one convolution (``T_u (k * T_u^-1 x) = (T_u k) * x`` on the
        torus)."""
        return torch.stack([act_on_grid(self.kernel, u) for u in self.subgroup]).mean(0)

    def __call__(self, x: Tensor) -> Tensor:
        y = torch.zeros_like(x)
        for u in self.subgroup:  # the definition, literally
            y = y + act_on_grid(periodic_conv(act_on_grid(x, u.inverse()), self.kernel), u)
        y = y / len(self.subgroup)
        return torch.tanh(y) if self.nonlinearity == "tanh" else y

    def equivariance_errors(self, x: Tensor, group: SubgroupSpec = "Oh") -> Tensor:
        """``(|G|,)``: ``||T(T_g x) - T_g T(x)|| / ||T(x)||`` for every ``g`` of ``group`` (~round-off for ``g`` in
        ``H``)."""
        y = self(x)
        return torch.stack([(self(act_on_grid(x, g)) - act_on_grid(y, g)).norm() / y.norm()
                            for g in group_elements(group)])


def orbit(x: Tensor, group: SubgroupSpec = "Oh") -> Tensor:
    """``(|G| B, ...)``: ``T_g x`` for every ``g`` (element-major) of the fields ``x (B, 1, N, N, N)``."""
    return torch.cat([act_on_grid(x, g).contiguous() for g in group_elements(group)])


def make_dataset(task: SyntheticTask, fields: int, size: int, seed: int,
                 dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """``(x, y)``, both ``(fields, 48, 1, N, N, N)``: ``fields`` random smooth fields with all 48 images under
    ``O_h`` each, and the targets ``T(x)``. Closing the inputs under all of ``O_h`` needs no knowledge of ``H``."""
    g = torch.Generator().manual_seed(seed)
    base = smooth_fields(fields, size, g, dtype=torch.float64)
    x = orbit(base).view(len(FULL_OCTAHEDRAL), fields, 1, size, size, size).transpose(0, 1)
    y = task(x.reshape(-1, 1, size, size, size)).view_as(x)
    return x.to(dtype).contiguous(), y.to(dtype).contiguous()


# ------------------------------------------------------------------------------------------------------ the model


class DiscoveryModel(nn.Module):
    """Scalar field -> scalar field: strict lift ``Z^3 -> G`` -> act -> relaxed group conv (``banks`` weights
    ``w (L, |G|)`` tied at init) -> [act -> strict group conv] x ``extra_convs`` -> mean over the group. Periodic
    padding. Exactly ``G``-equivariant at init; equivariant to ``Stab(w)`` after training."""

    def __init__(self, channels: int = 2, kernel_size: int = 3, banks: int = 2, group: SubgroupSpec = "Oh",
                 extra_convs: int = 0, activation: Literal["gelu", "relu", "tanh"] = "gelu") -> None:
        super().__init__()
        pad = "circular"
        self.group = group
        self.lift = OctahedralLift3d(1, channels, kernel_size, group, pad)
        self.relaxed = RelaxedOctahedralGroupConv3d(channels, channels if extra_convs else 1, kernel_size, group,
                                                    banks, pad)
        self.convs = nn.ModuleList(
            OctahedralGroupConv3d(channels, channels if i < extra_convs - 1 else 1, kernel_size, group, pad)
            for i in range(extra_convs))
        self.pool = OctahedralGroupPool3d(group, "mean")
        self.act = {"gelu": F.gelu, "relu": F.relu, "tanh": torch.tanh}[activation]

    def relaxation_weights(self) -> Tensor:
        """``w (L, |G|)`` of the relaxed layer."""
        return self.relaxed.relaxation_weights()

    def regularization_loss(self) -> Tensor:
        return self.relaxed.regularization_loss()

    def forward(self, x: Tensor) -> Tensor:
        h = self.relaxed(self.act(self.lift(x)))
        for conv in self.convs:
            h = conv(self.act(h))
        return self.pool(h)


@dataclass
class TrainLog:
    steps: int
    seconds: float
    initial_loss: float
    final_loss: float
    losses: list[float] = field(default_factory=list)


def train(model: DiscoveryModel, x: Tensor, y: Tensor, steps: int = 200, lr: float = 1e-2, alpha: float = 1e-5,
          log_every: int = 0) -> TrainLog:
    """Adam on ``||model(x) - y||^2 / ||y||^2`` plus ``alpha`` times the relaxed layer's penalty
    (``sum_l sum_{g,h} |w_l(g) - w_l(h)|``). ``x, y (F, |G|, 1, N, N, N)``: step ``t`` uses the full orbit
    ``t mod F`` (so every batch is closed under ``O_h``)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    start = time.perf_counter()
    for step in range(steps):
        xb, yb = x[step % x.shape[0]], y[step % y.shape[0]]
        fit = (model(xb) - yb).pow(2).sum() / yb.pow(2).sum()
        loss = fit + alpha * model.regularization_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(fit.detach()))
        if log_every and step % log_every == 0:
            print(f"step {step}: fit {losses[-1]:.4f}")
    return TrainLog(steps, time.perf_counter() - start, losses[0] if losses else math.nan,
                    losses[-1] if losses else math.nan, losses)


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
                  dtype: torch.dtype = torch.float32) -> DiscoveryResult:
    """Train :class:`DiscoveryModel` on the ``subgroup``-equivariant :class:`SyntheticTask` and read the subgroup
    off its relaxed weights. With ``out_dir``, writes ``<name>_weights.png`` (:func:`plot_weights`, cosets of the
    recovered subgroup when it is one, else of the true one) and ``<name>.md`` (:func:`discovery_table`)."""
    name = subgroup_name(subgroup)
    task = SyntheticTask.random(subgroup, target_kernel, seed, nonlinearity)
    with torch.no_grad():
        probe = smooth_fields(1, size, torch.Generator().manual_seed(seed + 1000), dtype=torch.float64)
        errors = task.equivariance_errors(probe)
    x, y = make_dataset(task, fields, size, seed + 1, dtype)
    torch.manual_seed(seed)
    model = DiscoveryModel(channels, kernel_size, banks, "Oh", extra_convs).to(dtype)
    log = train(model, x, y, steps, lr, alpha)
    w = model.relaxation_weights().detach().clone()
    rec = recover_subgroup(w, "Oh", tol)
    result = DiscoveryResult(name, task.subgroup, rec, w, log, seed, errors)
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


# -- command line (symbench.studies.StudyModule) ------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--subgroups", nargs="+", default=["C4v", "D4h", "C4", "Oh"],
                        help="known symmetry of the synthetic data (named subgroups of O_h)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", default="results", help="results directory (default: results)")


def run(args: argparse.Namespace) -> None:
    unknown = [g for g in args.subgroups if g not in GROUPS]
    if unknown:
        raise ValueError(f"unknown subgroup(s) {unknown}; choose from {', '.join(GROUPS)}")
    out = Path(args.results) / "symmetry_discovery"
    for name in args.subgroups:
        result = run_discovery(name, steps=args.steps, seed=args.seed, out_dir=out)
        print(f"{name}: true order {len(result.true_elements)}, recovered order {len(result.recovered.elements)}, "
              f"equal: {'yes' if result.equal else 'no'} ({result.table_path})")
