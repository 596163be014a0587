"""Group convolutions over the octahedral groups on the cubic grid, strict and relaxed (Wang, Walters & Yu,
ICML 2022 eq. 4-5; the relaxed octahedral group convolution of Wang, Walters & Smidt, arXiv 2310.02299).

Groups and actions are those of :mod:`symbench.symmetry.octahedral` (axes ``(z, y, x) = (-3, -2, -1)``, rows
towards -y, depth towards +z; ``group`` is ``"O"`` (24), ``"Oh"`` (48) or a named subgroup such as ``"D4h"``).
*Group features* are ``(B, C * |G|, D, H, W)``, **channel-major** (the group axis innermost, as the 2D layers of
:mod:`.relaxed_group_conv`): channel ``c * |G| + i`` is field ``c`` at element ``i``. The group acts on them by
the left regular action ``f'(p, h) = f(g^-1 p, g^-1 h)`` (:func:`~symbench.symmetry.octahedral.act_on_regular`).

* :class:`OctahedralLift3d`, ``Z^3 -> G``: ``out(x, g) = sum_y <psi(g^-1 (y - x)), g^-1 in(y)>``, i.e. the kernel
  ``T_g psi`` for every ``g`` (scalar input channels are moved, vector inputs of a 3D
  :class:`~symbench.fields.FieldLayout` are moved and their ``(x, y, z)`` components rotated).
* :class:`OctahedralGroupConv3d`, ``G -> G``: ``out(x, g) = sum_h sum_y f(y, h) psi(g^-1 (y - x), g^-1 h)``.
* :class:`RelaxedOctahedralGroupConv3d`: ``out(x, g) = sum_h sum_l f(y, h) w_l(h) psi_l(g^-1 (y - x), g^-1 h)``.
* :class:`OctahedralGroupPool3d`: max or mean over the group axis, ``(B, C * |G|, ...) -> (B, C, ...)``: invariant
  scalar fields.
* :class:`OctahedralProject3d`, ``G -> Z^3``: ``out(x) = sum_g sum_y (T_g psi)(y - x) f(y, g)``, back to typed
  (scalar or vector) fields, the transpose of the lift.

Each layer expands its kernel once per forward by one gather over a fixed index table (built at construction
from the Cayley table and the grid action applied to an index grid) and runs one ``conv3d``.

Symmetry of the relaxed layer (verified in ``tests/test_octahedral.py``): with ``f'(p, h) = f(u^-1 p, u^-1 h)``
the output is ``out(u^-1 x, u^-1 g)`` whenever ``w_l(u h) = w_l(h)`` for all ``h, l``. So the layer is equivariant
to the subgroup ``Stab(w) = {u : w_l(u h) = w_l(h) for all h, l}``: ``w`` equal over ``h`` gives all of ``G``,
and ``w`` constant on the **right cosets** ``H h`` of a subgroup ``H`` (with distinct values on distinct cosets)
gives exactly ``H`` (:func:`weight_stabilizer` reads it off trained weights). Constant on the *left* cosets
``h H`` is the wrong side: it is invariance under ``h -> h u``, which is not a symmetry of the layer.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from symbench.fields import FieldLayout
from symbench.layers.conv import check_padding_mode, same_padding
from symbench.layers.pixel_mixing import equal_weights
from symbench.layers.relaxed_group_conv import pairwise_l1
from symbench.symmetry.octahedral import (
    Element,
    act_on_fields,
    act_on_grid,
    cayley_table,
    group_elements,
    inverse_index,
)

GroupSpec = str | Sequence[Element]


def spatial_gather_table(elements: Sequence[Element], kernel_size: int) -> Tensor:
    """``(|G|, k^3)`` int64: row ``g`` lists, for every tap ``d`` of a flattened ``k^3`` kernel, the source tap of
    ``psi(g^-1 d)`` (:func:`~symbench.symmetry.octahedral.act_on_grid` applied to an index grid)."""
    taps = torch.arange(kernel_size**3).view(kernel_size, kernel_size, kernel_size)
    return torch.stack([act_on_grid(taps, g).reshape(-1) for g in elements])


def lift_gather_table(elements: Sequence[Element], kernel_size: int,
                      layout: FieldLayout | Sequence[int], channels: int) -> tuple[Tensor, Tensor]:
    """``(index, sign)``, both ``(|G|, C k^3)``: ``psi_flat[..., index[g]] * sign[g]`` is ``T_g psi`` for a kernel
    ``psi (.., C, k, k, k)`` whose input channels are typed by ``layout``."""
    k = kernel_size
    source = torch.arange(1, channels * k**3 + 1).view(channels, k, k, k)  # shifted by one so that signs survive
    moved = torch.stack([act_on_fields(source, layout, g).reshape(-1) for g in elements])
    return moved.abs() - 1, moved.sign()


def group_gather_table(elements: Sequence[Element], kernel_size: int) -> Tensor:
    """``(|G|, |G| k^3)`` int64 indices into a kernel's flattened ``(|G|, k^3)`` input-group and tap axes: row
    ``g``, column ``(h, d)`` is the entry ``(g^-1 h, g^-1 d)`` of ``psi``."""
    table, inv = cayley_table(elements), inverse_index(elements)
    spatial = spatial_gather_table(elements, kernel_size)
    taps = kernel_size**3
    source_element = table[inv]  # [g, h] -> index of g^-1 h
    return (source_element[:, :, None] * taps + spatial[:, None, :]).reshape(len(elements), -1)


def upsample_conv3d(x: Tensor, weight: Tensor, padding_mode: str) -> Tensor:
    """Transposed convolution with kernel 4, stride 2, padding 1, ``(B, C_in, D, H, W) -> (B, C_out, 2D, 2H, 2W)``
    (``weight (C_in, C_out, 4, 4, 4)``). Fine cell ``i = 2 j - 1 + t`` takes tap ``t`` of coarse cell ``j``; a
    mirror ``i -> 2n - 1 - i`` maps ``(j, t)`` to ``(n - 1 - j, 3 - t)``, so the layer commutes with the grid
    actions when its kernel is transformed with them. Non-zero padding modes pad one coarse cell and crop two fine
    cells per side (``"circular"``: exact on the torus)."""
    if padding_mode == "zeros":
        return F.conv_transpose3d(x, weight, stride=2, padding=1)
    out = F.conv_transpose3d(F.pad(x, (1,) * 6, mode=padding_mode), weight, stride=2, padding=1)
    return out[..., 2:-2, 2:-2, 2:-2]


def _conv3d(x: Tensor, weight: Tensor, bias: Tensor | None, padding_mode: str) -> Tensor:
    pad = same_padding(weight.shape[-1])
    if padding_mode == "zeros":
        return F.conv3d(x, weight, bias, padding=pad)
    return F.conv3d(F.pad(x, (pad,) * 6, mode=padding_mode), weight, bias)


def typed_fields(fields: int | FieldLayout) -> tuple[FieldLayout | list, int]:
    """``(layout, channels)`` of a channel count of scalars (layout ``[]``) or of a 3D :class:`FieldLayout`."""
    if isinstance(fields, FieldLayout):
        return fields, fields.channels
    return [], int(fields)


class _OctahedralLayer(nn.Module):
    """Group bookkeeping, bias and the conv call shared by the layers."""

    def __init__(self, out_channels: int, kernel_size: int, group: GroupSpec, padding_mode: str, bias: bool,
                 odd_kernel: bool = True) -> None:
        super().__init__()
        check_padding_mode(padding_mode)
        if odd_kernel:
            same_padding(kernel_size)
        self.elements = group_elements(group)
        self.group_name = group if isinstance(group, str) else f"<{len(self.elements)} elements>"
        self.group_order = len(self.elements)
        self.out_channels, self.kernel_size, self.padding_mode = out_channels, kernel_size, padding_mode
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def _register_gather(self, layout: FieldLayout | list, channels: int) -> None:
        """Buffers of :func:`lift_gather_table` for one kernel per ``channels`` typed channels (the lift's input,
        the projection's output)."""
        index, sign = lift_gather_table(self.elements, self.kernel_size, layout, channels)
        self.register_buffer("index", index.reshape(-1), persistent=False)
        self.register_buffer("sign", sign.reshape(-1), persistent=False)
        self.has_vectors = bool((sign < 0).any())

    def _gathered(self, rows: int) -> Tensor:
        """``weight`` as ``rows`` rows of ``T_g psi`` for every ``g`` (the gather, then the vector signs)."""
        kernels = self.weight.reshape(rows, -1)[:, self.index]
        return kernels * self.sign.to(kernels.dtype) if self.has_vectors else kernels

    def _init_uniform(self, weight: nn.Parameter, fan_in: int) -> None:
        # PyTorch's conv init, U(+-1/sqrt(fan_in)), with the fan-in of one output channel.
        bound = 1 / math.sqrt(fan_in)
        nn.init.uniform_(weight, -bound, bound)

    def _run(self, x: Tensor, weight: Tensor) -> Tensor:
        bias = None if self.bias is None else self.bias.repeat_interleave(self.group_order)
        return _conv3d(x, weight, bias, self.padding_mode)

    @property
    def parameter_count(self) -> int:
        """Number of trainable parameters, from the configuration (equals ``sum(p.numel())``)."""
        raise NotImplementedError

    def _bias_count(self) -> int:
        return self.out_channels if self.bias is not None else 0


class OctahedralLift3d(_OctahedralLayer):
    """Lifting convolution ``Z^3 -> G``, ``(B, C_in, D, H, W) -> (B, C_out * |G|, D, H, W)``:
    ``out(x, g) = sum_y <psi(g^-1 (y - x)), g^-1 in(y)>`` with one kernel ``psi (C_out, C_in, k, k, k)`` turned
    into ``T_g psi`` for every element (one gather) and one ``conv3d``.

    ``in_channels`` is a channel count (all scalar fields) or a 3D :class:`FieldLayout`, whose vector fields are
    then lifted as vectors (equivariant under :func:`~symbench.symmetry.octahedral.act_on_fields` with that
    layout). Optional bias per output field, shared over the group. Needs a cubic grid for the full group."""

    index: Tensor
    sign: Tensor

    def __init__(self, in_channels: int | FieldLayout, out_channels: int, kernel_size: int = 3,
                 group: GroupSpec = "O", padding_mode: str = "zeros", bias: bool = False) -> None:
        super().__init__(out_channels, kernel_size, group, padding_mode, bias)
        layout, channels = typed_fields(in_channels)
        self.layout, self.in_channels = layout, channels
        self._register_gather(layout, channels)
        self.weight = nn.Parameter(torch.empty(out_channels, channels, kernel_size, kernel_size, kernel_size))
        self._init_uniform(self.weight, channels * kernel_size**3)

    @staticmethod
    def count(in_channels: int, out_channels: int, kernel_size: int, bias: bool = False) -> int:
        return out_channels * in_channels * kernel_size**3 + (out_channels if bias else 0)

    @property
    def parameter_count(self) -> int:
        return self.count(self.in_channels, self.out_channels, self.kernel_size, self.bias is not None)

    def expanded(self) -> Tensor:
        """``(C_out * |G|, C_in, k, k, k)``: ``T_g psi`` for every ``g`` (channel-major)."""
        c_out, k = self.out_channels, self.kernel_size
        return self._gathered(c_out).view(c_out * self.group_order, self.in_channels, k, k, k)

    def forward(self, x: Tensor) -> Tensor:
        return self._run(x, self.expanded())

    def extra_repr(self) -> str:
        fields = self.layout if isinstance(self.layout, FieldLayout) else self.in_channels
        return (f"{fields}, {self.out_channels}, kernel_size={self.kernel_size}, group={self.group_name}, "
                f"padding_mode={self.padding_mode!r}, bias={self.bias is not None}")


class OctahedralProject3d(_OctahedralLayer):
    """Projection ``G -> Z^3`` onto typed fields (the transpose of :class:`OctahedralLift3d`),
    ``(B, C_in * |G|, D, H, W) -> (B, C_out, D, H, W)``:
    ``out(x) = sum_g sum_y (T_g psi_c)(y - x) f_c(y, g)`` with ``(T_g psi)(d) = R_g psi(g^-1 d)`` for kernels
    ``psi_c`` whose ``C_out`` output channels are typed by ``out_channels`` (a channel count of scalars or a 3D
    :class:`FieldLayout`, whose vector fields come out as vectors). Equivariant:
    ``project(T_u f) = T_u project(f)`` with ``T_u`` the left regular action on ``f`` and
    :func:`~symbench.symmetry.octahedral.act_on_fields` on the output. One gather, one ``conv3d``; no bias (a
    constant vector is not invariant).

    ``upsample=True`` makes it a transposed convolution with kernel 4 and stride 2 (:func:`upsample_conv3d`), which
    doubles the grid: the same sum with ``y`` on the coarse grid and ``x`` on the fine one (``kernel_size`` must
    then be 4)."""

    index: Tensor
    sign: Tensor

    def __init__(self, in_channels: int, out_channels: int | FieldLayout, kernel_size: int = 3,
                 group: GroupSpec = "O", padding_mode: str = "zeros", upsample: bool = False) -> None:
        layout, channels = typed_fields(out_channels)
        if upsample and kernel_size != 4:
            raise ValueError(f"an upsampling projection needs kernel_size=4 (stride 2, padding 1), got {kernel_size}")
        super().__init__(channels, kernel_size, group, padding_mode, bias=False, odd_kernel=not upsample)
        self.upsample = upsample
        self.layout, self.in_channels = layout, in_channels
        self._register_gather(layout, channels)
        self.weight = nn.Parameter(torch.empty(in_channels, channels, kernel_size, kernel_size, kernel_size))
        self._init_uniform(self.weight, in_channels * self.group_order * kernel_size**3)

    @staticmethod
    def count(in_channels: int, out_channels: int, kernel_size: int) -> int:
        return in_channels * out_channels * kernel_size**3

    @property
    def parameter_count(self) -> int:
        return self.count(self.in_channels, self.out_channels, self.kernel_size)

    def expanded(self) -> Tensor:
        """``(C_in * |G|, C_out, k, k, k)``: row ``c * |G| + g`` holds ``T_g psi_c`` (the layout of a transposed
        convolution's weight; a convolution takes its transpose)."""
        c_in, c_out, k, n = self.in_channels, self.out_channels, self.kernel_size, self.group_order
        return self._gathered(c_in).view(c_in * n, c_out, k, k, k)

    def forward(self, x: Tensor) -> Tensor:
        if self.upsample:
            return upsample_conv3d(x, self.expanded(), self.padding_mode)
        return _conv3d(x, self.expanded().transpose(0, 1), None, self.padding_mode)

    def extra_repr(self) -> str:
        fields = self.layout if isinstance(self.layout, FieldLayout) else self.out_channels
        return (f"{self.in_channels}, {fields}, kernel_size={self.kernel_size}, group={self.group_name}, "
                f"padding_mode={self.padding_mode!r}, upsample={self.upsample}")


class _OctahedralGroupKernel(_OctahedralLayer):
    """``G -> G`` kernels ``(..., C_out, C_in, |G|, k, k, k)`` and their expansion to one conv weight."""

    index: Tensor

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, group: GroupSpec,
                 padding_mode: str, bias: bool, weight_shape: tuple[int, ...]) -> None:
        super().__init__(out_channels, kernel_size, group, padding_mode, bias)
        self.in_channels = in_channels
        self.register_buffer("index", group_gather_table(self.elements, kernel_size).reshape(-1), persistent=False)
        self.weight = nn.Parameter(torch.empty(*weight_shape, out_channels, in_channels, self.group_order,
                                               kernel_size, kernel_size, kernel_size))
        self._init_uniform(self.weight, in_channels * self.group_order * kernel_size**3)

    def _layout_weight(self, kernels: Tensor) -> Tensor:
        """``(C_out * C_in, |G|_g, |G|_h, k^3)`` -> conv weight ``(C_out * |G|, C_in * |G|, k, k, k)``."""
        c_out, c_in, n, k = self.out_channels, self.in_channels, self.group_order, self.kernel_size
        weight = kernels.view(c_out, c_in, n, n, k, k, k).transpose(1, 2)
        return weight.reshape(c_out * n, c_in * n, k, k, k)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, group={self.group_name}, "
                f"padding_mode={self.padding_mode!r}, bias={self.bias is not None}")


