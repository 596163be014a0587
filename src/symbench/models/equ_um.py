"""Uniform-motion equivariant ResNet and U-net (Equ_UM of Wang, Walters & Yu, ICLR 2021, sec. 3.4).

Both mirror the plain backbones (:mod:`symbench.models.resnet`, :mod:`symbench.models.unet`) layer for layer, with
every convolution replaced by its eq. 2 counterpart (:mod:`symbench.layers.uniform_motion`), so a given ``width``
has the plain parameter count (the ResNet less its batch-norm weights, which the equivariant one does not use). For a per-sample constant ``c = (c_x, c_y)`` added to the velocity (every
vector field) of every input frame, the prediction's vector fields move by ``c`` and its scalar fields do not:
``f(x + c) = f(x) + c``, exactly (up to rounding), in train and eval mode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from symbench.fields import FieldLayout
from symbench.layers import ResidualBlock, check_history, stack_frames
from symbench.layers.uniform_motion import (
    MotionComponents,
    UniformMotionConv2d,
    UniformMotionConvTranspose2d,
    check_motion_padding,
    pad,
)
from symbench.models.resnet import WIDTH_MULTIPLIERS, check_resnet_args
from symbench.models.unet import DOWNSAMPLINGS, check_unet_args


def um_residual_block(kinds: MotionComponents, channels: int, kernel_size: int,
                      padding_mode: str) -> tuple[ResidualBlock, MotionComponents]:
    """Proposition 3: ``y = F(x) + S(x)`` with an invariant branch ``F`` and an equivariant skip ``S``.

    ``F`` = eq. 2 conv + LeakyReLU with add-back (equivariant), then eq. 2 conv + LeakyReLU without add-back
    (invariant), as in Rose-STL-Lab/Equivariant-Net, and like it with no normalisation: batch norm on the centred values
    keeps the block equivariant but made the model underfit (cpu preset, width 4, 4 epochs: orig RMSE 0.347 with BN,
    0.069 without; the plain ResNet 0.152). ``S`` is the identity when the width is kept, else an eq. 2 conv + LeakyReLU
    with add-back. Returns the block and the channel kinds of its output (those of ``S``).
    """
    hidden = MotionComponents.hidden(channels)
    branch = nn.Sequential(
        UniformMotionConv2d(kinds, hidden, kernel_size, post=nn.LeakyReLU(), bias=False,
                            padding_mode=padding_mode),
        UniformMotionConv2d(hidden, hidden, kernel_size, post=nn.LeakyReLU(), shift_back=False, bias=False,
                            padding_mode=padding_mode),
    )
    if len(kinds) == channels:
        return ResidualBlock(branch), kinds
    skip = UniformMotionConv2d(kinds, hidden, kernel_size, post=nn.LeakyReLU(), padding_mode=padding_mode)
    return ResidualBlock(branch, skip), hidden


class EquUMResNet(nn.Module):
    """Uniform-motion equivariant 18-layer ResNet (``ResNet`` with eq. 2 layers); any grid size.

    Widths ``w, w, 2w, 2w, 4w, 4w, 8w, 8w`` as the plain ResNet; hidden channels are ``(x, y)`` pairs; the borders
    are padded by ``padding_mode`` (replicate by default; zero padding cannot be equivariant).
    """

    def __init__(self, in_frames: int, layout: FieldLayout, width: int = 64, kernel_size: int = 3,
                 padding_mode: str = "replicate") -> None:
        super().__init__()
        check_resnet_args("EquUMResNet", in_frames, width)
        check_motion_padding(padding_mode)
        self.in_frames, self.layout, self.kernel_size, self.padding_mode = in_frames, layout, kernel_size, padding_mode
        self.widths = tuple(width * m for m in WIDTH_MULTIPLIERS)
        kinds = MotionComponents.of_history(layout, in_frames)
        blocks = []
        for channels in self.widths:
            block, kinds = um_residual_block(kinds, channels, kernel_size, padding_mode)
            blocks.append(block)
        self.blocks = nn.Sequential(*blocks)
        self.head = UniformMotionConv2d(kinds, MotionComponents.of_fields(layout), kernel_size,
                                        padding_mode=padding_mode)

    def forward(self, x: Tensor) -> Tensor:
        check_history(x, self.in_frames, self.layout.channels, "EquUMResNet")
        return self.head(self.blocks(stack_frames(x)))

    def extra_repr(self) -> str:
        return (f"in_frames={self.in_frames}, fields={self.layout}, widths={self.widths}, "
                f"kernel_size={self.kernel_size}, padding_mode={self.padding_mode!r}")


def replicate_to_multiple(x: Tensor, multiple: int, margin: int) -> tuple[Tensor, tuple[slice, slice]]:
    """Pad the grid of ``x (B, C, H, W)`` by replication, centred, up to multiples of ``multiple``, plus ``margin``
    pixels on every side; returns the padded tensor and the slices that crop an output on the grid without the
    margin back to ``H x W``. Replicated values move with ``w -> w + c``; zeros would not."""
    height, width = x.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    top, left = pad_h // 2, pad_w // 2
    x = F.pad(x, (left + margin, pad_w - left + margin, top + margin, pad_h - top + margin), mode="replicate")
    return x, (slice(top, top + height), slice(left, left + width))


class EquUMUNet(nn.Module):
    """Uniform-motion equivariant 13-layer U-net (``UNet`` with eq. 2 layers, ReLU, no normalisation).

    Encoder convs and transposed-conv up-samplers (:class:`UniformMotionConvTranspose2d`, which pads the
    interleaved grid with the block mean) all add their block mean back, so every feature map, and so every skip
    concatenation, is equivariant; the head adds the mean back to the vector fields only. Borders are replicate
    padded; a grid whose sides are not multiples of 16 is replicate-padded (centred) up to them and the output
    cropped back. ``width`` must be a multiple of 4.
    """

    def __init__(self, in_frames: int, layout: FieldLayout, width: int = 64, kernel_size: int = 3) -> None:
        super().__init__()
        check_unet_args("EquUMUNet", in_frames, width)
        self.in_frames, self.layout, self.width, self.kernel_size = in_frames, layout, width, kernel_size
        w, k = width, kernel_size
        hid = MotionComponents.hidden
        history = MotionComponents.of_history(layout, in_frames)

        def conv(a: MotionComponents, b: int, stride: int = 1) -> UniformMotionConv2d:
            return UniformMotionConv2d(a, hid(b), k, stride=stride, post=nn.ReLU())

        def up(a: MotionComponents, b: int) -> UniformMotionConvTranspose2d:
            return UniformMotionConvTranspose2d(a, hid(b), post=nn.ReLU())

        self.encoder = nn.ModuleList([
            conv(history, w, 2),
            nn.Sequential(conv(hid(w), 2 * w, 2), conv(hid(2 * w), 2 * w)),
            nn.Sequential(conv(hid(2 * w), 4 * w, 2), conv(hid(4 * w), 4 * w)),
            nn.Sequential(conv(hid(4 * w), 8 * w, 2), conv(hid(8 * w), 8 * w)),
        ])
        self.decoder = nn.ModuleList([
            up(hid(8 * w), 2 * w),
            up(hid(4 * w) + hid(2 * w), w),
            up(hid(2 * w) + hid(w), w // 2),
            up(hid(w) + hid(w // 2), w // 4),
        ])
        self.head = UniformMotionConv2d(history + hid(w // 4), MotionComponents.of_fields(layout), k)

    def forward(self, x: Tensor) -> Tensor:
        check_history(x, self.in_frames, self.layout.channels, "EquUMUNet")
        # The history enters the first conv and the head, both with the same 'same' padding: it is padded once
        # (together with the padding up to a multiple of 16), and only the decoder's output is padded for the head.
        margin = self.head.padding
        history, crop = replicate_to_multiple(stack_frames(x), 2**DOWNSAMPLINGS, margin)
        features = [self.encoder[0].forward_padded(history)]
        for stage in self.encoder[1:]:
            features.append(stage(features[-1]))
        y = features.pop()
        for up in self.decoder[:-1]:
            y = torch.cat([features.pop(), up(y)], dim=1)
        y = pad(self.decoder[-1](y), margin, "replicate")
        return self.head.forward_padded(torch.cat([history, y], dim=1))[..., crop[0], crop[1]]

    def extra_repr(self) -> str:
        return f"in_frames={self.in_frames}, fields={self.layout}, width={self.width}, kernel_size={self.kernel_size}"
