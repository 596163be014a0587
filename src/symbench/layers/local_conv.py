"""Locally connected convolution: an independent kernel at every pixel (the layer of CLCNN, Wang, Walters & Yu,
ICML 2022 sec. 3.4, "a locally connected neural network that has the same locality property as convolution but the
weights are not shared across the spatial domain"; Elsayed et al. 2020 study its low-rank relaxations).

``y(x) = sum_{c, d} K(x)[o, c, d] f_c(x + d) + b_o`` with a full kernel ``K(x)`` of ``C_out x C_in x k x k`` per
pixel ``x`` of a fixed ``(H, W)`` grid ('same' zero padding, correlation as ``Conv2d``) and one bias per output
channel (shared over the grid, as in Rose-STL-Lab/Approximately-Equivariant-Nets). The layer has ``H W`` times the
weights of a convolution of the same widths and the same arithmetic per pixel. It is computed as one batched matrix
product over the pixels: the ``k x k`` patches (``unfold``, ``(H W, C_in k^2, B)``) times the per-pixel kernels
(``(H W, C_out, C_in k^2)``); no loop over pixels (the gradient of the product is made contiguous first, else
``bmm``'s backward copies it pixel by pixel).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from symbench.layers.conv import same_padding
from symbench.layers.pixel_mixing import GridSize, grid_shape


class LocallyConnected2d(nn.Module):
    """Locally connected layer ``(B, C_in, H, W) -> (B, C_out, H, W)`` on a fixed ``grid_size`` (one side or
    ``(H, W)``). :attr:`weight` is the kernel field ``(H, W, C_out, C_in, k, k)``: ``weight[i, j]`` is the
    ``Conv2d``-shaped kernel of pixel ``(i, j)``. Every pixel's kernel is drawn independently with ``Conv2d``'s
    default initialisation, so the layer starts far from a convolution (as the reference code's)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, grid_size: GridSize,
                 bias: bool = False) -> None:
        super().__init__()
        self.padding = same_padding(kernel_size)
        self.kernel_size, self.grid_size = kernel_size, grid_size
        self.grid_shape = grid_shape(grid_size)
        bound = 1 / math.sqrt(in_channels * kernel_size**2)  # Conv2d's default (kaiming_uniform, a = sqrt 5)
        self.weight = nn.Parameter(torch.empty(*self.grid_shape, out_channels, in_channels, kernel_size,
                                               kernel_size).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(out_channels).uniform_(-bound, bound)) if bias else None

    @staticmethod
    def parameters_for(in_channels: int, out_channels: int, kernel_size: int, grid_size: GridSize,
                       bias: bool = False) -> int:
        """Parameter count without building the layer."""
        h, w = grid_shape(grid_size)
        return h * w * out_channels * in_channels * kernel_size**2 + (out_channels if bias else 0)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2:] != self.grid_shape:
            raise ValueError(f"LocallyConnected2d is built for a {self.grid_shape[0]}x{self.grid_shape[1]} grid, "
                             f"got {tuple(x.shape[-2:])}; set grid_size to the data's grid")
        batch, (h, w) = x.shape[0], self.grid_shape
        patches = F.unfold(x, self.kernel_size, padding=self.padding)  # (B, C_in k^2, H W)
        kernels = self.weight.reshape(h * w, self.weight.shape[2], -1)  # (H W, C_out, C_in k^2)
        y = torch.bmm(kernels, patches.permute(2, 0, 1).contiguous().transpose(1, 2))  # (H W, C_out, B)
        if y.requires_grad:  # the gradient arrives pixel-stride-1; bmm's backward would copy it pixel by pixel
            y.register_hook(Tensor.contiguous)
        y = y.permute(2, 1, 0).reshape(batch, -1, h, w)
        return y if self.bias is None else y + self.bias[:, None, None]

    def extra_repr(self) -> str:
        _, _, out_channels, in_channels, k, _ = self.weight.shape
        return (f"{in_channels}, {out_channels}, kernel_size={k}, grid_size={self.grid_size}, "
                f"bias={self.bias is not None}")
