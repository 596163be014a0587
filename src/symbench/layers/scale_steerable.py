"""Scale-steerable convolutions (SESN: Sosnovik, Szmaja & Smeulders, ICLR 2020) and their relaxations
(Wang, Walters & Yu, ICML 2022 sec. 3.2, eq. 6-9, penalty sec. 3.3).

Features are level-major, ``(B, S * C, H, W)``, as in :mod:`symbench.layers.scale_conv`: level ``s`` holds the
features at the scale ``sigma_s`` of an increasing set (``sigma_0 < sigma_1 < ...``, default
:data:`DEFAULT_SCALES` = 1, 1.5, 2, 2.5 px, the ICML 2022 reference's), all on the input grid.

* Basis (SESN's Hermite-Gaussian basis). ``psi_{sigma, (n, m)}(y) = sigma^-2 h_n(y_1 / sigma) h_m(y_2 / sigma)``
  with ``h_n`` the orthonormal Hermite functions (``H_n(t) exp(-t^2 / 2)``, normalised), orders ``n, m < e``
  (``e = effective_size``, ``L = e^2`` functions: the parameters of an ``e x e`` convolution, SESN's "effective
  size"), on a ``k x k`` kernel (``k = kernel_size >= 5``). As in SESN every function is cut off at the same multiple
  of its width, ``|y_i| <= c sigma`` with ``c = (k / 2) / sigma_max``: the widest level fills the kernel and the
  narrower ones are the same truncated function shrunk (SESN computes level ``s`` on a grid of about
  ``k sigma_s / sigma_max`` taps and zero-pads it), so the continuous kernels of all levels are exact rescalings
  ``K_sigma(y) = sigma^-2 K(y / sigma)`` of one another. The factor ``sigma^-2`` is SESN's normalisation (the norm
  at the smallest scale divides every scale): every function has the same integral at every scale. Each function
  is integrated against the tents (hat functions) of the kernel's taps, in closed form
  (:func:`hermite_tent_integrals`), rather than point-sampled: a correlation with tent-integrated kernels is exactly
  the continuous correlation with the piecewise-linear interpolant of its input, so every level keeps the mass and
  first moment of its continuous kernel.
* Equivariance. With the zoom ``Z_lam w(x) = w(lam x)``, ``K_sigma * Z_lam w = Z_lam (K_{lam sigma} * w)``: zooming
  the input out by ``lam = sigma_j / sigma_i`` moves level ``j`` onto level ``i``, up to the grid.
* Strict layer (eq. 6 per level; SESN's H -> H convolution with ``scale_size = I`` neighbouring scales):
  ``y_s = sum_{i < I} K_{s,i} * f_{s+i}``, ``K_{s,i} = sum_l w_{i,l} psi_{sigma_s, l}``, ``w`` of shape
  ``(C_out, C_in, I, L)``, levels past the last one zero (SESN pads the scale axis with zeros). ``I > 1`` mixes a
  level with the ``I - 1`` coarser ones; it is equivariant only on a geometric scale set (``sigma_{s+1} / sigma_s``
  constant), which is then required. ``I = 1`` (the default, as in the ICML 2022 reference) keeps levels apart.
* Relaxed layer (eq. 7): ``K_{s,i}(y) = sum_l w_{i,l}(y) psi_{sigma_s, l}(y)``, one weight per basis function and
  kernel tap ``y`` (``w: K^2 -> R^{c_out x c_in x L}``), shared by the levels, ``(C_out, C_in, I, L, k, k)``.
  ``w`` starts equal over ``y`` (the paper's "we initialize w_l(y) equally for every y"; the layer is then the
  strict one) and ``regularization_loss`` is its total variation over the taps (sec. 3.3), zero exactly when ``w``
  does not depend on ``y``.
* Relaxed translation x relaxed scale (eq. 8-9): ``w_l(x, y) = sum_r a_r(x) b_{r,l}(y)``, ``R`` relaxed kernels
  stacked on the output axis and mixed pixel by pixel (:class:`PixelMixedScaleConv2d`).

Departures from the ICML 2022 reference (Rose-STL-Lab/Approximately-Equivariant-Nets): the reference point-samples
``exp(-y^2 / 2 sigma^2) He_n(y / sigma) / sigma`` with ``effective_size = 7`` on a 5 x 5 kernel (49 functions for
25 taps) and adds a bias per layer; here the functions are the orthonormal Hermite functions, tent-integrated,
``effective_size = 3`` by default (so that SESN has the parameters of a 3 x 3 ConvNet), no bias, and the relaxed
weights start equal over the taps (the reference draws them per tap) with the TV penalty of sec. 3.3 (the reference
takes the mean absolute difference to the diagonal neighbour, with wrap-around).

All levels (and the ``I`` scale neighbours) run in one grouped convolution (levels as groups); the kernels are
expanded from the weights once per forward with a precomputed non-persistent buffer (moved by ``.to``, ``.double()``
and DDP).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from symbench.fields import FieldLayout
from symbench.layers.conv import check_padding_mode, same_padding
from symbench.layers.pixel_mixing import GridSize, PixelMixing, total_variation
from symbench.layers.scale_conv import level_factors, same_conv, split_levels

DEFAULT_SCALES = (1.0, 1.5, 2.0, 2.5)  # px; the ICML 2022 reference's SESN / RSteer scales
DEFAULT_KERNEL_SIZE = 5  # the ICML 2022 reference's kernel for the scale models
MIN_KERNEL_SIZE = 5
DEFAULT_EFFECTIVE_SIZE = 3  # Hermite orders per axis: L = 9 functions, the parameters of a 3 x 3 convolution
GEOMETRIC_TOLERANCE = 1e-6


def support_size(effective_size: int) -> int:
    """The kernel grid for an ``effective_size``: one tap of margin on each side, at least SESN's 5 x 5
    (``effective_size = 3`` gives the ICML 2022 reference's 5 x 5)."""
    return max(MIN_KERNEL_SIZE, effective_size + 2)


def hermite_functions(n_orders: int, t: Tensor) -> Tensor:
    """``(n_orders, *t.shape)``: the orthonormal Hermite functions ``h_0 .. h_{n_orders - 1}`` at ``t`` by the
    three-term recurrence ``h_{n+1} = sqrt(2 / (n + 1)) t h_n - sqrt(n / (n + 1)) h_{n-1}``."""
    h = [math.pi**-0.25 * torch.exp(-t.square() / 2)]
    h.append(math.sqrt(2.0) * t * h[0])
    for n in range(1, n_orders - 1):
        h.append(math.sqrt(2 / (n + 1)) * t * h[n] - math.sqrt(n / (n + 1)) * h[n - 1])
    return torch.stack(h[:n_orders])


def hermite_integrals(n_orders: int, a: Tensor, b: Tensor) -> Tensor:
    """``(n_orders, *a.shape)``: ``int_a^b h_n(t) dt`` in closed form: ``int h_0 = pi^(1/4) / sqrt(2) erf(t / sqrt(2))``
    and, from ``h_n' = sqrt(n / 2) h_{n-1} - sqrt((n + 1) / 2) h_{n+1}``,
    ``int h_{n+1} = (sqrt(n / 2) int h_{n-1} - [h_n]) / sqrt((n + 1) / 2)``."""
    ends = torch.stack([a, b])
    jumps = hermite_functions(max(n_orders - 1, 1), ends).diff(dim=1).squeeze(1)  # [h_n]_a^b
    erf = torch.erf(ends / math.sqrt(2.0))
    integrals = [math.pi**0.25 / math.sqrt(2.0) * (erf[1] - erf[0])]
    for n in range(n_orders - 1):
        previous = integrals[n - 1] if n else torch.zeros_like(integrals[0])
        integrals.append((math.sqrt(n / 2) * previous - jumps[n]) / math.sqrt((n + 1) / 2))
    return torch.stack(integrals)


def hermite_tent_integrals(n_orders: int, sigma: float, nodes: Tensor, cutoff: float = math.inf) -> Tensor:
    """``(n_orders, len(nodes))``: ``int_{|x| <= cutoff sigma} sigma^-1 h_n(x / sigma) tent(x - j) dx`` at every node
    ``j``, with ``tent(u) = max(0, 1 - |u|)``, in closed form (:func:`hermite_integrals`, and
    ``t h_n = sqrt((n + 1) / 2) h_{n+1} + sqrt(n / 2) h_{n-1}`` for the linear part of the tent).

    This is the adjoint of linear interpolation: a correlation with these taps is the continuous correlation with
    the piecewise-linear interpolant of its input, which keeps the mass and the first moment of every (cut-off)
    function at every width. The cut-off is a multiple of the width, so the cut functions rescale exactly."""
    if sigma <= 0 or cutoff <= 0:
        raise ValueError(f"basis widths and the cut-off must be positive, got {sigma} and {cutoff}")
    nodes = nodes.to(torch.float64)
    reach = cutoff * sigma
    total = torch.zeros(n_orders, *nodes.shape, dtype=torch.float64, device=nodes.device)
    for side in (-1.0, 1.0):  # the tent's left half (x in [j-1, j]) and right half (x in [j, j+1])
        lo = (nodes + min(side, 0.0)).clamp(-reach, reach) / sigma
        hi = (nodes + max(side, 0.0)).clamp(-reach, reach) / sigma
        ints = hermite_integrals(n_orders + 1, lo, hi)  # orders 0 .. n_orders
        moments = [math.sqrt((n + 1) / 2) * ints[n + 1] + (math.sqrt(n / 2) * ints[n - 1] if n else 0.0)
                   for n in range(n_orders)]
        # on this half tent(x - j) = 1 + side * (j - x), x = sigma t
        total += (1 + side * nodes) * ints[:n_orders] - side * sigma * torch.stack(moments)
    return total


def check_scales(scales: Sequence[float], scale_size: int = 1) -> tuple[float, ...]:
    """The scales as floats: positive and strictly increasing; geometric when ``scale_size > 1``."""
    values = tuple(float(s) for s in scales)
    if not values or min(values) <= 0 or any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"scales must be positive and strictly increasing, got {values}")
    if scale_size < 1:
        raise ValueError(f"scale_size must be >= 1, got {scale_size}")
    ratios = [b / a for a, b in zip(values, values[1:])]
    if scale_size > 1 and any(abs(r / ratios[0] - 1) > GEOMETRIC_TOLERANCE for r in ratios):
        raise ValueError(f"scale_size={scale_size} mixes neighbouring levels, which is scale-equivariant only on a "
                         f"geometric scale set (constant ratio); got {values}")
    return values


