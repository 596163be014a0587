"""RGroup: the relaxed group convolution network of the ICML 2022 smoke benchmarks (Wang, Walters & Yu, sec. 3.1,
eq. 4-5, regulariser sec. 3.3), for the three symmetries of those benchmarks.

The ConvNet of :mod:`.conv_net` (``layers - 1`` units of ``conv -> BN -> ReLU`` then a conv) with every convolution
a relaxed group convolution of :mod:`symbench.layers.relaxed_group_conv`:

* rotation: velocity lifted to regular fields of ``C_4`` (a trainable factor per vector field and frame; scalars
  as trivial fields), :class:`RelaxedRotGroupConv2d`, batch norm shared over each field's ``N`` channels,
  projection back to vectors and scalars;
* translation: :class:`RelaxedTranslationConv2d` (per-cell mixing of ``L`` convolutions on a fixed grid);
* scaling: the scaling Equiv (SESN) network of :class:`~symbench.models.smoke_families.ScaleFamily` relaxed over
  its levels: the scale lift, :class:`RelaxedScaleGroupConv2d` (``K_s = sum_l w_l(s) sum_j W_{l,j}
  psi_{sigma_s, j}``, eq. 4 with ``h`` the level ``s``) on SESN's Hermite-Gaussian basis at the growing ``scales``
  (default 1, 1.5, 2, 2.5 px; ``kernel_size`` the effective size, 5 x 5 kernels for 3), the bias-free level-shared
  batch norm, and the fused relaxed correlation + level average as output layer. With ``w_l(s)`` equal over ``s``
  it is exactly the scaling Equiv network (``relaxed=False`` builds that network's layers). Departure from the
  ICML 2022 reference: its level kernels are one base kernel rescaled per level; here they are the basis functions
  at each level's width, so that the strict limit is SESN (the reference's scaling Equiv) on the same scales.

Unlike the ICML 2022 code (Rose-STL-Lab/Approximately-Equivariant-Nets) the activation is applied, the input grid is
read as (H, W), the penalty ``regularization_loss()`` (the sum of every layer's term) is meant to be added linearly, and
kernels turn by exact quarter turns. With all relaxation weights equal the network is exactly equivariant (evaluation
mode) to quarter turns of typed fields / circular shifts (circular padding) / is the strict EquScal-type network.

Parameter budget: the hidden channel counts (regular fields for rotation, channels per level for scaling) are fitted
so that the trainable parameters are within a few % of :func:`~symbench.models.conv_net.conv_budget` at the same
``width``; the counts of consecutive layers may differ by one to get close. For translation the relaxation weights
count too: they live on ``relax_grid`` cells, by default the finest divisors of ``grid_size`` (one side, or
``(H, W)`` for a rectangular grid) whose weights take at most half the budget (one weight per pixel whenever that
fits).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from symbench.fields import FieldLayout
from symbench.layers import check_history, stack_frames
from symbench.layers.conv import check_padding_mode, same_padding
from symbench.layers.pixel_mixing import GridSize, divisors, grid_shape
from symbench.layers.regular_lift import RegularBatchNorm2d, RegularLift, RegularProject
from symbench.layers.relaxed_group_conv import (
    RelaxedRotGroupConv2d,
    RelaxedScaleConvProject2d,
    RelaxedScaleGroupConv2d,
    RelaxedTranslationConv2d,
    RotGroupConv2d,
)
from symbench.layers.scale_steerable import DEFAULT_SCALES, check_scales
from symbench.models.budget import fit_sizes, n_params
from symbench.models.conv_net import check_smoke_args, check_symmetry, conv_budget
from symbench.models.smoke_families import ScaleFamily

Layers = tuple[nn.Module, nn.Sequential, nn.Module]  # lift, body, projection


def default_relax_grid(grid_size: GridSize, banks: int, layers: int, budget: int) -> GridSize:
    """The finest cells with ``banks * layers * cells <= budget / 2``: on a square grid the largest divisor ``r`` of
    its side (``r x r`` cells); on an ``(H, W)`` grid the divisors ``(r_h, r_w)`` of ``H`` and ``W`` with the most
    cells, ties to the cell shape closest to the grid's."""
    h, w = grid_shape(grid_size)
    if isinstance(grid_size, int):
        return max([r for r in divisors(h) if 2 * banks * layers * r * r <= budget], default=1)
    fits = [(r_h, r_w) for r_h in divisors(h) for r_w in divisors(w) if 2 * banks * layers * r_h * r_w <= budget]
    return max(fits, key=lambda c: (c[0] * c[1], -abs(c[0] * w - c[1] * h)), default=(1, 1))


