"""RSteer: the relaxed steerable CNN of the ICML 2022 smoke benchmarks (Wang, Walters & Yu, sec. 3.2, eq. 7; with
``ranks > 1`` the RSteerTR combination of eq. 8-9), for rotations ``C_N``.

The Equiv rotation network of :mod:`.equiv` (history as vector / trivial fields, ``layers - 1`` units of
``steerable conv -> InnerBatchNorm -> ReLU`` on regular fields, a steerable head to the layout's fields) with every
convolution a :class:`~symbench.layers.relaxed_steerable.RelaxedSteerableConv2d`: basis weights ``w_l(theta)`` per
angle of the kernel offset, equal at init (the network is then exactly ``C_N``-equivariant), penalised by the
finite-difference smoothness term of sec. 3.3 (:meth:`RSteerNet.regularization_loss`, added linearly as
``alpha * penalty`` by the Lightning module). ``relaxed=False`` gives the strict steerable network with the same
basis and types (the reference for the cost of relaxation).

Parameter budget: the regular-field counts are fitted with :func:`~symbench.models.budget.fit_sizes` so that
the trainable parameters are within a few % of :func:`~symbench.models.conv_net.conv_budget` at the same ``width``.
With ``ranks > 1`` (RSteerTR) the per-pixel weights ``a_r(x)`` live on ``relax_grid`` cells, by default the finest
divisors of ``grid_size`` (one side, or ``(H, W)``) whose weights take at most half the budget.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from symbench.fields import FieldLayout
from symbench.layers import check_history, stack_frames
from symbench.layers.escnn_blocks import RotationFields, TypeBlocks, layout_blocks, regular
from symbench.layers.pixel_mixing import GridSize
from symbench.layers.relaxed_steerable import RelaxedSteerableConv2d
from symbench.models.conv_net import check_smoke_args, conv_budget
from symbench.models.rgroup import default_relax_grid
from symbench.models.budget import fit_sizes
from symbench.models.smoke_families import DEFAULT_GROUP_ORDER


class RSteerNet(nn.Module):
    """Next-frame forecaster ``(B, T_in, C, H, W) -> (B, C, H, W)`` of relaxed ``C_N``-steerable convolutions.

    ``symmetry`` must be ``rotation`` (the paper has no relaxed steerable model for translation, and the scale
    version is :mod:`.sesn`'s ``rsteer_scale``). ``ranks`` is ``R`` of eq. 9 (1: RSteer; 2 or more: RSteerTR, which
    needs the ``grid_size``: one side, or ``(H, W)``); ``hidden`` overrides the fitted regular-field counts.
    """

    def __init__(self, in_frames: int, layout: FieldLayout, *, symmetry: str = "rotation", width: int = 64,
                 layers: int = 5, kernel_size: int = 3, grid_size: GridSize = 64,
                 group_order: int = DEFAULT_GROUP_ORDER,
                 ranks: int = 1, relax_grid: GridSize | None = None, relaxed: bool = True, padding_mode: str = "zeros",
                 hidden: Sequence[int] | None = None) -> None:
        super().__init__()
        if symmetry != "rotation":
            raise ValueError(f"RSteerNet relaxes rotation steerable convolutions only, got symmetry={symmetry!r} "
                             "(scaling: rsteer_scale / rsteer_ts; translation: rgroup)")
        check_smoke_args("RSteerNet", in_frames, width, layers)
        self.in_frames, self.layout, self.relaxed, self.ranks = in_frames, layout, relaxed, ranks
        self.rot = RotationFields(group_order)
        self.budget = conv_budget(in_frames, layout, width, layers, kernel_size)
        if ranks > 1 and relax_grid is None:
            relax_grid = default_relax_grid(grid_size, ranks, layers, self.budget)
        self.relax_grid = relax_grid
        self._options = dict(kernel_size=kernel_size, relaxed=relaxed, ranks=ranks, grid_size=grid_size,
                             relax_grid=relax_grid)
        self._in_type: TypeBlocks = layout_blocks(layout, in_frames)
        if hidden is None:
            hidden = fit_sizes(layers - 1, self._count, self.budget)
        if len(hidden) != layers - 1 or min(hidden) < 1:
            raise ValueError(f"hidden must hold layers - 1 = {layers - 1} positive counts, got {tuple(hidden)}")
        self.hidden = tuple(int(h) for h in hidden)
        units: list[nn.Module] = []
        current = self._in_type
        for n in self.hidden:
            units += [self._conv(current, regular(n), bias=False, padding_mode=padding_mode),
                      self.rot.batch_norm(n), nn.ReLU()]
            current = regular(n)
        units.append(self._conv(current, layout_blocks(layout), bias=True, padding_mode=padding_mode))
        self.net = nn.Sequential(*units)

    def _conv(self, a: TypeBlocks, b: TypeBlocks, bias: bool, padding_mode: str) -> RelaxedSteerableConv2d:
        return RelaxedSteerableConv2d(self.rot, a, b, bias=bias, padding_mode=padding_mode, **self._options)

    def _count(self, hidden: tuple[int, ...]) -> int:
        """Trainable parameters with these regular-field counts (convs, norms, head), without building anything."""
        total, current = 0, self._in_type
        for n in hidden:
            total += RelaxedSteerableConv2d.parameter_count(self.rot, current, regular(n), **self._options) + 2 * n
            current = regular(n)
        return total + RelaxedSteerableConv2d.parameter_count(self.rot, current, layout_blocks(self.layout),
                                                              bias=True, **self._options)

    def forward(self, x: Tensor) -> Tensor:
        check_history(x, self.in_frames, self.layout.channels, "RSteerNet")
        return self.net(stack_frames(x))

    def regularization_loss(self) -> Tensor:
        """Sum of every layer's smoothness penalty (and translation TV when ``ranks > 1``); zero when strict."""
        convs = [m for m in self.net if isinstance(m, RelaxedSteerableConv2d)]
        return sum((m.regularization_loss() for m in convs[1:]), convs[0].regularization_loss())

    def extra_repr(self) -> str:
        return (f"in_frames={self.in_frames}, fields={self.layout}, group_order={self.rot.group_order}, "
                f"relaxed={self.relaxed}, ranks={self.ranks}, relax_grid={self.relax_grid}, hidden={self.hidden}")
