"""The shared statistics (symbench.stats) against hand-computed values: Spearman with ties, the least-squares slope
and its t interval, the mean's t interval (which the leaderboard's cells use too)."""

from __future__ import annotations

import math

import pytest

from symbench.leaderboard import Cell
from symbench.stats import estimate, slope_fit, spearman

T975_1, T975_2 = 12.706204736174694, 4.302652729749462  # Student t quantiles, 1 and 2 degrees of freedom


def test_spearman_against_hand_computed_values():
    # ranks of b with a tie: (1, 2, 3.5, 5, 3.5); centred products sum 8, squares 10 and 9.5.
    assert spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(8 / math.sqrt(95))
    assert spearman([0.1, 0.2, 0.3], [20, 30, 10]) == pytest.approx(-0.5)  # ranks (1,2,3) vs (2,3,1)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 2, 3], [4, 4, 4]))


def test_slope_fit_and_its_interval():
    exact = slope_fit([0.0, 1.0, 2.0], [1.0, 3.0, 5.0])  # a noise-free line: slope 2, zero-width interval
    assert (exact.slope, exact.lo, exact.hi) == pytest.approx((2.0, 2.0, 2.0)) and not exact.contains(1.0)
    # y = (0, 2, 1) on x = (0, 1, 2): slope 0.5, residuals (-0.5, 1, -0.5), SSR 1.5, S_xx 2, one degree of freedom.
    fit = slope_fit([0.0, 1.0, 2.0], [0.0, 2.0, 1.0])
    half = T975_1 * math.sqrt(1.5 / 1 / 2)
    assert (fit.slope, fit.lo, fit.hi) == pytest.approx((0.5, 0.5 - half, 0.5 + half))
    with pytest.raises(ValueError, match="constant"):
        slope_fit([1.0, 1.0, 1.0], [0.0, 1.0, 2.0])


def test_estimate_is_the_mean_with_its_t_interval():
    e = estimate([1.0, 2.0, 6.0])  # mean 3, sample std sqrt(7)
    half = T975_2 * math.sqrt(7) / math.sqrt(3)
    assert (e.mean, e.std, e.n, e.lo, e.hi) == pytest.approx((3.0, math.sqrt(7), 3, 3 - half, 3 + half))
    assert Cell(e.mean, e.std, e.n).interval == pytest.approx((e.lo, e.hi))  # one rule for every table
    one = estimate([0.25])
    assert (one.std, one.lo, one.hi) == (0.0, 0.25, 0.25)


def test_spearman_ties_share_their_mean_rank():
    # ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4): Pearson 4.5 / sqrt(4.5 * 5) = 3 / sqrt(10)
    assert math.isclose(spearman([1.0, 2.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0]), 3 / math.sqrt(10), rel_tol=1e-12)
