"""Thermal-energy error of a scalar rollout (ICLR 2021 appendix C, Table 5: "the L1 loss of the thermal energy").

Insulated heat diffusion conserves the total heat ``E(t) = sum_x H(x, t)`` of every temperature field, so a forecast
is also judged by how far its total heat drifts from the truth's. For scalar channels ``c`` of a ``(B, S, C, H, W)``
rollout, with ``E_c = sum_{x} y_c(x)`` per sample and step,

    L1_E = mean_{b, s, c} | E_c(pred_{b,s}) - E_c(target_{b,s}) |,                                    (E1)

pooled over samples, steps and scalar channels (sums reduced by ``sum`` across DDP ranks). Values are in the units
the model sees (the datamodule's normalised fields), like the RMSE reported next to them.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class ThermalEnergyL1(Metric):
    """(E1) over the channels ``channels`` (the layout's scalar channels) of ``(B, S, C, H, W)`` rollouts."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    total: Tensor
    count: Tensor

    def __init__(self, channels: list[int], **kwargs) -> None:
        super().__init__(**kwargs)
        if not channels:
            raise ValueError("ThermalEnergyL1 needs at least one scalar channel")
        self.channels = list(channels)
        self.add_state("total", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor) -> None:
        if pred.shape != target.shape or pred.ndim != 5:
            raise ValueError(f"ThermalEnergyL1: expected equal (B, S, C, H, W) shapes, got {tuple(pred.shape)} and "
                             f"{tuple(target.shape)}")
        diff = (pred[:, :, self.channels].double() - target[:, :, self.channels].double()).sum(dim=(-2, -1))
        self.total += diff.abs().sum()
        self.count += diff.numel()

    def compute(self) -> Tensor:
        return self.total / self.count
