"""SESN and RSteer (scaling): the scale-steerable CNN the ICML 2022 smoke benchmarks use as "Equiv" for scaling
(Sosnovik, Szmaja & Smeulders, ICLR 2020; Wang, Walters & Yu, ICML 2022 sec. 5) and its relaxation (sec. 3.2,
eq. 7, penalty sec. 3.3), built from :mod:`symbench.layers.scale_steerable`.

The ConvNet of :mod:`.conv_net` (``layers - 1`` units of ``conv -> BN -> ReLU`` then a conv) on level-major
features: the history is lifted to every level (:class:`~symbench.layers.scale_conv.ScaleLift`, factors
``sigma^e``), every hidden convolution is a :class:`~symbench.layers.scale_steerable.ScaleSteerableConv2d` over the
levels ``1, 1/r, ..., r^-(n_scales - 1)`` followed by the bias-free level-shared
:class:`~symbench.layers.scale_conv.ScaleBatchNorm2d` and ReLU, and the output layer is the scale-steerable
correlation fused with the level average. Kernels are ``K_s = sum_l w_l psi_{sigma_s, l}`` with ``L = k^2``
Hermite-Gaussian functions on a ``(k + 2) x (k + 2)`` support (SESN; strict) or ``sum_l w_l(y) psi_{sigma_s, l}(y)``
(RSteer; ``w_l(y)`` on ``k x k`` nodes, equal at init, so the relaxed network starts as the strict one).

Parameter budget: the hidden channel counts (per level) are fitted with
:func:`~symbench.models.budget.fit_sizes` so that the trainable parameters are within a few % of
:func:`~symbench.models.conv_net.conv_budget` at the same ``width``. A strict layer has the parameters of a
``k x k`` convolution, so SESN keeps about ConvNet's widths; RSteer pays ``k^2`` weights per basis function and
channel pair and gets about ``1 / k`` of them.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from symbench.fields import FieldLayout
from symbench.layers import check_history, stack_frames
from symbench.layers.conv import check_padding_mode, same_padding
from symbench.layers.pixel_mixing import GridSize
from symbench.layers.scale_conv import ScaleBatchNorm2d, ScaleLift, scale_levels
from symbench.layers.scale_steerable import PixelMixedScaleConv2d, ScaleSteerableConv2d, ScaleSteerableProject2d
from symbench.models.conv_net import check_smoke_args, conv_budget
from symbench.models.equ_scale import N_SCALES, SCALE_RATIO
from symbench.models.rgroup import default_relax_grid
from symbench.models.budget import fit_sizes, n_params


class ScaleSteerableNet(nn.Module):
    """Next-frame forecaster ``(B, T_in, C, H, W) -> (B, C, H, W)`` of scale-steerable convolutions (the shared
    body of :class:`SESN`, :class:`RSteerScale` and :class:`~symbench.models.rsteer_ts.RSteerTS`).

    ``symmetry`` must be ``scaling``. ``relaxed`` picks eq. 7 over the strict eq. 6; ``ranks > 1`` adds the
    relaxed translation part of eq. 8-9 on the ``grid_size`` grid (one side or ``(H, W)``; ``relax_grid`` cells).
    ``n_scales``, ``scale_ratio`` and ``scalar_power`` are those of
    :class:`~symbench.models.equ_scale.EquScaleResNet`; ``support`` and ``weight_grid`` those of
    :class:`~symbench.layers.scale_steerable.ScaleSteerableConv2d`; ``hidden`` overrides the fitted channel counts.
    """

    model_name = "ScaleSteerableNet"

    def __init__(self, in_frames: int, layout: FieldLayout, *, symmetry: str = "scaling", width: int = 64,
                 layers: int = 5, kernel_size: int = 3, grid_size: GridSize = 64, n_scales: int = N_SCALES,
                 scale_ratio: float = SCALE_RATIO, scalar_power: float = 0.0, support: int | None = None,
                 weight_grid: int | None = None, padding_mode: str = "zeros", relaxed: bool = False,
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
        self.scales = scale_levels(n_scales, scale_ratio)
        self.budget = conv_budget(in_frames, layout, width, layers, kernel_size)
        if ranks > 1 and relax_grid is None:
            relax_grid = default_relax_grid(grid_size, ranks, layers, self.budget)
        self.relax_grid = relax_grid
        self._options: dict[str, Any] = dict(
            in_frames=in_frames, layout=layout, kernel_size=kernel_size, scales=self.scales,
            scalar_power=scalar_power, relaxed=relaxed, support=support, weight_grid=weight_grid,
            padding_mode=padding_mode, ranks=ranks, grid_size=grid_size, relax_grid=relax_grid)
        if hidden is None:
            hidden = fit_sizes(layers - 1, self._count, self.budget)
        if len(hidden) != layers - 1 or min(hidden) < 1:
            raise ValueError(f"hidden must hold layers - 1 = {layers - 1} positive counts, got {tuple(hidden)}")
        self.hidden = tuple(int(h) for h in hidden)
        self.lift, self.body = _build(self.hidden, **self._options)

    def _count(self, hidden: tuple[int, ...]) -> int:
        """Trainable parameters with these hidden counts (built on the meta device: no memory)."""
        with torch.device("meta"):
            return sum(n_params(m) for m in _build(hidden, **self._options))

    def forward(self, x: Tensor) -> Tensor:
        check_history(x, self.in_frames, self.layout.channels, self.model_name)
        return self.body(self.lift(stack_frames(x)))

    def regularization_loss(self) -> Tensor:
        """Sum of every layer's penalty: TV of ``w_l(y)`` (relaxed) and of ``a_r(x)`` (``ranks > 1``)."""
        terms = [m.regularization_loss() for m in self.body if hasattr(m, "regularization_loss")]
        return torch.stack(terms).sum()

    def extra_repr(self) -> str:
        return (f"in_frames={self.in_frames}, fields={self.layout}, relaxed={self.relaxed}, ranks={self.ranks}, "
                f"relax_grid={self.relax_grid}, hidden={self.hidden}")


