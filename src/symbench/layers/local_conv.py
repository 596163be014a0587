"""Low-rank locally connected convolution (Wang, Walters & Yu, ICML 2022, sec. 3.4): the position-aware
(translation-breaking) layer of the smoke models :mod:`symbench.models.clcnn`, :mod:`symbench.models.rpp` and
:mod:`symbench.models.combo`, and the size of its coefficient maps under a parameter budget.

A locally connected layer has its own kernel at every pixel ``x``:
``y(x) = sum_d K(x, d) f(x + d) + b``. Full per-pixel kernels cost ``H W C_out C_in k^2`` parameters, orders of
magnitude above the ConvNet budget this suite matches, so the kernel field here has rank ``R``:
``K(x) = sum_{r=1..R} a_r(x) K_r``, with ``R`` trainable kernels ``K_r`` and ``R`` trainable coefficient maps
``a_r``. It is computed as one convolution with ``R * C_out`` outputs and a per-pixel mix of its ``R`` groups (no
unfold into ``k^2`` shifted copies). The maps live on a ``g x g`` grid bilinearly interpolated (corners aligned) to
the ``grid_size x grid_size`` input: ``g = grid_size`` when ``R g^2`` per layer fits in a quarter of the budget,
otherwise the largest ``g`` that does (:func:`coefficient_map_size`), so that small widths on large grids still match
the budget. On a rectangular ``(H, W)`` grid the maps are ``(min(H, g), min(W, g))``. The maps start constant
(``R^-1/2``): at initialisation the layer is a convolution.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from symbench.layers.conv import same_padding
from symbench.layers.pixel_mixing import GridSize, grid_shape

MAP_SHARE = 0.25  # at most this share of the budget goes to coefficient maps


def coefficient_map_size(grid_size: GridSize, budget: int, n_layers: int, rank: int,
                         share: float = MAP_SHARE) -> GridSize:
    """Side ``g`` of the coefficient maps: ``grid_size`` if ``n_layers * rank * g^2 <= share * budget``, else the
    largest ``g >= 2`` that fits; on an ``(H, W)`` grid the shape ``(min(H, g), min(W, g))`` for the largest such
    ``g`` whose maps fit."""
    fitting = int(share * budget) // (n_layers * rank)
    if isinstance(grid_size, int):
        return max(2, min(grid_size, math.isqrt(max(0, fitting))))
    h, w = grid_shape(grid_size)
    side = max([g for g in range(2, max(h, w) + 1) if min(h, g) * min(w, g) <= fitting], default=2)
    return min(h, side), min(w, side)


class LowRankLocalConv2d(nn.Module):
    """Locally connected layer ``y(x) = sum_r a_r(x) (K_r * f)(x) + b`` on a fixed ``grid_size`` grid (one side or
    ``(H, W)``; 'same' zero padding; correlation as ``Conv2d``): the kernel at pixel ``x`` is ``K(x) = sum_r a_r(x)
    K_r``, the maps ``a_r`` on a ``map_size`` grid (default the pixel grid)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, rank: int, grid_size: GridSize,
                 map_size: GridSize | None = None, bias: bool = False) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"LowRankLocalConv2d needs rank >= 1, got {rank}")
        self.padding = same_padding(kernel_size)
        self.rank, self.out_channels, self.grid_size = rank, out_channels, grid_size
        self.grid_shape = grid_shape(grid_size)
        self.map_size = grid_size if map_size is None else map_size
        self.map_shape = grid_shape(self.map_size)
        self.weight = nn.Parameter(torch.empty(rank * out_channels, in_channels, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)  # PyTorch's Conv2d default, per kernel K_r
        # Constant maps of R^-1/2: the layer starts as one convolution with the variance of a single K_r.
        self.coefficients = nn.Parameter(torch.full((rank, *self.map_shape), rank**-0.5))
        self.bias = None
        if bias:
            bound = 1 / math.sqrt(in_channels * kernel_size**2)
            self.bias = nn.Parameter(torch.empty(out_channels).uniform_(-bound, bound))

    @staticmethod
    def parameters_for(in_channels: int, out_channels: int, kernel_size: int, rank: int, map_size: GridSize,
                       bias: bool = False) -> int:
        """Parameter count without building the layer."""
        map_h, map_w = grid_shape(map_size)
        return rank * (out_channels * in_channels * kernel_size**2 + map_h * map_w) + (out_channels if bias else 0)

    def kernels(self) -> Tensor:
        """``(R, C_out, C_in, k, k)``: the kernels ``K_r``."""
        return self.weight.view(self.rank, self.out_channels, *self.weight.shape[1:])

    def maps(self) -> Tensor:
        """``(R, H, W)``: the coefficient maps ``a_r`` on the pixel grid."""
        if self.map_shape == self.grid_shape:
            return self.coefficients
        return F.interpolate(self.coefficients[None], size=self.grid_shape, mode="bilinear", align_corners=True)[0]

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2:] != self.grid_shape:
            raise ValueError(f"LowRankLocalConv2d is built for a {self.grid_shape[0]}x{self.grid_shape[1]} grid, "
                             f"got {tuple(x.shape[-2:])}; set grid_size to the data's grid")
        z = F.conv2d(x, self.weight, padding=self.padding)
        y = (z.view(x.shape[0], self.rank, self.out_channels, *x.shape[-2:]) * self.maps()[None, :, None]).sum(1)
        return y if self.bias is None else y + self.bias[:, None, None]

    def extra_repr(self) -> str:
        out_channels, in_channels, k, _ = self.kernels().shape[1:]
        return (f"{in_channels}, {out_channels}, kernel_size={k}, rank={self.rank}, grid_size={self.grid_size}, "
                f"map_size={self.map_size}, bias={self.bias is not None}")
