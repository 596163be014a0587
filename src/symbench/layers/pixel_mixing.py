"""Per-pixel mixing of ``R`` convolution outputs: the translation part of the relaxed layers of Wang, Walters & Yu
(ICML 2022 sec. 3.1 with ``h`` the pixel, and the low-rank factorisation of eq. 9).

A relaxed translation convolution, or the combination of eq. 8-9 ``w_l(x, y) = sum_r a_r(x) b_{r,l}(y)``, runs ``R``
convolutions as one convolution with ``R * C_out`` outputs and mixes them pixel by pixel,

    y(x) = sum_r a_r(x) (f * Psi_r)(x),

because a convolution is linear in its kernel. The weights ``a_r`` live on a ``relax_grid`` grid of cells of
``grid_size / relax_grid`` pixels each (``relax_grid = grid_size``: one weight per pixel, as in the paper); with
``a_r`` constant over space the mixture is the single convolution with kernel ``sum_r a_r Psi_r``. A grid is one
side ``n`` (square, ``n x n``) or ``(H, W)`` (rectangular, e.g. the jet's 23 x 62 PIV stations).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def equal_weights(*shape: int) -> nn.Parameter:
    """Weights ``1 / sqrt(R)`` everywhere (``shape[0] = R``): the mixture of ``R`` independent default-initialised
    kernels then has the variance of one such kernel, and a constant ``a`` keeps the layer translation-equivariant."""
    return nn.Parameter(torch.full(shape, shape[0] ** -0.5))


def total_variation(weights: Tensor) -> Tensor:
    """``sum |w(i+1, j) - w(i, j)| + |w(i, j+1) - w(i, j)|`` over the last two axes (non-periodic neighbours): the
    finite-difference form of ``||dw/dm|| + ||dw/dn||`` (ICML 2022 sec. 3.3), zero iff ``w`` is constant there."""
    return weights.diff(dim=-2).abs().sum() + weights.diff(dim=-1).abs().sum()


GridSize = int | tuple[int, int]


def grid_shape(grid_size: GridSize | list[int]) -> tuple[int, int]:
    """``(H, W)`` of a grid given as one side ``n`` (``n x n``) or as ``(H, W)`` (a list from YAML too)."""
    shape = (grid_size, grid_size) if isinstance(grid_size, int) else tuple(grid_size)
    if len(shape) != 2 or not all(isinstance(n, int) and n >= 1 for n in shape):
        raise ValueError(f"a grid is one positive side or (height, width), got {grid_size!r}")
    return shape  # type: ignore[return-value]


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def check_relax_grid(grid_size: GridSize, relax_grid: GridSize | None) -> tuple[int, int]:
    """``(H_r, W_r)`` cells of ``relax_grid`` (default ``grid_size``: one per pixel), checked to divide the grid."""
    (h, w), cells = grid_shape(grid_size), grid_shape(grid_size if relax_grid is None else relax_grid)
    if h % cells[0] or w % cells[1]:
        raise ValueError(f"relax_grid must divide grid_size={grid_size} on each side, got {relax_grid}")
    return cells


class PixelMixing(nn.Module):
    """Mix ``R`` stacked outputs ``(B, R * C, H, W) -> (B, C, H, W)`` with trainable per-cell weights ``a_r(x)``
    of shape ``(R, H_r, W_r)`` (the ``relax_grid`` cells), init equal; ``regularization_loss`` is their total
    variation."""

    def __init__(self, ranks: int, grid_size: GridSize, relax_grid: GridSize | None = None) -> None:
        super().__init__()
        if ranks < 1:
            raise ValueError(f"need at least one term to mix, got ranks={ranks}")
        self.ranks, self.grid_size, self.grid_shape = ranks, grid_size, grid_shape(grid_size)
        self.relax_grid = check_relax_grid(grid_size, relax_grid)
        self.relaxed_weights = equal_weights(ranks, *self.relax_grid)

    def pixel_weights(self) -> Tensor:
        """``(R, H, W)``: every cell's weight repeated over its pixels."""
        (h, w), (cells_h, cells_w) = self.grid_shape, self.relax_grid
        return self.relaxed_weights.repeat_interleave(h // cells_h, dim=1).repeat_interleave(w // cells_w, dim=2)

    def forward(self, y: Tensor) -> Tensor:
        if y.shape[-2:] != self.grid_shape:
            raise ValueError(f"relaxed translation weights were built for a {self.grid_shape[0]}x"
                             f"{self.grid_shape[1]} grid (grid_size), got {tuple(y.shape[-2:])}")
        # A broadcast product and a sum over the terms: einsum would route this through permuted copies and bmm.
        return (y.view(y.shape[0], self.ranks, -1, *y.shape[-2:]) * self.pixel_weights()[:, None]).sum(dim=1)

    def regularization_loss(self) -> Tensor:
        return total_variation(self.relaxed_weights)

    def extra_repr(self) -> str:
        return f"ranks={self.ranks}, grid_size={self.grid_size}, relax_grid={self.relax_grid}"