def hermite_gaussian_basis(effective_size: int, widths: Sequence[float], kernel_size: int,
                           cutoff: float | None = None) -> Tensor:
    """``(S, e * e, k, k)`` float64: ``psi_{sigma_s, (n, m)}`` cut off at ``|y_i| <= cutoff sigma_s`` and integrated
    against the tents of the ``k x k`` kernel's taps (rows ``y_1``, columns ``y_2``), function ``l = n e + m``, for
    every width. Default ``cutoff = (k / 2) / max(widths)``: the widest level fills the kernel (SESN)."""
    same_padding(kernel_size)
    cutoff = kernel_size / 2 / max(widths) if cutoff is None else cutoff
    centres = torch.arange(kernel_size, dtype=torch.float64, device="cpu") - (kernel_size - 1) / 2
    levels = []
    for sigma in widths:
        taps = hermite_tent_integrals(effective_size, float(sigma), centres, cutoff)  # (e, k)
        levels.append(torch.einsum("ni,mj->nmij", taps, taps).reshape(effective_size**2, kernel_size, kernel_size))
    return torch.stack(levels)


def scale_neighbours(x: Tensor, n_scales: int, scale_size: int) -> Tensor:
    """``(B, S * C, H, W) -> (B, S * I * C, H, W)``: level ``s`` followed by levels ``s + 1 .. s + I - 1`` (zero past
    the last level), level-major, so that one grouped convolution sees every level's ``I`` scale neighbours."""
    if scale_size == 1:
        return x
    levels = split_levels(x, n_scales)
    padded = torch.cat([levels, levels.new_zeros(levels.shape[0], scale_size - 1, *levels.shape[2:])], dim=1)
    return torch.stack([padded[:, i:i + n_scales] for i in range(scale_size)], dim=2).flatten(1, 3)


