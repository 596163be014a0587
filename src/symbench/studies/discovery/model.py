"""The network of the symmetry-discovery study (Wang, Walters & Smidt, arXiv 2310.02299; relaxed octahedral group
convolution): strict lift ``Z^3 -> G`` -> activation -> relaxed group convolution (``L`` banks ``w_l(h)``, tied at
init) -> [activation -> strict group convolutions] -> mean over the group. Its symmetry is ``Stab(w)``, the elements
``u`` with ``w_l(u h) = w_l(h)`` (:func:`~symbench.layers.octahedral_conv.weight_stabilizer`).
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from symbench.layers.octahedral_conv import (
    OctahedralGroupConv3d,
    OctahedralGroupPool3d,
    OctahedralLift3d,
    RelaxedOctahedralGroupConv3d,
)
from symbench.symmetry.octahedral import Element

SubgroupSpec = str | Sequence[Element]
"""A named group of :data:`~symbench.symmetry.octahedral.GROUPS` (``"C4v"``, ``"D4h"``, ``"C4"``, ``"D4"``,
``"O"``, ``"Oh"``, ``"trivial"``) or a closed list of elements, identity first."""


class DiscoveryModel(nn.Module):
    """Scalar field -> scalar field: strict lift ``Z^3 -> G`` -> act -> relaxed group conv (``banks`` weights
    ``w (L, |G|)`` tied at init) -> [act -> strict group conv] x ``extra_convs`` -> mean over the group. Periodic
    padding. Exactly ``G``-equivariant at init; equivariant to ``Stab(w)`` after training."""

    def __init__(self, channels: int = 2, kernel_size: int = 3, banks: int = 2, group: SubgroupSpec = "Oh",
                 extra_convs: int = 0, activation: Literal["gelu", "relu", "tanh"] = "gelu") -> None:
        super().__init__()
        pad = "circular"
        self.group = group
        self.lift = OctahedralLift3d(1, channels, kernel_size, group, pad)
        self.relaxed = RelaxedOctahedralGroupConv3d(channels, channels if extra_convs else 1, kernel_size, group,
                                                    banks, pad)
        self.convs = nn.ModuleList(
            OctahedralGroupConv3d(channels, channels if i < extra_convs - 1 else 1, kernel_size, group, pad)
            for i in range(extra_convs))
        self.pool = OctahedralGroupPool3d(group, "mean")
        self.act = {"gelu": F.gelu, "relu": F.relu, "tanh": torch.tanh}[activation]

    def relaxation_weights(self) -> Tensor:
        """``w (L, |G|)`` of the relaxed layer."""
        return self.relaxed.relaxation_weights()

    def regularization_loss(self) -> Tensor:
        return self.relaxed.regularization_loss()

    def forward(self, x: Tensor) -> Tensor:
        h = self.relaxed(self.act(self.lift(x)))
        for conv in self.convs:
            h = conv(self.act(h))
        return self.pool(h)