class OctahedralGroupConv3d(_OctahedralGroupKernel):
    """Strict group convolution ``G -> G`` on group features, ``(B, C_in * |G|, D, H, W) ->
    (B, C_out * |G|, D, H, W)`` (channel-major): ``out(x, g) = sum_{h, y} f(y, h) psi(g^-1 (y - x), g^-1 h)``
    with ``psi (C_out, C_in, |G|, k, k, k)``; init U(+-1/sqrt(C_in |G| k^3)); optional per-field bias."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, group: GroupSpec = "O",
                 padding_mode: str = "zeros", bias: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel_size, group, padding_mode, bias, ())

    @staticmethod
    def count(in_channels: int, out_channels: int, kernel_size: int, group_order: int, bias: bool = False) -> int:
        return out_channels * in_channels * group_order * kernel_size**3 + (out_channels if bias else 0)

    @property
    def parameter_count(self) -> int:
        return self.count(self.in_channels, self.out_channels, self.kernel_size, self.group_order,
                          self.bias is not None)

    def expanded(self) -> Tensor:
        """Conv weight ``(C_out * |G|, C_in * |G|, k, k, k)`` with block ``(g, h)`` = ``psi(g^-1 ., g^-1 h)``."""
        flat = self.weight.reshape(self.out_channels * self.in_channels, -1)
        return self._layout_weight(flat[:, self.index])

    def forward(self, x: Tensor) -> Tensor:
        return self._run(x, self.expanded())


class RelaxedOctahedralGroupConv3d(_OctahedralGroupKernel):
    """Relaxed group convolution (ICML 2022 eq. 4-5) ``G -> G``, shapes as :class:`OctahedralGroupConv3d`:
    ``out(x, g) = sum_{h, y} f(y, h) sum_l w_l(h) psi_l(g^-1 (y - x), g^-1 h)`` with ``banks = L`` kernels
    ``psi_l (C_out, C_in, |G|, k, k, k)`` and relaxation weights ``w (L, |G|)``.

    Init as :class:`~symbench.layers.relaxed_group_conv.RelaxedRotGroupConv2d`: ``w = 1 / sqrt(L)`` for every
    ``(l, h)`` (the layer is then exactly the strict group conv with kernel ``sum_l psi_l / sqrt(L)``), kernels
    U(+-1/sqrt(C_in |G| k^3)). ``regularization_loss`` is ``L_gconv = sum_l sum_{g, h} |w_l(g) - w_l(h)|``.
    With ``banks = 1`` the layer is the strict group conv with kernel ``psi_1`` of the input scaled by ``w_1(h)`` on
    orientation ``h``: a gain per orientation; only ``L >= 2`` lets the output orientations mix different filters."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, group: GroupSpec = "O",
                 banks: int = 2, padding_mode: str = "zeros", bias: bool = False) -> None:
        if banks < 1:
            raise ValueError(f"need at least one filter bank, got banks={banks}")
        super().__init__(in_channels, out_channels, kernel_size, group, padding_mode, bias, (banks,))
        self.banks = banks
        self.relaxed_weights = equal_weights(banks, self.group_order)

    @staticmethod
    def count(in_channels: int, out_channels: int, kernel_size: int, group_order: int, banks: int,
              bias: bool = False) -> int:
        return banks * (out_channels * in_channels * group_order * kernel_size**3 + group_order) + (
            out_channels if bias else 0)

    @property
    def parameter_count(self) -> int:
        return self.count(self.in_channels, self.out_channels, self.kernel_size, self.group_order, self.banks,
                          self.bias is not None)

    def relaxation_weights(self) -> Tensor:
        """``w (L, |G|)``: ``w[l, h]`` multiplies bank ``l`` on input element ``h`` (the order of the group's
        element list)."""
        return self.relaxed_weights

    def expanded(self) -> Tensor:
        """Conv weight with block ``(g, h)`` = ``sum_l w_l(h) psi_l(g^-1 ., g^-1 h)``: one gather of all banks,
        one contraction over ``l``."""
        n = self.group_order
        flat = self.weight.reshape(self.banks, self.out_channels * self.in_channels, -1)
        gathered = flat[:, :, self.index].view(self.banks, flat.shape[1], n, n, -1)
        return self._layout_weight(torch.einsum("lpghd,lh->pghd", gathered, self.relaxed_weights))

    def forward(self, x: Tensor) -> Tensor:
        return self._run(x, self.expanded())

    def regularization_loss(self) -> Tensor:
        """``L_gconv = sum_l sum_{g, h} |w_l(g) - w_l(h)|`` (ICML 2022 sec. 3.3), zero iff ``w`` is equal over
        the group."""
        return pairwise_l1(self.relaxed_weights)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, banks={self.banks}"


