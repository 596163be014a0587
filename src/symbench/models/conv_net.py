"""ConvNet: the plain convolutional baseline of the ICML 2022 smoke benchmarks (Wang, Walters & Yu, sec. 5), and
the parameter budget every other model of those benchmarks is matched to.

Architecture: the history is stacked frame-major on channels (``T_in * C``), then ``layers - 1`` units of
``conv_k -> BN -> ReLU`` of ``width`` channels and one ``conv_k`` to the ``C`` field channels ('same' zero padding:
the smoke domains have closed boundaries). It is translation-equivariant (up to the border), and for the
translation benchmark it is also the ``equiv`` model. The argument checks (:func:`check_symmetry`,
:func:`check_smoke_args`) are shared by all smoke models.
"""

from __future__ import annotations

from torch import Tensor, nn

from symbench.fields import FieldLayout
from symbench.layers import check_history, same_padding, stack_frames
from symbench.layers.pixel_mixing import GridSize

SYMMETRIES = ("translation", "rotation", "scaling")


def check_symmetry(model: str, symmetry: str, extra: tuple[str, ...] = ()) -> None:
    """One-line ``ValueError`` unless ``symmetry`` is one of :data:`SYMMETRIES` or ``extra`` (what ``model`` adds)."""
    if symmetry not in SYMMETRIES + extra:
        raise ValueError(f"{model}: unknown symmetry {symmetry!r}; choose one of {', '.join(SYMMETRIES + extra)}")


def check_smoke_args(model: str, in_frames: int, width: int, layers: int) -> None:
    """One-line ``ValueError`` unless ``in_frames >= 1``, ``width >= 1`` and ``layers >= 2``."""
    if in_frames < 1 or width < 1 or layers < 2:
        raise ValueError(f"{model} needs in_frames >= 1, width >= 1, layers >= 2; got {in_frames}, {width}, {layers}")


def conv_budget(in_frames: int, layout: FieldLayout, width: int, layers: int = 5, kernel_size: int = 3) -> int:
    """Trainable parameters of :class:`ConvNet` (the budget the smoke models are matched to within 10 %)."""
    c_in, c_out, k2 = in_frames * layout.channels, layout.channels, kernel_size * kernel_size
    hidden = layers - 1
    convs = c_in * width * k2 + (hidden - 1) * width * width * k2 + width * c_out * k2 + c_out  # biases: head only
    return convs + hidden * 2 * width  # BN affine


class ConvNet(nn.Module):
    """Next-frame forecaster ``(B, T_in, C, H, W) -> (B, C, H, W)`` on any grid. ``symmetry`` and ``grid_size`` are
    accepted for a uniform interface with the other smoke models and ignored (a convolution is translation-equivariant
    for every task and has no grid-sized parameters)."""

    def __init__(self, in_frames: int, layout: FieldLayout, width: int = 64, layers: int = 5, kernel_size: int = 3,
                 symmetry: str = "translation", grid_size: GridSize | None = None) -> None:
        super().__init__()
        check_symmetry("ConvNet", symmetry)
        check_smoke_args("ConvNet", in_frames, width, layers)
        self.in_frames, self.layout, self.width, self.layers = in_frames, layout, width, layers
        pad = same_padding(kernel_size)
        units: list[nn.Module] = []
        channels = in_frames * layout.channels
        for _ in range(layers - 1):
            units += [nn.Conv2d(channels, width, kernel_size, padding=pad, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
            channels = width
        units.append(nn.Conv2d(channels, layout.channels, kernel_size, padding=pad))
        self.net = nn.Sequential(*units)

    def forward(self, x: Tensor) -> Tensor:
        check_history(x, self.in_frames, self.layout.channels, "ConvNet")
        return self.net(stack_frames(x))

    def extra_repr(self) -> str:
        return f"in_frames={self.in_frames}, fields={self.layout}, width={self.width}, layers={self.layers}"
