"""EquRot: the ResNet and U-net of Wang, Walters & Yu (ICLR 2021) made rotation-equivariant with steerable
convolutions (sec. 3.3; Table 6: 10.2 M / 7.1 M parameters).

``f(T_g x) = T_g f(x)`` for every rotation ``g`` of the cyclic group ``C_N`` (``N = group_order``, 8 in the paper's
code), where ``T_g`` turns the grid and each vector field's components, and moves scalars. On the pixel grid this is
exact for multiples of 90 degrees (``N`` divisible by 4) and approximate for the other elements.

Types (derived from the :class:`~symbench.fields.FieldLayout`): every frame of the history brings one ``irrep(1)``
field per vector field and one trivial field per scalar; hidden features are regular fields; the output has one
field per declared field. Every layer of the plain backbone keeps its place; its ``c`` channels become ``s * c``
regular fields (``N`` channels each), with one scale ``s`` per network chosen so that the parameter count is the plain
backbone's at the same ``width``. A 3x3 steerable kernel between two regular fields has 24 (C4) or 48 (C8) free
parameters where a plain one between the same ``N + N`` channels has ``9 N^2``, so the equivariant network has about
2.4x (C4) or 3.5x (C8) the plain network's channels, and 6x or 12x its arithmetic.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from symbench.fields import FieldLayout
from symbench.layers import ResidualBlock, check_history, pad_to_multiple, stack_frames
from symbench.layers.conv import check_padding_mode
from symbench.layers.escnn_blocks import (
    RotationFields,
    TypeBlocks,
    export_plain,
    layout_blocks,
    regular,
)
from symbench.models.budget import fit_scale
from symbench.models.resnet import WIDTH_MULTIPLIERS, ResNet, check_resnet_args
from symbench.models.unet import DOWNSAMPLINGS, UNet, check_unet_args

DEFAULT_GROUP_ORDER = 8


def plain_parameter_count(model_cls: type[nn.Module], **kwargs) -> int:
    """Parameters of a plain backbone, built on the meta device (no memory, no initialisation)."""
    with torch.device("meta"):
        return sum(p.numel() for p in model_cls(**kwargs).parameters())


class EquRotResNet(nn.Module):
    """Rotation-equivariant ResNet ``(B, T_in, C, H, W) -> (B, C, H, W)`` on any grid size.

    The plain :class:`~symbench.models.resnet.ResNet` with every convolution steerable: 8 residual blocks
    ``(R2Conv -> InnerBatchNorm -> LeakyReLU)`` twice, of ``fields[i]`` regular fields (proportional to the plain
    widths ``w, w, 2w, 2w, 4w, 4w, 8w, 8w``), a steerable projection ``R2Conv -> LeakyReLU`` on the skip where the type
    changes (always in the first block: vectors in, regular fields out), and an ``R2Conv`` head to the declared
    fields. ``padding_mode`` is any of the plain model's; all are symmetric under 90 degree turns of a square grid.
    """

    def __init__(
        self,
        in_frames: int,
        layout: FieldLayout,
        width: int = 64,
        kernel_size: int = 3,
        padding_mode: str = "zeros",
        group_order: int = DEFAULT_GROUP_ORDER,
    ) -> None:
        super().__init__()
        check_resnet_args("EquRotResNet", in_frames, width)
        check_padding_mode(padding_mode)
        rot = RotationFields(group_order)
        history, output = layout_blocks(layout, in_frames), layout_blocks(layout)
        self.in_frames = in_frames
        self.layout = layout
        self.kernel_size = kernel_size
        self.padding_mode = padding_mode
        self.group_order = group_order
        self.fields = resnet_fields(rot, in_frames, layout, width, kernel_size)
        blocks, current = [], history
        for n in self.fields:
            blocks.append(self._block(rot, current, regular(n)))
            current = regular(n)
        self.blocks = nn.Sequential(*blocks)
        self.head = rot.conv(current, output, kernel_size, padding_mode=padding_mode)

    def _block(self, rot: RotationFields, in_blocks: TypeBlocks, out_blocks: TypeBlocks) -> ResidualBlock:
        k, mode, fields = self.kernel_size, self.padding_mode, out_blocks[0][1]
        branch = nn.Sequential(
            rot.conv(in_blocks, out_blocks, k, bias=False, padding_mode=mode), rot.batch_norm(fields), nn.LeakyReLU(),
            rot.conv(out_blocks, out_blocks, k, bias=False, padding_mode=mode), rot.batch_norm(fields), nn.LeakyReLU(),
        )
        skip = None
        if in_blocks != out_blocks:
            skip = nn.Sequential(rot.conv(in_blocks, out_blocks, k, padding_mode=mode), nn.LeakyReLU())
        return ResidualBlock(branch, skip)

    def forward(self, x: Tensor) -> Tensor:
        check_history(x, self.in_frames, self.layout.channels, "EquRotResNet")
        return self.head(self.blocks(stack_frames(x)))

    def export(self) -> nn.Module:
        """Plain-torch copy in eval mode computing the same function (see :func:`export_plain`)."""
        return export_plain(self)

    def extra_repr(self) -> str:
        return (f"in_frames={self.in_frames}, fields={self.layout}, group=C{self.group_order}, "
                f"regular_fields={self.fields}, kernel_size={self.kernel_size}, padding_mode={self.padding_mode!r}")


def resnet_fields(rot: RotationFields, in_frames: int, layout: FieldLayout, width: int,
                  kernel_size: int) -> tuple[int, ...]:
    """Regular fields of the 8 blocks: proportional to the plain widths ``w * (1, 1, 2, 2, 4, 4, 8, 8)``, with the
    parameter count closest to the plain ResNet's (padding does not change it)."""
    plain = plain_parameter_count(ResNet, in_frames=in_frames, layout=layout, width=width, kernel_size=kernel_size)
    history, output = layout_blocks(layout, in_frames), layout_blocks(layout)
    return fit_scale([width * m for m in WIDTH_MULTIPLIERS],
                      lambda f: resnet_parameters(rot, history, output, f, kernel_size), plain)


