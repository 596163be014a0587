"""Relaxed group convolutions (Wang, Walters & Yu, ICML 2022, sec. 3.1 and 3.3) and their strict counterparts.

A group convolution shares one kernel ``psi(g^-1 h)`` between all pairs ``(g, h)`` of output and input group
elements. The relaxed one replaces it by ``L`` kernels mixed with coefficients that depend on the input element
(eq. 4), ``Psi(g, h) = sum_l w_l(h) psi_l(g^-1 h)``, so that (eq. 5)

    [f *_G Psi](g) = sum_h f(h) sum_l w_l(h) psi_l(g^-1 h).

With ``w_l(h)`` equal for all ``h`` it is the strict group convolution with kernel ``sum_l w_l psi_l``; the
regulariser ``L_gconv = sum_l sum_{g, h} |w_l(g) - w_l(h)|`` (sec. 3.3) is zero exactly then. The layers here,
for three groups (each times translations of the grid):

* :class:`RelaxedRotGroupConv2d`, ``C_N`` with ``N | 4``: regular fields in and out (:mod:`.regular_lift`),
  kernels turned by exact ``torch.rot90``; :class:`RotGroupConv2d` is the strict one.
* :class:`RelaxedTranslationConv2d`: ``h`` is the pixel; ``L`` convolutions mixed by per-pixel weights
  ``w_l(x)``, regularised by their total variation.
* :class:`RelaxedScaleGroupConv2d` (and the fused output layer :class:`RelaxedScaleConvProject2d`): the
  scale-steerable correlation of :mod:`.scale_steerable` (SESN's Hermite-Gaussian basis at the growing widths
  1, 1.5, 2, 2.5 px on 5 x 5 kernels) with per-level weights ``w_l(s)``.

Every layer expands its kernel once per forward with tensor operations and runs one ``conv2d``; only the
relaxation weights and the ``L`` banks are training-time structure (``w`` equal collapses them to one kernel).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from symbench.fields import FieldLayout
from symbench.layers.conv import check_padding_mode, same_padding
from symbench.layers.pixel_mixing import GridSize, PixelMixing, equal_weights
from symbench.layers.scale_conv import same_conv
from symbench.layers.scale_steerable import (
    DEFAULT_EFFECTIVE_SIZE,
    ScaleSteerableConv2d,
    ScaleSteerableProject2d,
)


def pairwise_l1(weights: Tensor) -> Tensor:
    """``sum_l sum_{g, h} |w_l(g) - w_l(h)|`` for ``weights`` of shape ``(L, G)`` (ICML 2022 sec. 3.3, L_gconv;
    every ordered pair, as written in the paper)."""
    return (weights[:, :, None] - weights[:, None, :]).abs().sum()


def _check_banks(banks: int) -> None:
    if banks < 1:
        raise ValueError(f"need at least one filter bank, got banks={banks}")


def rotation_gather_index(group_order: int, kernel_size: int) -> Tensor:
    """``(N, N * k * k)`` indices into a kernel's flattened ``(N, k, k)`` input-group and tap axes: row ``g`` lists,
    for every ``(h, tap)``, the source entry of ``rot_g psi((g^-1 h), .)``: input element ``(h - g) mod N`` and the
    tap that ``torch.rot90`` by ``g * 4 / N`` quarter turns moves onto ``tap`` (rows towards -y, counter-clockwise,
    as :func:`symbench.symmetry.rot90`)."""
    if group_order not in (1, 2, 4):
        raise ValueError(f"exact grid rotations need N in (1, 2, 4), got N={group_order}")
    taps = torch.arange(kernel_size * kernel_size).view(kernel_size, kernel_size)
    h = torch.arange(group_order)
    rows = [((h - g) % group_order)[:, None] * taps.numel()
            + torch.rot90(taps, g * 4 // group_order, dims=(0, 1)).reshape(1, -1) for g in range(group_order)]
    return torch.stack(rows).view(group_order, -1)


def rotation_matrix(group_order: int, kernel_size: int) -> Tensor:
    """``(N k^2, G N k^2)`` 0/1 matrix ``P`` with ``psi_flat @ P`` the turned and shifted kernels of
    :func:`rotation_gather_index` for all ``g`` (a matmul: its backward is another matmul, not a scatter)."""
    index = rotation_gather_index(group_order, kernel_size).view(-1)
    turns = torch.zeros(group_order * kernel_size**2, index.numel())
    turns[index, torch.arange(index.numel())] = 1.0
    return turns


class _RotGroupKernel(nn.Module):
    """Shared machinery of the C_N group convolutions on regular fields ``(B, C * N, H, W)`` (group innermost)."""

    turns: Tensor
    input_element: Tensor

    def __init__(self, weight_shape: tuple[int, ...], group_order: int, padding_mode: str) -> None:
        super().__init__()
        check_padding_mode(padding_mode)
        kernel_size = weight_shape[-1]
        same_padding(kernel_size)
        self.group_order, self.padding_mode = group_order, padding_mode
        self.register_buffer("turns", rotation_matrix(group_order, kernel_size), persistent=False)
        # the input element h of every column (g, h, tap) of ``turns``
        columns = torch.arange(self.turns.shape[1])
        self.register_buffer("input_element", (columns // kernel_size**2) % group_order, persistent=False)
        self.weight = nn.Parameter(torch.empty(weight_shape))
        # PyTorch's conv init, U(+-1/sqrt(fan_in)), with the fan-in C_in * N * k^2 of one output channel.
        bound = 1 / math.sqrt(math.prod(weight_shape[-4:]))
        nn.init.uniform_(self.weight, -bound, bound)

    def _conv(self, x: Tensor, kernels: Tensor) -> Tensor:
        """One conv with ``kernels (C_out * C_in, G * N * k * k)`` (the columns of ``turns``) laid out as
        ``(C_out * G, C_in * N, k, k)``."""
        c_out, c_in, n, k, _ = self.weight.shape[-5:]
        weight = kernels.view(c_out, c_in, n, n, k, k).transpose(1, 2).reshape(c_out * n, c_in * n, k, k)
        return same_conv(x, weight, 1, self.padding_mode, 1)

    def extra_repr(self) -> str:
        c_out, c_in, n, k, _ = self.weight.shape[-5:]
        return f"{c_in}, {c_out}, group_order={n}, kernel_size={k}, padding_mode={self.padding_mode!r}"


class RotGroupConv2d(_RotGroupKernel):
    """Strict C_N group convolution on regular fields, ``(B, C_in * N, H, W) -> (B, C_out * N, H, W)``:
    ``[f * psi](x, g) = sum_{h, y} f(x + y, h) psi((h - g) mod N, R_g^-1 y)`` (ICML 2022 eq. 2 on
    ``C_N x Z^2``), no bias. Equivariant under :func:`~symbench.layers.regular_lift.rotate_regular`."""

    def __init__(self, in_fields: int, out_fields: int, kernel_size: int = 3, group_order: int = 4,
                 padding_mode: str = "zeros") -> None:
        super().__init__((out_fields, in_fields, group_order, kernel_size, kernel_size), group_order, padding_mode)

    def forward(self, x: Tensor) -> Tensor:
        c_out, c_in = self.weight.shape[:2]
        return self._conv(x, self.weight.reshape(c_out * c_in, -1) @ self.turns.to(self.weight.dtype))


class RelaxedRotGroupConv2d(_RotGroupKernel):
    """Relaxed C_N group convolution (ICML 2022 eq. 4-5) on regular fields, ``(B, C_in * N, H, W) ->
    (B, C_out * N, H, W)``: ``banks`` kernels ``psi_l`` of shape ``(C_out, C_in, N, k, k)`` and relaxation weights
    ``w_l(h)`` of shape ``(L, N)``, expanded into ``Psi(g, h) = sum_l w_l(h) rot_g psi_l((h - g) mod N)`` and applied
    as one convolution; no bias. Init: ``w`` equal (exactly equivariant), kernels U(+-1/sqrt(C_in N k^2))."""

    def __init__(self, in_fields: int, out_fields: int, kernel_size: int = 3, group_order: int = 4, banks: int = 2,
                 padding_mode: str = "zeros") -> None:
        _check_banks(banks)
        super().__init__((banks, out_fields, in_fields, group_order, kernel_size, kernel_size), group_order,
                         padding_mode)
        self.relaxed_weights = equal_weights(banks, group_order)

    def expanded(self) -> Tensor:
        """``(C_out * C_in, G * N * k * k)``: ``Psi(g, h)`` of eq. 4 as one matmul of the banks side by side with
        the turn-and-shift matrix of every bank scaled by ``w_l(h)`` column by column."""
        banks, c_out, c_in = self.weight.shape[:3]
        mixing = self.turns.to(self.weight.dtype) * self.relaxed_weights[:, None, self.input_element]
        flat = self.weight.permute(1, 2, 0, 3, 4, 5).reshape(c_out * c_in, -1)
        return flat @ mixing.reshape(flat.shape[1], -1)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv(x, self.expanded())

    def regularization_loss(self) -> Tensor:
        """``L_gconv = sum_l sum_{g, h} |w_l(g) - w_l(h)|`` (sec. 3.3)."""
        return pairwise_l1(self.relaxed_weights)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, banks={self.weight.shape[0]}"


class RelaxedTranslationConv2d(PixelMixing):
    """Relaxed translation group convolution: ``y(x) = sum_l w_l(x) (psi_l * f)(x)``, ``(B, C_in, H, W) ->
    (B, C_out, H, W)`` on a fixed ``grid_size`` grid (one side or ``(H, W)``; eq. 5 with ``h`` the pixel).

    The ``L`` convolutions run as one convolution with ``L * C_out`` outputs, mixed by the per-cell weights ``w_l``
    of :class:`~symbench.layers.pixel_mixing.PixelMixing` (``relax_grid = grid_size``: one weight per pixel, as in
    the paper; coarser cells keep small models within a parameter budget), init equal. ``regularization_loss`` is
    their total variation over space, zero iff ``w`` is constant over space."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, grid_size: GridSize, banks: int = 2,
                 relax_grid: GridSize | None = None, bias: bool = False, padding_mode: str = "zeros") -> None:
        _check_banks(banks)
        check_padding_mode(padding_mode)
        super().__init__(banks, grid_size, relax_grid)
        self.banks = banks
        self.conv = nn.Conv2d(in_channels, banks * out_channels, kernel_size, padding=same_padding(kernel_size),
                              padding_mode=padding_mode, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        y = super().forward(self.conv(x))
        return y if self.bias is None else y + self.bias[:, None, None]

    def extra_repr(self) -> str:
        return f"banks={self.banks}, grid_size={self.grid_size}, relax_grid={self.relax_grid}"


def mix_banks(kernels: Tensor, weights: Tensor) -> Tensor:
    """``(S, L * C_out, ...) -> (S, C_out, ...)``: level ``s`` of ``L`` bank-major kernel stacks mixed by the
    relaxation weights ``w_l(s)`` of shape ``(L, S)`` (eq. 4 with ``h = s``)."""
    banks = kernels.view(kernels.shape[0], weights.shape[0], -1, *kernels.shape[2:])
    return torch.einsum("slo...,ls->so...", banks, weights.to(kernels.dtype))


class LevelRelaxation:
    """Mixin for a scale-steerable layer built with ``banks`` bank-major kernel stacks: its level kernels are mixed
    by ``relaxed_weights`` ``w_l(s)`` (:func:`mix_banks`), its penalty is ``L_gconv`` over the levels."""

    banks: int
    relaxed_weights: nn.Parameter

    def level_kernels(self) -> Tensor:
        """``(S, C_out, 1, C_in, k, k)``: the banks at every level mixed by ``w_l(s)``."""
        return mix_banks(super().level_kernels(), self.relaxed_weights)  # type: ignore[misc]

    def regularization_loss(self) -> Tensor:
        """``sum_l sum_{s, s'} |w_l(s) - w_l(s')|`` (sec. 3.3 over the levels)."""
        return pairwise_l1(self.relaxed_weights)

    def extra_repr(self) -> str:
        return f"banks={self.banks}, {super().extra_repr()}"  # type: ignore[misc]


class RelaxedScaleGroupConv2d(LevelRelaxation, ScaleSteerableConv2d):
    """Relaxed scale group correlation ``(B, S * C_in, H, W) -> (B, S * C_out, H, W)`` over SESN's levels
    (level-major, as :class:`~symbench.layers.scale_steerable.ScaleSteerableConv2d`, the strict layer): level ``s``
    is correlated with ``K_s = sum_l w_l(s) sum_j W_{l,j} psi_{sigma_s, j}`` (eq. 4 with ``h = s`` on the
    Hermite-Gaussian basis at the growing widths ``sigma_s``; the strict layer never mixes levels, so
    ``psi(g^-1 h)`` is supported on ``g = h``). ``banks`` base kernels ``W_l``, weights ``w_l(s)`` of shape
    ``(L, S)``, init equal (``1 / sqrt(L)``), which reproduces the strict layer with weights ``sum_l w_l W_l``.
    All levels in one grouped convolution; no bias."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, scales: Sequence[float],
                 banks: int = 2, *, padding_mode: str = "zeros",
                 effective_size: int = DEFAULT_EFFECTIVE_SIZE) -> None:
        _check_banks(banks)
        super().__init__(in_channels, banks * out_channels, kernel_size, scales, effective_size=effective_size,
                         padding_mode=padding_mode)
        self.banks = banks
        self.relaxed_weights = equal_weights(banks, self.n_scales)


class RelaxedScaleConvProject2d(LevelRelaxation, ScaleSteerableProject2d):
    """Output layer: :class:`RelaxedScaleGroupConv2d` to the ``C`` channels of ``layout`` fused with the level
    average ``y = mean_s (sigma_s / sigma_0)^-e y_s`` of
    :class:`~symbench.layers.scale_steerable.ScaleSteerableProject2d` (the strict output layer),
    ``(B, S * C_in, H, W) -> (B, C, H, W)``, as one dense convolution over all levels."""

    def __init__(self, in_channels: int, layout: FieldLayout, kernel_size: int, scales: Sequence[float],
                 banks: int = 2, scalar_power: float = 0.0, *, padding_mode: str = "zeros",
                 effective_size: int = DEFAULT_EFFECTIVE_SIZE) -> None:
        _check_banks(banks)
        super().__init__(in_channels, layout, kernel_size, scales, copies=banks, scalar_power=scalar_power,
                         effective_size=effective_size, padding_mode=padding_mode)
        self.banks = banks
        self.level_weights = self.level_weights[:, :layout.channels].contiguous()  # one copy: after the mixing
        self.relaxed_weights = equal_weights(banks, self.n_scales)
