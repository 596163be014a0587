"""Convolution units of the plain backbones: conv + activation, conv + BN + activation, and the U-net up-sampler."""

from __future__ import annotations

from torch import nn

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def same_padding(kernel_size: int) -> int:
    """Padding ``(k - 1) / 2`` that keeps the grid size of a stride-1 convolution; only odd ``k`` has one."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer for 'same' padding, got {kernel_size}")
    return (kernel_size - 1) // 2


def check_padding_mode(padding_mode: str) -> None:
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")


class ConvAct(nn.Sequential):
    """``act(conv_k(x))`` with 'same' padding and an optional stride (stride 2 halves an even grid exactly)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        activation: type[nn.Module] = nn.ReLU,
        padding_mode: str = "zeros",
    ) -> None:
        check_padding_mode(padding_mode)
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                      padding=same_padding(kernel_size), padding_mode=padding_mode),
            activation(),
        )


class ConvNormAct(nn.Sequential):
    """``LeakyReLU(BN(conv_k(x)))`` with 'same' padding.

    The convolution has no bias: batch normalisation subtracts the per-channel mean, so a bias before it gets a zero
    gradient and is never trained (Rose-STL-Lab/Equivariant-Net keeps one; it only adds dead parameters).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, padding_mode: str = "zeros") -> None:
        check_padding_mode(padding_mode)
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=same_padding(kernel_size),
                      padding_mode=padding_mode, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(),
        )


class UpConvAct(nn.Sequential):
    """``ReLU(convT(x))`` with a 4x4 transposed convolution, stride 2, padding 1: doubles H and W exactly."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.ConvTranspose2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1), nn.ReLU())
