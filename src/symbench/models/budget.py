"""Parameter budgets: the one count (:func:`n_params`) and the one fitter every model sizes itself with.

A model matched to a budget ``target`` (the paper's comparisons at equal parameter count, e.g. Wang et al. 2022
Table 1, Wang et al. 2021 §5) exposes a ``count(sizes) -> int`` that grows with every entry of ``sizes``. Two
shapes of ``sizes`` occur:

- :func:`fit_sizes`: ``n_hidden`` integer sizes, each ``f`` or ``f + 1`` (hidden channels / fields of a stack; one
  size for a single width such as the digits' field count);
- :func:`fit_scale`: sizes proportional to a plain network's channel counts (``max(1, round(s * c))``), the scale
  ``s`` found by bisection.

Models with grid-sized weights (a kernel per pixel, or dense maps over the whole grid: CLCNN, the translation RPP and
Combo) cannot meet a convolutional budget: one such layer of one channel already exceeds it. They fit their sizes to
their own architecture at the preset's width, capped at :data:`PARAMETER_CAP` (:func:`capped_target`).
"""

from __future__ import annotations

import itertools
from typing import Callable, Sequence

from torch import nn

Count = Callable[[tuple[int, ...]], int]
EXHAUSTIVE_LAYERS = 10  # up to this many sizes every {f, f+1} assignment is tried
# Wang, Walters & Yu, ICML 2022 sec. 5 and app. A.1: "the total number of trainable parameters for every model is
# less than 10^7 for a fair comparison".
PARAMETER_CAP = 10**7


def n_params(module: nn.Module) -> int:
    """Trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _smallest_reaching(count: Callable[[int], int], target: int) -> int:
    """The smallest ``f >= 1`` with ``count(f) >= target`` (``count`` grows with ``f``): doubling, then bisection."""
    lo, hi = 0, 1
    while count(hi) < target:
        lo, hi = hi, 2 * hi
    while hi - lo > 1:  # count(lo) < target <= count(hi)
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) < target else (lo, mid)
    return hi


def fit_sizes(n_hidden: int, count: Count, target: int, exhaustive_up_to: int = EXHAUSTIVE_LAYERS) -> tuple[int, ...]:
    """Sizes (``n_hidden`` of them, each ``f`` or ``f + 1``) whose parameter ``count`` is closest to ``target``, ties
    to the smallest tuple. ``f + 1`` is the smallest uniform size reaching ``target``; with at most
    ``exhaustive_up_to`` sizes every assignment of ``f`` / ``f + 1`` is tried, otherwise the ``f + 1`` come first
    (``(f+1, .., f+1, f, .., f)``)."""
    hi = _smallest_reaching(lambda f: count((f,) * n_hidden), target)
    base = max(1, hi - 1)
    if n_hidden <= exhaustive_up_to:
        masks = list(itertools.product((0, 1), repeat=n_hidden))
    else:
        masks = [(1,) * m + (0,) * (n_hidden - m) for m in range(n_hidden + 1)]
    candidates = [tuple(base + m for m in mask) for mask in masks] + [(hi,) * n_hidden]
    return min(candidates, key=lambda sizes: (abs(count(sizes) - target), sizes))


def capped_target(count_at_width: int, cap: int) -> int:
    """The budget of a model with grid-sized weights: its own count at the preset's width, at most ``cap``."""
    if cap < 1:
        raise ValueError(f"max_parameters must be >= 1, got {cap}")
    return min(count_at_width, cap)


def scaled_fields(channels: Sequence[int], scale: float) -> tuple[int, ...]:
    """``max(1, round(scale * c))`` for each plain channel count ``c``."""
    return tuple(max(1, round(scale * c)) for c in channels)


def fit_scale(channels: Sequence[int], count: Count, target: int) -> tuple[int, ...]:
    """Sizes proportional to ``channels`` (:func:`scaled_fields`) whose ``count`` is closest to ``target``: bisection
    on the scale for the smallest one reaching ``target``, then the closer of it and the largest one below."""
    lo, hi = 0.0, 1.0
    while count(scaled_fields(channels, hi)) < target:
        lo, hi = hi, 2 * hi
    for _ in range(60):
        mid = (lo + hi) / 2
        if count(scaled_fields(channels, mid)) < target:
            lo = mid
        else:
            hi = mid
    above, below = scaled_fields(channels, hi), scaled_fields(channels, lo)
    return min((above, below), key=lambda f: abs(count(f) - target))
