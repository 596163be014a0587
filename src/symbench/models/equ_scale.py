"""EquScal-ResNet and EquScal-Unet: scale-equivariant backbones by group correlation over scalings and translations
(Wang, Walters & Yu, ICLR 2021, sec. 3.5, eq. 3 and eq. 5), built from :mod:`symbench.layers.scale_conv`.

What is equivariant. Eq. 3, ``T_lam w(x, t) = lam w(lam x, lam^2 t)``, also rescales time; a one-step model reads a
history at a fixed frame rate and predicts the frame one step later, and ``T_lam`` maps neither onto itself (it changes
the frame spacing and moves the predicted frame off the output time). These models are therefore built for the per-frame
part, :class:`~symbench.symmetry.SpatialScaling`: ``w(x) -> lam^e w(c + lam (x - c))`` on every frame of the history and
on the output (``e = 1`` for vectors, ``scalar_power`` for scalars); the history's frames are channels that are not
resampled in time (Rose-STL-Lab/Equivariant-Net resampled the channel axis as a pseudo-time axis). On the grid this
holds approximately (interpolation, the truncated set of levels, padding). Exactly, in evaluation mode: translations
(whole pixels; circular padding for the ResNet) and the magnitude part ``w -> a w``, ``a > 0``, on all fields at once,
because the networks are positively homogeneous (no biases, no centring in the normalisation, (Leaky)ReLU).

Differences from the ICLR 2021 code (Rose-STL-Lab/Equivariant-Net, ``models/model_scale.py``): the lifting is part of
``forward`` (it blurred the input in the training loop only, not at test time); the kernels of all levels are generated
from the trainable base kernels in ``forward`` (no hand-tuned shrink factors, nothing detached); the levels are mixed
only by the final uniform average, since mixing neighbouring levels in every layer carries the truncation error of the
top and bottom levels inwards through the depth; and all levels run in one grouped convolution per layer.
"""

from __future__ import annotations

from torch import Tensor, nn

from symbench.fields import FieldLayout
from symbench.layers import ResidualBlock, check_history, pad_to_multiple, stack_frames
from symbench.layers.conv import check_padding_mode
from symbench.layers.scale_conv import (
    ScaleBatchNorm2d,
    ScaleConv2d,
    ScaleConvProject2d,
    ScaleConvTranspose2d,
    ScaleLift,
    cat_levels,
    scale_levels,
)
from symbench.models.resnet import WIDTH_MULTIPLIERS, check_resnet_args
from symbench.models.unet import DOWNSAMPLINGS, check_unet_args

N_SCALES = 4
SCALE_RATIO = 2.0


def _scale_conv_block(in_channels: int, out_channels: int, kernel_size: int, scales: tuple[float, ...],
                      padding_mode: str) -> nn.Sequential:
    """``(conv -> bias-free BN -> LeakyReLU)`` twice, every level alike."""
    return nn.Sequential(
        ScaleConv2d(in_channels, out_channels, kernel_size, scales, padding_mode=padding_mode),
        ScaleBatchNorm2d(out_channels, len(scales)),
        nn.LeakyReLU(),
        ScaleConv2d(out_channels, out_channels, kernel_size, scales, padding_mode=padding_mode),
        ScaleBatchNorm2d(out_channels, len(scales)),
        nn.LeakyReLU(),
    )


class EquScaleResNet(nn.Module):
    """Scale-equivariant ResNet ``(B, T_in, C, H, W) -> (B, C, H, W)`` on any grid size.

    The plain :class:`~symbench.models.resnet.ResNet` (8 residual blocks of widths ``w, w, 2w, 2w, 4w, 4w, 8w, 8w``,
    then a convolution to the ``C`` field channels) with every convolution a :class:`ScaleConv2d` over the levels
    ``1, 1/r, ..., r^-(n_scales - 1)`` (``r = scale_ratio``), batch norm replaced by :class:`ScaleBatchNorm2d`, no
    biases; the history is lifted to the levels first and the output averaged over them. The levels share the
    weights, so the parameter count is that of the plain ResNet of the same ``width`` less its biases and BN
    shifts, and the cost about ``n_scales`` times its cost. The defaults, 4 levels a factor 2 apart, span a factor
    8 of kernel scales (the paper: 7 scales over ``1/3 <= lam <= 3``, a factor 9).
    """

    def __init__(
        self,
        in_frames: int,
        layout: FieldLayout,
        width: int = 64,
        kernel_size: int = 3,
        padding_mode: str = "zeros",
        n_scales: int = N_SCALES,
        scale_ratio: float = SCALE_RATIO,
        scalar_power: float = 0.0,
    ) -> None:
        super().__init__()
        check_resnet_args("EquScaleResNet", in_frames, width)
        check_padding_mode(padding_mode)
        self.in_frames = in_frames
        self.layout = layout
        self.scales = scale_levels(n_scales, scale_ratio)
        self.scalar_power = scalar_power
        self.widths = tuple(width * m for m in WIDTH_MULTIPLIERS)
        self.lift = ScaleLift(layout, in_frames, self.scales, scalar_power)
        channels = in_frames * layout.channels
        blocks = []
        for out in self.widths:
            skip = None
            if channels != out:
                skip = nn.Sequential(ScaleConv2d(channels, out, kernel_size, self.scales, padding_mode=padding_mode),
                                     nn.LeakyReLU())
            blocks.append(ResidualBlock(_scale_conv_block(channels, out, kernel_size, self.scales, padding_mode),
                                        skip))
            channels = out
        self.blocks = nn.Sequential(*blocks)
        self.head = ScaleConvProject2d(channels, layout, kernel_size, self.scales, scalar_power, padding_mode)

    def forward(self, x: Tensor) -> Tensor:
        check_history(x, self.in_frames, self.layout.channels, "EquScaleResNet")
        return self.head(self.blocks(self.lift(stack_frames(x))))

    def extra_repr(self) -> str:
        return (f"in_frames={self.in_frames}, fields={self.layout}, widths={self.widths}, "
                f"scales=({', '.join(f'{s:.4g}' for s in self.scales)}), scalar_power={self.scalar_power}")


