"""Lift: Lift expansion (Wang, Walters & Yu, ICLR 2021 "Incorporating symmetry into deep dynamics models"; ICML 2022
sec. 3.4 and sec. 5), for approximate symmetry.

A non-equivariant encoder maps the history to a context vector ``z in R^d``; ``z`` is tiled over space (and over the
scale levels) and enters the equivariant backbone of :mod:`.smoke_families` as ``d`` extra invariant channels (trivial
fields for escnn), concatenated with the history at the backbone's input. Encoder and backbone read the same input;
with ``z`` constant the model is the equivariant backbone, so the encoder is what breaks the symmetry (treating the
*input* ``z`` as trivial imposes no constraint on it, sec. 3.4).

Encoder (full resolution). The reference (Rose-STL-Lab/Approximately-Equivariant-Nets, ``Lift_Expansion``) flattens
the full-resolution history into an MLP whose first layer is a dense ``W_1 in R^{d x C H W}``: ``d (T C H W + 1)``
parameters, 1.3 M for ``d = 64`` at the cpu preset's 32x32 against a ConvNet budget of 34 k, and a grid size
hard-coded in the layer (62x23 or 64x64). Here ``W_1`` is factorised over the grid (a Tucker factorisation with
spatial ranks ``p_h x p_w``):

    W_1[e, c, y, x] = sum_{i, j} B[e, c, i, j] R[y, i] S[x, j],   i.e.   z = W_2 relu(B . (R^T f_c S)_c + b_1) + b_2,

with learned full-resolution readouts ``R (H, p_h)`` and ``S (W, p_w)`` (``p_h = min(readout, H)``, ``p_w =
min(readout, W)``): every pixel has its own weight in every readout, so a change anywhere in the input reaches the
context, and the readout keeps positions, so the encoder is neither translation- nor rotation-invariant. The former
encoder, a fixed ``p x p`` average pool, is the special case ``R, S`` = block means, blind to every pattern with zero
mean over each block. ``R`` and ``S`` start random (``U(+-1/sqrt(H))``, ``U(+-1/sqrt(W))``, the init of a linear
layer over the grid); the encoder is bound to the ``grid_size`` it is built for, like the reference's. Departures
from the reference: one hidden layer (``Linear -> ReLU -> Linear``) instead of two, without batch norm (as its
scaling variant), and the context enters at the backbone's input instead of after its second layer.

Size: ``d = min(width, floor((0.15 budget - p_h H - p_w W) / (T C p_h p_w + 2)))`` (at least 1) gives the encoder
about 15 % of the ConvNet budget; the backbone's hidden sizes are fitted to the rest.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from symbench.fields import FieldLayout
from symbench.layers import check_history, stack_frames
from symbench.layers.pixel_mixing import GridSize, grid_shape
from symbench.models.conv_net import check_smoke_args, check_symmetry, conv_budget
from symbench.layers.scale_steerable import DEFAULT_SCALES
from symbench.models.budget import fit_sizes
from symbench.models.smoke_families import (
    DEFAULT_GROUP_ORDER,
    ScaleFamily,
    append_invariant,
    equivariant_stack,
    layer_family,
    stack_parameters,
)

ENCODER_SHARE = 0.15
READOUT = 4


class ContextEncoder(nn.Module):
    """``(B, C_in, H, W) -> (B, dims)``: the full-resolution readout ``R^T f_c S`` of every channel (``(C_in, p_h,
    p_w)``), flattened, then ``Linear -> ReLU -> Linear`` (module docstring). Bound to the ``(H, W)`` grid it is
    built for."""

    def __init__(self, in_channels: int, grid: tuple[int, int], readout: int, dims: int) -> None:
        super().__init__()
        (h, w), self.grid = grid, grid
        rows, cols = min(readout, h), min(readout, w)
        self.rows = nn.Parameter(torch.empty(h, rows).uniform_(-h**-0.5, h**-0.5))
        self.cols = nn.Parameter(torch.empty(w, cols).uniform_(-w**-0.5, w**-0.5))
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * rows * cols, dims), nn.ReLU(),
                                 nn.Linear(dims, dims))

    @staticmethod
    def count(in_channels: int, grid: tuple[int, int], readout: int, dims: int) -> int:
        """Trainable parameters: the two readouts and the two linears."""
        (h, w), rows, cols = grid, min(readout, grid[0]), min(readout, grid[1])
        return h * rows + w * cols + (in_channels * rows * cols + 1) * dims + (dims + 1) * dims

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[-2:]) != self.grid:
            raise ValueError(f"Lift's context encoder is built for a {self.grid[0]}x{self.grid[1]} grid, got "
                             f"{tuple(x.shape[-2:])}; set grid_size to the data's grid")
        return self.mlp(torch.einsum("bcyx,yi,xj->bcij", x, self.rows, self.cols))


class Lift(nn.Module):
    """Lift-expansion forecaster ``(B, T_in, C, H, W) -> (B, C, H, W)``: the equivariant backbone of ``symmetry``
    (:class:`~symbench.models.equiv.Equiv`'s layers) with the encoder's context as extra invariant input channels
    (module docstring). Built for the ``grid_size`` grid (the encoder's readouts have one weight per pixel)."""

    def __init__(self, in_frames: int, layout: FieldLayout, *, symmetry: str = "rotation", width: int = 64,
                 layers: int = 5, kernel_size: int = 3, grid_size: GridSize = 64,
                 group_order: int = DEFAULT_GROUP_ORDER,
                 scales: Sequence[float] = DEFAULT_SCALES, scalar_power: float = 0.0,
                 readout: int = READOUT) -> None:
        super().__init__()
        check_symmetry("Lift", symmetry)
        check_smoke_args("Lift", in_frames, width, layers)
        self.in_frames, self.layout, self.symmetry = in_frames, layout, symmetry
        family = layer_family(symmetry, kernel_size, group_order, scales, scalar_power)
        self.n_scales = family.n_scales if isinstance(family, ScaleFamily) else None
        budget = conv_budget(in_frames, layout, width, layers, kernel_size)
        c_in, grid = in_frames * layout.channels, grid_shape(grid_size)
        readouts = ContextEncoder.count(c_in, grid, readout, 0)
        features = c_in * min(readout, grid[0]) * min(readout, grid[1])
        self.context_dims = max(1, min(width, (int(ENCODER_SHARE * budget) - readouts) // (features + 2)))
        encoder = ContextEncoder.count(c_in, grid, readout, self.context_dims)
        in_type = family.history_type(layout, in_frames, self.context_dims)
        self.sizes = fit_sizes(layers - 1, lambda s: encoder + stack_parameters(family, in_type, s, layout),
                               budget)
        self.encoder = ContextEncoder(c_in, grid, readout, self.context_dims)
        self.lift = family.lift(layout, in_frames)
        self.backbone = equivariant_stack(family, in_type, self.sizes, layout)

    def forward(self, x: Tensor) -> Tensor:
        check_history(x, self.in_frames, self.layout.channels, "Lift")
        stacked = stack_frames(x)
        context = self.encoder(stacked)[:, :, None, None].expand(-1, -1, *stacked.shape[-2:])
        return self.backbone(append_invariant(self.lift(stacked), context, self.n_scales))

    def extra_repr(self) -> str:
        return (f"in_frames={self.in_frames}, fields={self.layout}, symmetry={self.symmetry!r}, "
                f"context_dims={self.context_dims}, sizes={self.sizes}")
