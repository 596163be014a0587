"""Magnitude-equivariant convolutions (Wang, Walters & Yu, ICLR 2021, sec. 3.5, eq. 4).

Eq. 4 divides every sliding block ``P`` of a layer's input by its MinMax scaler ``s = max P - min P`` (over the
channels and the k x k window), convolves, applies the activation and multiplies back:
``Q = s act(conv(P / s) + b)``. Under ``w -> a w`` with ``a > 0``, ``s -> a s`` and ``P / s`` stays put, so
``Q -> a Q``.

Nothing is unfolded, and nothing is divided. ``s`` is one number per block, so ``conv(P / s) = conv(P) / s``; and
the activations used here (ReLU, LeakyReLU, identity) are positively homogeneous, ``s act(u) = act(s u)`` for
``s >= 0``. Hence, exactly, ``Q = act(conv(P) + b s)``: an ordinary convolution whose bias is scaled by the block's
MinMax scaler, which costs a channel max and min, one max pooling of the 2-channel map of both, and a multiply-add.

Constant blocks (``s = 0``), where eq. 4 reads 0/0, need no guard in this form: ``Q = act(conv(P))`` there, the limit of
eq. 4 as ``s -> 0`` and what the ``s + 1e-6`` of Rose-STL-Lab/Equivariant-Net tends to (the ``1e-6`` itself would break
``s(a P) = a s(P)``).

Other ``a``: ``a = 0`` gives ``Q = act(0) = 0 = 0 Q``, so a network of these layers is equivariant for every
``a >= 0``. For ``a < 0``, ``s -> |a| s`` while ``conv(P)`` flips sign, so ``Q(a P) = |a| act(-conv(P) + b s)``:
not ``a Q(P)`` (that would need an odd network).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from symbench.layers.conv import check_padding_mode, same_padding
from symbench.layers.uniform_motion import transposed_block_grid

HOMOGENEOUS_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.Identity)


def window_max(x: Tensor, kernel_size: int, stride: int, padding: int) -> Tensor:
    """``max_pool2d(x, kernel_size, stride, padding)`` (``-inf`` padding).

    Without autograd it is taken as a running maximum over the ``kernel_size**2`` shifted views, the same values
    about 8x faster than CPU ``max_pool2d`` on the 2-channel maps it is used for; with autograd, ``max_pool2d``,
    whose backward is cheap.
    """
    if torch.is_grad_enabled() and x.requires_grad:
        return F.max_pool2d(x, kernel_size, stride, padding)
    k, s = kernel_size, stride
    x = F.pad(x, (padding,) * 4, value=float("-inf"))
    rows, cols = (x.shape[-2] - k) // s + 1, (x.shape[-1] - k) // s + 1
    out = x[..., : (rows - 1) * s + 1 : s, : (cols - 1) * s + 1 : s]
    for t in range(1, k * k):
        i, j = divmod(t, k)
        out = torch.maximum(out, x[..., i : i + (rows - 1) * s + 1 : s, j : j + (cols - 1) * s + 1 : s])
    return out


class _ChannelExtremes(torch.autograd.Function):
    """``[max_c x, -min_c x]`` with ``amax`` / ``amin``'s gradient (spread evenly over tied channels), computed with
    float masks: ``grad_x = m_max g_max / sum_c m_max - m_min g_min / sum_c m_min``.

    The built-in backwards count ties in int64 and convert every full-size boolean mask on the way; in the
    paper-size EquMag U-net (width 64, 64 x 64, batch 16) that took about 25 ms of a 380 ms training step. With
    this backward the step went from 1.29x to 1.12x the plain U-net's in a profiled run.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        high, low = x.amax(1, keepdim=True), x.amin(1, keepdim=True)
        ctx.save_for_backward(x, high, low)
        return torch.cat([high, -low], 1)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        x, high, low = ctx.saved_tensors
        hits = torch.eq(x, high, out=torch.empty_like(x))  # written as floats: no boolean mask to convert
        grad_x = hits * (grad[:, :1] / hits.sum(1, keepdim=True))
        torch.eq(x, low, out=hits)
        return grad_x.addcmul_(hits, -grad[:, 1:] / hits.sum(1, keepdim=True))