class RGroupNet(nn.Module):
    """Next-frame forecaster ``(B, T_in, C, H, W) -> (B, C, H, W)`` of relaxed group convolutions for
    ``symmetry`` in ('rotation', 'translation', 'scaling'); ``banks`` is ``L`` of eq. 4.

    ``relaxed=False`` builds the strict counterpart of the same types (one bank, no relaxation weights); ``hidden``
    overrides the fitted hidden channel counts (e.g. a strict network with the relaxed one's ``hidden``, for a cost
    comparison at equal arithmetic). ``grid_size`` (one side, or ``(H, W)``) and ``relax_grid`` are used by translation,
    ``group_order`` (must be 4: the vector lift needs ``N >= 3``, exact quarter turns ``N | 4``) by rotation,
    ``scales`` (the basis widths in px, growing) and ``scalar_power`` by scaling (as in
    :class:`~symbench.models.smoke_families.ScaleFamily`).
    """

    def __init__(
        self,
        in_frames: int,
        layout: FieldLayout,
        *,
        symmetry: str = "rotation",
        width: int = 64,
        layers: int = 5,
        kernel_size: int = 3,
        banks: int = 2,
        group_order: int = 4,
        grid_size: GridSize = 64,
        scales: Sequence[float] = DEFAULT_SCALES,
        scalar_power: float = 0.0,
        padding_mode: str = "zeros",
        relax_grid: GridSize | None = None,
        relaxed: bool = True,
        hidden: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        check_symmetry("RGroupNet", symmetry)
        check_padding_mode(padding_mode)
        same_padding(kernel_size)
        check_smoke_args("RGroupNet", in_frames, width, layers)
        if banks < 1:
            raise ValueError(f"RGroupNet needs banks >= 1, got {banks}")
        if symmetry == "rotation" and group_order != 4:
            raise ValueError(f"RGroupNet rotation needs group_order=4 (vector lift N >= 3, exact quarter turns "
                             f"N | 4), got {group_order}")
        self.in_frames, self.layout, self.symmetry, self.relaxed = in_frames, layout, symmetry, relaxed
        self.group_order, self.grid_size = group_order, grid_size
        self.budget = conv_budget(in_frames, layout, width, layers, kernel_size)
        if symmetry == "translation" and relax_grid is None:
            relax_grid = default_relax_grid(grid_size, banks, layers, self.budget)
        self.relax_grid = relax_grid
        self._options = dict(symmetry=symmetry, in_frames=in_frames, layout=layout, kernel_size=kernel_size,
                             banks=banks if relaxed else 1, relaxed=relaxed, group_order=group_order,
                             grid_size=grid_size, relax_grid=relax_grid, padding_mode=padding_mode,
                             scales=check_scales(scales), scalar_power=scalar_power)
        if hidden is None:
            hidden = fit_sizes(layers - 1, self._count, self.budget, exhaustive_up_to=0)
        if len(hidden) != layers - 1 or min(hidden) < 1:
            raise ValueError(f"hidden must hold layers - 1 = {layers - 1} positive counts, got {tuple(hidden)}")
        self.hidden = tuple(int(h) for h in hidden)
        self.lift, self.body, self.project = _build(hidden=self.hidden, **self._options)

    def _count(self, hidden: tuple[int, ...]) -> int:
        """Trainable parameters of the network with these hidden counts (built on the meta device: no memory)."""
        with torch.device("meta"):
            return sum(n_params(m) for m in _build(hidden=hidden, **self._options))

    def forward(self, x: Tensor) -> Tensor:
        check_history(x, self.in_frames, self.layout.channels, "RGroupNet")
        return self.project(self.body(self.lift(stack_frames(x))))

    def regularization_loss(self) -> Tensor:
        """Sum of every relaxed layer's penalty (L_gconv, or total variation for translation); zero when strict."""
        terms = [m.regularization_loss() for m in self.body if hasattr(m, "regularization_loss")]
        if not terms:
            return torch.zeros((), device=next(self.parameters()).device)
        return torch.stack(terms).sum()

    def extra_repr(self) -> str:
        return (f"in_frames={self.in_frames}, fields={self.layout}, symmetry={self.symmetry}, "
                f"relaxed={self.relaxed}, hidden={self.hidden}")


def _build(*, symmetry: str, hidden: tuple[int, ...], **options) -> Layers:
    return {"rotation": _rotation, "translation": _translation, "scaling": _scaling}[symmetry](hidden, **options)


def _stack(channels: Sequence[int], conv: Callable[[int, int, bool], nn.Module],
           norm: Callable[[int], nn.Module]) -> nn.Sequential:
    """``(conv -> norm -> ReLU)`` between consecutive ``channels``, the last conv (``last=True``) alone."""
    units: list[nn.Module] = []
    pairs = list(zip(channels[:-1], channels[1:]))
    for i, (c_in, c_out) in enumerate(pairs):
        units.append(conv(c_in, c_out, i == len(pairs) - 1))
        if i < len(pairs) - 1:
            units += [norm(c_out), nn.ReLU()]
    return nn.Sequential(*units)


def _rotation(hidden: tuple[int, ...], *, in_frames: int, layout: FieldLayout, kernel_size: int, banks: int,
              relaxed: bool, group_order: int, padding_mode: str, **_: object) -> Layers:
    n_fields = len(layout.fields)

    def conv(c_in: int, c_out: int, last: bool) -> nn.Module:
        if relaxed:
            return RelaxedRotGroupConv2d(c_in, c_out, kernel_size, group_order, banks, padding_mode)
        return RotGroupConv2d(c_in, c_out, kernel_size, group_order, padding_mode)

    body = _stack([in_frames * n_fields, *hidden, n_fields], conv, lambda c: RegularBatchNorm2d(c, group_order))
    return RegularLift(layout, in_frames, group_order), body, RegularProject(layout, group_order)


def _translation(hidden: tuple[int, ...], *, in_frames: int, layout: FieldLayout, kernel_size: int, banks: int,
                 relaxed: bool, grid_size: GridSize, relax_grid: GridSize | None, padding_mode: str,
                 **_: object) -> Layers:
    def conv(c_in: int, c_out: int, last: bool) -> nn.Module:
        if relaxed:
            return RelaxedTranslationConv2d(c_in, c_out, kernel_size, grid_size, banks, relax_grid, last,
                                            padding_mode)
        return nn.Conv2d(c_in, c_out, kernel_size, padding=same_padding(kernel_size), padding_mode=padding_mode,
                         bias=last)

    body = _stack([in_frames * layout.channels, *hidden, layout.channels], conv, nn.BatchNorm2d)
    return nn.Identity(), body, nn.Identity()


def _scaling(hidden: tuple[int, ...], *, in_frames: int, layout: FieldLayout, kernel_size: int, banks: int,
             relaxed: bool, scales: tuple[float, ...], scalar_power: float, padding_mode: str,
             **_: object) -> Layers:
    family = ScaleFamily(kernel_size, scales, scalar_power, padding_mode)  # the strict layers: scaling Equiv's
    basis = dict(effective_size=kernel_size, padding_mode=padding_mode)  # kernel_size: the effective size

    def conv(c_in: int, c_out: int, last: bool) -> nn.Module:
        if last:
            if relaxed:
                return RelaxedScaleConvProject2d(c_in, layout, family.support, scales, banks, scalar_power, **basis)
            return family.head(c_in, layout)
        if relaxed:
            return RelaxedScaleGroupConv2d(c_in, c_out, family.support, scales, banks, **basis)
        return family.conv(c_in, c_out)

    body = _stack([in_frames * layout.channels, *hidden, layout.channels], conv, family.norm)
    return family.lift(layout, in_frames), body, nn.Identity()
