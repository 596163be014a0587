"""The leaderboard over several seeds: 95 % Student-t intervals, orderings counted per seed with ties where the
intervals overlap, and the under-trained flag. Hand-built rows only."""

from __future__ import annotations

import math
import statistics

import pytest

from symbench.leaderboard import aggregate, render_markdown
from symbench.stats import beats


def _rows(model: str, values: list[float], split: str = "rot", epochs: int = 10, best: int = 4) -> list[dict]:
    return [{"benchmark": "rbc", "preset": "cpu", "model": model, "split": split, "metric": "rmse", "horizon": "10",
             "seed": str(seed), "value": repr(v), "params": "100", "train_seconds": "1.0", "epochs": str(epochs),
             "best_epoch": str(best)} for seed, v in enumerate(values)]


def _cell(model: str, values: list[float]):
    return aggregate(_rows(model, values))[("cpu", model, "rot", "rmse", "10")]


def test_the_interval_is_the_student_t_interval_of_the_mean():
    values = [1.0, 1.2, 1.7]
    cell = _cell("unet", values)
    half = 4.302652729911275 * statistics.stdev(values) / math.sqrt(3)  # t_{0.975, 2}
    assert cell.interval == pytest.approx((statistics.fmean(values) - half, statistics.fmean(values) + half))
    assert f"[{cell.interval[0]:.3f}, {cell.interval[1]:.3f}]" in str(cell)
    assert _cell("unet", [1.0]).interval == (1.0, 1.0) and str(_cell("unet", [1.0])) == "1.000"


def test_an_ordering_counts_the_seeds_where_it_held_and_is_a_tie_where_intervals_overlap():
    equ, plain = _cell("equ_rot_unet", [1.0, 1.1, 0.9]), _cell("unet", [2.0, 2.1, 1.9])
    assert beats(equ, plain) == "yes 3/3" and beats(plain, equ) == "**no** 0/3"
    close = _cell("unet", [1.05, 0.95, 1.3])  # equ lower in seeds 0 and 1, not in 2; intervals overlap
    assert beats(equ, close) == "tie 2/3"
    assert beats(_cell("a", [1.0]), _cell("b", [1.01])) == "yes 1/1"  # one seed: no interval, no tie


def test_table2_ordering_cells_and_the_under_trained_flag():
    rows = (_rows("unet", [2.0, 2.1, 1.9]) + _rows("equ_rot_unet", [1.0, 1.1, 0.9], epochs=10, best=9)
            + _rows("persistence", [3.0, 3.0, 3.0], epochs=0, best=-1))
    md = render_markdown("rbc", rows)
    assert "| unet | Rot | 1.000 | 2.000 |  | yes 3/3 |  |" in md
    assert "| equ_rot_unet ⚠ | 100 | 10 | 9 |" in md and "| unet | 100 | 10 | 4 |" in md
    assert "| persistence | 100 | 0 | -1 |" in md  # trained no epoch: not flagged
    assert "may be under-trained" in md and "equ_rot_unet (seed 0, 1, 2)" in md
