"""Group correlation over scalings and translations (Wang, Walters & Yu, ICLR 2021, sec. 3.5, eq. 5).

Features carry a scale axis: a tensor ``(B, S * C, H, W)`` holds ``C`` channels at each of ``S`` levels
``sigma_0 = 1 > sigma_1 > ... > sigma_{S-1}`` (level-major), all on the input grid. A layer correlates level ``s``
with its trainable base kernel ``K`` rescaled to ``sigma_s``, ``K_sigma(y) = sigma^-2 K(y / sigma)``, and the same
activation, normalisation and residual structure act on every level. With the zoom ``Z_lam w(x) = w(lam x)``,
``K_sigma * Z_lam w = Z_lam (K_{lam sigma} * w)``: zooming the input moves level ``sigma`` to level ``lam sigma``, so
the layers commute with the scale-translation group (up to the grid and the truncated set of levels).

* Kernels. The base ``k x k`` kernel is read as point masses ``K_j`` at the taps ``j`` (offsets from the kernel
  centre); the level-``sigma`` kernel moves them to ``sigma j`` and splats each one bilinearly onto the two nearest
  taps per axis (the adjoint of the bilinear sampling of :func:`~symbench.symmetry.spatial_scale`). The splat keeps
  the mass and the first moment of every tap exactly, so the correlation of a field linear in space is exactly
  equivariant; it is the identity at ``sigma = 1`` and tends to the 1x1 kernel ``sum_j K_j`` as ``sigma -> 0``. With
  ``sigma <= 1`` every rescaled kernel fits in ``k x k``, so all levels run as one grouped convolution. The splat
  weights are precomputed; the kernels are generated from the trainable base weights in every forward.
* Lifting (eq. 5 for the input, ``w(p, lam) = lam w(lam p)``, without its time part): the input is copied to every
  level and each channel multiplied by ``sigma ** e`` with ``e = 1`` for vector components and ``e = scalar_power``
  for scalars; then level ``sigma`` of ``T_lam w = lam^e Z_lam w`` is level ``lam sigma`` of ``w``. The paper
  resamples the input per level; rescaling the kernels instead is the same in the continuum and resamples nothing.
* Projection (in the output layer): ``y = mean_s sigma_s^-e y_s``, the uniform (Haar) average over the levels,
  undoing the lifting factor. Truncating the scale axis to ``S`` levels is what keeps the models only
  approximately equivariant.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from symbench.fields import FieldLayout
from symbench.layers.conv import check_padding_mode, same_padding


def scale_levels(n_scales: int, ratio: float) -> tuple[float, ...]:
    """The levels ``1, 1/ratio, ..., ratio^-(n_scales - 1)``."""
    if n_scales < 1 or ratio <= 1:
        raise ValueError(f"need n_scales >= 1 and scale ratio > 1, got n_scales={n_scales}, ratio={ratio}")
    return tuple(float(ratio) ** -s for s in range(n_scales))


def splat_matrix(scale: float, size: int) -> Tensor:
    """``(size, size)`` float64 matrix ``A`` with ``A[y, j] = max(0, 1 - |(y - c) - scale (j - c)|)``,
    ``c = (size - 1) / 2``: tap ``j`` of a kernel moved to ``scale (j - c)`` and split linearly between its two
    nearest taps. Columns sum to 1 and ``sum_y (y - c) A[y, j] = scale (j - c)`` for ``0 <= scale <= 1``."""
    if not 0 <= scale <= 1:
        raise ValueError(f"kernel scales must lie in [0, 1] so that the kernel keeps its size, got {scale}")
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    return (1 - (offsets[:, None] - scale * offsets[None, :]).abs()).clamp(min=0)


def level_factors(layout: FieldLayout, frames: int, scales: Sequence[float], scalar_power: float) -> Tensor:
    """``(S, frames * C)`` lifting factors ``sigma_s ** e_c`` for a frame-major stack of ``frames`` frames of
    ``layout`` (``e = 1`` on vector components, ``scalar_power`` on scalars)."""
    exponents = torch.full((layout.channels,), float(scalar_power), dtype=torch.float64)
    for s in layout.vector_slices:
        exponents[s] = 1.0
    sigma = torch.tensor(scales, dtype=torch.float64)
    return (sigma[:, None] ** exponents.repeat(frames)[None, :]).float()


def split_levels(x: Tensor, n_scales: int) -> Tensor:
    """``(B, S * C, H, W) -> (B, S, C, H, W)``."""
    return x.view(x.shape[0], n_scales, -1, *x.shape[2:])


def merge_levels(x: Tensor) -> Tensor:
    """``(B, S, C, H, W) -> (B, S * C, H, W)``."""
    return x.flatten(1, 2)


def cat_levels(tensors: Sequence[Tensor], n_scales: int) -> Tensor:
    """Concatenate level-major features along their channels, level by level."""
    return merge_levels(torch.cat([split_levels(t, n_scales) for t in tensors], dim=2))


class ScaleLift(nn.Module):
    """``(B, frames * C, H, W) -> (B, S * frames * C, H, W)``: channel ``c`` at level ``s`` is ``sigma_s^e_c x_c``
    (the input side of eq. 5)."""

    factors: Tensor

    def __init__(self, layout: FieldLayout, frames: int, scales: Sequence[float], scalar_power: float = 0.0) -> None:
        super().__init__()
        self.n_scales = len(scales)
        self.register_buffer("factors", level_factors(layout, frames, scales, scalar_power), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return merge_levels(x.unsqueeze(1) * self.factors[None, :, :, None, None])


def same_conv(x: Tensor, weight: Tensor, stride: int, padding_mode: str, groups: int) -> Tensor:
    """``conv2d`` with 'same' padding of kind ``padding_mode`` for the odd square ``weight``."""
    padding = same_padding(weight.shape[-1])
    if padding_mode == "zeros":
        return F.conv2d(x, weight, stride=stride, padding=padding, groups=groups)
    return F.conv2d(F.pad(x, (padding,) * 4, mode=padding_mode), weight, stride=stride, groups=groups)


class ScaleKernel(nn.Module):
    """A trainable bias-free base kernel and its bilinear rescalings to every level."""

    splat: Tensor

    def __init__(self, weight_shape: tuple[int, ...], scales: Sequence[float]) -> None:
        super().__init__()
        size = weight_shape[-1]
        if weight_shape[-2] != size:
            raise ValueError(f"kernels must be square, got {weight_shape[-2:]}")
        self.scales = tuple(float(s) for s in scales)
        self.n_scales = len(self.scales)
        self.weight = nn.Parameter(torch.empty(weight_shape))
        # PyTorch's default convolution initialisation, as in the plain backbones.
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        # (k*k, S*k*k): the 2D splat of every level, A_s (x) A_s, so that rescaling all kernels is one small matmul.
        splat = torch.cat([torch.kron(a, a).T for a in (splat_matrix(s, size) for s in self.scales)], dim=1)
        self.register_buffer("splat", splat.float(), persistent=False)

    def rescaled(self) -> Tensor:
        """``(S * d0, d1, k, k)``: the base kernel ``(d0, d1, k, k)`` rescaled to every level, level-major."""
        d0, d1, k, _ = self.weight.shape
        kernels = (self.weight.reshape(d0 * d1, k * k) @ self.splat.to(self.weight.dtype)).view(d0, d1, -1, k, k)
        return kernels.permute(2, 0, 1, 3, 4).reshape(-1, d1, k, k)

    def extra_repr(self) -> str:
        return f"scales=({', '.join(f'{s:.4g}' for s in self.scales)})"


class ScaleConv2d(ScaleKernel):
    """Group correlation ``(B, S * C_in, H, W) -> (B, S * C_out, H', W')``: level ``s`` is correlated with the base
    kernel rescaled to ``sigma_s``, all levels in one grouped convolution (eq. 5; no bias, so it is linear and the
    networks built from it are positively homogeneous). 'same' padding of kind ``padding_mode``, optional stride."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, scales: Sequence[float],
                 stride: int = 1, padding_mode: str = "zeros") -> None:
        check_padding_mode(padding_mode)
        super().__init__((out_channels, in_channels, kernel_size, kernel_size), scales)
        same_padding(kernel_size)
        self.stride = stride
        self.padding_mode = padding_mode

    def forward(self, x: Tensor) -> Tensor:
        return same_conv(x, self.rescaled(), self.stride, self.padding_mode, self.n_scales)

    def extra_repr(self) -> str:
        out_channels, in_channels, k, _ = self.weight.shape
        return (f"{in_channels}, {out_channels}, kernel_size={k}, stride={self.stride}, "
                f"padding_mode={self.padding_mode!r}, {super().extra_repr()}")


