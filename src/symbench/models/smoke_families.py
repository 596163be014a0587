"""Per-symmetry layer families and parameter-budget fitting for the ICML 2022 smoke models (Wang, Walters & Yu,
sec. 5): the equivariant layers that :mod:`.equiv`, :mod:`.rpp`, :mod:`.combo`, :mod:`.lift` and :mod:`.clcnn` build
on, and the hidden-size fit that matches every smoke model to the ConvNet budget.

A layer family is the equivariant convolution, normalisation, input lifting and output layer of one symmetry,
acting on hidden features of ``n`` *units* each, with parameter counts computed without building anything:

* ``translation`` (:class:`ConvFamily`): a unit is a channel; ``Conv2d``, ``BatchNorm2d``.
* ``rotation`` (:class:`SteerableFamily`): a unit is a regular field of ``C_N`` (``N`` channels); escnn ``R2Conv``
  solving ``K(g p) = rho_out(g) K(p) rho_in(g)^-1`` (eq. 3 of the paper), ``InnerBatchNorm``; the history enters as
  one ``irrep(1)`` field per vector and frame and one trivial field per scalar and frame, the output has the
  layout's fields. Exact for 90 degree turns of a square grid when ``N`` is a multiple of 4.
* ``scaling`` (:class:`ScaleFamily`): a unit is a channel at each of ``S`` kernel scales; SESN's scale-steerable
  correlation (:mod:`symbench.layers.scale_steerable`, the layers of the SESN model: Hermite-Gaussian basis at the
  growing widths 1, 1.5, 2, 2.5 px, 5 x 5 kernels for an effective 3 x 3), after the lift of
  :class:`~symbench.layers.scale_conv.ScaleLift` and with the level-shared ``ScaleBatchNorm2d``, as in the ICML 2022
  reference's scaling models. Equivariant for the zooms ``sigma_s / sigma_0`` up to the grid (interior pixels).
* ``magnitude`` (:class:`MagnitudeFamily`, for the heat benchmark's shallow Equ-CNN): a unit is a channel; the
  MinMax-scaled convolution of ICLR 2021 eq. 4 (:class:`~symbench.layers.magnitude.MagnitudeConv2d`) and no
  normalisation (a batch norm would make the layer scale-invariant, not equivariant); with ReLU, positively
  homogeneous: ``f(a x) = a f(x)`` for ``a >= 0``, exactly.

Every smoke model sizes its hidden units with :func:`~symbench.models.budget.fit_sizes` so that its parameter count is the ConvNet budget
(:func:`~symbench.models.conv_net.conv_budget`) at the same width, within 10 %.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import Tensor, nn

from symbench.fields import FieldLayout
from symbench.layers import same_padding
from symbench.layers.conv import check_padding_mode
from symbench.layers.escnn_blocks import RotationFields, TypeBlocks, layout_blocks, regular
from symbench.layers.magnitude import MagnitudeConv2d
from symbench.layers.scale_conv import ScaleBatchNorm2d, ScaleLift, cat_levels
from symbench.layers.scale_steerable import (
    DEFAULT_SCALES,
    ScaleSteerableConv2d,
    ScaleSteerableProject2d,
    check_scales,
    relative_scales,
    support_size,
)

DEFAULT_GROUP_ORDER = 4
FeatureType = Union[int, TypeBlocks]  # channels (translation), channels per level (scaling) or escnn fields


class ConvFamily:
    """Translation: plain convolutions (a unit is one channel)."""

    symmetry = "translation"

    def __init__(self, kernel_size: int) -> None:
        same_padding(kernel_size)
        self.kernel_size = kernel_size

    def history_type(self, layout: FieldLayout, frames: int, extra_scalars: int = 0) -> int:
        return frames * layout.channels + extra_scalars

    def hidden_type(self, n: int) -> int:
        return n

    def channels(self, t: FeatureType) -> int:
        return int(t)  # type: ignore[arg-type]

    def lift(self, layout: FieldLayout, frames: int) -> nn.Module:
        return nn.Identity()

    def conv(self, a: FeatureType, b: FeatureType, bias: bool = False) -> nn.Module:
        k = self.kernel_size
        return nn.Conv2d(int(a), int(b), k, padding=same_padding(k), bias=bias)  # type: ignore[arg-type]

    def conv_parameters(self, a: FeatureType, b: FeatureType, bias: bool = False) -> int:
        return int(a) * int(b) * self.kernel_size**2 + (int(b) if bias else 0)  # type: ignore[arg-type]

    def norm(self, n: int) -> nn.Module:
        return nn.BatchNorm2d(n)

    def norm_parameters(self, n: int) -> int:
        return 2 * n

    def head(self, a: FeatureType, layout: FieldLayout) -> nn.Module:
        return self.conv(a, layout.channels, bias=True)

    def head_parameters(self, a: FeatureType, layout: FieldLayout) -> int:
        return self.conv_parameters(a, layout.channels, bias=True)


class SteerableFamily:
    """Rotation: escnn steerable convolutions of ``C_N`` (a unit is one regular field of ``N`` channels)."""

    symmetry = "rotation"

    def __init__(self, kernel_size: int, group_order: int = DEFAULT_GROUP_ORDER) -> None:
        same_padding(kernel_size)
        self.kernel_size = kernel_size
        self.rot = RotationFields(group_order)
        self.group_order = group_order

    def history_type(self, layout: FieldLayout, frames: int, extra_scalars: int = 0) -> TypeBlocks:
        """One ``irrep(1)`` field per vector and frame, one trivial field per scalar and frame (frame-major), then
        ``extra_scalars`` trivial fields."""
        extra: TypeBlocks = (("scalar", extra_scalars),) if extra_scalars else ()
        return layout_blocks(layout, frames) + extra

    def hidden_type(self, n: int) -> TypeBlocks:
        return regular(n)

    def channels(self, t: FeatureType) -> int:
        return self.rot.channels(t)  # type: ignore[arg-type]

    def lift(self, layout: FieldLayout, frames: int) -> nn.Module:
        return nn.Identity()

    def conv(self, a: FeatureType, b: FeatureType, bias: bool = False) -> nn.Module:
        return self.rot.conv(a, b, self.kernel_size, bias=bias)  # type: ignore[arg-type]

    def conv_parameters(self, a: FeatureType, b: FeatureType, bias: bool = False) -> int:
        return self.rot.conv_parameters(a, b, self.kernel_size, bias=bias)  # type: ignore[arg-type]

    def norm(self, n: int) -> nn.Module:
        return self.rot.batch_norm(n)

    def norm_parameters(self, n: int) -> int:
        return 2 * n

    def head(self, a: FeatureType, layout: FieldLayout) -> nn.Module:
        return self.conv(a, layout_blocks(layout), bias=True)

    def head_parameters(self, a: FeatureType, layout: FieldLayout) -> int:
        return self.conv_parameters(a, layout_blocks(layout), bias=True)


class ScaleFamily:
    """Scaling: SESN's scale-steerable correlation over the growing scales ``scales`` (a unit is one channel per
    level): the history copied to every level with the lifting factors (:class:`ScaleLift`), level-wise
    :class:`~symbench.layers.scale_steerable.ScaleSteerableConv2d` (eq. 6 per level,
    ``K_s = sum_l w_l psi_{sigma_s, l}`` on the Hermite-Gaussian basis), the level-shared
    :class:`ScaleBatchNorm2d` and the fused output layer
    :class:`~symbench.layers.scale_steerable.ScaleSteerableProject2d`; bias-free throughout.

    ``kernel_size`` is SESN's effective size ``e`` (``e^2`` basis functions: the parameters of an ``e x e``
    convolution, so the budget is the ConvNet's at the same kernel size); the kernels live on the larger
    :func:`~symbench.layers.scale_steerable.support_size` grid (5 x 5 for ``e = 3``)."""

    symmetry = "scaling"

    def __init__(self, kernel_size: int, scales: Sequence[float] = DEFAULT_SCALES, scalar_power: float = 0.0,
                 padding_mode: str = "zeros") -> None:
        same_padding(kernel_size)
        check_padding_mode(padding_mode)
        self.kernel_size = kernel_size
        self.support = support_size(kernel_size)
        self.scales = check_scales(scales)
        self.n_scales = len(self.scales)
        self.scalar_power, self.padding_mode = scalar_power, padding_mode

    def history_type(self, layout: FieldLayout, frames: int, extra_scalars: int = 0) -> int:
        return frames * layout.channels + extra_scalars

    def hidden_type(self, n: int) -> int:
        return n

    def channels(self, t: FeatureType) -> int:
        return self.n_scales * int(t)  # type: ignore[arg-type]

    def lift(self, layout: FieldLayout, frames: int) -> nn.Module:
        """The history copied to every level with the factors ``(sigma_s / sigma_0)^e`` (:class:`ScaleLift`)."""
        return ScaleLift(layout, frames, relative_scales(self.scales), self.scalar_power)

    def conv(self, a: FeatureType, b: FeatureType, bias: bool = False) -> nn.Module:
        return ScaleSteerableConv2d(int(a), int(b), self.support, self.scales,  # type: ignore[arg-type]
                                    effective_size=self.kernel_size, padding_mode=self.padding_mode)

    def conv_parameters(self, a: FeatureType, b: FeatureType, bias: bool = False) -> int:
        return int(a) * int(b) * self.kernel_size**2  # type: ignore[arg-type]

    def norm(self, n: int) -> nn.Module:
        return ScaleBatchNorm2d(n, self.n_scales)

    def norm_parameters(self, n: int) -> int:
        return n

    def head(self, a: FeatureType, layout: FieldLayout) -> nn.Module:
        return ScaleSteerableProject2d(int(a), layout, self.support, self.scales,  # type: ignore[arg-type]
                                       scalar_power=self.scalar_power, effective_size=self.kernel_size,
                                       padding_mode=self.padding_mode)

    def head_parameters(self, a: FeatureType, layout: FieldLayout) -> int:
        return int(a) * layout.channels * self.kernel_size**2  # type: ignore[arg-type]


class MagnitudeFamily(ConvFamily):
    """Magnitude: eq. 4 convolutions (a unit is one channel), no normalisation; every conv has its scaled bias."""

    symmetry = "magnitude"

    def conv(self, a: FeatureType, b: FeatureType, bias: bool = False) -> nn.Module:
        return MagnitudeConv2d(int(a), int(b), self.kernel_size)  # type: ignore[arg-type]

    def conv_parameters(self, a: FeatureType, b: FeatureType, bias: bool = False) -> int:
        return super().conv_parameters(a, b, bias=True)

    def norm(self, n: int) -> nn.Module:
        return nn.Identity()

    def norm_parameters(self, n: int) -> int:
        return 0


LayerFamily = Union[ConvFamily, SteerableFamily, ScaleFamily, MagnitudeFamily]


def append_invariant(x: Tensor, context: Tensor, n_scales: int | None = None) -> Tensor:
    """Append invariant maps ``context (B, d, H, W)`` to the features ``x``: as ``d`` channels (translation) or
    trivial fields (escnn), or, with ``n_scales``, tiled unscaled over the levels after each level's channels."""
    if n_scales is None:
        return torch.cat([x, context], dim=1)
    return cat_levels([x, copy_to_levels(context, n_scales)], n_scales)


