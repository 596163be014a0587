"""Networks for 4x super-resolution of 3D velocity fields (Wang, Walters & Smidt, "Relaxed Octahedral Group
Convolution for Learning Symmetry Breaking in 3D Physical Systems", arXiv 2310.02299; the slides' table compares
Trilinear, Conv, Equiv and R-Equiv).

Every learned model maps a low-resolution velocity ``v (B, 3, d, h, w)`` (a vector field, components ``(x, y, z)``)
to ``(B, 3, f d, f h, f w)`` as a correction of periodic trilinear interpolation,

    SR(v) = up_f(v) + P_2(up(B_K(... up(B_1(lift(v)))))),                                                  (S1)

with one code path for all three kinds; only the layers differ:

* ``conv``: plain ``Conv3d`` layers of ``width`` channels (lift ``3 -> width``, projection ``width -> 3``);
* ``equiv``: the octahedral group convolutions of :mod:`symbench.layers.octahedral_conv` over ``group`` (``"Oh"`` by
  default, the slides' group): a vector lift ``Z^3 -> G``, strict ``G -> G`` blocks, and the vector projection
  ``G -> Z^3``, so ``SR(T_g v) = T_g SR(v)`` exactly for all 48 elements (periodic padding keeps it exact on the
  torus; :func:`periodic_trilinear` commutes with axis flips and permutations);
* ``r_equiv``: the same with the blocks replaced by relaxed group convolutions (ICML 2022 eq. 4-5; the slides'
  ``[f * Psi](g) = sum_h f(h) sum_{l=1}^L w_l(h) psi_l(g^-1 h)``) with ``L = banks`` filter banks, tied at init, so
  the network starts exactly equivariant and can learn to break the symmetry where the data do. ``L >= 2`` in every
  preset (default 2, the ICML 2022 reference's ``num_banks``; its Table 3 tunes 1 .. 4): with ``L = 1``,
  ``Psi(g, h) = w(h) psi(g^-1 h)`` is a strict group convolution of the input scaled by a gain per orientation
  ``h``, so every output orientation sees the same filter and R-Equiv can do little that Equiv cannot; with
  ``L >= 2`` the orientations mix ``L`` filters in proportions that vary with ``h``. With ``w_l(h) = a_l`` for all
  ``h`` the block is exactly the strict one with kernel ``sum_l a_l psi_l``.

``B_i`` are residual blocks ``h + conv(act(h))`` at resolution level ``i`` (``layers[i]`` of them; level ``i`` is
``2^i`` times the input resolution); after the last level the features are upsampled trilinearly (periodic) to half
the output resolution, and ``P_2``, a stride-2 transposed convolution (kernel 4), doubles the grid while projecting
to the velocity (:func:`~symbench.layers.octahedral_conv.upsample_conv3d`; the finest grid holds only the 3 output
channels, which keeps the group models' cost at the output resolution low). The projection is zero at init, so every model starts as ``up_f`` (the Trilinear
baseline). ``conv``'s width is chosen so that its parameter count is the closest to ``equiv``'s
(:func:`matched_width`); ``r_equiv`` keeps ``equiv``'s fields (as the reference's relaxed networks keep the hidden
width) and adds ``L - 1`` kernel copies and ``L |G|`` relaxation weights per block: about ``L`` times Equiv's
parameters (no whole number of regular fields matches them; each run's row records its count).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from symbench.fields import FieldLayout
from symbench.layers.octahedral_conv import (
    OctahedralGroupConv3d,
    OctahedralLift3d,
    OctahedralProject3d,
    RelaxedOctahedralGroupConv3d,
    upsample_conv3d,
)
from symbench.models.budget import fit_sizes, n_params

SRKind = Literal["trilinear", "conv", "equiv", "r_equiv"]
KINDS: tuple[str, ...] = ("trilinear", "conv", "equiv", "r_equiv")
LABELS = {"trilinear": "Trilinear", "conv": "Conv", "equiv": "Equiv", "r_equiv": "R-Equiv"}
VELOCITY = FieldLayout.of("velocity:vector", ndim=3)


def periodic_trilinear(x: Tensor, factor: int) -> Tensor:
    """Trilinear interpolation of cell-centred periodic fields ``(B, C, d, h, w) -> (B, C, f d, f h, f w)``: one
    cell of circular padding, ``F.interpolate(align_corners=False)``, crop. Inverts the block mean of
    :func:`datamodules.turb3d.coarsen` on linear fields and commutes with the octahedral grid actions."""
    if factor == 1:
        return x
    padded = F.pad(x, (1,) * 6, mode="circular")
    up = F.interpolate(padded, scale_factor=factor, mode="trilinear", align_corners=False)
    return up[..., factor:-factor, factor:-factor, factor:-factor]


class Trilinear(nn.Module):
    """The baseline without parameters: :func:`periodic_trilinear`."""

    def __init__(self, factor: int = 4) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: Tensor) -> Tensor:
        return periodic_trilinear(x, self.factor)


@dataclass(frozen=True)
class SRArch:
    """Sizes of the learned models (presets change these, never the code path).

    ``fields``: regular fields per element of the group networks (``fields * |G|`` channels); ``layers``: residual
    blocks per resolution level (level 0 = input resolution, level ``i`` = ``2^i`` times it); ``banks``: filter banks
    ``L`` of ``r_equiv`` (module docstring: ``L = 1`` reduces it to a gain per orientation on Equiv)."""

    fields: int = 2
    layers: tuple[int, ...] = (2,)
    kernel_size: int = 3
    group: str = "Oh"
    banks: int = 2
    factor: int = 4

    def __post_init__(self) -> None:
        levels = len(self.layers)
        if self.fields < 1 or not self.layers or min(self.layers) < 0 or self.banks < 1:
            raise ValueError(f"need fields >= 1, banks >= 1 and a non-empty list of block counts, got {self}")
        if self.factor % 2 ** levels:
            raise ValueError(f"{levels} resolution levels and the final stride-2 projection need a factor divisible "
                             f"by {2 ** levels}, got factor {self.factor}")


class SRNet(nn.Module):
    """(S1) with given lift, blocks per level and projection; ``regularization_loss`` sums the relaxed blocks'
    penalties (zero for the other kinds)."""

    def __init__(self, factor: int, lift: nn.Module, levels: list[nn.ModuleList], project: nn.Module) -> None:
        super().__init__()
        self.factor, self.lift, self.levels, self.project = factor, lift, nn.ModuleList(levels), project

    def features(self, x: Tensor) -> Tensor:
        h = self.lift(x)
        for i, blocks in enumerate(self.levels):
            if i:
                h = periodic_trilinear(h, 2)
            for block in blocks:
                h = h + block(F.gelu(h))
        return periodic_trilinear(F.gelu(h), self.factor // 2 ** len(self.levels))

    def forward(self, x: Tensor) -> Tensor:
        return periodic_trilinear(x, self.factor) + self.project(self.features(x))

    def relaxed_layers(self) -> list[RelaxedOctahedralGroupConv3d]:
        return [m for m in self.modules() if isinstance(m, RelaxedOctahedralGroupConv3d)]

    def relaxation_weights(self) -> Tensor:
        """All relaxed blocks' ``w (L, |G|)`` stacked along ``L`` (empty for strict models)."""
        layers = self.relaxed_layers()
        return torch.cat([m.relaxed_weights for m in layers]) if layers else torch.empty(0)

    def regularization_loss(self) -> Tensor:
        layers = self.relaxed_layers()
        if not layers:
            return self.project.weight.new_zeros(())
        return torch.stack([m.regularization_loss() for m in layers]).sum()


