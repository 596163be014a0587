"""CLCNN: a constrained locally connected network (Wang, Walters & Yu, ICML 2022, sec. 3.4 and sec. 5) and its hinge
loss, built from the low-rank locally connected layer of :mod:`symbench.layers.local_conv`
(``K(x) = sum_r a_r(x) K_r``).

Hinge loss (sec. 3.4): ``L = sum_h mean_x || rho_out(h) K(h^-1 x) rho_in(h)^-1 - K(x) ||^2`` with ``K(x)`` acting by
``h`` also on its kernel offsets, the kernel constraint (3) imposed softly (squared Frobenius norm, averaged over the
pixels; the L1 of Rose-STL-Lab/Approximately-Equivariant-Nets and the non-squared norm of the paper have no gradient
at the constraint's zero). With ``K(x) = sum_r a_r(x) K_r`` each term is
``mean_x || sum_r a'_r(x) K'_r - a_r(x) K_r ||^2``, computed exactly from two small Gram matrices
(:func:`kernel_field_gap`) without building the ``H W`` kernels:

* translation (every symmetry): ``h`` = one-pixel shifts along x and y, ``K(x + e) - K(x)``;
* rotation: ``h`` = the three non-trivial elements of ``C4`` about the grid centre: the maps rotated by ``h``, the
  kernels rotated spatially and their in/out channels transformed by the escnn representations of the layer's
  field types (history: ``irrep(1)`` per vector, trivial per scalar; hidden: regular fields; output: the layout's
  fields); the head bias adds ``||rho_out(h) b - b||^2``. Zero exactly when the network is ``C4``-equivariant.
* scaling: for each ``sigma`` of the scale levels below 1, ``K(c + sigma (x - c)) - S_sigma K(x)`` with ``S_sigma``
  the mass-preserving rescaling of a kernel (:func:`~symbench.layers.scale_conv.splat_matrix`, ``K_sigma(y) =
  sigma^-2 K(y / sigma)``): the constraint of a zoom about the grid centre. A single-level network has no scale
  axis, so its equivariant kernels are the position-independent ``1 x 1`` kernels; the magnitude factor of eq. 3
  is left out (it cancels between channels of equal exponent, e.g. velocity-only data).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from symbench.fields import FieldLayout
from symbench.layers import check_history, stack_frames
from symbench.layers.escnn_blocks import RotationFields
from symbench.layers.local_conv import LowRankLocalConv2d, coefficient_map_size
from symbench.layers.pixel_mixing import GridSize
from symbench.layers.scale_conv import scale_levels, splat_matrix
from symbench.models.conv_net import check_smoke_args, check_symmetry, conv_budget
from symbench.models.equ_scale import N_SCALES, SCALE_RATIO
from symbench.models.budget import fit_sizes
from symbench.models.smoke_families import ConvFamily, FeatureType, SteerableFamily
from symbench.symmetry import spatial_scale

_COEFFICIENT = FieldLayout.of("coefficient:scalar")


def kernel_field_gap(maps_a: Tensor, kernels_a: Tensor, maps_b: Tensor, kernels_b: Tensor) -> Tensor:
    """``mean_x || sum_r a_r(x) A_r - sum_r b_r(x) B_r ||_F^2`` for maps ``(R, *P)`` and kernels ``(R, *D)``.

    With atoms ``M = (a, b)`` and ``N = (A, -B)`` the sum is ``sum_ij <M_i, M_j> <N_i, N_j>``: two ``2R x 2R`` Gram
    matrices instead of ``P`` kernels of ``D`` entries."""
    m = torch.cat([maps_a, maps_b]).flatten(1)
    n = torch.cat([kernels_a, -kernels_b]).flatten(1)
    return ((m @ m.T) * (n @ n.T)).sum().clamp_min(0) / m.shape[1]


def translation_gap(layer: LowRankLocalConv2d) -> Tensor:
    """``mean ||K(x + e) - K(x)||^2`` summed over the one-pixel shifts ``e`` along x and y."""
    a, k = layer.maps(), layer.kernels()
    return (kernel_field_gap(a[:, :, 1:], k, a[:, :, :-1], k)
            + kernel_field_gap(a[:, 1:, :], k, a[:, :-1, :], k))


def rotate_kernels(kernels: Tensor, rho_out: Tensor, rho_in_inverse: Tensor, quarter_turns: int) -> Tensor:
    """``h.K = rho_out(h) K(h^-1 d) rho_in(h)^-1`` for ``kernels (..., C_out, C_in, k, k)``, ``h`` a turn by
    ``quarter_turns * 90`` degrees (the kernel image turned like :func:`symbench.symmetry.rot90` turns a grid)."""
    turned = torch.rot90(kernels, quarter_turns, dims=(-2, -1))
    return torch.einsum("oa,...abyx,bi->...oiyx", rho_out, turned, rho_in_inverse)


class RotationGap(nn.Module):
    """The ``C4`` part of the hinge loss of one layer between escnn field types ``in_type`` and ``out_type``."""

    rho_in: Tensor
    rho_out: Tensor

    def __init__(self, rot: RotationFields, in_type: FeatureType, out_type: FeatureType) -> None:
        super().__init__()
        if rot.group_order != 4:
            raise ValueError(f"CLCNN's rotation constraint is for C4 (exact on the grid), got C{rot.group_order}")
        self.register_buffer("rho_in", _representation(rot, in_type), persistent=False)
        self.register_buffer("rho_out", _representation(rot, out_type), persistent=False)

    def forward(self, layer: LowRankLocalConv2d) -> Tensor:
        a, k = layer.maps(), layer.kernels()
        total = a.new_zeros(())
        for q in (1, 2, 3):
            rho_out = self.rho_out[q].to(k.dtype)
            turned = rotate_kernels(k, rho_out, self.rho_in[-q].to(k.dtype), q)
            total = total + kernel_field_gap(torch.rot90(a, q, dims=(-2, -1)), turned, a, k)
            if layer.bias is not None:
                total = total + (rho_out @ layer.bias - layer.bias).square().sum()
        return total


def _representation(rot: RotationFields, blocks: FeatureType) -> Tensor:
    """``(4, C, C)``: ``rho(g^q)`` of the field type for ``q = 0..3``. The C4 matrices are signed permutations;
    escnn gives them up to 1e-16, so they are rounded to the exact integers."""
    field_type = rot.field_type(blocks)  # type: ignore[arg-type]
    group = rot.gspace.fibergroup
    return torch.stack([torch.from_numpy(field_type.representation(group.element(q))).round().float()
                        for q in range(4)])


class ScaleGap(nn.Module):
    """The zoom part of the hinge loss: ``mean_x ||K(c + sigma (x - c)) - S_sigma K(x)||^2`` over the levels
    ``sigma < 1``."""

    splats: Tensor

    def __init__(self, kernel_size: int, scales: tuple[float, ...]) -> None:
        super().__init__()
        self.scales = tuple(s for s in scales if s < 1)
        splats = torch.stack([splat_matrix(s, kernel_size) for s in self.scales]).float()
        self.register_buffer("splats", splats, persistent=False)

    def forward(self, layer: LowRankLocalConv2d) -> Tensor:
        a, k = layer.maps(), layer.kernels()
        total = a.new_zeros(())
        for sigma, splat in zip(self.scales, self.splats.to(k.dtype)):
            zoomed = spatial_scale(a[:, None], _COEFFICIENT, sigma)[:, 0]
            rescaled = torch.einsum("yj,xl,...jl->...yx", splat, splat, k)
            total = total + kernel_field_gap(zoomed, k, a, rescaled)
        return total


class CLCNN(nn.Module):
    """Constrained locally connected network ``(B, T_in, C, H, W) -> (B, C, H, W)`` on a ``grid_size`` grid (one
    side or ``(H, W)``) (ICML 2022 sec. 3.4 and sec. 5, "CLCNN").

    ``layers - 1`` units of ``LowRankLocalConv2d -> norm -> ReLU`` and a biased ``LowRankLocalConv2d`` head to the
    layout's channels. For ``rotation`` the hidden features are regular fields of ``C4`` (4 channels each) normalised
    by escnn's ``InnerBatchNorm``, so that a network with zero hinge loss is exactly ``C4``-equivariant; otherwise
    plain channels and ``BatchNorm2d``. :meth:`regularization_loss` is the hinge loss summed over the layers (the
    Lightning module multiplies it by alpha). Hidden sizes are fitted to ``conv_budget`` with the maps included.
    """

    def __init__(self, in_frames: int, layout: FieldLayout, *, symmetry: str = "rotation", width: int = 64,
                 layers: int = 5, kernel_size: int = 3, grid_size: GridSize = 64, rank: int = 2,
                 n_scales: int = N_SCALES, scale_ratio: float = SCALE_RATIO) -> None:
        super().__init__()
        check_symmetry("CLCNN", symmetry)
        check_smoke_args("CLCNN", in_frames, width, layers)
        self.in_frames, self.layout, self.symmetry, self.grid_size = in_frames, layout, symmetry, grid_size
        types = SteerableFamily(kernel_size, 4) if symmetry == "rotation" else ConvFamily(kernel_size)
        budget = conv_budget(in_frames, layout, width, layers, kernel_size)
        self.map_size = coefficient_map_size(grid_size, budget, layers, rank)
        in_type = types.history_type(layout, in_frames)
        out_type = types.history_type(layout, 1)

        def count(sizes: tuple[int, ...]) -> int:
            total, current = 0, in_type
            for n in sizes:
                total += LowRankLocalConv2d.parameters_for(types.channels(current), types.channels(
                    types.hidden_type(n)), kernel_size, rank, self.map_size) + types.norm_parameters(n)
                current = types.hidden_type(n)
            return total + LowRankLocalConv2d.parameters_for(types.channels(current), layout.channels, kernel_size,
                                                             rank, self.map_size, bias=True)

        self.sizes = fit_sizes(layers - 1, count, budget)
        feature_types = [in_type, *(types.hidden_type(n) for n in self.sizes), out_type]
        self.local = nn.ModuleList(
            LowRankLocalConv2d(types.channels(a), types.channels(b), kernel_size, rank, grid_size, self.map_size,
                               bias=i == len(self.sizes))
            for i, (a, b) in enumerate(zip(feature_types[:-1], feature_types[1:])))
        self.norms = nn.ModuleList(types.norm(n) for n in self.sizes)
        self.constraints = nn.ModuleList(self._constraints(a, b, types, kernel_size, n_scales, scale_ratio)
                                         for a, b in zip(feature_types[:-1], feature_types[1:]))

    def _constraints(self, in_type: FeatureType, out_type: FeatureType, types: ConvFamily | SteerableFamily,
                     kernel_size: int, n_scales: int, scale_ratio: float) -> nn.ModuleList:
        if self.symmetry == "rotation":
            assert isinstance(types, SteerableFamily)
            return nn.ModuleList([RotationGap(types.rot, in_type, out_type)])
        if self.symmetry == "scaling":
            return nn.ModuleList([ScaleGap(kernel_size, scale_levels(n_scales, scale_ratio))])
        return nn.ModuleList()

    def forward(self, x: Tensor) -> Tensor:
        check_history(x, self.in_frames, self.layout.channels, "CLCNN")
        y = stack_frames(x)
        for layer, norm in zip(self.local, self.norms):
            y = torch.relu(norm(layer(y)))
        return self.local[-1](y)

    def regularization_loss(self) -> Tensor:
        """The hinge loss: translation gaps of every layer plus the rotation or zoom gaps (module docstring)."""
        total = self.local[0].weight.new_zeros(())
        for layer, constraints in zip(self.local, self.constraints):
            total = total + translation_gap(layer)
            for gap in constraints:
                total = total + gap(layer)
        return total

    def extra_repr(self) -> str:
        return (f"in_frames={self.in_frames}, fields={self.layout}, symmetry={self.symmetry!r}, sizes={self.sizes}, "
                f"grid_size={self.grid_size}, map_size={self.map_size}")
