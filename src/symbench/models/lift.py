"""Lift: Lift expansion (Wang, Walters & Yu, ICLR 2021 "Incorporating symmetry into deep dynamics models"; ICML 2022
sec. 3.4 and sec. 5), for approximate symmetry.

A non-equivariant encoder maps the history to a context vector ``z in R^d``; ``z`` is tiled over space (and over the
scale levels) and enters the equivariant backbone of :mod:`.smoke_families` as ``d`` extra invariant channels (trivial
fields for escnn), concatenated with the history at the backbone's input. Encoder and backbone read the same input;
with ``z`` constant the model is the equivariant backbone, so the encoder is what breaks the symmetry (treating the
*input* ``z`` as trivial imposes no constraint on it, sec. 3.4).

Encoder: the stacked history average-pooled to a ``p x p`` grid (``p = min(pool_size, H, W)``; pooling to a
fixed size keeps the positions, so the encoder is neither translation- nor rotation-invariant), flattened, then
``Linear -> ReLU -> Linear`` to ``d``. Rose-STL-Lab/Approximately-Equivariant-Nets flattened the full-resolution
input with the grid size hard-coded (62x23 or 64x64), which crashed on any other grid; here any grid works.
``d = min(width, floor(0.15 budget / (T C p^2 + 2)))`` (at least 1) gives the encoder about 15 % of the ConvNet
budget; the backbone's hidden sizes are fitted to the rest.
"""

from __future__ import annotations

from torch import Tensor, nn

from symbench.fields import FieldLayout
from symbench.layers import check_history, stack_frames
from symbench.layers.pixel_mixing import GridSize, grid_shape
from symbench.models.conv_net import check_smoke_args, check_symmetry, conv_budget
from symbench.models.equ_scale import N_SCALES, SCALE_RATIO
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
POOL_SIZE = 4


def context_encoder(in_channels: int, pool: int, dims: int) -> nn.Sequential:
    """``(B, C_in, H, W) -> (B, dims)``: adaptive average pool to ``pool x pool``, flatten, ``Linear -> ReLU ->
    Linear``."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(pool), nn.Flatten(), nn.Linear(in_channels * pool * pool, dims),
                         nn.ReLU(), nn.Linear(dims, dims))


def encoder_parameters(in_channels: int, pool: int, dims: int) -> int:
    return (in_channels * pool * pool + 1) * dims + (dims + 1) * dims


class Lift(nn.Module):
    """Lift-expansion forecaster ``(B, T_in, C, H, W) -> (B, C, H, W)``: the equivariant backbone of ``symmetry``
    (:class:`~symbench.models.equiv.Equiv`'s layers) with the encoder's context as extra invariant input channels
    (module docstring). Runs on any grid; ``grid_size`` only caps the encoder's pooled grid."""

    def __init__(self, in_frames: int, layout: FieldLayout, *, symmetry: str = "rotation", width: int = 64,
                 layers: int = 5, kernel_size: int = 3, grid_size: GridSize = 64,
                 group_order: int = DEFAULT_GROUP_ORDER,
                 n_scales: int = N_SCALES, scale_ratio: float = SCALE_RATIO, scalar_power: float = 0.0,
                 pool_size: int = POOL_SIZE) -> None:
        super().__init__()
        check_symmetry("Lift", symmetry)
        check_smoke_args("Lift", in_frames, width, layers)
        self.in_frames, self.layout, self.symmetry = in_frames, layout, symmetry
        family = layer_family(symmetry, kernel_size, group_order, n_scales, scale_ratio, scalar_power)
        self.n_scales = family.n_scales if isinstance(family, ScaleFamily) else None
        budget = conv_budget(in_frames, layout, width, layers, kernel_size)
        c_in, pool = in_frames * layout.channels, min(pool_size, *grid_shape(grid_size))
        self.context_dims = max(1, min(width, int(ENCODER_SHARE * budget) // (c_in * pool * pool + 2)))
        encoder = encoder_parameters(c_in, pool, self.context_dims)
        in_type = family.history_type(layout, in_frames, self.context_dims)
        self.sizes = fit_sizes(layers - 1, lambda s: encoder + stack_parameters(family, in_type, s, layout),
                               budget)
        self.encoder = context_encoder(c_in, pool, self.context_dims)
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
