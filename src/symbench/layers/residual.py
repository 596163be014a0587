"""Residual blocks ``y = F(x) + S(x)`` (He et al. 2016), in the form used by the ResNet of Wang et al. (ICLR 2021)."""

from __future__ import annotations

from torch import Tensor, nn

from symbench.layers.conv import ConvAct, ConvNormAct


class ResidualBlock(nn.Module):
    """``y = branch(x) + skip(x)``; ``skip`` defaults to the identity.

    The structure is independent of the layer type, so equivariant variants reuse it with their own branch and skip.
    """

    def __init__(self, branch: nn.Module, skip: nn.Module | None = None) -> None:
        super().__init__()
        self.branch = branch
        self.skip = nn.Identity() if skip is None else skip

    def forward(self, x: Tensor) -> Tensor:
        return self.branch(x) + self.skip(x)


class ConvResidualBlock(ResidualBlock):
    """Plain residual block: ``F = (conv_k -> BN -> LeakyReLU)`` twice; ``S`` is the identity when the width is kept and
    a projection ``conv_k -> LeakyReLU`` when it changes (Rose-STL-Lab/Equivariant-Net's choice; no activation after the
    sum)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, padding_mode: str = "zeros") -> None:
        branch = nn.Sequential(
            ConvNormAct(in_channels, out_channels, kernel_size, padding_mode),
            ConvNormAct(out_channels, out_channels, kernel_size, padding_mode),
        )
        skip = None
        if in_channels != out_channels:
            skip = ConvAct(in_channels, out_channels, kernel_size, activation=nn.LeakyReLU, padding_mode=padding_mode)
        super().__init__(branch, skip)
