"""Uniform-motion equivariant convolutions (Wang, Walters & Yu, ICLR 2021, sec. 3.4, eq. 2).

Eq. 2 centres every sliding block ``P`` of a layer's input on its mean ``mu`` (per vector component: over the k x k
window and over every channel that carries that component), convolves, applies the activation and adds ``mu`` back:
``Q = act(conv(P - mu)) + mu``. Under ``w -> w + c`` the block mean moves by ``c`` while ``P - mu`` stays put, so
``Q`` moves by ``c`` (equivariant); without the add-back ``Q`` does not move (invariant, Proposition 3).

Nothing is unfolded. Centring is linear in ``P`` and ``sum_q K(q) mu = mu sum_q K(q)``, so
``conv(P - mu) = conv(P) - mu sum K = conv(P; K~)`` with the **centred kernel** ``K~ = K - mean K``, the mean taken
per output channel and per component over the taps and the input channels of that component. One ordinary
convolution with ``K~`` is the centred convolution; the ``mu`` added back is one box filter of a 2-channel map.

Borders: the input is padded by replication (reflection and circular wrap work too) before the convolution, as in the
ICLR 2021 code (Rose-STL-Lab/Equivariant-Net): every padded value is a copy of an input value and moves by ``c`` with
it, so each block the kernel sees is a block of shifted values. Zero padding would not move and is rejected. The ``mu``
added back is the mean of that same padded block, i.e. exactly the ``mu`` of eq. 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from symbench.fields import FieldLayout
from symbench.layers.conv import same_padding

Component = Literal["x", "y", "s"]
MOTION_PADDING_MODES = ("replicate", "reflect", "circular")
COMPONENTS: tuple[Component, Component] = ("x", "y")


@dataclass(frozen=True)
class MotionComponents:
    """What uniform motion ``w -> w + (c_x, c_y)`` does to each channel of a feature map: ``"x"`` moves by ``c_x``,
    ``"y"`` by ``c_y``, ``"s"`` does not move (scalar fields, invariant features).

    Inputs and outputs follow the :class:`~symbench.fields.FieldLayout`; hidden feature maps are read as
    ``(x, y)`` channel pairs like in Rose-STL-Lab/Equivariant-Net (an odd last channel is invariant).
    """

    kinds: tuple[Component, ...]

    def __post_init__(self) -> None:
        bad = set(self.kinds) - {"x", "y", "s"}
        if bad:
            raise ValueError(f"channel kinds must be 'x', 'y' or 's', got {sorted(bad)}")

    @classmethod
    def of_fields(cls, layout: FieldLayout) -> "MotionComponents":
        """One frame of ``layout``: every vector field is ``(x, y)``, every scalar field ``s``."""
        if layout.ndim != 2:
            raise ValueError(f"uniform motion layers need a 2D layout, got ndim={layout.ndim}")
        return cls(tuple(k for f in layout.fields for k in (COMPONENTS if f.kind == "vector" else ("s",))))

    @classmethod
    def of_history(cls, layout: FieldLayout, frames: int) -> "MotionComponents":
        """A history stacked frame-major on channels (:func:`~symbench.layers.stack_frames`)."""
        return cls(cls.of_fields(layout).kinds * frames)

    @classmethod
    def hidden(cls, channels: int) -> "MotionComponents":
        """``channels`` hidden channels: ``(x, y)`` pairs, the odd last one invariant."""
        return cls(COMPONENTS * (channels // 2) + ("s",) * (channels % 2))

    def __add__(self, other: "MotionComponents") -> "MotionComponents":
        """Channel concatenation (U-net skip connections)."""
        return MotionComponents(self.kinds + other.kinds)

    def __len__(self) -> int:
        return len(self.kinds)

    def indicator(self) -> Tensor:
        """``(2, C)``: row 0 marks the x channels, row 1 the y channels."""
        return torch.tensor([[float(k == c) for k in self.kinds] for c in COMPONENTS])

    def same_component(self) -> Tensor:
        """``(C, C)``: 1 where both channels carry the same vector component (0 on scalar channels)."""
        ind = self.indicator()
        return ind.T @ ind

    @property
    def period(self) -> int:
        """The smallest ``P`` with ``kinds = kinds[:P] * (C / P)`` (2 for hidden pairs, the layout's channel count
        for a history)."""
        c = len(self)
        return next(p for p in range(1, c + 1) if c % p == 0 and self.kinds == self.kinds[:p] * (c // p))

    @property
    def is_pairs(self) -> bool:
        """True when every channel belongs to an ``(x, y)`` pair (an even-sized hidden map)."""
        return self.kinds == COMPONENTS * (len(self) // 2)


def check_motion_padding(padding_mode: str) -> None:
    if padding_mode not in MOTION_PADDING_MODES:
        raise ValueError(
            f"uniform-motion layers need padding that copies input values, one of {MOTION_PADDING_MODES}; got "
            f"{padding_mode!r} (zero padding does not move with w -> w + c)"
        )


def add_components(y: Tensor, mu: Tensor, spread: Tensor, pairs: bool) -> Tensor:
    """``y + mu`` on the channels of each component: ``mu (B, 2, H, W)`` is added to the x / y channels of
    ``y (B, C, H, W)`` as the ``(C, 2)`` indicator ``spread`` says; invariant channels are left. ``pairs``: the
    channels are ``(x, y)`` pairs."""
    if pairs:
        # Hidden maps are (x, y) pairs: one broadcast add on a view, no (C, 2) product.
        return (y.unflatten(1, (-1, 2)) + mu.unsqueeze(1)).flatten(1, 2)
    return y + torch.einsum("ck,bkhw->bchw", spread, mu)


REPLICATE_FOLD_MIN = 1 << 19  # elements from which :class:`_ReplicatePad`'s backward beats the built-in one


class _ReplicatePad(torch.autograd.Function):
    """Replicate padding by ``p`` pixels whose backward folds the border gradient back in place: one copy of the
    interior plus eight small edge and corner sums. On CPU its backward is 2-4x faster than
    ``replication_pad2d_backward`` on 1-3 M-element maps (16 x 64 x 32 x 32, 16 x 50 x 64 x 64) and forward +
    backward 20-30 % faster at 0.5-1 M; below about 0.25 M its extra calls make it slower."""

    @staticmethod
    def forward(ctx, x: Tensor, p: int) -> Tensor:  # type: ignore[override]
        ctx.p = p
        return F.pad(x, (p, p, p, p), mode="replicate")

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        p = ctx.p
        inner = slice(p, -p)
        folded = grad[..., inner, inner].clone()
        folded[..., 0, :] += grad[..., :p, inner].sum(-2)
        folded[..., -1, :] += grad[..., -p:, inner].sum(-2)
        folded[..., :, 0] += grad[..., inner, :p].sum(-1)
        folded[..., :, -1] += grad[..., inner, -p:].sum(-1)
        for rows, row in ((slice(None, p), 0), (slice(-p, None), -1)):
            for cols, col in ((slice(None, p), 0), (slice(-p, None), -1)):
                folded[..., row, col] += grad[..., rows, cols].sum((-2, -1))
        return folded, None


def pad(x: Tensor, p: int, mode: str) -> Tensor:
    """Pad both grid axes of ``x`` by ``p`` pixels of kind ``mode`` (one of :data:`MOTION_PADDING_MODES`)."""
    if not p:
        return x
    if mode == "replicate" and x.requires_grad and torch.is_grad_enabled() and x.numel() >= REPLICATE_FOLD_MIN:
        return _ReplicatePad.apply(x, p)  # small maps: the built-in backward's single call is faster
    return F.pad(x, (p, p, p, p), mode=mode)


def box_mean(x: Tensor, kernel_size: int, stride: int = 1) -> Tensor:
    """Mean over every ``kernel_size``-square window of ``x (B, C, H, W)`` (no padding), sampled with ``stride``.

    ``avg_pool2d``, except at stride 1 on large maps, where shifted-slice sums are several times faster on CPU
    (forward and backward) on the few-channel maps this is used for.
    """
    k = kernel_size
    if stride > 1 or x.shape[-2] * x.shape[-1] < 1024:
        return F.avg_pool2d(x, k, stride)
    rows, cols = x.shape[-2] - k + 1, x.shape[-1] - k + 1
    x = sum(x[..., i:i + rows, :] for i in range(k))
    return sum(x[..., :, j:j + cols] for j in range(k)) / (k * k)


def transposed_block_grid(stat: Tensor) -> Tensor:
    """Put a statistic of the 2 x 2 input blocks on the output grid of a kernel-4, stride-2, padding-1 transposed
    convolution.

    Output pixel ``o`` of that convolution is fed by input rows ``ceil(o/2) - 1`` and ``ceil(o/2)`` (likewise for
    columns). ``stat (B, G, H+1, W+1)`` holds, at ``j``, the statistic of input rows / columns ``j - 1, j`` (a
    2 x 2 pooling with padding 1); the result ``(B, G, 2H, 2W)`` holds at ``o`` the entry ``ceil(o/2)``.
    """
    return stat.repeat_interleave(2, -2).repeat_interleave(2, -1)[..., 1:-1, 1:-1]


class _MotionLayer(nn.Module):
    """Shared buffers and add-back of the uniform-motion layers."""

    def __init__(self, in_kinds: MotionComponents, out_kinds: MotionComponents, post: nn.Module | None,
                 shift_back: bool, padding_mode: str) -> None:
        super().__init__()
        check_motion_padding(padding_mode)
        self.in_kinds, self.out_kinds = in_kinds, out_kinds
        self.post = nn.Identity() if post is None else post
        self.shift_back = shift_back
        self.padding_mode = padding_mode
        self.out_pairs = out_kinds.is_pairs
        # Fixed by the channel kinds; rebuilt from the constructor, so not part of the state dict. Only integer
        # entries, exact in every dtype: the averaging weights are divided out in the working dtype (1/24 stored
        # in float32 and cast to float64 would break exactness in float64).
        self.register_buffer("out_spread", out_kinds.indicator().T.contiguous(), persistent=False)
        # Means over channels (of the input, and of the kernel's input axis) are taken in two steps: over the
        # repeats of the input's period (a view, no copy), then over the slots of one period (P x P, tiny), never
        # with a C x C matrix.
        self.in_period = in_kinds.period
        period = MotionComponents(in_kinds.kinds[:self.in_period])
        self.period_is_pair = period.is_pairs and self.in_period == 2
        self.register_buffer("period_indicator", period.indicator(), persistent=False)
        # (P, P): slots of one period carrying the same component; (P,): channels of the whole input carrying each
        # slot's component (1 on scalar slots, never 0).
        self.register_buffer("period_same", period.same_component(), persistent=False)
        repeats = len(in_kinds) // self.in_period
        self.register_buffer("period_sizes", (repeats * period.same_component().sum(1)).clamp(min=1.0),
                             persistent=False)

    def component_means(self, x: Tensor) -> Tensor:
        """``(B, 2, H, W)``: mean of the x channels and of the y channels of ``x`` at every pixel."""
        per_slot = x.unflatten(1, (-1, self.in_period)).mean(1)
        if self.period_is_pair:
            return per_slot
        ind = self.period_indicator
        return torch.einsum("kp,bphw->bkhw", ind / ind.sum(1, keepdim=True).clamp(min=1.0), per_slot)

    def finish(self, z: Tensor, mu: Tensor | None) -> Tensor:
        y = self.post(z)
        return add_components(y, mu, self.out_spread, self.out_pairs) if mu is not None else y

    def extra_repr(self) -> str:
        return (f"in={''.join(self.in_kinds.kinds)}, out={''.join(self.out_kinds.kinds)}, "
                f"shift_back={self.shift_back}, padding_mode={self.padding_mode!r}")


class UniformMotionConv2d(_MotionLayer):
    """Eq. 2 of ICLR 2021: ``Q = post(conv(P - mu)) + mu`` per sliding block ``P`` (stride ``stride``, 'same'
    padding by ``padding_mode``), computed as ``post(conv(pad(x); K~)) + mu`` with the centred kernel ``K~``.

    ``post`` acts on the centred (invariant) convolution, so it may hold a batch norm as well as the activation
    without breaking equivariance. ``shift_back=False`` leaves out ``+ mu``: the layer is then invariant (the last
    layer of a residual branch, Proposition 3).
    """

    def __init__(self, in_kinds: MotionComponents, out_kinds: MotionComponents, kernel_size: int = 3,
                 stride: int = 1, post: nn.Module | None = None, shift_back: bool = True, bias: bool = True,
                 padding_mode: str = "replicate") -> None:
        super().__init__(in_kinds, out_kinds, post, shift_back, padding_mode)
        self.conv = nn.Conv2d(len(in_kinds), len(out_kinds), kernel_size, stride=stride, bias=bias)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, same_padding(kernel_size)

    def centred_weight(self) -> Tensor:
        """``K~[o, i, q] = K[o, i, q] - mean_{i' of i's component, q'} K[o, i', q']``; scalar inputs keep ``K``."""
        w = self.conv.weight
        out, period, taps = w.shape[0], self.in_period, w.shape[-2] * w.shape[-1]
        slot_sums = w.sum((-2, -1)).view(out, -1, period).sum(1)  # (C_out, P): over the period's repeats
        mean = (slot_sums @ self.period_same) / (self.period_sizes * taps)  # (C_out, P)
        return (w.view(out, -1, period, taps) - mean[:, None, :, None]).view_as(w)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_padded(pad(x, self.padding, self.padding_mode))

    def forward_padded(self, padded: Tensor) -> Tensor:
        """The layer on an input already padded by ``self.padding`` pixels of ``padding_mode`` (lets a caller pad
        a tensor once for several layers)."""
        z = F.conv2d(padded, self.centred_weight(), self.conv.bias, self.stride)
        # Channel means commute with the padding: those of the padded input are the padded means.
        mu = box_mean(self.component_means(padded), self.kernel_size, self.stride) if self.shift_back else None
        return self.finish(z, mu)


class UniformMotionConvTranspose2d(_MotionLayer):
    """The U-net up-sampler (transposed conv, kernel 4, stride 2, padding 1: doubles H and W) made uniform-motion
    equivariant by eq. 2, "padding with the mean" (ICLR 2021 sec. 3.4).

    A transposed convolution is a convolution over the zero-interleaved input; every 4 x 4 block of it holds 2 x 2
    input pixels, met by the 4 taps of one parity class ``(q_y mod 2, q_x mod 2)`` of the kernel. Filling the holes
    with the block mean (they vanish after centring) and centring the 2 x 2 input pixels is the transposed
    convolution with the kernel centred per output channel, per component *and per parity class*; ``mu`` is the
    mean of those 2 x 2 pixels. The input is padded by one pixel (``padding_mode``) so that border blocks hold input
    values only.
    """

    def __init__(self, in_kinds: MotionComponents, out_kinds: MotionComponents, post: nn.Module | None = None,
                 shift_back: bool = True, padding_mode: str = "replicate") -> None:
        super().__init__(in_kinds, out_kinds, post, shift_back, padding_mode)
        self.conv = nn.ConvTranspose2d(len(in_kinds), len(out_kinds), kernel_size=4, stride=2, padding=1)
        # (16, 4): tap (q_y, q_x) of the 4 x 4 kernel -> its parity class (q_y mod 2, q_x mod 2).
        q = torch.arange(4)
        classes = (2 * (q[:, None] % 2) + q[None, :] % 2).flatten()
        self.register_buffer("parity", F.one_hot(classes, 4).to(torch.get_default_dtype()), persistent=False)

    def centred_weight(self) -> Tensor:
        """Kernel ``(C_in, C_out, 4, 4)`` centred over each parity class of taps and each component's channels."""
        w = self.conv.weight
        period, out = self.in_period, w.shape[1]
        taps = w.view(-1, period, out, 16)  # (C_in / P, P, C_out, 16)
        # (P, C_out, 4): over the period's repeats and the 4 taps of each parity class
        slot_sums = taps.sum(0) @ self.parity
        mean = torch.einsum("pq,qok->pok", self.period_same, slot_sums) / (4 * self.period_sizes[:, None, None])
        return (taps - mean @ self.parity.T).view_as(w)

    def forward(self, x: Tensor) -> Tensor:
        padded = pad(x, 1, self.padding_mode)
        # Padding by 1 and widening the transposed conv's own padding from 1 to 3 keeps the output grid 2H x 2W.
        z = F.conv_transpose2d(padded, self.centred_weight(), self.conv.bias, stride=2, padding=3)
        mu = transposed_block_grid(box_mean(self.component_means(padded), 2)) if self.shift_back else None
        return self.finish(z, mu)
