"""Typed fields <-> regular fields of the rotation group C_N (Wang, Walters & Yu, ICML 2022, sec. 3.1).

A *regular field* is a function ``f: C_N -> R`` at every pixel. Regular feature tensors are ``(B, F * N, H, W)``
with the group axis innermost: channel ``c * N + i`` is field ``c`` at the rotation ``theta_i = 2 pi i / N``.

* Lifting (sec. 3.1, after Walters et al. 2021, Table 1): a vector ``v = (a, b)`` becomes
  ``f(i) = c (a cos theta_i + b sin theta_i) = c <v, e_i>`` with ``e_i = (cos theta_i, sin theta_i)`` and a
  trainable ``c`` per vector field and frame; a scalar becomes the constant (trivial) field ``f(i) = s``.
* Projection: a vector is read back as ``(2 / N) sum_i f(i) e_i`` and a scalar as ``mean_i f(i)``, so that
  projection after lifting returns ``c v`` and ``s`` (for ``N >= 3``).
* Rotation: with :func:`symbench.symmetry.rot90` (counter-clockwise, rows towards -y), a quarter turn ``R`` maps
  ``<R v(R^-1 p), e_i> = <v(R^-1 p), e_{i - N/4}>``: rotating the input rotates the grid and shifts the group axis
  by ``+N/4`` (``f'(p, i) = f(R^-1 p, i - N/4)``, the left regular action), see :func:`rotate_regular`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from symbench.fields import FieldLayout


def group_directions(group_order: int) -> Tensor:
    """``(N, 2)`` float64 unit vectors ``e_i = (cos 2 pi i / N, sin 2 pi i / N)``, exact zeros and ones where the
    angle is a multiple of 90 degrees."""
    if group_order < 1:
        raise ValueError(f"group_order must be >= 1, got {group_order}")
    theta = 2 * math.pi * torch.arange(group_order, dtype=torch.float64) / group_order
    e = torch.stack([theta.cos(), theta.sin()], dim=1)
    return torch.where(e.abs() < 1e-12, torch.zeros_like(e), e)


def rotate_regular(x: Tensor, k: int, group_order: int) -> Tensor:
    """Act by ``k`` counter-clockwise quarter turns on regular features ``(B, F * N, H, W)``: rotate the grid as
    :func:`symbench.symmetry.rot90` does and shift the group axis by ``k N / 4`` (needs ``4 | k N``)."""
    if (k * group_order) % 4:
        raise ValueError(f"{k} quarter turns are not elements of C_{group_order}")
    fields = x.view(x.shape[0], -1, group_order, *x.shape[-2:])
    turned = torch.rot90(torch.roll(fields, shifts=k * group_order // 4, dims=2), k, dims=(-2, -1))
    return turned.reshape(x.shape[0], -1, *turned.shape[-2:])


def _check_lift_order(layout: FieldLayout, group_order: int) -> None:
    if layout.ndim != 2:
        raise ValueError(f"the regular lift is planar; got a {layout.ndim}D layout {layout}")
    if layout.n_vectors and group_order < 3:
        raise ValueError(f"lifting vector fields to C_N needs N >= 3 (C_{group_order} loses a component)")


class RegularLift(nn.Module):
    """``(B, frames * C, H, W) -> (B, frames * n_fields * N, H, W)``: every field of every frame (frame-major, as
    :func:`~symbench.layers.stack_frames`) becomes one regular field; vectors ``f(i) = c <v, e_i>`` with trainable
    ``c`` of shape ``(frames, n_vectors)`` (init 1), scalars tiled over the group axis. One 1x1 convolution."""

    basis: Tensor
    vector_mask: Tensor

    def __init__(self, layout: FieldLayout, frames: int, group_order: int) -> None:
        super().__init__()
        _check_lift_order(layout, group_order)
        self.layout, self.frames, self.group_order = layout, frames, group_order
        n, e = group_order, group_directions(group_order)
        basis = torch.zeros(len(layout.fields) * n, layout.channels, dtype=torch.float64)
        for j, (field, s) in enumerate(layout.slices()):
            rows = slice(j * n, (j + 1) * n)
            if field.kind == "vector":
                basis[rows, s] = e
            else:
                basis[rows, s.start] = 1.0
        self.register_buffer("basis", basis.float(), persistent=False)
        mask = torch.tensor([f.kind == "vector" for f in layout.fields])
        self.register_buffer("vector_mask", mask, persistent=False)
        self.scale = nn.Parameter(torch.ones(frames, layout.n_vectors))

    def weight(self) -> Tensor:
        """``(frames * n_fields * N, frames * C)`` block-diagonal lifting matrix with the trainable factors."""
        n_fields = len(self.layout.fields)
        factors = torch.ones(self.frames, n_fields, dtype=self.scale.dtype, device=self.scale.device)
        factors = factors.masked_scatter(self.vector_mask.expand(self.frames, -1), self.scale)
        blocks = factors.repeat_interleave(self.group_order, dim=1)[:, :, None] * self.basis  # (T, F*N, C)
        return torch.block_diag(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight()[:, :, None, None])

    def extra_repr(self) -> str:
        return f"fields={self.layout}, frames={self.frames}, group_order={self.group_order}"


class RegularProject(nn.Module):
    """``(B, n_fields * N, H, W) -> (B, C, H, W)``: vector ``(2 / N) sum_i f(i) e_i``, scalar ``mean_i f(i)``
    (one fixed 1x1 convolution; no parameters). Equivariant: ``sum_i f(i - 1) e_i = R sum_j f(j) e_j``."""

    weight: Tensor

    def __init__(self, layout: FieldLayout, group_order: int) -> None:
        super().__init__()
        _check_lift_order(layout, group_order)
        self.layout, self.group_order = layout, group_order
        n, e = group_order, group_directions(group_order)
        weight = torch.zeros(layout.channels, len(layout.fields) * n, dtype=torch.float64)
        for j, (field, s) in enumerate(layout.slices()):
            cols = slice(j * n, (j + 1) * n)
            if field.kind == "vector":
                weight[s, cols] = (2 / n) * e.T
            else:
                weight[s.start, cols] = 1 / n
        self.register_buffer("weight", weight.float()[:, :, None, None], persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight.to(x.dtype))

    def extra_repr(self) -> str:
        return f"fields={self.layout}, group_order={self.group_order}"


class RegularBatchNorm2d(nn.BatchNorm2d):
    """Batch norm of regular fields ``(B, F * N, H, W)`` with statistics and affine parameters shared by the ``N``
    channels of a field (escnn's InnerBatchNorm), so that it commutes with the group-axis shift."""

    def __init__(self, fields: int, group_order: int, **kwargs) -> None:
        super().__init__(fields, **kwargs)
        self.group_order = group_order

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        return super().forward(x.view(b, -1, self.group_order * h, w)).view(x.shape)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, group_order={self.group_order}"