class ScaleSteerableConv2d(nn.Module):
    """Scale-steerable correlation ``(B, S * C_in, H, W) -> (B, S * C_out, H, W)``: level ``s`` is
    ``sum_{i < I} K_{s,i} * f_{s+i}`` with ``K_{s,i} = sum_l w_{i,l} psi_{sigma_s, l}`` (eq. 6, strict) or
    ``K_{s,i}(y) = sum_l w_{i,l}(y) psi_{sigma_s, l}(y)`` (eq. 7, ``relaxed=True``, one weight per tap), all levels in
    one grouped convolution, 'same' padding of kind ``padding_mode``, no bias.

    ``scales`` are the basis widths ``sigma_s`` in px (:func:`check_scales`); ``kernel_size`` the ``k x k`` grid;
    ``effective_size`` the Hermite orders per axis; ``scale_size`` the ``I`` scale neighbours. Weights:
    ``(C_out, C_in, I, L)``, relaxed ``(C_out, C_in, I, L, k, k)``; drawn so that the level-0 kernel has the squared
    norm, in expectation, of a default-initialised convolution, and equal over the taps.
    """

    expansion: Tensor

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = DEFAULT_KERNEL_SIZE,
                 scales: Sequence[float] = DEFAULT_SCALES, *, effective_size: int = DEFAULT_EFFECTIVE_SIZE,
                 scale_size: int = 1, relaxed: bool = False, padding_mode: str = "zeros") -> None:
        super().__init__()
        check_padding_mode(padding_mode)
        same_padding(kernel_size)
        if kernel_size < MIN_KERNEL_SIZE:
            raise ValueError(f"scale-steerable kernels need kernel_size >= {MIN_KERNEL_SIZE} (SESN's smallest: the "
                             f"narrowest of the growing scales must still span several taps), got {kernel_size}")
        if not 1 <= effective_size <= kernel_size:
            raise ValueError(f"effective_size must lie in 1..kernel_size={kernel_size}, got {effective_size}")
        self.scales = check_scales(scales, scale_size)
        self.kernel_size, self.effective_size, self.scale_size = kernel_size, effective_size, scale_size
        self.relaxed, self.padding_mode, self.n_scales = relaxed, padding_mode, len(self.scales)
        basis = hermite_gaussian_basis(effective_size, self.scales, kernel_size)  # (S, L, k, k)
        n_funcs = effective_size**2
        basis = basis.permute(1, 0, 2, 3).reshape(n_funcs, self.n_scales, kernel_size**2)  # (L, S, k^2)
        bound = (in_channels * scale_size * basis[:, 0].square().sum()).rsqrt().item()
        weight = torch.empty(out_channels, in_channels, scale_size, n_funcs).uniform_(-bound, bound)
        if relaxed:  # w_l(y), equal over the taps y at init
            weight = weight[..., None, None].expand(-1, -1, -1, -1, kernel_size, kernel_size)
        self.weight = nn.Parameter(weight.contiguous())
        self.register_buffer("expansion", basis.float(), persistent=False)

    def level_kernels(self) -> Tensor:
        """``(S, C_out, I, C_in, k, k)``: ``K_{s,i}`` for every level ``s`` and scale neighbour ``i``."""
        c_out, c_in, i_size = self.weight.shape[:3]
        basis = self.expansion.to(self.weight.dtype)  # (L, S, k^2)
        if self.relaxed:  # K(y) = sum_l w_l(y) psi_l(y): per tap
            kernels = torch.einsum("nly,lsy->nsy", self.weight.flatten(-2).flatten(0, 2), basis)
        else:
            kernels = (self.weight.flatten(0, 2) @ basis.flatten(1)).view(-1, self.n_scales, basis.shape[-1])
        k = self.kernel_size
        return kernels.view(c_out, c_in, i_size, self.n_scales, k, k).permute(3, 0, 2, 1, 4, 5)

    def forward(self, x: Tensor) -> Tensor:
        kernels = self.level_kernels()
        s, c_out, i_size, c_in, k, _ = kernels.shape
        weight = kernels.reshape(s * c_out, i_size * c_in, k, k)
        return same_conv(scale_neighbours(x, s, i_size), weight, 1, self.padding_mode, s)

    def regularization_loss(self) -> Tensor:
        """Total variation of ``w_l(y)`` over the kernel taps (sec. 3.3); zero for the strict layer."""
        if not self.relaxed:
            return self.weight.new_zeros(())
        return total_variation(self.weight)

    def extra_repr(self) -> str:
        c_out, c_in = self.weight.shape[:2]
        return (f"{c_in}, {c_out}, kernel_size={self.kernel_size}, effective_size={self.effective_size}, "
                f"scale_size={self.scale_size}, relaxed={self.relaxed}, padding_mode={self.padding_mode!r}, "
                f"scales=({', '.join(f'{s:.4g}' for s in self.scales)})")


