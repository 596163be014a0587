"""The 18-layer ResNet baseline of Wang, Walters & Yu, "Incorporating Symmetry into Deep Dynamics Models"
(ICLR 2021, sec. 5 and app. D.2; 11.0 M parameters in Table 6)."""

from __future__ import annotations

from torch import Tensor, nn

from symbench.fields import FieldLayout
from symbench.layers import ConvResidualBlock, check_history, same_padding, stack_frames
from symbench.layers.conv import check_padding_mode

WIDTH_MULTIPLIERS = (1, 1, 2, 2, 4, 4, 8, 8)



def check_resnet_args(model: str, in_frames: int, width: int) -> None:
    """One-line ``ValueError`` unless ``in_frames >= 1`` and ``width >= 1`` (shared by every ResNet variant)."""
    if in_frames < 1 or width < 1:
        raise ValueError(f"{model} needs in_frames >= 1 and width >= 1, got in_frames={in_frames}, width={width}")

class ResNet(nn.Module):
    """Next-frame forecaster ``(B, T_in, C, H, W) -> (B, C, H, W)`` on any grid size.

    Architecture: the history is stacked frame-major on channels (``T_in * C`` channels), then 8 residual blocks
    (:class:`~symbench.layers.ConvResidualBlock`: ``(conv -> BN -> LeakyReLU)`` twice, identity or ``conv ->
    LeakyReLU`` skip) of widths ``w, w, 2w, 2w, 4w, 4w, 8w, 8w``, then one convolution to the ``C`` field channels.
    Every convolution has kernel ``kernel_size`` and 'same' padding of kind ``padding_mode``; there is no
    down-sampling. ``w = 64`` is the paper size.
    """

    def __init__(
        self,
        in_frames: int,
        layout: FieldLayout,
        width: int = 64,
        kernel_size: int = 3,
        padding_mode: str = "zeros",
    ) -> None:
        super().__init__()
        check_resnet_args("ResNet", in_frames, width)
        check_padding_mode(padding_mode)
        self.in_frames = in_frames
        self.layout = layout
        self.kernel_size = kernel_size
        self.padding_mode = padding_mode
        self.widths = tuple(width * m for m in WIDTH_MULTIPLIERS)
        channels_in = in_frames * layout.channels
        blocks = []
        for out in self.widths:
            blocks.append(ConvResidualBlock(channels_in, out, kernel_size, padding_mode))
            channels_in = out
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Conv2d(channels_in, layout.channels, kernel_size, padding=same_padding(kernel_size),
                              padding_mode=padding_mode)

    def forward(self, x: Tensor) -> Tensor:
        check_history(x, self.in_frames, self.layout.channels, "ResNet")
        return self.head(self.blocks(stack_frames(x)))

    def extra_repr(self) -> str:
        return (f"in_frames={self.in_frames}, fields={self.layout}, widths={self.widths}, "
                f"kernel_size={self.kernel_size}, padding_mode={self.padding_mode!r}")