def channel_extremes(x: Tensor) -> Tensor:
    """``(B, 2, H, W)``: the largest value over the channels of ``x (B, C, H, W)`` and minus the smallest. The
    extremes of a channel concatenation are the ``torch.maximum`` of those of its parts."""
    return _ChannelExtremes.apply(x)  # without autograd only its forward runs, and no graph is kept


def block_range(extremes: Tensor, kernel_size: int, stride: int, padding: int) -> Tensor:
    """MinMax scaler ``max - min`` over the channels and every ``kernel_size``-square window (stride ``stride``,
    padding ``padding`` that does not count), from :func:`channel_extremes`; ``(B, 1, H', W')``."""
    return window_max(extremes, kernel_size, stride, padding).sum(1, keepdim=True)


class _MagnitudeLayer(nn.Module):
    """``act(z + b s)``: the shared end of the eq. 4 layers (``z`` the bias-free convolution, ``s`` the scaler)."""

    def __init__(self, activation: nn.Module | None) -> None:
        super().__init__()
        activation = nn.Identity() if activation is None else activation
        if not isinstance(activation, HOMOGENEOUS_ACTIVATIONS):
            raise ValueError(
                f"eq. 4 layers need a positively homogeneous activation (act(s u) = s act(u) for s >= 0), one of "
                f"{[a.__name__ for a in HOMOGENEOUS_ACTIVATIONS]}; got {type(activation).__name__}"
            )
        self.activation = activation

    def finish(self, z: Tensor, scale: Tensor, bias: Tensor) -> Tensor:
        return self.activation(torch.addcmul(z, bias[:, None, None], scale))


class MagnitudeConv2d(_MagnitudeLayer):
    """Eq. 4 of ICLR 2021: ``Q = s act(conv(P / s) + b)`` per sliding block ``P`` (stride ``stride``, 'same'
    padding by ``padding_mode``; padded pixels do not enter ``s``), computed as ``act(conv(x) + b s)``.

    Equivariant for every ``a >= 0`` with any padding mode (padded zeros scale too).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 activation: nn.Module | None = None, padding_mode: str = "zeros") -> None:
        super().__init__(activation)
        check_padding_mode(padding_mode)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, same_padding(kernel_size)
        self.padding_mode = padding_mode

    def forward(self, x: Tensor, extremes: Tensor | None = None) -> Tensor:
        """``extremes``: :func:`channel_extremes` of ``x`` when already known (e.g. assembled from the parts of a
        concatenation whose large part needs no gradient)."""
        p = self.padding
        if self.padding_mode == "zeros":
            z = F.conv2d(x, self.conv.weight, None, self.stride, p)
        else:
            z = F.conv2d(F.pad(x, (p, p, p, p), mode=self.padding_mode), self.conv.weight, None, self.stride)
        extremes = channel_extremes(x) if extremes is None else extremes
        return self.finish(z, block_range(extremes, self.kernel_size, self.stride, p), self.conv.bias)

    def extra_repr(self) -> str:
        return f"padding_mode={self.padding_mode!r}"


class MagnitudeConvTranspose2d(_MagnitudeLayer):
    """The U-net up-sampler (transposed conv, kernel 4, stride 2, padding 1: doubles H and W) made magnitude
    equivariant by eq. 4: the block of an output pixel is the 2 x 2 input pixels that feed it (the zeros of the
    interleaved grid and of the padding scale with ``a`` and are left out of ``s``)."""

    def __init__(self, in_channels: int, out_channels: int, activation: nn.Module | None = None) -> None:
        super().__init__(activation)
        self.conv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        z = F.conv_transpose2d(x, self.conv.weight, None, stride=2, padding=1)
        return self.finish(z, transposed_block_grid(block_range(channel_extremes(x), 2, 1, 1)), self.conv.bias)
