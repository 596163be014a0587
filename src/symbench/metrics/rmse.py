"""Root-mean-square error of an autoregressive rollout, per step and over the horizon."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class RolloutRMSE(Metric):
    r"""RMSE of a ``(B, S, C, H, W)`` rollout against its target, per rollout step and over the horizon.

    Averaging order: squared errors are *pooled* (summed, then divided by their count), never averaged as
    per-batch or per-sample means. With :math:`\Omega_s` the valid entries (samples, channels, pixels where
    ``mask`` is non-zero) at step :math:`s`, and :math:`m` the mask weight (1 for a boolean mask),

    .. math::
        \mathrm{RMSE}_s = \sqrt{\frac{\sum_{\Omega_s} m\,(\hat y - y)^2}{\sum_{\Omega_s} m}}, \qquad
        \mathrm{RMSE}_{\mathrm{horizon}} = \sqrt{\frac{\sum_s \sum_{\Omega_s} m\,(\hat y - y)^2}
                                                   {\sum_s \sum_{\Omega_s} m}}.

    The square root is taken on the pooled MSE (the ICLR 2021 code, Rose-STL-Lab/Equivariant-Net, reported the MSE at
    test time). The horizon value is the square root of the mean over all steps, not the mean of the per-step RMSEs.
    States are sums (float64) reduced by ``sum`` across DDP ranks, so the result is exact under DDP and does not depend
    on batch boundaries; updates may use different spatial sizes.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    sse: Tensor
    count: Tensor

    def __init__(self, steps: int, **kwargs) -> None:
        super().__init__(**kwargs)
        if steps < 1:
            raise ValueError(f"RolloutRMSE: steps must be >= 1, got {steps}")
        self.steps = steps
        self.add_state("sse", default=torch.zeros(steps, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros(steps, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        """Accumulate ``pred``/``target`` of shape ``(B, S, C, H, W)``; ``mask`` (bool or float) broadcasts to it."""
        if pred.shape != target.shape:
            raise ValueError(f"RolloutRMSE: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
        if pred.ndim != 5 or pred.shape[1] != self.steps:
            raise ValueError(
                f"RolloutRMSE: expected (B, {self.steps}, C, H, W), got {tuple(pred.shape)}; "
                f"build the metric with steps={pred.shape[1] if pred.ndim > 1 else '?'} or fix the rollout length"
            )
        sq = (pred.double() - target.double()).square()
        reduce_dims = (0, 2, 3, 4)
        if mask is None:
            self.sse += sq.sum(reduce_dims)
            self.count += sq.numel() // self.steps
            return
        weight = torch.broadcast_to(mask.to(sq.dtype), sq.shape)
        # where(), not a product: invalid pixels (ocean land) may hold NaN, and NaN * 0 is NaN.
        self.sse += torch.where(weight != 0, weight * sq, torch.zeros_like(sq)).sum(reduce_dims)
        self.count += weight.sum(reduce_dims)

    def compute(self) -> dict[str, Tensor]:
        """``{"per_step": (S,) RMSE per step, "horizon": RMSE pooled over all steps}``."""
        return {
            "per_step": (self.sse / self.count).sqrt(),
            "horizon": (self.sse.sum() / self.count.sum()).sqrt(),
        }