class ScaleSteerableLift2d(ScaleSteerableConv2d):
    """First layer (SESN's Z2 -> H convolution): ``(B, C_in, H, W) -> (B, S * C_out, H, W)``,
    ``y_s = K_s * (f_s x)`` with ``f_s`` the ``(S, C_in)`` lifting ``factors`` of
    :class:`~symbench.layers.scale_conv.ScaleLift` (``(sigma_s / sigma_0)^e``) folded into the kernels: the lift and a
    :class:`ScaleSteerableConv2d` (``I = 1``) as one dense convolution with ``S * C_out`` outputs, without copying the
    input to every level (a grouped convolution over ``S`` copies left oneDNN's fast path for odd channel counts)."""

    factors: Tensor

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, scales: Sequence[float],
                 factors: Tensor, *, effective_size: int = DEFAULT_EFFECTIVE_SIZE, relaxed: bool = False,
                 padding_mode: str = "zeros") -> None:
        super().__init__(in_channels, out_channels, kernel_size, scales, effective_size=effective_size,
                         relaxed=relaxed, padding_mode=padding_mode)
        if tuple(factors.shape) != (self.n_scales, in_channels):
            raise ValueError(f"factors must have shape (S, C_in) = ({self.n_scales}, {in_channels}), "
                             f"got {tuple(factors.shape)}")
        self.register_buffer("factors", factors.float(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        factors = self.factors.to(self.weight.dtype)[:, None, :, None, None]
        kernels = self.level_kernels()[:, :, 0] * factors  # (S, C_out, C_in, k, k)
        s, c_out, c_in, k, _ = kernels.shape
        return same_conv(x, kernels.reshape(s * c_out, c_in, k, k), 1, self.padding_mode, 1)


def relative_scales(scales: Sequence[float]) -> tuple[float, ...]:
    """``sigma_s / sigma_0``: the zoom that maps level 0 onto level ``s`` (lifting and projection factors)."""
    return tuple(float(s) / float(scales[0]) for s in scales)


class ScaleSteerableProject2d(ScaleSteerableConv2d):
    """Output layer: :class:`ScaleSteerableConv2d` (``I = 1``) to ``copies`` stacked copies of the ``C`` channels of
    ``layout`` fused with the level average ``y = mean_s (sigma_s / sigma_0)^-e y_s`` of
    :class:`~symbench.layers.scale_conv.ScaleConvProject2d`, ``(B, S * C_in, H, W) -> (B, copies * C, H, W)``, as
    one dense convolution over all levels (``copies = R`` feeds the pixel mixing of eq. 9)."""

    level_weights: Tensor

    def __init__(self, in_channels: int, layout: FieldLayout, kernel_size: int = DEFAULT_KERNEL_SIZE,
                 scales: Sequence[float] = DEFAULT_SCALES, *, copies: int = 1, scalar_power: float = 0.0,
                 effective_size: int = DEFAULT_EFFECTIVE_SIZE, relaxed: bool = False,
                 padding_mode: str = "zeros") -> None:
        super().__init__(in_channels, copies * layout.channels, kernel_size, scales, effective_size=effective_size,
                         relaxed=relaxed, padding_mode=padding_mode)
        weights = 1 / (len(self.scales) * level_factors(layout, 1, relative_scales(self.scales), scalar_power))
        self.register_buffer("level_weights", weights.repeat(1, copies), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        kernels = self.level_kernels()[:, :, 0] * self.level_weights[:, :, None, None, None]
        s, c_out, c_in, k, _ = kernels.shape
        return same_conv(x, kernels.transpose(0, 1).reshape(c_out, s * c_in, k, k), 1, self.padding_mode, 1)


class PixelMixedScaleConv2d(nn.Module):
    """Eq. 8-9 on level-major features: ``conv`` computes ``R`` kernels ``K_r`` stacked on its output axis (per
    level: ``(R, C)``, rank-major) and the result is ``y_s(x) = sum_r a_r(x) (K_{r,s} * f_s)(x)``, with the
    per-pixel weights ``a_r`` (:class:`~symbench.layers.pixel_mixing.PixelMixing`) shared by the ``levels`` output
    levels (``levels = 1`` after a projection). ``regularization_loss`` adds the TV of ``a_r`` to ``conv``'s."""

    def __init__(self, conv: ScaleSteerableConv2d, levels: int, ranks: int, grid_size: GridSize,
                 relax_grid: GridSize | None = None) -> None:
        super().__init__()
        self.conv, self.levels = conv, levels
        self.mixing = PixelMixing(ranks, grid_size, relax_grid)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        b, _, h, w = y.shape
        return self.mixing(y.view(b * self.levels, -1, h, w)).view(b, -1, h, w)

    def regularization_loss(self) -> Tensor:
        return self.conv.regularization_loss() + self.mixing.regularization_loss()

    def extra_repr(self) -> str:
        return f"levels={self.levels}"
