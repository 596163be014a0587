"""Magnitude-equivariant ResNet and U-net (Equ_Mag of Wang, Walters & Yu, ICLR 2021, sec. 3.5, eq. 4).

Both mirror the plain backbones (:mod:`symbench.models.resnet`, :mod:`symbench.models.unet`) layer for layer, with
every convolution replaced by its eq. 4 counterpart (:mod:`symbench.layers.magnitude`). Every layer is positively
homogeneous and the skips are identities, eq. 4 projections or concatenations, so ``f(a x) = a f(x)`` for every
``a >= 0`` (per sample, all fields scaled), up to rounding; not for ``a < 0`` (see :mod:`symbench.layers.magnitude`).

As in the Equ_Mag of Rose-STL-Lab/Equivariant-Net, the ResNet has no batch norm. A batch norm of the normalised values
``conv(P / s)`` would stay equivariant, but it needs the division by ``s`` and several extra passes over every feature
map that the bias form of eq. 4 avoids; without it the ResNet still trains well at small widths (checked at width 8).
Each conv keeps its bias instead: ``2 w`` fewer parameters per block than the plain ResNet's two batch norms, under 1 %
of the total.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from symbench.fields import FieldLayout
from symbench.layers import ResidualBlock, check_history, pad_to_multiple, stack_frames
from symbench.layers.conv import check_padding_mode
from symbench.layers.magnitude import MagnitudeConv2d, MagnitudeConvTranspose2d, channel_extremes
from symbench.models.resnet import WIDTH_MULTIPLIERS, check_resnet_args
from symbench.models.unet import DOWNSAMPLINGS, check_unet_args


def mag_residual_block(in_channels: int, out_channels: int, kernel_size: int, padding_mode: str) -> ResidualBlock:
    """``F = (eq. 4 conv -> LeakyReLU)`` twice, ``S`` the identity or an eq. 4 conv + LeakyReLU: the plain
    :class:`~symbench.layers.ConvResidualBlock` without its batch norms."""
    def conv(a: int, b: int) -> MagnitudeConv2d:
        return MagnitudeConv2d(a, b, kernel_size, activation=nn.LeakyReLU(), padding_mode=padding_mode)

    branch = nn.Sequential(conv(in_channels, out_channels), conv(out_channels, out_channels))
    return ResidualBlock(branch, None if in_channels == out_channels else conv(in_channels, out_channels))


class EquMagResNet(nn.Module):
    """Magnitude-equivariant 18-layer ResNet (``ResNet`` with eq. 4 layers and no batch norm, widths
    ``w, w, 2w, 2w, 4w, 4w, 8w, 8w``); any grid size."""

    def __init__(self, in_frames: int, layout: FieldLayout, width: int = 64, kernel_size: int = 3,
                 padding_mode: str = "zeros") -> None:
        super().__init__()
        check_resnet_args("EquMagResNet", in_frames, width)
        check_padding_mode(padding_mode)
        self.in_frames, self.layout, self.kernel_size, self.padding_mode = in_frames, layout, kernel_size, padding_mode
        self.widths = tuple(width * m for m in WIDTH_MULTIPLIERS)
        channels = in_frames * layout.channels
        blocks = []
        for out in self.widths:
            blocks.append(mag_residual_block(channels, out, kernel_size, padding_mode))
            channels = out
        self.blocks = nn.Sequential(*blocks)
        self.head = MagnitudeConv2d(channels, layout.channels, kernel_size, padding_mode=padding_mode)

    def forward(self, x: Tensor) -> Tensor:
        check_history(x, self.in_frames, self.layout.channels, "EquMagResNet")
        return self.head(self.blocks(stack_frames(x)))

    def extra_repr(self) -> str:
        return (f"in_frames={self.in_frames}, fields={self.layout}, widths={self.widths}, "
                f"kernel_size={self.kernel_size}, padding_mode={self.padding_mode!r}")


class EquMagUNet(nn.Module):
    """Magnitude-equivariant 13-layer U-net (``UNet`` with eq. 4 convs and up-samplers, ReLU, no normalisation).

    A grid whose sides are not multiples of 16 is zero-padded (centred; zeros scale with ``a``) up to them and the
    output cropped back. ``width`` must be a multiple of 4.
    """

    def __init__(self, in_frames: int, layout: FieldLayout, width: int = 64, kernel_size: int = 3) -> None:
        super().__init__()
        check_unet_args("EquMagUNet", in_frames, width)
        self.in_frames, self.layout, self.width, self.kernel_size = in_frames, layout, width, kernel_size
        c, w, k = in_frames * layout.channels, width, kernel_size

        def conv(a: int, b: int, stride: int = 1) -> MagnitudeConv2d:
            return MagnitudeConv2d(a, b, k, stride=stride, activation=nn.ReLU())

        def up(a: int, b: int) -> MagnitudeConvTranspose2d:
            return MagnitudeConvTranspose2d(a, b, activation=nn.ReLU())

        self.encoder = nn.ModuleList([
            conv(c, w, 2),
            nn.Sequential(conv(w, 2 * w, 2), conv(2 * w, 2 * w)),
            nn.Sequential(conv(2 * w, 4 * w, 2), conv(4 * w, 4 * w)),
            nn.Sequential(conv(4 * w, 8 * w, 2), conv(8 * w, 8 * w)),
        ])
        self.decoder = nn.ModuleList([
            up(8 * w, 2 * w),
            up(2 * w + 4 * w, w),
            up(w + 2 * w, w // 2),
            up(w // 2 + w, w // 4),
        ])
        self.head = MagnitudeConv2d(w // 4 + c, layout.channels, k)

    def forward(self, x: Tensor) -> Tensor:
        check_history(x, self.in_frames, self.layout.channels, "EquMagUNet")
        x, crop = pad_to_multiple(x, 2**DOWNSAMPLINGS)
        history = stack_frames(x)
        # The history enters the first conv and the head; its channel extremes are taken once, and the head's are
        # assembled from the parts, so that no gradient is computed for the history's part (it needs none).
        history_extremes = channel_extremes(history)
        features = [history, self.encoder[0](history, history_extremes)]
        for stage in self.encoder[1:]:
            features.append(stage(features[-1]))
        y = features.pop()
        for up in self.decoder[:-1]:
            y = torch.cat([features.pop(), up(y)], dim=1)
        y = self.decoder[-1](y)
        extremes = torch.maximum(history_extremes, channel_extremes(y))
        return self.head(torch.cat([history, y], dim=1), extremes)[..., crop[0], crop[1]]

    def extra_repr(self) -> str:
        return f"in_frames={self.in_frames}, fields={self.layout}, width={self.width}, kernel_size={self.kernel_size}"