class OctahedralGroupPool3d(nn.Module):
    """Pool group features over the group axis, ``(B, C * |G|, D, H, W) -> (B, C, D, H, W)`` (``"max"`` or
    ``"mean"``): the result transforms as scalar fields, ``pool(T_u f) = act_on_grid(pool(f), u)``. No
    parameters."""

    def __init__(self, group: GroupSpec = "O", mode: Literal["max", "mean"] = "max") -> None:
        super().__init__()
        if mode not in ("max", "mean"):
            raise ValueError(f"group pooling mode must be 'max' or 'mean', got {mode!r}")
        self.group_order, self.mode = len(group_elements(group)), mode

    parameter_count = 0

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-4] % self.group_order:
            raise ValueError(f"{x.shape[-4]} channels are not a multiple of the group order {self.group_order}")
        fields = x.view(*x.shape[:-4], -1, self.group_order, *x.shape[-3:])
        return fields.amax(-4) if self.mode == "max" else fields.mean(-4)

    def extra_repr(self) -> str:
        return f"group_order={self.group_order}, mode={self.mode!r}"


def weight_stabilizer(weights: Tensor, group: GroupSpec, atol: float = 1e-6) -> tuple[int, ...]:
    """Indices of the elements ``u`` with ``w_l(u h) = w_l(h)`` (within ``atol``) for all ``l, h``: the subgroup
    to which a :class:`RelaxedOctahedralGroupConv3d` with relaxation weights ``weights (L, |G|)`` is equivariant
    (see the module docstring)."""
    table = cayley_table(group_elements(group)).to(weights.device)  # [u, h] -> u h
    w = weights.detach()
    moved = w[:, table]  # (L, |G|_u, |G|_h): w_l(u h)
    close = ((moved - w[:, None, :]).abs() <= atol).all(dim=2).all(dim=0)
    return tuple(int(i) for i in torch.nonzero(close).reshape(-1))


def parameter_count(module: nn.Module) -> int:
    """Sum of the configured ``parameter_count`` of the octahedral layers in ``module`` (the module itself or its
    descendants); equals ``sum(p.numel() for p in module.parameters())`` when every parameter belongs to one."""
    if hasattr(module, "parameter_count") and isinstance(module, (_OctahedralLayer, OctahedralGroupPool3d)):
        return int(module.parameter_count)
    return sum(parameter_count(m) for m in module.children())
