"""SESN and RSteer (scaling): the scale-steerable CNN the ICML 2022 smoke benchmarks use as "Equiv" for scaling
(Sosnovik, Szmaja & Smeulders, ICLR 2020; Wang, Walters & Yu, ICML 2022 sec. 5) and its relaxation (sec. 3.2,
eq. 7, penalty sec. 3.3), built from :mod:`symbench.layers.scale_steerable`.

The ConvNet of :mod:`.conv_net` (``layers - 1`` units of ``conv -> BN -> ReLU`` then a conv) on level-major
features over the growing scales ``scales`` (default 1, 1.5, 2, 2.5 px, the ICML 2022 reference's) with
``kernel_size x kernel_size`` kernels (default 5, the reference's): the first convolution lifts the history to every
level (SESN's Z2 -> H layer, :class:`~symbench.layers.scale_steerable.ScaleSteerableLift2d`, with the lifting
factors ``(sigma_s / sigma_0)^e`` of :class:`~symbench.layers.scale_conv.ScaleLift`), every later hidden convolution
is a :class:`~symbench.layers.scale_steerable.ScaleSteerableConv2d` that mixes each level with its
``scale_size - 1`` coarser neighbours (SESN's H -> H layer; default 1 as in the ICML 2022 reference, larger values
need a geometric scale set), each followed by the bias-free level-shared
:class:`~symbench.layers.scale_conv.ScaleBatchNorm2d` and ReLU, and the output layer is the scale-steerable
correlation fused with the level average. Kernels are ``K_{s,i} = sum_l w_{i,l} psi_{sigma_s, l}`` with
``L = effective_size^2`` Hermite-Gaussian functions (SESN; strict) or ``sum_l w_{i,l}(y) psi_{sigma_s, l}(y)`` with
one weight per tap ``y`` (RSteer, eq. 7; equal over the taps at init, so the relaxed network starts as the strict
one).

Departures from the ICML 2022 reference (Rose-STL-Lab/Approximately-Equivariant-Nets): batch normalisation without
bias (the reference has biases and no normalisation in these layers), the lift factors of EquScal for vector
fields, and an output averaged over the levels (the reference's last layer reads level 0 only); the basis
departures are listed in :mod:`symbench.layers.scale_steerable`.

Parameter budget: the hidden channel counts (per level) are fitted with
:func:`~symbench.models.budget.fit_sizes` so that the trainable parameters are within a few % of
:func:`~symbench.models.conv_net.conv_budget` at the same ``width`` and a kernel of ``effective_size`` (SESN's
"effective size": the convolution with the same parameters). A strict layer has the parameters of an
``effective_size^2`` convolution (times ``scale_size``), so SESN keeps about ConvNet's widths; RSteer pays ``k^2``
weights per basis function and channel pair and gets about ``1 / k`` of them.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from symbench.fields import FieldLayout
from symbench.layers import check_history, stack_frames
from symbench.layers.conv import check_padding_mode, same_padding
from symbench.layers.pixel_mixing import GridSize
from symbench.layers.scale_conv import ScaleBatchNorm2d, level_factors
from symbench.layers.scale_steerable import (
    DEFAULT_EFFECTIVE_SIZE,
    DEFAULT_KERNEL_SIZE,
    DEFAULT_SCALES,
    PixelMixedScaleConv2d,
    ScaleSteerableConv2d,
    ScaleSteerableLift2d,
    ScaleSteerableProject2d,
    check_scales,
    relative_scales,
)
from symbench.models.conv_net import check_smoke_args, conv_budget
from symbench.models.rgroup import default_relax_grid
from symbench.models.budget import fit_sizes, n_params


class ScaleSteerableNet(nn.Module):
    """Next-frame forecaster ``(B, T_in, C, H, W) -> (B, C, H, W)`` of scale-steerable convolutions (the shared
    body of :class:`SESN`, :class:`RSteerScale` and :class:`~symbench.models.rsteer_ts.RSteerTS`).

    ``symmetry`` must be ``scaling``. ``relaxed`` picks eq. 7 over the strict eq. 6; ``ranks > 1`` adds the
    relaxed translation part of eq. 8-9 on the ``grid_size`` grid (one side or ``(H, W)``; ``relax_grid`` cells).
    ``scales``, ``kernel_size``, ``effective_size`` and ``scale_size`` are those of
    :class:`~symbench.layers.scale_steerable.ScaleSteerableConv2d` (``scale_size`` applies from the second hidden
    layer on); ``scalar_power`` is the exponent of scalar fields under scaling, as in
    :class:`~symbench.models.equ_scale.EquScaleResNet`; ``hidden`` overrides the fitted channel counts.
    """

    model_name = "ScaleSteerableNet"

    def __init__(self, in_frames: int, layout: FieldLayout, *, symmetry: str = "scaling", width: int = 64,
                 layers: int = 5, kernel_size: int = DEFAULT_KERNEL_SIZE, grid_size: GridSize = 64,
                 scales: Sequence[float] = DEFAULT_SCALES, effective_size: int = DEFAULT_EFFECTIVE_SIZE,
                 scale_size: int = 1, scalar_power: float = 0.0, padding_mode: str = "zeros", relaxed: bool = False,
                 ranks: int = 1, relax_grid: GridSize | None = None, hidden: Sequence[int] | None = None) -> None:
        super().__init__()
        if symmetry != "scaling":
            raise ValueError(f"{self.model_name} is built for symmetry='scaling' only, got {symmetry!r} "
                             "(rotation: equiv / rsteer; translation: conv / rgroup)")
        check_smoke_args(self.model_name, in_frames, width, layers)
        check_padding_mode(padding_mode)
        same_padding(kernel_size)
        if ranks < 1:
            raise ValueError(f"{self.model_name} needs ranks >= 1, got {ranks}")
        self.in_frames, self.layout, self.relaxed, self.ranks = in_frames, layout, relaxed, ranks
        self.scales = check_scales(scales, scale_size)
        self.budget = conv_budget(in_frames, layout, width, layers, effective_size)
        if ranks > 1 and relax_grid is None:
            relax_grid = default_relax_grid(grid_size, ranks, layers, self.budget)
        self.relax_grid = relax_grid
        self._options: dict[str, Any] = dict(
            in_frames=in_frames, layout=layout, kernel_size=kernel_size, scales=self.scales,
            effective_size=effective_size, scale_size=scale_size, scalar_power=scalar_power, relaxed=relaxed,
            padding_mode=padding_mode, ranks=ranks, grid_size=grid_size, relax_grid=relax_grid)
        if hidden is None:
            hidden = fit_sizes(layers - 1, self._count, self.budget)
        if len(hidden) != layers - 1 or min(hidden) < 1:
            raise ValueError(f"hidden must hold layers - 1 = {layers - 1} positive counts, got {tuple(hidden)}")
        self.hidden = tuple(int(h) for h in hidden)
        self.body = _build(self.hidden, **self._options)

    def _count(self, hidden: tuple[int, ...]) -> int:
        """Trainable parameters with these hidden counts (built on the meta device: no memory)."""
        with torch.device("meta"):
            return n_params(_build(hidden, **self._options))

    def forward(self, x: Tensor) -> Tensor:
        check_history(x, self.in_frames, self.layout.channels, self.model_name)
        return self.body(stack_frames(x))

    def regularization_loss(self) -> Tensor:
        """Sum of every layer's penalty: TV of ``w_l(y)`` (relaxed) and of ``a_r(x)`` (``ranks > 1``)."""
        terms = [m.regularization_loss() for m in self.body if hasattr(m, "regularization_loss")]
        return torch.stack(terms).sum()

    def extra_repr(self) -> str:
        return (f"in_frames={self.in_frames}, fields={self.layout}, relaxed={self.relaxed}, ranks={self.ranks}, "
                f"relax_grid={self.relax_grid}, hidden={self.hidden}")


