"""Scale-steerable convolutions (SESN: Sosnovik, Szmaja & Smeulders, ICLR 2020) and their relaxations (Wang, Walters
& Yu, ICML 2022 sec. 3.2, eq. 6-9, penalty sec. 3.3).

Features are level-major, ``(B, S * C, H, W)``, as in :mod:`symbench.layers.scale_conv`: level ``s`` holds the
features at the relative scale ``sigma_s = r^-s`` (``1 = sigma_0 > sigma_1 > ...``), all on the input grid.

* Basis. ``psi_{sigma, (n, m)}(y) = sigma^-2 h_n(y_1 / sigma) h_m(y_2 / sigma)`` with ``h_n`` the orthonormal
  Hermite functions (``H_n(t) exp(-t^2 / 2)``, normalised), orders ``n, m < k`` (``k = kernel_size``, so
  ``L = k^2`` functions). The factor ``sigma^-2`` is the per-scale normalisation of
  ``K_sigma(y) = sigma^-2 K(y / sigma)``: the functions of one scale are orthogonal with norm ``sigma^-1`` and every
  function has the same integral at every scale. The width of level ``s`` is ``sigma_0 sigma_s`` with
  ``sigma_0`` the largest width at which every function of orders ``< k`` keeps more than 99.9 % of its energy
  inside the ``P x P`` support (``P = k + 2`` by default, see :func:`level_zero_width`; 0.7 px for ``k = 3``).
  Each function is integrated against the tents (hat functions) of the support's nodes, in closed form
  (:func:`hermite_tent_integrals`), rather than point-sampled: levels 1 and up are narrower than a pixel, where point
  samples alias. A correlation with tent-integrated kernels is exactly the continuous correlation with the
  piecewise-linear interpolant of its input, so every level keeps the mass and first moment of its continuous
  kernel, and zooming out by ``r`` maps level ``s`` onto level ``s + 1`` up to the interpolation error of the input
  (the tents' two-scale relation makes the basis of width ``2 sigma``, filtered by ``[1/2, 1, 1/2]`` per axis and
  subsampled by 2, exactly the basis of width ``sigma``). As ``sigma -> 0`` a kernel tends to its mass on the centre
  tap and its first moment split onto the neighbours, the bilinear splat of ``ScaleKernel``.
* Strict layer (eq. 6 per level, SESN): ``K_s(y) = sum_l w_l psi_{sigma_s, l}(y)``, ``w`` of shape
  ``(C_out, C_in, L)``; the levels are not mixed (as in EquScal, :mod:`symbench.models.equ_scale`).
* Relaxed layer (eq. 7): ``K_s(y) = sum_l w_l(y) psi_{sigma_s, l}(y)``, ``w_l(y)`` shared by all levels, given at
  ``G x G`` nodes spread evenly over the support and interpolated bilinearly to its taps (``G = k`` by default,
  so ``kernel_size`` keeps setting the parameter count; ``G = P`` is one weight per support tap). ``w`` starts
  constant over ``y`` (the layer is then the strict one) and ``regularization_loss`` is its total variation over
  the node grid (sec. 3.3), zero exactly when ``w`` does not depend on ``y``.
* Relaxed translation x relaxed scale (eq. 8-9): ``w_l(x, y) = sum_r a_r(x) b_{r,l}(y)``, ``R`` relaxed kernels
  stacked on the output axis and mixed pixel by pixel (:class:`PixelMixedScaleConv2d`).

All levels run in one grouped convolution (levels as groups); the kernels are expanded from the weights once per
forward by one matmul with a precomputed non-persistent buffer (moved by ``.to``, ``.double()`` and DDP).
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import torch
from torch import Tensor, nn

from symbench.fields import FieldLayout
from symbench.layers.conv import check_padding_mode, same_padding
from symbench.layers.pixel_mixing import GridSize, PixelMixing, total_variation
from symbench.layers.scale_conv import level_factors, same_conv

ENERGY_TAIL = 1e-3  # largest share of a level-0 function's energy allowed outside the support


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


def hermite_tent_integrals(n_orders: int, sigma: float, nodes: Tensor) -> Tensor:
    """``(n_orders, len(nodes))``: ``int sigma^-1 h_n(x / sigma) tent(x - j) dx`` at every node ``j``, with
    ``tent(u) = max(0, 1 - |u|)``, in closed form (:func:`hermite_integrals`, and
    ``t h_n = sqrt((n + 1) / 2) h_{n+1} + sqrt(n / 2) h_{n-1}`` for the linear part of the tent).

    This is the adjoint of linear interpolation: a correlation with these taps is the continuous correlation with
    the piecewise-linear interpolant of its input, which keeps the mass and the first moment of every function at
    every width (a function narrower than a pixel is split between the nodes around it, not aliased)."""
    if sigma <= 0:
        raise ValueError(f"basis widths must be positive, got {sigma}")
    nodes = nodes.to(torch.float64)
    total = torch.zeros(n_orders, *nodes.shape, dtype=torch.float64, device=nodes.device)
    for side in (-1.0, 1.0):  # the tent's left half (x in [j-1, j]) and right half (x in [j, j+1])
        lo, hi = (nodes + min(side, 0.0)) / sigma, (nodes + max(side, 0.0)) / sigma
        ints = hermite_integrals(n_orders + 1, lo, hi)  # orders 0 .. n_orders
        moments = [math.sqrt((n + 1) / 2) * ints[n + 1] + (math.sqrt(n / 2) * ints[n - 1] if n else 0.0)
                   for n in range(n_orders)]
        # on this half tent(x - j) = 1 + side * (j - x), x = sigma t
        total += (1 + side * nodes) * ints[:n_orders] - side * sigma * torch.stack(moments)
    return total


@functools.lru_cache(maxsize=None)
def level_zero_width(kernel_size: int, support: int) -> float:
    """The largest width ``sigma_0`` at which each of ``h_0 .. h_{k-1}`` (scaled to ``sigma_0``) keeps all but
    :data:`ENERGY_TAIL` of its energy inside ``|y| <= support / 2`` (a tenth-of-a-pixel search on a fine grid).
    For ``k = 3`` and ``P = 5``: 0.7 px; ``k = 5``, ``P = 7``: 0.8 px."""
    t = torch.linspace(-30, 30, 60001, dtype=torch.float64, device="cpu")
    energy = hermite_functions(kernel_size, t).square()

    def fits(width: float) -> bool:
        outside = t.abs() > support / 2 / width
        return bool((energy[:, outside].sum(1) <= ENERGY_TAIL * energy.sum(1)).all())

    tenths = 1
    while fits((tenths + 1) / 10):
        tenths += 1
    return tenths / 10


def hermite_gaussian_basis(kernel_size: int, widths: Sequence[float], support: int) -> Tensor:
    """``(S, k * k, P, P)`` float64: ``psi_{sigma_s, (n, m)}`` integrated against the tents of the ``P x P``
    support's nodes (rows ``y_1``, columns ``y_2``), function ``l = n k + m``, for every width in ``widths``."""
    same_padding(support)
    centres = torch.arange(support, dtype=torch.float64, device="cpu") - (support - 1) / 2
    levels = []
    for sigma in widths:
        taps = hermite_tent_integrals(kernel_size, float(sigma), centres)  # (k, P)
        levels.append(torch.einsum("ni,mj->nmij", taps, taps).reshape(kernel_size**2, support, support))
    return torch.stack(levels)


