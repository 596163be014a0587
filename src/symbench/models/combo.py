"""Combo: non-equivariant layers followed by equivariant ones (Wang, Walters & Yu, ICML 2022, sec. 3.4 "Combination
of non-equivariant and equivariant layers", and sec. 5). "The early layers map observations with approximate
symmetries to a space with explicit symmetry actions."

The first ``layers // 2`` layers are free; the rest are the equivariant layers of :mod:`.smoke_families`
(``conv -> norm -> ReLU`` and the equivariant head to the layout's fields). Where they meet, the free features are
given a type of the equivariant network:

* ``translation``: an MLP of the flattened history (``MLPConvNet`` of Rose-STL-Lab/Approximately-Equivariant-Nets, a
  convolution would already be the equivariant layer): ``layers // 2`` units of ``Linear -> BatchNorm1d -> ReLU``,
  the hidden ones ``2 n`` wide (the reference's ``2 * hidden_dim``), the last to ``n H W`` features read as ``n``
  channels on the grid, then the convolutions. Its dense layers cost ``(T_in C + n) H W`` per hidden unit, above the
  ConvNet budget, so it is sized like every model with grid-sized weights (:mod:`symbench.models.budget`): its own
  count at the preset's width, fitted down only where that exceeds ``max_parameters`` (default the paper's
  ``10^7``). The reference's first MLP layer's bias is dropped (the batch norm shifts), as in :mod:`.mlp`.
* ``rotation``: plain convolutions (``conv -> BatchNorm2d -> ReLU``) with ``N n`` channels, read by the escnn
  layers as ``n`` regular fields of ``C_N`` (the reference's ``ConvE2CNN``);
* ``scaling``: plain convolutions with ``n`` channels, copied unscaled onto every level (invariant features) for
  the scale-steerable layers of :class:`~.smoke_families.ScaleFamily` (SESN's basis at the growing scales; the
  reference's ``ConvEquScale`` uses its group correlation over scales).
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from symbench.fields import FieldLayout
from symbench.layers import check_history, same_padding, stack_frames
from symbench.layers.pixel_mixing import GridSize, grid_shape
from symbench.models.conv_net import check_smoke_args, check_symmetry, conv_budget
from symbench.layers.scale_steerable import DEFAULT_SCALES
from symbench.models.budget import PARAMETER_CAP, capped_target, fit_sizes
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


def mlp_widths(in_features: int, pixels: int, sizes: tuple[int, ...]) -> list[int]:
    """The translation Combo's MLP widths ``[in_features, 2 n_1, .., 2 n_{m-1}, n_m H W]`` for free sizes
    ``n_1..n_m``."""
    return [in_features, *(2 * n for n in sizes[:-1]), sizes[-1] * pixels]


class Combo(nn.Module):
    """Free-then-equivariant forecaster ``(B, T_in, C, H, W) -> (B, C, H, W)`` (module docstring); hidden sizes fitted
    to ``conv_budget`` (translation: see the module docstring). ``grid_size`` (one side or ``(H, W)``) is the grid the
    translation model's MLP is built for."""

    def __init__(self, in_frames: int, layout: FieldLayout, *, symmetry: str = "rotation", width: int = 64,
                 layers: int = 5, kernel_size: int = 3, grid_size: GridSize = 64,
                 group_order: int = DEFAULT_GROUP_ORDER,
                 scales: Sequence[float] = DEFAULT_SCALES,
                 max_parameters: int = PARAMETER_CAP) -> None:
        super().__init__()
        check_symmetry("Combo", symmetry)
        check_smoke_args("Combo", in_frames, width, layers)
        self.in_frames, self.layout, self.symmetry = in_frames, layout, symmetry
        self.grid_shape = grid_shape(grid_size)
        self.n_free = layers // 2
        family = layer_family(symmetry, kernel_size, group_order, scales)
        pixels = self.grid_shape[0] * self.grid_shape[1]
        # Plain channels of a free layer of n units: a regular field of C_N is N channels.
        unit = group_order if symmetry == "rotation" else 1
        c_in = in_frames * layout.channels

        def free_parameters(sizes: tuple[int, ...]) -> int:
            if symmetry == "translation":  # bias-free linears + BatchNorm1d affine
                widths = mlp_widths(c_in * pixels, pixels, sizes)
            else:  # bias-free convs + BatchNorm2d affine
                widths = [c_in, *(unit * n for n in sizes)]
            scale = 1 if symmetry == "translation" else kernel_size**2
            return sum(a * b * scale + 2 * b for a, b in zip(widths[:-1], widths[1:]))

        def count(sizes: tuple[int, ...]) -> int:
            rest = stack_parameters(family, family.hidden_type(sizes[self.n_free - 1]), sizes[self.n_free:], layout)
            return free_parameters(sizes[:self.n_free]) + rest

        budget = conv_budget(in_frames, layout, width, layers, kernel_size)
        if symmetry == "translation":  # grid-sized MLP: its own count at this width
            budget = capped_target(count((width,) * (layers - 1)), max_parameters)
        self.sizes = fit_sizes(layers - 1, count, budget)
        units: list[nn.Module] = []
        if symmetry == "translation":
            units.append(nn.Flatten())
            widths = mlp_widths(c_in * pixels, pixels, self.sizes[:self.n_free])
            for a, b in zip(widths[:-1], widths[1:]):
                units += [nn.Linear(a, b, bias=False), nn.BatchNorm1d(b), nn.ReLU()]
            units.append(nn.Unflatten(1, (self.sizes[self.n_free - 1], *self.grid_shape)))
        else:
            channels = [c_in, *(unit * n for n in self.sizes[:self.n_free])]
            for a, b in zip(channels[:-1], channels[1:]):
                units += [nn.Conv2d(a, b, kernel_size, padding=same_padding(kernel_size), bias=False),
                          nn.BatchNorm2d(b), nn.ReLU()]
        if isinstance(family, ScaleFamily):
            units.append(LevelCopy(family.n_scales))
        units.append(equivariant_stack(family, family.hidden_type(self.sizes[self.n_free - 1]),
                                       self.sizes[self.n_free:], layout))
        self.net = nn.Sequential(*units)

    def forward(self, x: Tensor) -> Tensor:
        check_history(x, self.in_frames, self.layout.channels, "Combo")
        if self.symmetry == "translation" and x.shape[-2:] != self.grid_shape:
            raise ValueError(f"Combo (translation) is built for a {self.grid_shape[0]}x{self.grid_shape[1]} grid, "
                             f"got {tuple(x.shape[-2:])}; set grid_size to the data's grid")
        return self.net(stack_frames(x))

    def extra_repr(self) -> str:
        return (f"in_frames={self.in_frames}, fields={self.layout}, symmetry={self.symmetry!r}, "
                f"free_layers={self.n_free}, sizes={self.sizes}")
