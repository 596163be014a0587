"""RSteerTS: relaxed translation x relaxed scale steerable convolutions, the scaling counterpart of RSteerTR in the
ICML 2022 smoke benchmarks (Wang, Walters & Yu, sec. 3.2, eq. 8-9, penalty sec. 3.3).

The weights of eq. 7 also depend on the output position through the low-rank factorisation
``w_l(x, y) = sum_r a_r(x) b_{r,l}(y)``. Since a correlation is linear in its kernel, a layer computes the ``R``
relaxed scale-steerable kernels ``K_{r,s}(y) = sum_l b_{r,l}(y) psi_{sigma_s, l}(y)`` (one ``b_{r,l}(y)`` per kernel
tap, eq. 7) as one grouped convolution
with ``R`` times the output channels and mixes them pixel by pixel, ``y_s(x) = sum_r a_r(x) (K_{r,s} * f_s)(x)``,
with ``a_r`` shared by the levels (:class:`~symbench.layers.scale_steerable.PixelMixedScaleConv2d`). ``a_r`` starts
equal (``1 / sqrt(R)``) and ``b_{r,l}`` constant over ``y``: the network then commutes with translations (circular
padding) and is the SESN network with kernels ``sum_r a_r b_r``. The penalty sums, over the layers, the total
variation of ``b`` over the kernel taps and of ``a_r`` over the grid cells (Rose-STL-Lab/Approximately-Equivariant-Nets
left the latter out). Otherwise the network is :class:`~symbench.models.sesn.RSteerScale` (lift, ``layers - 1``
units of ``conv -> ScaleBatchNorm2d -> ReLU``, level-averaging output layer), sized to the ConvNet budget with the
``a_r`` counted; by default they live on the finest ``relax_grid`` (a divisor of ``grid_size``) at which they take
at most half of it (:func:`~symbench.models.rgroup.default_relax_grid`).
"""

from __future__ import annotations

from typing import Any

from symbench.fields import FieldLayout
from symbench.models.sesn import ScaleSteerableNet


class RSteerTS(ScaleSteerableNet):
    """RSteerTS forecaster ``(B, T_in, C, H, W) -> (B, C, H, W)`` on the ``grid_size`` grid (one side or
    ``(H, W)``): relaxed scale steerable convolutions with ``ranks`` (``R`` of eq. 9, default 2) kernels mixed per
    pixel; every other option as :class:`~symbench.models.sesn.ScaleSteerableNet`."""

    model_name = "RSteerTS"

    def __init__(self, in_frames: int, layout: FieldLayout, *, ranks: int = 2, **options: Any) -> None:
        super().__init__(in_frames, layout, **{"relaxed": True, **options, "ranks": ranks})
