"""Group-equivariant CNN classifiers for rotated digits (ICML 2024 workshop, "When is a task a good candidate for an
equivariant network?", sec. 4.2; steerable CNNs of Weiler & Cesa 2019 / escnn).

One architecture for every subgroup G of O(2) in :data:`GROUPS`: six blocks of (G-steerable convolution, batch norm,
ELU), a 2x2-stride average pooling after blocks 2 and 4, then a global spatial average and a linear classifier.

* Finite G (``{e}``, C4, D4, C8, D8): hidden features are regular fields (|G| channels permuted by G), batch norm is
  shared within each field (``InnerBatchNorm``) and ELU acts pointwise, which commutes with the permutations.
  ``{e}`` is an ordinary CNN.
* Continuous G (SO(2), O(2)): hidden features are band-limited regular fields, the irreps of frequency <= L. ELU is
  applied on a grid of ``grid`` group elements (inverse Fourier transform, ELU, Fourier transform:
  ``FourierELU``), which is exactly equivariant to the grid's elements (all multiples of 2 pi / grid, hence every
  90-degree rotation for grid % 4 == 0) and approximately to the rest; batch norm is ``IIDBatchNorm2d``.
* The sixth block maps to invariant (trivial) fields, so spatial averaging yields G-invariant features and the
  class scores are invariant: f(g.x) = f(x) for g in G acting on the 29x29 grid by exact permutations (90-degree
  rotations and flips about the centre pixel). The pooling windows (3x3, stride 2, padding 1) on the odd grids
  29 -> 15 -> 8 are placed symmetrically about the centre, so the pooling commutes with those permutations.

The widths of the groups' networks are chosen so their parameter counts are about equal (:func:`matched_fields`).
"""

from __future__ import annotations

import functools

from escnn import gspaces
from escnn import nn as enn
from torch import Tensor, nn

from datamodules.digits import scalar_layout
from symbench import symmetry
from symbench.models.budget import fit_sizes, n_params

GROUPS: tuple[str, ...] = ("e", "C4", "D4", "C8", "D8", "SO2", "O2")
CONTINUOUS = ("SO2", "O2")
# The grid elements each model is built to be invariant to (D4 elements: mirror x -> -x, then quarter turns).
_TURNS = (symmetry.D4(1), symmetry.D4(2), symmetry.D4(3))
_MIRRORS = (symmetry.D4(1), symmetry.D4(2), symmetry.D4(0, True), symmetry.D4(1, True))
GRID_ELEMENTS: dict[str, tuple[symmetry.D4, ...]] = {
    "e": (), "C4": _TURNS, "C8": _TURNS, "SO2": _TURNS, "D4": _MIRRORS, "D8": _MIRRORS, "O2": _MIRRORS,
}
LABELS = {"e": "{e}", "C4": "C4", "D4": "D4", "C8": "C8", "D8": "D8", "SO2": "SO(2)", "O2": "O(2)"}


def gspace(group: str) -> gspaces.GSpace2D:
    """The escnn action of ``group`` on the plane."""
    if group == "e":
        return gspaces.trivialOnR2()
    if group in CONTINUOUS:
        order = -1
    elif group[1:].isdigit() and group[0] in "CD":
        order = int(group[1:])
    else:
        raise ValueError(f"unknown group {group!r}; choose from {', '.join(GROUPS)}")
    return gspaces.flipRot2dOnR2(order) if group[0] in "DO" else gspaces.rot2dOnR2(order)


class GroupCNN(nn.Module):
    """G-invariant digit classifier: (B, 1, H, W) images -> (B, classes) logits.

    ``fields`` hidden fields per layer in blocks 1-5, ``scalars`` invariant fields out of block 6; ``band_limit`` L
    and ``grid`` apply to SO(2) / O(2) only."""

    def __init__(self, group: str, fields: int, scalars: int = 32, kernel: int = 5, classes: int = 10,
                 band_limit: int = 3, grid: int = 16) -> None:
        super().__init__()
        self.group = group
        gs = gspace(group)
        self.in_type = enn.FieldType(gs, [gs.trivial_repr])
        blocks: list[enn.EquivariantModule] = []
        current = self.in_type
        for i in range(6):
            last = i == 5
            conv_out, norm, act = self._activation(gs, group, fields, scalars, last, band_limit, grid)
            conv = enn.R2Conv(current, conv_out, kernel, padding=kernel // 2)
            blocks += [conv, norm, act]
            current = act.out_type
            if i in (1, 3):
                blocks.append(enn.PointwiseAvgPool2D(current, kernel_size=3, stride=2, padding=1))
        self.blocks = enn.SequentialModule(*blocks)
        self.head = nn.Linear(scalars, classes)

    @staticmethod
    def _activation(gs: gspaces.GSpace2D, group: str, fields: int, scalars: int, last: bool, band_limit: int,
                    grid: int) -> tuple[enn.FieldType, enn.EquivariantModule, enn.EquivariantModule]:
        """Output type of a block's conv, its batch norm and its ELU."""
        if last or group not in CONTINUOUS:
            rep = gs.trivial_repr if last else gs.regular_repr
            kind = enn.FieldType(gs, [rep] * (scalars if last else fields))
            return kind, enn.InnerBatchNorm(kind), enn.ELU(kind, inplace=True)
        irreps = gs.fibergroup.bl_irreps(band_limit)
        act = enn.FourierELU(gs, fields, irreps, N=grid, inplace=True)
        return act.in_type, enn.IIDBatchNorm2d(act.in_type), act

    def forward(self, images: Tensor) -> Tensor:
        features = self.blocks(enn.GeometricTensor(images, self.in_type)).tensor
        return self.head(features.mean(dim=(2, 3)))


@functools.lru_cache(maxsize=None)
def _params_at(group: str, fields: int, scalars: int, kernel: int) -> int:
    return n_params(GroupCNN(group, fields, scalars, kernel))


def matched_fields(group: str, target: int, scalars: int = 32, kernel: int = 5) -> int:
    """Field count whose parameter count is closest to ``target`` (:func:`~symbench.models.budget.fit_sizes` with
    one size).

    The count is exactly quadratic in the number of fields k, P(k) = a k^2 + b k + c (hidden convs are k x k times
    a basis, the first and last convs, the norms and biases are linear in k, the head is constant), so three small
    networks determine it and the fit evaluates P without building large ones."""
    p1, p2, p3 = (_params_at(group, k, scalars, kernel) for k in (1, 2, 3))
    a2 = p3 - 2 * p2 + p1  # 2a, an integer: P is evaluated exactly as (2a k^2 + 2b k + 2c) / 2
    b2 = 2 * (p2 - p1) - 3 * a2
    c2 = 2 * p1 - a2 - b2
    return fit_sizes(1, lambda k: (a2 * k[0] ** 2 + b2 * k[0] + c2) // 2, target)[0]


def plain_target(width: int, scalars: int = 32, kernel: int = 5) -> int:
    """Parameter count of the ``{e}`` model of ``width`` channels, the budget every group is matched to."""
    return _params_at("e", width, scalars, kernel)


def grid_transform(images: Tensor, element: symmetry.GroupElement) -> Tensor:
    """``element`` (e.g. a :class:`symbench.symmetry.D4`) acting on (..., C, H, W) images of scalar channels: exact
    permutations of the grid for the quarter turns and mirrors (:func:`symbench.symmetry.rot90`, ``reflect``)."""
    return element.act(images, scalar_layout(images.shape[-3]))
