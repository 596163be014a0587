"""escnn building blocks of the rotation-equivariant backbones (Wang et al., ICLR 2021 sec. 3.3; Weiler & Cesa 2019).

A network equivariant to the cyclic group ``C_N`` of rotations by multiples of ``2 pi / N`` maps feature fields of
declared types: a velocity frame is a vector field (the standard representation ``irrep(1)`` of ``C_N``, components
(x, y)), a scalar field is trivial, and hidden features are regular fields (``N`` channels permuted by the rotations),
which commute with any channel-wise non-linearity. Steerable convolutions ``R2Conv`` solve the kernel constraint
``K(g p) = rho_out(g) K(p) rho_in(g)^-1`` on a basis built once at construction.

Models here pass plain tensors between layers: :class:`EquivariantOp` wraps one escnn module (tensor in, tensor out),
so the forward pass reads like the plain backbone's, :func:`export_plain` swaps every wrapper for the plain torch
module escnn exports, and the state dict holds the same keys in train and eval mode.
Field types are described by :data:`TypeBlocks`, an ordered tuple of ``(kind, count)`` pairs, so parameter counts can
be computed without building a network.
"""

from __future__ import annotations

import copy
import math
from typing import Literal

import torch
from escnn import gspaces
from escnn import nn as enn
from torch import Tensor, nn

from symbench.fields import FieldLayout

Kind = Literal["regular", "vector", "scalar"]
TypeBlocks = tuple[tuple[Kind, int], ...]


def regular(fields: int) -> TypeBlocks:
    """``fields`` regular fields of ``C_N`` (``N`` channels each)."""
    return (("regular", fields),)


def layout_blocks(layout: FieldLayout, frames: int = 1) -> TypeBlocks:
    """Types of ``frames`` frames of ``layout`` stacked frame-major (the order of
    :func:`~symbench.layers.stack_frames`): each vector field is one ``irrep(1)`` field, each scalar a trivial one."""
    return tuple(("vector" if f.kind == "vector" else "scalar", 1) for _ in range(frames) for f in layout.fields)


def field_count(blocks: TypeBlocks) -> dict[Kind, int]:
    """Number of fields of each kind in ``blocks``."""
    counts: dict[Kind, int] = {}
    for kind, n in blocks:
        counts[kind] = counts.get(kind, 0) + n
    return counts