class SESN(ScaleSteerableNet):
    """The strict scale-steerable CNN (eq. 6 per level); ``relaxed=True`` is :class:`RSteerScale`."""

    model_name = "SESN"


class RSteerScale(ScaleSteerableNet):
    """RSteer for scaling: the relaxed scale-steerable CNN (eq. 7), ``w_l(y)`` equal over ``y`` at init."""

    model_name = "RSteerScale"

    def __init__(self, in_frames: int, layout: FieldLayout, **options: Any) -> None:
        super().__init__(in_frames, layout, **{"relaxed": True, **options})


def _build(hidden: tuple[int, ...], *, in_frames: int, layout: FieldLayout, kernel_size: int,
           scales: tuple[float, ...], scalar_power: float, relaxed: bool, support: int | None,
           weight_grid: int | None, padding_mode: str, ranks: int, grid_size: GridSize,
           relax_grid: GridSize | None) -> tuple[nn.Module, nn.Sequential]:
    """The lift and ``[conv -> ScaleBatchNorm2d -> ReLU] * len(hidden) + output layer``; with ``ranks > 1`` every
    convolution computes ``ranks`` kernels mixed pixel by pixel."""
    kernel = dict(relaxed=relaxed, support=support, weight_grid=weight_grid, padding_mode=padding_mode)
    n_scales = len(scales)

    def mixed(conv: ScaleSteerableConv2d, levels: int) -> nn.Module:
        return conv if ranks == 1 else PixelMixedScaleConv2d(conv, levels, ranks, grid_size, relax_grid)

    units: list[nn.Module] = []
    current = in_frames * layout.channels
    for n in hidden:
        units += [mixed(ScaleSteerableConv2d(current, ranks * n, kernel_size, scales, **kernel), n_scales),
                  ScaleBatchNorm2d(n, n_scales), nn.ReLU()]
        current = n
    units.append(mixed(ScaleSteerableProject2d(current, layout, kernel_size, scales, copies=ranks,
                                               scalar_power=scalar_power, **kernel), 1))
    return ScaleLift(layout, in_frames, scales, scalar_power), nn.Sequential(*units)