def resnet_parameters(rot: RotationFields, history: TypeBlocks, output: TypeBlocks, fields: tuple[int, ...],
                      kernel_size: int) -> int:
    """Parameter count of :class:`EquRotResNet` with these regular-field counts, without building it: per block two
    bias-free convs and two batch norms (a scale and a shift per field), a biased projection where the type changes;
    a biased head."""
    total, current = 0, history
    for n in fields:
        out = regular(n)
        total += rot.conv_parameters(current, out, kernel_size, bias=False)
        total += rot.conv_parameters(out, out, kernel_size, bias=False) + 4 * n
        if current != out:
            total += rot.conv_parameters(current, out, kernel_size, bias=True)
        current = out
    return total + rot.conv_parameters(current, output, kernel_size, bias=True)


class EquRotUNet(nn.Module):
    """Rotation-equivariant U-net ``(B, T_in, C, H, W) -> (B, C, H, W)``; any grid (zero-padded, centred, to 16k).

    The plain :class:`~symbench.models.unet.UNet` with every convolution steerable and the same widths in regular
    fields (``fields = (f(w), f(2w), f(4w), f(8w), f(w/2), f(w/4))``, ``f(c) = max(1, round(s c))``), except where a
    plain layer is not rotation-equivariant:

    * down-sampling: a stride-2 convolution samples the even pixels, which a 90 degree turn of an even grid maps onto
      the odd ones; here a 2x2 average pool (whose blocks a turn maps onto blocks, and which commutes with any
      linear action on channels) is followed by a stride-1 ``R2Conv`` at the coarse resolution (same arithmetic);
    * up-sampling: the 4x4, stride-2, padding-1 transposed convolution of the plain model is kept, steerable
      (``R2ConvTransposed``): its kernel grid and padding are symmetric, so it is exactly equivariant, unlike the
      diagonal zero-interleave with one-sided padding of Rose-STL-Lab/Equivariant-Net.

    Each stage ends with a ReLU (pointwise, so it commutes with the permutations of regular fields); the head is an
    ``R2Conv`` from the last decoder fields and the raw history to the declared fields.
    """

    def __init__(
        self,
        in_frames: int,
        layout: FieldLayout,
        width: int = 64,
        kernel_size: int = 3,
        group_order: int = DEFAULT_GROUP_ORDER,
    ) -> None:
        super().__init__()
        check_unet_args("EquRotUNet", in_frames, width)
        rot = RotationFields(group_order)
        history, output = layout_blocks(layout, in_frames), layout_blocks(layout)
        self.in_frames = in_frames
        self.layout = layout
        self.width = width
        self.kernel_size = kernel_size
        self.group_order = group_order
        self.fields = unet_fields(rot, in_frames, layout, width, kernel_size)
        f1, f2, f4, f8, f_half, f_quarter = (regular(n) for n in self.fields)
        k = kernel_size

        def down(a: TypeBlocks, b: TypeBlocks) -> list[nn.Module]:
            return [nn.AvgPool2d(2), rot.conv(a, b, k), nn.ReLU()]

        def same(a: TypeBlocks) -> list[nn.Module]:
            return [rot.conv(a, a, k), nn.ReLU()]

        def up(a: TypeBlocks, b: TypeBlocks) -> nn.Sequential:
            return nn.Sequential(rot.conv(a, b, 4, transposed=True), nn.ReLU())

        self.encoder = nn.ModuleList([
            nn.Sequential(*down(history, f1)),
            nn.Sequential(*down(f1, f2), *same(f2)),
            nn.Sequential(*down(f2, f4), *same(f4)),
            nn.Sequential(*down(f4, f8), *same(f8)),
        ])
        self.decoder = nn.ModuleList([up(f8, f2), up(f4 + f2, f1), up(f2 + f1, f_half), up(f1 + f_half, f_quarter)])
        self.head = rot.conv(history + f_quarter, output, k)

    def forward(self, x: Tensor) -> Tensor:
        check_history(x, self.in_frames, self.layout.channels, "EquRotUNet")
        x, crop = pad_to_multiple(x, 2**DOWNSAMPLINGS)  # centred zeros, like the convolutions' padding
        features = [stack_frames(x)]
        for stage in self.encoder:
            features.append(stage(features[-1]))
        y = features.pop()
        for up in self.decoder:
            y = torch.cat([features.pop(), up(y)], dim=1)
        return self.head(y)[..., crop[0], crop[1]]

    def export(self) -> nn.Module:
        """Plain-torch copy in eval mode computing the same function (see :func:`export_plain`)."""
        return export_plain(self)

    def extra_repr(self) -> str:
        return (f"in_frames={self.in_frames}, fields={self.layout}, width={self.width}, group=C{self.group_order}, "
                f"regular_fields={self.fields}, kernel_size={self.kernel_size}")