class RotationFields:
    """The field types of a ``C_N``-equivariant network on the plane and the steerable layers between them.

    ``rot2dOnR2(N)`` acts on the grid as escnn does: rows run towards -y, which is the convention of
    :mod:`symbench.fields`, so a rotation here is :func:`symbench.symmetry.rot90` on the tensors for ``N % 4 == 0``.
    Kernel-basis dimensions are computed once per (input kind, output kind, kernel) and kept on this object.
    """

    def __init__(self, group_order: int) -> None:
        if group_order < 3:
            raise ValueError(
                f"group_order must be >= 3 (C_N with N < 3 has no 2-D vector representation), got {group_order}"
            )
        self.group_order = group_order
        self.gspace = gspaces.rot2dOnR2(group_order)
        self._representations = {
            "regular": self.gspace.regular_repr,
            "vector": self.gspace.irrep(1),
            "scalar": self.gspace.trivial_repr,
        }
        self._basis_dims: dict[tuple[Kind, Kind, int, bool], int] = {}
        self._bases: dict[tuple[Kind, Kind, int], Tensor] = {}

    def field_type(self, blocks: TypeBlocks) -> enn.FieldType:
        return enn.FieldType(self.gspace, [self._representations[kind] for kind, n in blocks for _ in range(n)])

    def channels(self, blocks: TypeBlocks) -> int:
        return sum(self._representations[kind].size * n for kind, n in blocks)

    def _basis_dim(self, in_kind: Kind, out_kind: Kind, kernel_size: int, transposed: bool) -> int:
        """Free parameters of one steerable kernel from one ``in_kind`` field to one ``out_kind`` field."""
        key = (in_kind, out_kind, kernel_size, transposed)
        if key not in self._basis_dims:
            cls = enn.R2ConvTransposed if transposed else enn.R2Conv
            conv = cls(self.field_type(((in_kind, 1),)), self.field_type(((out_kind, 1),)), kernel_size, bias=False,
                       initialize=False)
            self._basis_dims[key] = conv.basisexpansion.dimension()
        return self._basis_dims[key]

    def kernel_basis(self, in_kind: Kind, out_kind: Kind, kernel_size: int) -> Tensor:
        """``(L, d_out, d_in, k, k)``: escnn's steerable kernel basis from one ``in_kind`` field to one ``out_kind``
        field, sampled on the ``k x k`` grid and scaled as :func:`own_unit_basis` (the one every strict ``R2Conv``
        built by :meth:`conv` uses): each element ``psi_l`` satisfies ``psi_l(g p) = rho_out(g) psi_l(p)
        rho_in(g)^-1`` (eq. 3 of Wang et al. 2022). Read through escnn's public basis expansion (its filter is
        linear in the coefficients, so unit coefficient vectors give the elements); computed once per process."""
        key = (in_kind, out_kind, kernel_size)
        if key not in self._bases:
            conv = enn.R2Conv(self.field_type(((in_kind, 1),)), self.field_type(((out_kind, 1),)), kernel_size,
                              bias=False, initialize=False)
            own_unit_basis(conv)
            expansion = conv.basisexpansion
            with torch.no_grad():
                eye = torch.eye(expansion.dimension())
                basis = torch.stack([expansion(row) for row in eye])  # (L, d_out, d_in, k * k)
            self._bases[key] = basis.view(*basis.shape[:3], kernel_size, kernel_size).clone()
        return self._bases[key]

    def _trivial_irreps(self, kind: Kind) -> int:
        group = self.gspace.fibergroup
        return sum(group.irrep(*irr).is_trivial() for irr in self._representations[kind].irreps)

    def conv_parameters(self, in_blocks: TypeBlocks, out_blocks: TypeBlocks, kernel_size: int, bias: bool,
                        transposed: bool = False) -> int:
        """Parameter count of :meth:`conv` between these types: one basis coefficient per kernel-basis element of
        every (input field, output field) pair, and one bias per trivial irrep of the output (one per regular or
        scalar field, none for a vector field)."""
        n_in, n_out = field_count(in_blocks), field_count(out_blocks)
        total = sum(self._basis_dim(a, b, kernel_size, transposed) * na * nb
                    for a, na in n_in.items() for b, nb in n_out.items())
        if bias:
            total += sum(self._trivial_irreps(b) * nb for b, nb in n_out.items())
        return total

    def conv(self, in_blocks: TypeBlocks, out_blocks: TypeBlocks, kernel_size: int, *, bias: bool = True,
             padding_mode: str = "zeros", transposed: bool = False) -> "EquivariantOp":
        """Steerable convolution with 'same' padding (``R2Conv``), or, with ``transposed``, a stride-2 transposed
        convolution with padding 1 (``R2ConvTransposed``; with ``kernel_size = 4`` it doubles the grid, and its kernel
        grid and padding are symmetric, so it is exactly equivariant to 90 degree turns). Initialised by
        :func:`init_like_torch_conv`."""
        in_type, out_type = self.field_type(in_blocks), self.field_type(out_blocks)
        if transposed:
            module = enn.R2ConvTransposed(in_type, out_type, kernel_size, padding=1, stride=2, bias=bias,
                                          initialize=False)
        else:
            module = enn.R2Conv(in_type, out_type, kernel_size, padding=(kernel_size - 1) // 2,
                                padding_mode=padding_mode, bias=bias, initialize=False)
        own_unit_basis(module)
        init_like_torch_conv(module)
        return EquivariantOp(module)

    def batch_norm(self, fields: int) -> "EquivariantOp":
        """Batch normalisation of regular fields: one mean, variance, scale and shift per field, shared by its ``N``
        channels (escnn ``InnerBatchNorm``), so that a rotation, which permutes those channels, commutes with it."""
        return EquivariantOp(enn.InnerBatchNorm(self.field_type(regular(fields))))


@torch.no_grad()
def own_unit_basis(conv: enn.R2Conv | enn.R2ConvTransposed) -> None:
    """Give ``conv`` its own copy of the sampled kernel basis, scaled so that unit-variance coefficients give
    unit-variance filter entries.

    * Copy: escnn samples each basis once per process and hands the *same* module to every convolution that uses it,
      in every network, so ``.double()`` or ``.to(device)`` on one network would move the basis of all the others (a
      network built afterwards fails with a dtype or device mismatch). Re-sampling per layer (escnn's
      ``recompute=True``) costs about 0.4 s a layer; copying the sampled tensors costs nothing. The analytic basis
      object stays shared.
    * Scale: escnn normalises each basis element, which leaves a filter entry with variance ``sum_b B_b^2 ~ 0.07-0.17``
      per unit of coefficient variance. Adam moves every coefficient by about the learning rate per step, so with
      escnn's scale a filter would learn 2.5-4x more slowly than a plain convolution at the same learning rate; with
      this one, one learning rate means the same for the plain and the equivariant backbones.
    """
    expansion = conv.basisexpansion
    for name, block in list(expansion.named_children()):
        analytic = getattr(block, "basis", None)
        block = copy.deepcopy(block, {id(analytic): analytic})
        basis = block.sampled_basis  # (basis element, out, in, kernel point)
        basis.mul_(math.sqrt(basis[0].numel() / basis.pow(2).sum().item()))
        setattr(expansion, name, block)