def node_interpolation(nodes: int, support: int) -> Tensor:
    """``(P * P, G * G)`` float64: bilinear interpolation from ``G x G`` weight nodes spread evenly over the support
    (the outer ones on its outer taps; one node is the constant) to its ``P x P`` taps. Rows sum to 1."""
    if nodes < 1 or nodes > support:
        raise ValueError(f"weight_grid must lie in 1..support={support}, got {nodes}")
    if nodes == 1:
        return torch.ones(support * support, 1, dtype=torch.float64, device="cpu")
    position = torch.arange(support, dtype=torch.float64, device="cpu") * (nodes - 1) / (support - 1)
    node = torch.arange(nodes, dtype=torch.float64, device="cpu")
    tent = (1 - (position[:, None] - node[None, :]).abs()).clamp(min=0)
    return torch.kron(tent, tent)


class ScaleSteerableConv2d(nn.Module):
    """Scale-steerable correlation ``(B, S * C_in, H, W) -> (B, S * C_out, H, W)``: level ``s`` is correlated with
    ``K_s = sum_l w_l psi_{sigma_s, l}`` (eq. 6, strict) or ``K_s(y) = sum_l w_l(y) psi_{sigma_s, l}(y)`` (eq. 7,
    ``relaxed=True``), all levels in one grouped convolution, 'same' padding of kind ``padding_mode``, no bias.

    ``scales`` are the relative levels ``sigma_s <= 1`` (:func:`~symbench.layers.scale_conv.scale_levels`);
    ``support`` (odd, ``>= kernel_size``, default ``kernel_size + 2``) is the kernel grid; ``weight_grid`` the node
    grid of the relaxed weights (default ``kernel_size``). Weights: ``(C_out, C_in, L)``, relaxed
    ``(C_out, C_in, L, G, G)``; drawn so that the level-0 kernel has the squared norm, in expectation, of a
    default-initialised ``k x k`` convolution, and equal over the nodes.
    """

    expansion: Tensor

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, scales: Sequence[float], *,
                 relaxed: bool = False, support: int | None = None, weight_grid: int | None = None,
                 padding_mode: str = "zeros") -> None:
        super().__init__()
        check_padding_mode(padding_mode)
        same_padding(kernel_size)
        support = kernel_size + 2 if support is None else support
        if support < kernel_size or support % 2 == 0:
            raise ValueError(f"support must be odd and >= kernel_size={kernel_size}, got {support}")
        self.kernel_size, self.support, self.relaxed, self.padding_mode = kernel_size, support, relaxed, padding_mode
        self.scales = tuple(float(s) for s in scales)
        self.n_scales = len(self.scales)
        self.sigma0 = level_zero_width(kernel_size, support)
        basis = hermite_gaussian_basis(kernel_size, [self.sigma0 * s for s in self.scales], support)  # (S, L, P, P)
        n_funcs = kernel_size**2
        basis = basis.permute(1, 0, 2, 3).reshape(n_funcs, self.n_scales, support * support)  # (L, S, P^2)
        bound = (in_channels * basis[:, 0].square().sum()).rsqrt().item()
        weight = torch.empty(out_channels, in_channels, n_funcs).uniform_(-bound, bound)
        if relaxed:
            self.weight_grid = kernel_size if weight_grid is None else weight_grid
            nodes = node_interpolation(self.weight_grid, support)  # (P^2, G^2)
            # (L * G^2, S * P^2): psi_{s,l}(y) A(y, g), so that K = w @ expansion.
            basis = torch.einsum("lsy,yg->lgsy", basis, nodes)
            weight = weight[..., None, None].expand(-1, -1, -1, self.weight_grid, self.weight_grid)
        self.weight = nn.Parameter(weight.contiguous())
        self.register_buffer("expansion", basis.reshape(self.weight[0, 0].numel(), -1).float(), persistent=False)

    def level_kernels(self) -> Tensor:
        """``(S, C_out, C_in, P, P)``: the kernel of every level."""
        c_out, c_in = self.weight.shape[:2]
        kernels = self.weight.reshape(c_out * c_in, -1) @ self.expansion
        return kernels.view(c_out, c_in, self.n_scales, self.support, self.support).permute(2, 0, 1, 3, 4)

    def forward(self, x: Tensor) -> Tensor:
        return same_conv(x, self.level_kernels().flatten(0, 1), 1, self.padding_mode, self.n_scales)

    def regularization_loss(self) -> Tensor:
        """Total variation of ``w_l(y)`` over the node grid (sec. 3.3); zero for the strict layer."""
        if not self.relaxed:
            return self.weight.new_zeros(())
        return total_variation(self.weight)

    def extra_repr(self) -> str:
        c_out, c_in = self.weight.shape[:2]
        grid = f", weight_grid={self.weight_grid}" if self.relaxed else ""
        return (f"{c_in}, {c_out}, kernel_size={self.kernel_size}, support={self.support}, sigma0={self.sigma0:.2g}, "
                f"relaxed={self.relaxed}{grid}, padding_mode={self.padding_mode!r}, "
                f"scales=({', '.join(f'{s:.4g}' for s in self.scales)})")