class ScaleConvProject2d(ScaleKernel):
    """The output layer: group correlation to the ``C`` channels of ``layout`` fused with the projection,
    ``(B, S * C_in, H, W) -> (B, C, H, W)``, ``y = mean_s sigma_s^-e (K_{sigma_s} * x_s)`` (``e`` as in
    :class:`ScaleLift`; stride 1, no bias).

    Both steps are linear, so they are one ordinary convolution over all ``S * C_in`` channels with the level
    kernels, weighted, side by side: the same arithmetic as the grouped convolution, but a dense one with ``C``
    outputs instead of ``S`` groups of ``C``, which runs about 1.5x faster on CPU for the few output channels here.
    """

    level_weights: Tensor

    def __init__(self, in_channels: int, layout: FieldLayout, kernel_size: int, scales: Sequence[float],
                 scalar_power: float = 0.0, padding_mode: str = "zeros") -> None:
        check_padding_mode(padding_mode)
        super().__init__((layout.channels, in_channels, kernel_size, kernel_size), scales)
        same_padding(kernel_size)
        self.padding_mode = padding_mode
        weights = 1 / (len(scales) * level_factors(layout, 1, scales, scalar_power))
        self.register_buffer("level_weights", weights, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        out_channels, in_channels, k, _ = self.weight.shape
        kernels = self.rescaled().view(self.n_scales, out_channels, in_channels, k, k)
        kernels = kernels * self.level_weights.to(kernels.dtype)[:, :, None, None, None]
        weight = kernels.transpose(0, 1).reshape(out_channels, self.n_scales * in_channels, k, k)
        return same_conv(x, weight, 1, self.padding_mode, 1)

    def extra_repr(self) -> str:
        out_channels, in_channels, k, _ = self.weight.shape
        return (f"{in_channels}, {out_channels}, kernel_size={k}, padding_mode={self.padding_mode!r}, "
                f"{super().extra_repr()}")


class ScaleConvTranspose2d(ScaleKernel):
    """Transposed group correlation with a 4x4 kernel, stride 2, padding 1 (doubles H and W exactly, like
    :class:`~symbench.layers.UpConvAct`'s convolution), the kernel rescaled about its centre for every level."""

    def __init__(self, in_channels: int, out_channels: int, scales: Sequence[float]) -> None:
        super().__init__((in_channels, out_channels, 4, 4), scales)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv_transpose2d(x, self.rescaled(), stride=2, padding=1, groups=self.n_scales)

    def extra_repr(self) -> str:
        in_channels, out_channels = self.weight.shape[:2]
        return f"{in_channels}, {out_channels}, kernel_size=4, stride=2, {super().extra_repr()}"


class _RootMeanSquareNorm(torch.autograd.Function):
    """``y = x * gamma / sqrt(mean(x^2) + eps)`` per channel of ``(N, C, H, W)``, mean over N, H, W.

    Written out for speed: forward and backward of the composite of ``square``, ``mean`` and ``mul`` took 2.2x the
    time of ``F.batch_norm`` on (32, 64, 64, 64) maps, this 1.4x. Backward:
    ``dx = r gamma dy - gamma r^3 D x / M`` and ``dgamma = r D`` with ``r = (mean(x^2) + eps)^-1/2``,
    ``D = sum(dy x)`` per channel and ``M = N H W``.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, eps: float) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        count = x.numel() // x.shape[1]
        mean_sq = torch.linalg.vector_norm(x, dim=(0, 2, 3)).square() / count
        r = torch.rsqrt(mean_sq + eps)
        ctx.save_for_backward(x, weight, r)
        ctx.mark_non_differentiable(mean_sq)
        return x * (weight * r)[:, None, None], mean_sq

    @staticmethod
    def backward(ctx, grad_y: Tensor, grad_mean_sq: Tensor) -> tuple[Tensor, Tensor, None]:  # type: ignore[override]
        x, weight, r = ctx.saved_tensors
        count = x.numel() // x.shape[1]
        d = (grad_y * x).sum(dim=(0, 2, 3))
        grad_x = grad_y * (weight * r)[:, None, None]
        grad_x.addcmul_(x, (-weight * r**3 * d / count)[:, None, None])
        return grad_x, r * d, None


class ScaleBatchNorm2d(nn.Module):
    """Batch normalisation without centring and without shift, shared by all levels:
    ``y = gamma x / sqrt(E[x^2] + eps)`` per channel, ``E`` over batch, levels and pixels in training and a running
    average at evaluation.

    Sharing the statistics over the levels treats every level alike (needed for the level shift); leaving out the
    mean and the shift keeps the evaluation-mode network positively homogeneous (the bias-free networks of Mohan et
    al., ICLR 2020), so the magnitude part of eq. 3 holds exactly.
    """

    running_sq: Tensor

    def __init__(self, channels: int, n_scales: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.n_scales = n_scales
        self.momentum = momentum
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.register_buffer("running_sq", torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        # (B, S * C, H, W) viewed as (B * S, C, H, W): the statistics pool batch and levels.
        flat = x.view(-1, self.weight.shape[0], *x.shape[2:])
        if self.training:
            y, mean_sq = _RootMeanSquareNorm.apply(flat, self.weight, self.eps)
            with torch.no_grad():
                self.running_sq.lerp_(mean_sq.to(self.running_sq.dtype), self.momentum)
        else:
            y = flat * (self.weight * torch.rsqrt(self.running_sq + self.eps))[:, None, None]
        return y.view(x.shape)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, n_scales={self.n_scales}, momentum={self.momentum}, eps={self.eps}"
