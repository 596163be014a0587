"""Relaxed steerable convolution (Wang, Walters & Yu, ICML 2022 sec. 3.2-3.3) for ``C_N`` on the plane.

A G-steerable convolution (eq. 6) combines a fixed equivariant kernel basis ``psi_l`` (escnn's, solving
``psi_l(g y) = rho_out(g) psi_l(y) rho_in(g)^-1``) with trainable weights ``w in R^{c_out x c_in x L}``:

    f_out(x) = sum_y sum_l (w_l . psi_l(y)) f_in(x + y).

The relaxed one (eq. 7) lets the weights depend on the kernel position, ``w_l(y)``; for rotations through the angle of
the offset only, ``w_l(y) = w_l(theta)``, ``theta = arctan2(y)`` (one bin per distinct angle of the ``k x k`` grid, the
centre its own bin). ``w`` starts equal for every ``y`` (exactly equivariant at init; the ICML 2022 code,
Rose-STL-Lab/Approximately-Equivariant-Nets, draws it per pixel) and is kept smooth by the penalty of sec. 3.3,

    L_sconv = ||dw/dm|| + ||dw/dn||    (finite differences over the k x k grid, L1),

zero exactly when ``w`` does not depend on ``y``. With ``ranks = R > 1`` the weights also depend on the output
position through the low-rank factorisation of eq. 8-9, ``w_l(x, y) = sum_r a_r(x) b_{r,l}(y)``: ``R`` relaxed
kernels, one convolution with ``R * C_out`` outputs, mixed pixel by pixel (:class:`.pixel_mixing.PixelMixing`,
whose total variation joins the penalty).

Feature types are :data:`~symbench.layers.escnn_blocks.TypeBlocks` (vector, scalar and regular fields, any order).
The kernel is expanded once per forward, per pair of field kinds, with one einsum over the basis, and applied with
one ``conv2d`` call; the basis and index tables are non-persistent buffers, so ``.to(device)`` and DDP move them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from symbench.layers.conv import check_padding_mode, same_padding
from symbench.layers.escnn_blocks import Kind, RotationFields, TypeBlocks
from symbench.layers.pixel_mixing import GridSize, PixelMixing, check_relax_grid, total_variation
from symbench.layers.scale_conv import same_conv


def angle_bins(kernel_size: int) -> Tensor:
    """``(k * k,)`` bin of every kernel tap (row-major, rows towards -y): taps with the same angle
    ``arctan2(y)`` of their offset share a bin; the centre tap is the last bin."""
    c = kernel_size // 2
    rows, cols = torch.meshgrid(torch.arange(kernel_size), torch.arange(kernel_size), indexing="ij")
    x, y = (cols - c).flatten(), (c - rows).flatten()
    g = torch.gcd(x.abs(), y.abs()).clamp(min=1)
    directions = torch.stack([x // g, y // g], dim=1)  # offsets on one ray share a primitive direction
    centre = (x == 0) & (y == 0)
    unique, index = torch.unique(directions[~centre], dim=0, return_inverse=True)
    bins = torch.full((kernel_size * kernel_size,), len(unique), dtype=torch.long)
    bins[~centre] = index
    return bins


def _field_kinds(blocks: TypeBlocks) -> list[Kind]:
    return [kind for kind, n in blocks for _ in range(n)]


def _sorted_order(blocks: TypeBlocks, rot: RotationFields, kinds: list[Kind]) -> Tensor:
    """Channel permutation ``p`` with ``actual = sorted[p]``, where ``sorted`` lists the channels kind by kind
    (in the order ``kinds``), fields in their original order within a kind."""
    fields = _field_kinds(blocks)
    sizes = [rot.channels(((k, 1),)) for k in fields]
    starts = [sum(sizes[:i]) for i in range(len(fields))]
    sorted_channels = [starts[i] + j for kind in kinds for i, f in enumerate(fields) if f == kind
                       for j in range(sizes[i])]
    return torch.argsort(torch.tensor(sorted_channels))


class RelaxedSteerableConv2d(nn.Module):
    """Relaxed ``C_N``-steerable convolution ``(B, C_in, H, W) -> (B, C_out, H, W)`` between escnn field types
    (eq. 7; eq. 8-9 with ``ranks > 1``), 'same' padding. ``relaxed=False`` is the strict steerable convolution of
    eq. 6 with the same basis (``R2Conv``'s), the reference for the cost of relaxation. ``bias`` adds one trainable
    constant per regular or scalar output field (none on vectors), as escnn does.

    Parameters per (input kind, output kind) pair: ``(R, n_out, n_in, L, A)`` with ``A`` the angle bins of
    :func:`angle_bins` (``A = 1`` when strict). ``grid_size`` and ``relax_grid`` are used when ``ranks > 1``.
    """

    def __init__(self, rot: RotationFields, in_blocks: TypeBlocks, out_blocks: TypeBlocks, kernel_size: int = 3, *,
                 relaxed: bool = True, bias: bool = False, padding_mode: str = "zeros", ranks: int = 1,
                 grid_size: GridSize | None = None, relax_grid: GridSize | None = None) -> None:
        super().__init__()
        check_padding_mode(padding_mode)
        same_padding(kernel_size)
        if ranks < 1:
            raise ValueError(f"ranks must be >= 1, got {ranks}")
        if ranks > 1 and grid_size is None:
            raise ValueError("a relaxed translation part (ranks > 1) needs grid_size")
        self.kernel_size, self.relaxed, self.ranks, self.padding_mode = kernel_size, relaxed, ranks, padding_mode
        self.in_channels, self.out_channels = rot.channels(in_blocks), rot.channels(out_blocks)
        in_fields, out_fields = _field_kinds(in_blocks), _field_kinds(out_blocks)
        self.in_kinds = [k for k in ("regular", "vector", "scalar") if k in in_fields]
        self.out_kinds = [k for k in ("regular", "vector", "scalar") if k in out_fields]
        self.register_buffer("angle_index", angle_bins(kernel_size), persistent=False)
        n_angles = int(self.angle_index.max()) + 1 if relaxed else 1
        fan_in = self.in_channels * kernel_size**2
        self.weights = nn.ParameterDict()
        for a in self.in_kinds:
            for b in self.out_kinds:
                basis = rot.kernel_basis(a, b, kernel_size)
                self.register_buffer(f"basis_{a}_{b}", basis.clone(), persistent=False)
                # Unit-scale basis (own_unit_basis): coefficients of variance 1/(3 fan_in) give the filter entries
                # PyTorch's default conv variance. Equal along the angle axis: exactly equivariant at init.
                w = torch.randn(ranks, out_fields.count(b), in_fields.count(a), basis.shape[0], 1)
                self.weights[f"{a}_{b}"] = nn.Parameter((w / math.sqrt(3 * fan_in)).repeat(1, 1, 1, 1, n_angles))
        self.register_buffer("out_order", _sorted_order(out_blocks, rot, self.out_kinds), persistent=False)
        self.register_buffer("in_order", _sorted_order(in_blocks, rot, self.in_kinds), persistent=False)
        self._permute = not (torch.equal(self.out_order, torch.arange(self.out_channels))
                             and torch.equal(self.in_order, torch.arange(self.in_channels)))
        bias_fields = [i for i, k in enumerate(out_fields) if k != "vector"]
        if bias and bias_fields:
            # (C_out, n_bias) 0/1 map from one constant per regular / scalar field to its channels
            sizes = [rot.channels(((k, 1),)) for k in out_fields]
            spread = torch.zeros(self.out_channels, len(bias_fields))
            for j, i in enumerate(bias_fields):
                spread[sum(sizes[:i]):sum(sizes[:i + 1]), j] = 1.0
            self.register_buffer("bias_spread", spread, persistent=False)
            self.bias = nn.Parameter(torch.zeros(len(bias_fields)))
        else:
            self.bias = None
        self.mixing = PixelMixing(ranks, grid_size, relax_grid) if ranks > 1 else None  # type: ignore[arg-type]

    def _position_weights(self, w: Tensor) -> Tensor:
        """``(..., L, A) -> (..., L, k * k)``: every tap's weight (its angle bin's; the single one when strict)."""
        return w[..., self.angle_index] if self.relaxed else w.expand(*w.shape[:-1], self.kernel_size**2)

    def kernel(self) -> Tensor:
        """``(R * C_out, C_in, k, k)``: ``Psi_r(y) = sum_l w_{r,l}(y) psi_l(y)`` for every rank, rank-major."""
        k = self.kernel_size
        rows = []
        for b in self.out_kinds:
            row = []
            for a in self.in_kinds:
                basis = getattr(self, f"basis_{a}_{b}")  # (L, d_out, d_in, k, k)
                w = self._position_weights(self.weights[f"{a}_{b}"])  # (R, n_out, n_in, L, k*k)
                block = torch.einsum("rnmls,lpqs->rnpmqs", w, basis.flatten(-2).to(w.dtype))
                r, n_out, d_out, n_in, d_in, _ = block.shape
                row.append(block.reshape(r, n_out * d_out, n_in * d_in, k * k))
            rows.append(torch.cat(row, dim=2))
        kernel = torch.cat(rows, dim=1)  # kinds sorted
        if self._permute:
            kernel = kernel[:, self.out_order][:, :, self.in_order]
        return kernel.reshape(-1, self.in_channels, k, k)

    def forward(self, x: Tensor) -> Tensor:
        y = same_conv(x, self.kernel(), 1, self.padding_mode, 1)
        if self.mixing is not None:
            y = self.mixing(y)
        if self.bias is not None:
            y = y + (self.bias_spread.to(self.bias.dtype) @ self.bias)[:, None, None]
        return y

    def regularization_loss(self) -> Tensor:
        """``sum ||dw/dm|| + ||dw/dn||`` over every weight tensor laid out on the ``k x k`` grid (sec. 3.3), plus
        the total variation of the translation weights ``a_r(x)`` when ``ranks > 1``; zero when strict."""
        terms = [next(iter(self.weights.values())).new_zeros(())]
        if self.relaxed:
            k = self.kernel_size
            terms += [total_variation(self._position_weights(w).unflatten(-1, (k, k))) for w in self.weights.values()]
        if self.mixing is not None:
            terms.append(self.mixing.regularization_loss())
        return torch.stack(terms).sum()

    @staticmethod
    def parameter_count(rot: RotationFields, in_blocks: TypeBlocks, out_blocks: TypeBlocks, kernel_size: int, *,
                        relaxed: bool = True, bias: bool = False, ranks: int = 1,
                        relax_grid: GridSize | None = None, grid_size: GridSize | None = None) -> int:
        """Trainable parameters of the layer with these arguments, without building it."""
        in_fields, out_fields = _field_kinds(in_blocks), _field_kinds(out_blocks)
        n_angles = int(angle_bins(kernel_size).max()) + 1 if relaxed else 1
        total = sum(ranks * out_fields.count(b) * in_fields.count(a) * rot.kernel_basis(a, b, kernel_size).shape[0]
                    * n_angles for a in set(in_fields) for b in set(out_fields))
        if bias:
            total += sum(k != "vector" for k in out_fields)
        if ranks > 1:
            cells_h, cells_w = check_relax_grid(grid_size, relax_grid)  # type: ignore[arg-type]
            total += ranks * cells_h * cells_w
        return total

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, relaxed={self.relaxed}, "
                f"ranks={self.ranks}, padding_mode={self.padding_mode!r}")