class ScaleSteerableProject2d(ScaleSteerableConv2d):
    """Output layer: :class:`ScaleSteerableConv2d` to ``copies`` stacked copies of the ``C`` channels of ``layout``
    fused with the level average ``y = mean_s sigma_s^-e y_s`` of
    :class:`~symbench.layers.scale_conv.ScaleConvProject2d`, ``(B, S * C_in, H, W) -> (B, copies * C, H, W)``, as
    one dense convolution over all levels (``copies = R`` feeds the pixel mixing of eq. 9)."""

    level_weights: Tensor

    def __init__(self, in_channels: int, layout: FieldLayout, kernel_size: int, scales: Sequence[float], *,
                 copies: int = 1, scalar_power: float = 0.0, relaxed: bool = False, support: int | None = None,
                 weight_grid: int | None = None, padding_mode: str = "zeros") -> None:
        super().__init__(in_channels, copies * layout.channels, kernel_size, scales, relaxed=relaxed,
                         support=support, weight_grid=weight_grid, padding_mode=padding_mode)
        weights = 1 / (len(self.scales) * level_factors(layout, 1, self.scales, scalar_power))
        self.register_buffer("level_weights", weights.repeat(1, copies), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        kernels = self.level_kernels() * self.level_weights[:, :, None, None, None]
        s, c_out, c_in, p, _ = kernels.shape
        return same_conv(x, kernels.transpose(0, 1).reshape(c_out, s * c_in, p, p), 1, self.padding_mode, 1)


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
