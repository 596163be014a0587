"""Small statistics the tables share: the mean over seeds with its 95 % Student-t interval, rank correlation, and the
least-squares slope with its 95 % interval.

* :func:`t_half_width`: ``t_{0.975, n-1} std / sqrt(n)``, the half-width of the 95 % interval of a mean of ``n``
  values with sample standard deviation ``std`` (0 for one value: no interval);
* :func:`estimate`: mean, sample std (``ddof = 1``) and that interval of some values (e.g. one per seed), the
  :class:`Estimate` every table prints;
* :func:`beats`: does one estimate have the lower mean, in how many seeds, or is it a tie (overlapping intervals);
* :func:`spearman`: Pearson correlation of the ranks (ties share their mean rank);
* :func:`slope_fit`: the least-squares slope ``b = S_xy / S_xx`` of ``y`` on ``x`` and its 95 % interval
  ``b ± t_{0.975, n-2} sqrt(SSR / (n - 2) / S_xx)`` (``SSR``: the residual sum of squares), exact for a noise-free
  line (a zero-width interval).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np


def t_half_width(std: float, n: int, dof: int | None = None) -> float:
    """Half-width of the 95 % Student-t interval ``t_{0.975, dof} std / sqrt(n)`` (``dof``: ``n - 1`` unless
    given); 0 when there are no degrees of freedom."""
    dof = n - 1 if dof is None else dof
    if dof < 1:
        return 0.0
    from scipy import stats

    return float(stats.t.ppf(0.975, dof)) * std / math.sqrt(n)


@dataclass(frozen=True)
class Estimate:
    """Mean, sample std (``ddof = 1``) and the 95 % Student-t interval of the mean of ``n`` values, e.g. one per seed,
    with each seed's value where known (``lo == hi == mean`` for one value: no interval). The one cell type of every
    table: the leaderboard, the ordering tables and the studies' reports."""

    mean: float
    std: float
    n: int
    by_seed: tuple[tuple[str, float], ...] = ()  # (seed, value) of each seed, when the values came with seeds

    @property
    def half_width(self) -> float:
        """``t_{0.975, n-1} std / sqrt(n)`` (0 for one value)."""
        return t_half_width(self.std, self.n)

    @property
    def lo(self) -> float:
        return self.mean - self.half_width

    @property
    def hi(self) -> float:
        return self.mean + self.half_width

    @property
    def interval(self) -> tuple[float, float]:
        return self.lo, self.hi

    def contains(self, value: float) -> bool:
        return self.lo <= value <= self.hi

    def overlaps(self, other: Estimate) -> bool:
        """True when the two 95 % intervals overlap (a tie); never for two single values (no intervals)."""
        if self.n < 2 and other.n < 2:
            return False
        return self.lo <= other.hi and other.lo <= self.hi

    def format(self, spec: str = ".3f", std: str | None = "", interval: bool = True) -> str:
        """``mean ± std [lo, hi]`` with the format ``spec`` (the std's own ``std`` spec if given, none if None; no
        interval unless ``interval``); the mean alone for one value."""
        if self.n < 2:
            return f"{self.mean:{spec}}"
        text = f"{self.mean:{spec}}"
        if std is not None:
            text += f" ± {self.std:{std or spec}}"
        if interval:
            text += f" [{self.lo:{spec}}, {self.hi:{spec}}]"
        return text

    def bounds(self, spec: str = ".3f") -> str:
        """``[lo, hi]``, or – for one value."""
        return f"[{self.lo:{spec}}, {self.hi:{spec}}]" if self.n > 1 else "–"

    def __str__(self) -> str:
        return self.format()


def estimate(values: Sequence[float], seeds: Sequence[Any] | None = None) -> Estimate:
    """:class:`Estimate` of ``values`` (at least one), remembering which seed gave each when ``seeds`` is given."""
    if not values:
        raise ValueError("estimate needs at least one value")
    if seeds is not None and len(seeds) != len(values):
        raise ValueError(f"estimate: {len(seeds)} seeds for {len(values)} values")
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    by_seed = tuple((str(s), float(v)) for s, v in zip(seeds, values)) if seeds is not None else ()
    return Estimate(mean, std, len(values), by_seed)


def beats(a: Estimate, b: Estimate) -> str:
    """Does ``a`` have the lower value? ``"yes 3/3"`` / ``"**no** 1/3"`` (by the means; k of the n seeds present in
    both where ``a`` was lower), ``"tie 2/3"`` where the 95 % intervals overlap."""
    theirs = dict(b.by_seed)
    common = [(value, theirs[seed]) for seed, value in a.by_seed if seed in theirs]
    held = f"{sum(x < y for x, y in common)}/{len(common)}"
    if a.overlaps(b):
        return f"tie {held}"
    return f"yes {held}" if a.mean < b.mean else f"**no** {held}"


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation (Pearson correlation of the ranks); NaN when either side is constant."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"spearman needs two sequences of equal length >= 2, got {len(a)} and {len(b)}")
    from scipy.stats import rankdata  # ranks 1..n, ties sharing the mean of their ranks

    ra, rb = rankdata(a), rankdata(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = math.sqrt(float((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


@dataclass(frozen=True)
class SlopeFit:
    """Least-squares slope of ``y`` on ``x`` and its 95 % interval (``lo == hi == slope`` for two points)."""

    slope: float
    lo: float
    hi: float

    def contains(self, value: float) -> bool:
        return self.lo <= value <= self.hi


def slope_fit(x: Sequence[float], y: Sequence[float]) -> SlopeFit:
    """:class:`SlopeFit` of ``y`` on ``x`` (ordinary least squares with an intercept; ``n - 2`` degrees of
    freedom for the interval). ``x`` must not be constant."""
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if xs.shape != ys.shape or xs.size < 2:
        raise ValueError(f"slope_fit needs two sequences of equal length >= 2, got {xs.size} and {ys.size}")
    xc = xs - xs.mean()
    sxx = float((xc * xc).sum())
    if sxx == 0:
        raise ValueError("slope_fit: x is constant")
    b = float((xc * (ys - ys.mean())).sum()) / sxx
    residual = ys - ys.mean() - b * xc
    dof = xs.size - 2
    se = math.sqrt(float((residual * residual).sum()) / dof / sxx) if dof > 0 else 0.0
    half = t_half_width(se, 1, dof)
    return SlopeFit(b, b - half, b + half)