def unet_fields(rot: RotationFields, in_frames: int, layout: FieldLayout, width: int,
                kernel_size: int) -> tuple[int, ...]:
    """Regular fields ``(f(w), f(2w), f(4w), f(8w), f(w/2), f(w/4))`` with the parameter count closest to the plain
    U-net's."""
    plain = plain_parameter_count(UNet, in_frames=in_frames, layout=layout, width=width, kernel_size=kernel_size)
    history, output = layout_blocks(layout, in_frames), layout_blocks(layout)
    return fit_scale([width, 2 * width, 4 * width, 8 * width, width // 2, width // 4],
                      lambda f: unet_parameters(rot, history, output, f, kernel_size), plain)


def unet_parameters(rot: RotationFields, history: TypeBlocks, output: TypeBlocks, fields: tuple[int, ...],
                    kernel_size: int) -> int:
    """Parameter count of :class:`EquRotUNet` with ``fields = (f(w), f(2w), f(4w), f(8w), f(w/2), f(w/4))``: seven
    biased encoder convs, four biased 4x4 transposed convs, a biased head."""
    f1, f2, f4, f8, f_half, f_quarter = (regular(n) for n in fields)
    convs = [(history, f1), (f1, f2), (f2, f2), (f2, f4), (f4, f4), (f4, f8), (f8, f8), (history + f_quarter, output)]
    ups = [(f8, f2), (f4 + f2, f1), (f2 + f1, f_half), (f1 + f_half, f_quarter)]
    return (sum(rot.conv_parameters(a, b, kernel_size, bias=True) for a, b in convs)
            + sum(rot.conv_parameters(a, b, 4, bias=True, transposed=True) for a, b in ups))
