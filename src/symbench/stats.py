"""Small statistics the tables share: the mean over seeds with its 95 % Student-t interval, rank correlation, and the
least-squares slope with its 95 % interval.

* :func:`t_half_width`: ``t_{0.975, n-1} std / sqrt(n)``, the half-width of the 95 % interval of a mean of ``n``
  values with sample standard deviation ``std`` (0 for one value: no interval);
* :func:`estimate`: mean, sample std (``ddof = 1``) and that interval of some values (e.g. one per seed);
* :func:`spearman`: Pearson correlation of the ranks (ties share their mean rank);
* :func:`slope_fit`: the least-squares slope ``b = S_xy / S_xx`` of ``y`` on ``x`` and its 95 % interval
  ``b ± t_{0.975, n-2} sqrt(SSR / (n - 2) / S_xx)`` (``SSR``: the residual sum of squares), exact for a noise-free
  line (a zero-width interval).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Sequence

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
    """Mean, sample std and the 95 % Student-t interval of the mean of ``n`` values (``lo == hi == mean`` for one)."""

    mean: float
    std: float
    n: int
    lo: float
    hi: float

    def contains(self, value: float) -> bool:
        return self.lo <= value <= self.hi

    def __str__(self) -> str:
        if self.n < 2:
            return f"{self.mean:.4g}"
        return f"{self.mean:.4g} ± {self.std:.2g} [{self.lo:.4g}, {self.hi:.4g}]"


def estimate(values: Sequence[float]) -> Estimate:
    """:class:`Estimate` of ``values`` (at least one)."""
    if not values:
        raise ValueError("estimate needs at least one value")
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    half = t_half_width(std, len(values))
    return Estimate(mean, std, len(values), mean - half, mean + half)


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
