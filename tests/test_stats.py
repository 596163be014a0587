"""The shared statistics (symbench.stats) against hand-computed values: Spearman with ties, the least-squares slope
and its t interval, the mean's t interval (which the leaderboard's cells use too)."""

from __future__ import annotations

import math

import pytest

from symbench.leaderboard import aggregate
from symbench.stats import Estimate, beats, estimate, slope_fit, spearman

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
    assert Estimate(e.mean, e.std, e.n).interval == pytest.approx((e.lo, e.hi))
    one = estimate([0.25])
    assert (one.std, one.lo, one.hi) == (0.0, 0.25, 0.25)


def test_spearman_ties_share_their_mean_rank():
    # ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4): Pearson 4.5 / sqrt(4.5 * 5) = 3 / sqrt(10)
    assert math.isclose(spearman([1.0, 2.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0]), 3 / math.sqrt(10), rel_tol=1e-12)


def test_the_leaderboard_cell_is_the_same_estimate():
    rows = [{"preset": "cpu", "model": "m", "split": "orig", "metric": "rmse", "horizon": "10", "seed": str(seed),
             "value": str(v)} for seed, v in enumerate([1.0, 2.0, 6.0])]
    cell = aggregate(rows)[("cpu", "m", "orig", "rmse", "10")]
    assert cell == estimate([1.0, 2.0, 6.0], ["0", "1", "2"])  # one rule for every table
    assert cell.by_seed == (("0", 1.0), ("1", 2.0), ("2", 6.0))


def test_estimate_formats():
    e = estimate([1.0, 2.0, 6.0])
    assert e.format(".1f") == f"3.0 ± 2.6 [{e.lo:.1f}, {e.hi:.1f}]" and str(e) == e.format(".3f")
    assert e.format(".3g", std=".2g", interval=False) == "3 ± 2.6"
    assert e.format(".2f", std=None) == f"3.00 [{e.lo:.2f}, {e.hi:.2f}]"
    assert e.bounds(".1f") == f"[{e.lo:.1f}, {e.hi:.1f}]" and estimate([2.0]).bounds() == "–"
    assert estimate([0.25]).format(".2f") == "0.25"  # one value: the mean alone, no ± and no interval


def test_beats_pairs_values_by_seed():
    a, b = estimate([1.0, 3.0, 1.0], seeds=[0, 1, 2]), estimate([2.0, 2.0, 2.0], seeds=[0, 1, 2])
    assert beats(a, b) == "tie 2/3"  # a lower in seeds 0 and 2; a's interval contains b's mean
    far = estimate([50.0, 50.1], seeds=[1, 7])  # only seed 1 in common with a
    assert beats(a, far) == "yes 1/1" and beats(far, a) == "**no** 0/1"
    with pytest.raises(ValueError, match="2 seeds for 3 values"):
        estimate([1.0, 2.0, 3.0], seeds=[0, 1])
