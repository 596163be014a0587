"""The 13-layer U-net baseline of Wang, Walters & Yu, "Incorporating Symmetry into Deep Dynamics Models"
(ICLR 2021, sec. 5 and app. D.2; 6.2 M parameters in Table 6), after Ronneberger et al. (2015)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from symbench.fields import FieldLayout
from symbench.layers import ConvAct, UpConvAct, check_history, pad_to_multiple, same_padding, stack_frames

DOWNSAMPLINGS = 4



def check_unet_args(model: str, in_frames: int, width: int) -> None:
    """One-line ``ValueError`` unless ``in_frames >= 1`` and ``width`` is a positive multiple of 4 (every U-net
    variant: its last decoder stage has ``width/4`` channels)."""
    if in_frames < 1 or width < 4 or width % 4:
        raise ValueError(
            f"{model} needs in_frames >= 1 and width a positive multiple of 4 (the last decoder stage has width/4 "
            f"channels), got in_frames={in_frames}, width={width}"
        )

class UNet(nn.Module):
    """Next-frame forecaster ``(B, T_in, C, H, W) -> (B, C, H, W)``.

    The grid is halved 4 times, so a grid whose sides are not multiples of 16 is zero-padded (centred) up to the next
    multiples and the output cropped back (e.g. the 8 x 8 scaled test split of the tiny preset).

    Architecture (``w = width``, every encoder conv has kernel ``kernel_size``, 'same' zero padding and a ReLU;
    there is no normalisation layer):

    * input: the history stacked frame-major on channels, ``c = T_in * C``;
    * encoder: ``c -> w`` (stride 2); ``w -> 2w`` (s2), ``2w -> 2w``; ``2w -> 4w`` (s2), ``4w -> 4w``;
      ``4w -> 8w`` (s2), ``8w -> 8w``, down to ``H/16``;
    * decoder: transposed convs (k4, s2, p1) + ReLU ``8w -> 2w``, ``6w -> w``, ``3w -> w/2``, ``3w/2 -> w/4``, each
      output concatenated after the encoder feature of the same resolution (the last one after the raw input);
    * head: conv ``(w/4 + c) -> C``.

    ``w = 64`` is the paper size; ``w`` must be a multiple of 4.
    """

    def __init__(self, in_frames: int, layout: FieldLayout, width: int = 64, kernel_size: int = 3) -> None:
        super().__init__()
        check_unet_args("UNet", in_frames, width)
        self.in_frames = in_frames
        self.layout = layout
        self.width = width
        self.kernel_size = kernel_size
        c, w, k = in_frames * layout.channels, width, kernel_size
        self.encoder = nn.ModuleList([
            ConvAct(c, w, k, stride=2),
            nn.Sequential(ConvAct(w, 2 * w, k, stride=2), ConvAct(2 * w, 2 * w, k)),
            nn.Sequential(ConvAct(2 * w, 4 * w, k, stride=2), ConvAct(4 * w, 4 * w, k)),
            nn.Sequential(ConvAct(4 * w, 8 * w, k, stride=2), ConvAct(8 * w, 8 * w, k)),
        ])
        self.decoder = nn.ModuleList([
            UpConvAct(8 * w, 2 * w),
            UpConvAct(2 * w + 4 * w, w),
            UpConvAct(w + 2 * w, w // 2),
            UpConvAct(w // 2 + w, w // 4),
        ])
        self.head = nn.Conv2d(w // 4 + c, layout.channels, k, padding=same_padding(k))

    def forward(self, x: Tensor) -> Tensor:
        check_history(x, self.in_frames, self.layout.channels, "UNet")
        x, crop = pad_to_multiple(x, 2**DOWNSAMPLINGS)
        features = [stack_frames(x)]
        for stage in self.encoder:
            features.append(stage(features[-1]))
        y = features.pop()
        for up in self.decoder:
            y = torch.cat([features.pop(), up(y)], dim=1)
        return self.head(y)[..., crop[0], crop[1]]

    def extra_repr(self) -> str:
        return f"in_frames={self.in_frames}, fields={self.layout}, width={self.width}, kernel_size={self.kernel_size}"