def copy_to_levels(x: Tensor, n_scales: int) -> Tensor:
    """``(B, C, H, W) -> (B, S * C, H, W)``, level-major: the same (invariant) features on every level."""
    return x.repeat(1, n_scales, 1, 1)


def layer_family(symmetry: str, kernel_size: int, group_order: int = DEFAULT_GROUP_ORDER,
                 scales: Sequence[float] = DEFAULT_SCALES, scalar_power: float = 0.0) -> LayerFamily:
    """The equivariant layers of ``symmetry`` (``translation``, ``rotation``, ``scaling`` or ``magnitude``)."""
    if symmetry == "translation":
        return ConvFamily(kernel_size)
    if symmetry == "magnitude":
        return MagnitudeFamily(kernel_size)
    if symmetry == "rotation":
        return SteerableFamily(kernel_size, group_order)
    if symmetry == "scaling":
        return ScaleFamily(kernel_size, scales, scalar_power)
    raise ValueError(f"unknown symmetry {symmetry!r}; choose one of translation, rotation, scaling, magnitude")


def stack_parameters(family: LayerFamily, in_type: FeatureType, sizes: tuple[int, ...], layout: FieldLayout) -> int:
    """Parameters of :func:`equivariant_stack`: bias-free convs and norms on every hidden layer, then the head."""
    total, current = 0, in_type
    for n in sizes:
        hidden = family.hidden_type(n)
        total += family.conv_parameters(current, hidden) + family.norm_parameters(n)
        current = hidden
    return total + family.head_parameters(current, layout)


def equivariant_stack(family: LayerFamily, in_type: FeatureType, sizes: tuple[int, ...],
                      layout: FieldLayout) -> nn.Sequential:
    """``[conv -> norm -> ReLU]`` per hidden size, then the head to the layout's fields. ReLU is pointwise, so it
    commutes with the channel permutations of regular fields and with the level structure."""
    units: list[nn.Module] = []
    current = in_type
    for n in sizes:
        hidden = family.hidden_type(n)
        units += [family.conv(current, hidden), family.norm(n), nn.ReLU()]
        current = hidden
    units.append(family.head(current, layout))
    return nn.Sequential(*units)
