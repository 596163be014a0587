"""Shared checks of approximate scale equivariance for the smoke models' tests: smooth velocity histories that
survive zooming, and the pooled relative error of ``f(S x)`` against ``S f(x)`` under per-frame spatial scaling."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from symbench.fields import VELOCITY_2D
from symbench.metrics.equivariance import EquivarianceError, equivariance_pair
from symbench.symmetry import SpatialScaling


def smooth_history(size: int = 32, frames: int = 3, seed: int = 0) -> Tensor:
    """Velocity histories of Gaussian-filtered noise (correlation length 2 px) under a centred Gaussian envelope, so
    that zooming by 1/2..2 neither cuts the flow off nor moves it past the grid."""
    z = torch.randn(3, frames, 2, size, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    k = torch.fft.fftfreq(size, dtype=torch.float64)
    z = torch.fft.ifft2(torch.fft.fft2(z) * torch.exp(-8 * math.pi**2 * (k[:, None] ** 2 + k**2))).real
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    z = z * torch.exp(-(r[:, None] ** 2 + r**2) / (2 * (size / 8) ** 2))
    return (z / z.flatten(1).std(1).view(-1, 1, 1, 1, 1)).float()


def scale_error(build: Callable[[], nn.Module], x: Tensor, lams: Sequence[float]) -> float:
    """Relative error of ``f(S x)`` vs ``S f(x)``, ``S`` = per-frame spatial scaling by each of ``lams``, pooled over
    three random initialisations (evaluation mode)."""
    metric = EquivarianceError()
    for seed in range(3):
        torch.manual_seed(seed)
        model = build().eval()
        for lam in lams:
            g = SpatialScaling(lam)
            metric.update(*equivariance_pair(model, x, lambda t, g=g: g.act(t, VELOCITY_2D)))
    return metric.compute()["relative"].item()
