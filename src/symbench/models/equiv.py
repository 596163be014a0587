"""Equiv: the strictly equivariant baseline of the ICML 2022 smoke benchmarks (Wang, Walters & Yu, sec. 5,
"Equiv: the same as ConvNet for translation; E2CNN for rotation and SESN for scaling"), built from the layer families
of :mod:`.smoke_families` and sized to the ConvNet budget with :func:`~symbench.models.budget.fit_sizes`.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from symbench.fields import FieldLayout
from symbench.layers import check_history, stack_frames
from symbench.layers.pixel_mixing import GridSize
from symbench.models.conv_net import ConvNet, check_smoke_args, check_symmetry, conv_budget
from symbench.layers.scale_steerable import DEFAULT_SCALES
from symbench.models.budget import fit_sizes
from symbench.models.smoke_families import (
    DEFAULT_GROUP_ORDER,
    equivariant_stack,
    layer_family,
    stack_parameters,
)


class Equiv(nn.Module):
    """Strictly equivariant forecaster ``(B, T_in, C, H, W) -> (B, C, H, W)`` (ICML 2022 sec. 5, "Equiv").

    * ``translation``: :class:`~symbench.models.conv_net.ConvNet` itself.
    * ``rotation``: a ``C_N`` steerable CNN (escnn): history as vector / trivial fields, ``layers - 1`` units of
      ``R2Conv -> InnerBatchNorm -> ReLU`` on regular fields, an ``R2Conv`` head to the layout's fields.
    * ``scaling`` (SESN, the ICML 2022 reference's scaling "Equiv"): ``ScaleLift``, ``layers - 1`` units of
      ``ScaleSteerableConv2d -> ScaleBatchNorm2d -> ReLU``, ``ScaleSteerableProject2d`` (average over the levels):
      eq. 6 per level on SESN's Hermite-Gaussian basis at ``scales`` (default 1, 1.5, 2, 2.5 px), ``kernel_size``
      the effective size (5 x 5 kernels for 3), as in :class:`~symbench.models.sesn.SESN` (which lifts with one
      fused layer instead of the copy; the same map).
    * ``magnitude`` (the heat benchmark's Equ-Mag CNN, ICLR 2021 appendix C): ``layers - 1`` units of
      ``MagnitudeConv2d -> ReLU`` and a ``MagnitudeConv2d`` head; ``f(a x) = a f(x)`` for ``a >= 0``.

    Hidden sizes are fitted to ``conv_budget`` (:func:`fit_sizes`); ``grid_size`` is accepted for the common
    interface (the network is convolutional and runs on any grid).
    """

    def __init__(self, in_frames: int, layout: FieldLayout, *, symmetry: str = "rotation", width: int = 64,
                 layers: int = 5, kernel_size: int = 3, grid_size: GridSize = 64,
                 group_order: int = DEFAULT_GROUP_ORDER,
                 scales: Sequence[float] = DEFAULT_SCALES, scalar_power: float = 0.0) -> None:
        super().__init__()
        check_symmetry("Equiv", symmetry, extra=("magnitude",))
        check_smoke_args("Equiv", in_frames, width, layers)
        self.in_frames, self.layout, self.symmetry = in_frames, layout, symmetry
        if symmetry == "translation":
            self.sizes = (width,) * (layers - 1)
            self.net: nn.Module = ConvNet(in_frames, layout, width=width, layers=layers, kernel_size=kernel_size)
            return
        family = layer_family(symmetry, kernel_size, group_order, scales, scalar_power)
        in_type = family.history_type(layout, in_frames)
        target = conv_budget(in_frames, layout, width, layers, kernel_size)
        self.sizes = fit_sizes(layers - 1, lambda s: stack_parameters(family, in_type, s, layout), target)
        self.net = nn.Sequential(family.lift(layout, in_frames), equivariant_stack(family, in_type, self.sizes, layout))

    def forward(self, x: Tensor) -> Tensor:
        check_history(x, self.in_frames, self.layout.channels, "Equiv")
        if isinstance(self.net, ConvNet):
            return self.net(x)
        return self.net(stack_frames(x))

    def extra_repr(self) -> str:
        return f"in_frames={self.in_frames}, fields={self.layout}, symmetry={self.symmetry!r}, sizes={self.sizes}"