class SESN(ScaleSteerableNet):
    """The strict scale-steerable CNN (eq. 6 per level, SESN); ``relaxed=True`` is :class:`RSteerScale`."""

    model_name = "SESN"


class RSteerScale(ScaleSteerableNet):
    """RSteer for scaling: the relaxed scale-steerable CNN (eq. 7), one ``w_l(y)`` per kernel tap ``y``, equal over
    ``y`` at init."""

    model_name = "RSteerScale"

    def __init__(self, in_frames: int, layout: FieldLayout, **options: Any) -> None:
        super().__init__(in_frames, layout, **{"relaxed": True, **options})


def _build(hidden: tuple[int, ...], *, in_frames: int, layout: FieldLayout, kernel_size: int,
           scales: tuple[float, ...], effective_size: int, scale_size: int, scalar_power: float, relaxed: bool,
           padding_mode: str, ranks: int, grid_size: GridSize, relax_grid: GridSize | None) -> nn.Sequential:
    """``[conv -> ScaleBatchNorm2d -> ReLU] * len(hidden) + output layer``: the first convolution lifts the history
    to every level (SESN's Z2 -> H, with the lifting factors ``(sigma_s / sigma_0)^e``), the later hidden ones mix
    ``scale_size`` neighbours (H -> H); with ``ranks > 1`` every convolution computes ``ranks`` kernels mixed pixel
    by pixel."""
    kernel = dict(effective_size=effective_size, relaxed=relaxed, padding_mode=padding_mode)
    n_scales = len(scales)

    def mixed(conv: ScaleSteerableConv2d, levels: int) -> nn.Module:
        return conv if ranks == 1 else PixelMixedScaleConv2d(conv, levels, ranks, grid_size, relax_grid)

    factors = level_factors(layout, in_frames, relative_scales(scales), scalar_power)
    units: list[nn.Module] = []
    current = in_frames * layout.channels
    for j, n in enumerate(hidden):
        if j == 0:
            conv: ScaleSteerableConv2d = ScaleSteerableLift2d(current, ranks * n, kernel_size, scales, factors,
                                                              **kernel)
        else:
            conv = ScaleSteerableConv2d(current, ranks * n, kernel_size, scales, scale_size=scale_size, **kernel)
        units += [mixed(conv, n_scales), ScaleBatchNorm2d(n, n_scales), nn.ReLU()]
        current = n
    units.append(mixed(ScaleSteerableProject2d(current, layout, kernel_size, scales, copies=ranks,
                                               scalar_power=scalar_power, **kernel), 1))
    return nn.Sequential(*units)