class UpConv3d(nn.Module):
    """Plain stride-2 transposed convolution (kernel 4, :func:`upsample_conv3d`), ``C_in -> C_out``, no bias."""

    def __init__(self, in_channels: int, out_channels: int, padding_mode: str = "circular") -> None:
        super().__init__()
        self.padding_mode = padding_mode
        self.weight = nn.Parameter(torch.empty(in_channels, out_channels, 4, 4, 4))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x: Tensor) -> Tensor:
        return upsample_conv3d(x, self.weight, self.padding_mode)


def _plain(arch: SRArch, width: int) -> SRNet:
    k = arch.kernel_size

    def conv(c_in: int, c_out: int, bias: bool = True) -> nn.Conv3d:
        return nn.Conv3d(c_in, c_out, k, padding=k // 2, padding_mode="circular", bias=bias)

    levels = [nn.ModuleList(conv(width, width) for _ in range(n)) for n in arch.layers]
    return SRNet(arch.factor, conv(3, width, bias=False), levels, UpConv3d(width, 3))


def _group(arch: SRArch, relaxed: bool) -> SRNet:
    k, c, g = arch.kernel_size, arch.fields, arch.group

    def block() -> nn.Module:
        if relaxed:
            return RelaxedOctahedralGroupConv3d(c, c, k, g, banks=arch.banks, padding_mode="circular", bias=True)
        return OctahedralGroupConv3d(c, c, k, g, padding_mode="circular", bias=True)

    levels = [nn.ModuleList(block() for _ in range(n)) for n in arch.layers]
    return SRNet(arch.factor, OctahedralLift3d(VELOCITY, c, k, g, padding_mode="circular"), levels,
                 OctahedralProject3d(c, VELOCITY, 4, g, padding_mode="circular", upsample=True))




def matched_width(arch: SRArch) -> int:
    """The ``conv`` width whose parameter count is closest to ``equiv``'s (:func:`~symbench.models.budget.fit_sizes`
    with one size; the count, ``k^3 (W^2 n_blocks + 3 W) + 3 * 4^3 W + W n_blocks``, grows with ``W``)."""
    target = n_params(_group(arch, relaxed=False))
    return fit_sizes(1, lambda w: n_params(_plain(arch, w[0])), target)[0]


def build_sr(kind: str, arch: SRArch) -> nn.Module:
    """A model of ``kind`` (:data:`KINDS`) with the sizes of ``arch``; the projection starts at zero."""
    if kind not in KINDS:
        raise ValueError(f"unknown super-resolution model {kind!r}; choose one of {', '.join(KINDS)}")
    if kind == "trilinear":
        return Trilinear(arch.factor)
    model = _plain(arch, matched_width(arch)) if kind == "conv" else _group(arch, relaxed=kind == "r_equiv")
    nn.init.zeros_(model.project.weight)
    return model
