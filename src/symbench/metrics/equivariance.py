"""Equivariance error of models and symmetry breaking of data (ICLR 2021 sec. 5.1 / B.5, ICML 2022 def. 3.1)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn
from torchmetrics import Metric

Transform = Callable[[Tensor], Tensor]


def equivariance_pair(model: nn.Module | Callable[[Tensor], Tensor], history: Tensor,
                      transform: Transform) -> tuple[Tensor, Tensor]:
    r"""The two sides of :math:`EE_T(x) = |T(f(x)) - f(T(x))|` for one group element ``T``.

    ``model`` maps a history ``(B, T_in, C, H, W)`` to the next frame ``(B, C, H, W)``; ``transform`` acts frame-wise
    on ``(..., C, H, W)``, so the same callable transforms the history and the output. Returns
    ``(f(T x), T f(x))`` computed under ``torch.no_grad()``. The model's train/eval mode is left as it is (dropout or
    batch statistics in train mode would show up as equivariance error).
    """
    with torch.no_grad():
        f_of_gx = model(transform(history))
        g_of_fx = transform(model(history))
    return f_of_gx, g_of_fx


class EquivarianceError(Metric):
    r"""Pooled equivariance error between ``f(T x)`` and ``T f(x)`` over every update (group elements, batches).

    With :math:`d = f(Tx) - T f(x)` over all accumulated entries :math:`n`:
    ``rmse`` :math:`= \sqrt{\sum d^2 / n}`, ``mae`` :math:`= \sum |d| / n` (the L1 form used for the ICML 2022
    models) and ``relative`` :math:`= \|d\|_2 / \|T f(x)\|_2`. States are sums reduced by ``sum`` across DDP ranks.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    sum_sq_diff: Tensor
    sum_abs_diff: Tensor
    sum_sq_ref: Tensor
    count: Tensor

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for name in ("sum_sq_diff", "sum_abs_diff", "sum_sq_ref", "count"):
            self.add_state(name, default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, f_of_gx: Tensor, g_of_fx: Tensor) -> None:
        """Accumulate one pair from :func:`equivariance_pair` (any equal shapes)."""
        if f_of_gx.shape != g_of_fx.shape:
            raise ValueError(
                f"EquivarianceError: f(Tx) {tuple(f_of_gx.shape)} and T f(x) {tuple(g_of_fx.shape)} differ"
            )
        diff = f_of_gx.double() - g_of_fx.double()
        self.sum_sq_diff += diff.square().sum()
        self.sum_abs_diff += diff.abs().sum()
        self.sum_sq_ref += g_of_fx.double().square().sum()
        self.count += diff.numel()

    def compute(self) -> dict[str, Tensor]:
        return {
            "rmse": (self.sum_sq_diff / self.count).sqrt(),
            "mae": self.sum_abs_diff / self.count,
            "relative": (self.sum_sq_diff / self.sum_sq_ref).sqrt(),
        }


def data_equivariance_error(a: Tensor, b: Tensor) -> Tensor:
    """Mean absolute difference between trajectories ``a`` and ``b`` that a symmetry should map onto each other.

    Measures the data's own symmetry breaking (ICML 2022 sec. 5.2), e.g. ``a = T(x)`` and ``b`` the simulation
    started from ``T(x_0)``.
    """
    if a.shape != b.shape:
        raise ValueError(f"data_equivariance_error: shapes {tuple(a.shape)} and {tuple(b.shape)} differ")
    return (a - b).abs().mean()