def _down(in_channels: int, out_channels: int, kernel_size: int, scales: tuple[float, ...],
          stride: int = 1) -> nn.Sequential:
    return nn.Sequential(ScaleConv2d(in_channels, out_channels, kernel_size, scales, stride=stride), nn.ReLU())


def _up(in_channels: int, out_channels: int, scales: tuple[float, ...]) -> nn.Sequential:
    return nn.Sequential(ScaleConvTranspose2d(in_channels, out_channels, scales), nn.ReLU())


class EquScaleUNet(nn.Module):
    """Scale-equivariant U-net ``(B, T_in, C, H, W) -> (B, C, H, W)``; any grid (zero-padded, centred, to 16k).

    The plain :class:`~symbench.models.unet.UNet` (encoder ``c -> w (s2), w -> 2w (s2), 2w -> 2w, 2w -> 4w (s2),
    4w -> 4w, 4w -> 8w (s2), 8w -> 8w``; transposed-convolution decoder ``8w -> 2w, 6w -> w, 3w -> w/2,
    3w/2 -> w/4`` with skip concatenations; head ``(w/4 + c) -> C``) with every convolution a :class:`ScaleConv2d`
    or :class:`ScaleConvTranspose2d` over the levels, no biases, the lifted history as input and the output averaged
    over the levels; skips are concatenated level by level. The strides are not rescaled with the kernels, so the
    level correspondence, and the scale equivariance, are rougher than the ResNet's. ``w`` must be a multiple of 4.
    """

    def __init__(
        self,
        in_frames: int,
        layout: FieldLayout,
        width: int = 64,
        kernel_size: int = 3,
        n_scales: int = N_SCALES,
        scale_ratio: float = SCALE_RATIO,
        scalar_power: float = 0.0,
    ) -> None:
        super().__init__()
        check_unet_args("EquScaleUNet", in_frames, width)
        self.in_frames = in_frames
        self.layout = layout
        self.width = width
        self.scales = scale_levels(n_scales, scale_ratio)
        self.scalar_power = scalar_power
        c, w, k, s = in_frames * layout.channels, width, kernel_size, self.scales
        self.lift = ScaleLift(layout, in_frames, s, scalar_power)
        self.encoder = nn.ModuleList([
            _down(c, w, k, s, stride=2),
            nn.Sequential(_down(w, 2 * w, k, s, stride=2), _down(2 * w, 2 * w, k, s)),
            nn.Sequential(_down(2 * w, 4 * w, k, s, stride=2), _down(4 * w, 4 * w, k, s)),
            nn.Sequential(_down(4 * w, 8 * w, k, s, stride=2), _down(8 * w, 8 * w, k, s)),
        ])
        self.decoder = nn.ModuleList([
            _up(8 * w, 2 * w, s),
            _up(2 * w + 4 * w, w, s),
            _up(w + 2 * w, w // 2, s),
            _up(w // 2 + w, w // 4, s),
        ])
        self.head = ScaleConvProject2d(w // 4 + c, layout, k, s, scalar_power)

    def forward(self, x: Tensor) -> Tensor:
        check_history(x, self.in_frames, self.layout.channels, "EquScaleUNet")
        x, crop = pad_to_multiple(x, 2**DOWNSAMPLINGS)  # centred zeros, like the convolutions' padding
        features = [self.lift(stack_frames(x))]
        for stage in self.encoder:
            features.append(stage(features[-1]))
        y = features.pop()
        n = len(self.scales)
        for up in self.decoder:
            y = cat_levels([features.pop(), up(y)], n)
        return self.head(y)[..., crop[0], crop[1]]

    def extra_repr(self) -> str:
        return (f"in_frames={self.in_frames}, fields={self.layout}, width={self.width}, "
                f"scales=({', '.join(f'{s:.4g}' for s in self.scales)}), scalar_power={self.scalar_power}")