@torch.no_grad()
def init_like_torch_conv(conv: enn.R2Conv | enn.R2ConvTransposed) -> None:
    """Draw the basis coefficients from a normal law scaled so that the expanded filter has mean square
    ``1 / (3 fan_in)``, the variance of PyTorch's default ``Conv2d`` initialisation (the plain backbones'), with
    ``fan_in`` counted as torch does (``filter.shape[1] * k * k``); biases start at zero.

    escnn's own generalised He initialisation loops over every basis element in Python: it takes about 15 s for a
    single 222-to-222 regular-field layer of C8, so a paper-size network would take minutes to build.
    """
    conv.weights.normal_()
    expanded, _ = conv.expand_parameters()
    fan_in = expanded.shape[1] * expanded[0, 0].numel()
    conv.weights.mul_(1.0 / math.sqrt(3.0 * fan_in * expanded.pow(2).mean().item()))
    if conv.bias is not None:
        conv.bias.zero_()


def _refresh_after_load(op: "EquivariantOp", incompatible_keys: object) -> None:
    """Load hook: an escnn module in eval mode keeps a filter expanded from the weights it had; recompute it from the
    loaded ones."""
    if not op.training:
        op.module.train(True)
        op.train(False)


class EquivariantOp(nn.Module):
    """One escnn module used on plain tensors: ``x -> module(GeometricTensor(x, in_type)).tensor``.

    The state dict of a wrapped convolution holds only what is learned (basis coefficients and biases): its sampled
    basis, index tables and eval-mode filter are rebuilt from the architecture. So train- and eval-mode state dicts
    have the same keys (escnn adds the cached filter in eval mode only), and loading does not trip over escnn's
    broadcast index buffers, which cannot be written to. The eval-mode filter is computed under ``no_grad`` (one with
    autograd history breaks ``copy.deepcopy``, which checkpoint and EMA callbacks use) and recomputed after
    ``load_state_dict``; eval mode is therefore for inference only: no gradient reaches the weights through it.
    """

    def __init__(self, module: enn.EquivariantModule) -> None:
        super().__init__()
        self.module = module
        self.register_load_state_dict_post_hook(_refresh_after_load)
        self.train(True)  # escnn registers a zero filter buffer at construction; train mode drops it

    def forward(self, x: Tensor) -> Tensor:
        return self.module(enn.GeometricTensor(x, self.module.in_type)).tensor

    def train(self, mode: bool = True) -> "EquivariantOp":
        with torch.no_grad():
            super().train(mode)
        if isinstance(self.module, (enn.R2Conv, enn.R2ConvTransposed)):
            for owner in self.module.modules():
                for name, buffer in list(owner.named_buffers(recurse=False)):
                    delattr(owner, name)
                    owner.register_buffer(name, buffer, persistent=False)
        return self

    def export(self) -> nn.Module:
        """The plain torch module computing the same map (``Conv2d`` / ``ConvTranspose2d`` / ``BatchNorm2d``...)."""
        if isinstance(self.module, (enn.R2Conv, enn.R2ConvTransposed)):
            return _export_conv(self.module)
        # escnn's export() switches the module to eval mode; leave the source model's mode as it was.
        was_training = self.module.training
        plain = self.module.export()
        self.module.train(was_training)
        return plain


@torch.no_grad()
def _export_conv(conv: enn.R2Conv | enn.R2ConvTransposed) -> nn.Module:
    """Plain convolution with the expanded filter. escnn's own ``R2Conv.export`` drops ``padding_mode`` (a circular
    model would be exported with zero padding) and shares storage with the cached filter, hence this copy."""
    weight, bias = conv.expand_parameters()
    if isinstance(conv, enn.R2ConvTransposed):
        plain: nn.Module = nn.ConvTranspose2d(conv.in_type.size, conv.out_type.size, conv.kernel_size,
                                              stride=conv.stride, padding=conv.padding,
                                              output_padding=conv.output_padding, dilation=conv.dilation,
                                              groups=conv.groups, bias=bias is not None)
    else:
        plain = nn.Conv2d(conv.in_type.size, conv.out_type.size, conv.kernel_size, stride=conv.stride,
                          padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=bias is not None,
                          padding_mode=conv.padding_mode)
    plain = plain.to(device=weight.device, dtype=weight.dtype)
    plain.weight.copy_(weight)
    if bias is not None:
        plain.bias.copy_(bias)
    return plain


def export_plain(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with every :class:`EquivariantOp` replaced by its plain torch export; the copy
    holds no escnn object, so it can be pickled. The source model is left as it was."""
    plain = copy.deepcopy(model)
    for name, op in list(plain.named_modules()):
        if isinstance(op, EquivariantOp):
            plain.set_submodule(name, op.export())
    return plain.eval()
