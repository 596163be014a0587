"""Combo: non-equivariant layers followed by equivariant ones (Wang, Walters & Yu, ICML 2022, sec. 3.4 "Combination
of non-equivariant and equivariant layers", and sec. 5). "The early layers map observations with approximate
symmetries to a space with explicit symmetry actions."

The first ``layers // 2`` layers are free (``layer -> BatchNorm2d -> ReLU``); the rest are the equivariant layers of
:mod:`.smoke_families` (``conv -> norm -> ReLU`` and the equivariant head to the layout's fields). Where they meet,
the free features are given a type of the equivariant network:

* ``translation``: the free layers are the low-rank locally connected layers of :mod:`symbench.layers.local_conv`
  (a convolution would already be the equivariant layer), the rest are convolutions;
* ``rotation``: plain convolutions with ``N n`` channels, read by the escnn layers as ``n`` regular fields of
  ``C_N``;
* ``scaling``: plain convolutions with ``n`` channels, copied unscaled onto every level (invariant features) for
  the group correlations over scales.
"""

from __future__ import annotations

from torch import Tensor, nn

from symbench.fields import FieldLayout
from symbench.layers import check_history, same_padding, stack_frames
from symbench.layers.local_conv import LowRankLocalConv2d, coefficient_map_size
from symbench.layers.pixel_mixing import GridSize
from symbench.models.conv_net import check_smoke_args, check_symmetry, conv_budget
from symbench.models.equ_scale import N_SCALES, SCALE_RATIO
from symbench.models.budget import fit_sizes
from symbench.models.smoke_families import (
    DEFAULT_GROUP_ORDER,
    ScaleFamily,
    copy_to_levels,
    equivariant_stack,
    layer_family,
    stack_parameters,
)


class LevelCopy(nn.Module):
    """``(B, C, H, W) -> (B, S * C, H, W)``: the same features on every level."""

    def __init__(self, n_scales: int) -> None:
        super().__init__()
        self.n_scales = n_scales

    def forward(self, x: Tensor) -> Tensor:
        return copy_to_levels(x, self.n_scales)


class Combo(nn.Module):
    """Free-then-equivariant forecaster ``(B, T_in, C, H, W) -> (B, C, H, W)`` (module docstring); hidden sizes fitted
    to ``conv_budget``. ``grid_size`` (one side or ``(H, W)``) is the grid the translation model's locally
    connected layers are built for."""

    def __init__(self, in_frames: int, layout: FieldLayout, *, symmetry: str = "rotation", width: int = 64,
                 layers: int = 5, kernel_size: int = 3, grid_size: GridSize = 64,
                 group_order: int = DEFAULT_GROUP_ORDER,
                 n_scales: int = N_SCALES, scale_ratio: float = SCALE_RATIO, rank: int = 2) -> None:
        super().__init__()
        check_symmetry("Combo", symmetry)
        check_smoke_args("Combo", in_frames, width, layers)
        self.in_frames, self.layout, self.symmetry = in_frames, layout, symmetry
        self.n_free = layers // 2
        family = layer_family(symmetry, kernel_size, group_order, n_scales, scale_ratio)
        budget = conv_budget(in_frames, layout, width, layers, kernel_size)
        map_size = coefficient_map_size(grid_size, budget, self.n_free, rank)
        # Plain channels of a free layer of n units: a regular field of C_N is N channels.
        unit = group_order if symmetry == "rotation" else 1
        c_in = in_frames * layout.channels

        def free_layer_parameters(a: int, b: int) -> int:
            if symmetry == "translation":
                return LowRankLocalConv2d.parameters_for(a, b, kernel_size, rank, map_size) + 2 * b
            return a * b * kernel_size**2 + 2 * b

        def count(sizes: tuple[int, ...]) -> int:
            channels = [c_in, *(unit * n for n in sizes[:self.n_free])]
            free = sum(free_layer_parameters(a, b) for a, b in zip(channels[:-1], channels[1:]))
            rest = stack_parameters(family, family.hidden_type(sizes[self.n_free - 1]), sizes[self.n_free:], layout)
            return free + rest

        self.sizes = fit_sizes(layers - 1, count, budget)
        units: list[nn.Module] = []
        channels = [c_in, *(unit * n for n in self.sizes[:self.n_free])]
        for a, b in zip(channels[:-1], channels[1:]):
            if symmetry == "translation":
                layer: nn.Module = LowRankLocalConv2d(a, b, kernel_size, rank, grid_size, map_size)
            else:
                layer = nn.Conv2d(a, b, kernel_size, padding=same_padding(kernel_size), bias=False)
            units += [layer, nn.BatchNorm2d(b), nn.ReLU()]
        if isinstance(family, ScaleFamily):
            units.append(LevelCopy(family.n_scales))
        units.append(equivariant_stack(family, family.hidden_type(self.sizes[self.n_free - 1]),
                                       self.sizes[self.n_free:], layout))
        self.net = nn.Sequential(*units)

    def forward(self, x: Tensor) -> Tensor:
        check_history(x, self.in_frames, self.layout.channels, "Combo")
        return self.net(stack_frames(x))

    def extra_repr(self) -> str:
        return (f"in_frames={self.in_frames}, fields={self.layout}, symmetry={self.symmetry!r}, "
                f"free_layers={self.n_free}, sizes={self.sizes}")
