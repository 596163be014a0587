"""CLCNN: a constrained locally connected network (Wang, Walters & Yu, ICML 2022 sec. 3.4 and sec. 5) and its hinge
loss, built from the locally connected layer of :mod:`symbench.layers.local_conv`: a full, independent kernel
``K(x)`` of ``C_out x C_in x k x k`` at every pixel ``x``, so that the network can represent maps no convolution can.

Hinge loss (sec. 3.4): ``L = sum_h mean_x || rho_out(h) K(h^-1 x) rho_in(h)^-1 - K(x) ||^2`` with ``K(x)`` acting by
``h`` also on its kernel offsets: the kernel constraint (3) imposed softly, added to the training loss as
``alpha * L`` through the model's ``regularization_loss()`` hook (``alpha``: the per-model ``model_module`` option of
a benchmark preset, as for RGroup and RSteer). Each term is computed on the materialised kernel field (as many
entries as the layer has weights):

* translation (every symmetry): ``h`` = one-pixel shifts along x and y, ``mean_x ||K(x + e) - K(x)||^2``: the
  penalty pulls neighbouring kernels together; it is zero exactly when every pixel has the same kernel, i.e. the
  layer is a convolution;
* rotation: ``h`` = the three non-trivial elements of ``C4`` about the grid centre: the kernel field turned over the
  grid, each kernel turned spatially and its in/out channels transformed by the escnn representations of the layer's
  field types (history: ``irrep(1)`` per vector, trivial per scalar; hidden: regular fields; output: the layout's
  fields); the head bias adds ``||rho_out(h) b - b||^2``. Zero exactly when the network is ``C4``-equivariant.
* scaling: for each ``sigma`` of the scale levels below 1, ``K(c + sigma (x - c)) - S_sigma K(x)`` with ``S_sigma``
  the mass-preserving rescaling of a kernel (:func:`~symbench.layers.scale_conv.splat_matrix`, ``K_sigma(y) =
  sigma^-2 K(y / sigma)``): the constraint of a zoom about the grid centre. A single-level network has no scale
  axis, so its equivariant kernels are the position-independent ``1 x 1`` kernels; the magnitude factor of eq. 3
  is left out (it cancels between channels of equal exponent, e.g. velocity-only data).

Departures from Rose-STL-Lab/Approximately-Equivariant-Nets (``Constrained_LCNet``): the differences are squared
(Frobenius norm squared, averaged over the pixels) where the reference takes the mean absolute difference and squares
the sum of the layers' terms (an L1 has no gradient at the constraint's zero); hidden layers are ``norm -> ReLU``
like the suite's ConvNet (the reference: ELU, no norm). Size: a kernel per pixel has ``H W`` times a convolution's
weights, so CLCNN cannot match the ConvNet budget (one 1-channel layer on 32x32 already exceeds it): its hidden sizes
are fitted (:func:`~symbench.models.budget.fit_sizes`) to ConvNet's parameters times ``H W`` (a kernel per pixel of
the ConvNet at the same width: equal arithmetic per pixel), capped at ``max_parameters`` (default the paper's
``10^7``, :data:`~symbench.models.budget.PARAMETER_CAP`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from symbench.fields import FieldLayout
from symbench.layers import check_history, stack_frames
from symbench.layers.escnn_blocks import RotationFields
from symbench.layers.local_conv import LocallyConnected2d
from symbench.layers.pixel_mixing import GridSize, grid_shape
from symbench.layers.scale_conv import scale_levels, splat_matrix
from symbench.models.conv_net import check_smoke_args, check_symmetry, conv_budget
from symbench.models.equ_scale import N_SCALES, SCALE_RATIO
from symbench.models.budget import PARAMETER_CAP, capped_target, fit_sizes
from symbench.models.smoke_families import ConvFamily, FeatureType, SteerableFamily
from symbench.symmetry import spatial_scale

_COEFFICIENT = FieldLayout.of("coefficient:scalar")


def field_gap(a: Tensor, b: Tensor) -> Tensor:
    """``mean_x ||a(x) - b(x)||_F^2`` for kernel fields ``(H, W, ...)`` of the same shape."""
    return (a - b).square().sum() / (a.shape[0] * a.shape[1])


def translation_gap(layer: LocallyConnected2d) -> Tensor:
    """``mean ||K(x + e) - K(x)||^2`` summed over the one-pixel shifts ``e`` along x and y."""
    k = layer.weight
    return field_gap(k[:, 1:], k[:, :-1]) + field_gap(k[1:], k[:-1])


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

    def forward(self, layer: LocallyConnected2d) -> Tensor:
        k = layer.weight
        total = k.new_zeros(())
        for q in (1, 2, 3):
            rho_out = self.rho_out[q].to(k.dtype)
            turned = rotate_kernels(torch.rot90(k, q, dims=(0, 1)), rho_out, self.rho_in[-q].to(k.dtype), q)
            total = total + field_gap(turned, k)
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

    def forward(self, layer: LocallyConnected2d) -> Tensor:
        k = layer.weight
        images = k.flatten(2).permute(2, 0, 1)[:, None]  # every kernel entry as a (1, H, W) map over the grid
        total = k.new_zeros(())
        for sigma, splat in zip(self.scales, self.splats.to(k.dtype)):
            zoomed = spatial_scale(images, _COEFFICIENT, sigma)[:, 0].permute(1, 2, 0).reshape(k.shape)
            rescaled = torch.einsum("yj,xl,...jl->...yx", splat, splat, k)
            total = total + field_gap(zoomed, rescaled)
        return total


class CLCNN(nn.Module):
    """Constrained locally connected network ``(B, T_in, C, H, W) -> (B, C, H, W)`` on a ``grid_size`` grid (one
    side or ``(H, W)``) (ICML 2022 sec. 3.4 and sec. 5, "CLCNN").

    ``layers - 1`` units of ``LocallyConnected2d -> norm -> ReLU`` and a biased ``LocallyConnected2d`` head to the
    layout's channels. For ``rotation`` the hidden features are regular fields of ``C4`` (4 channels each) normalised
    by escnn's ``InnerBatchNorm``, so that a network with zero hinge loss is exactly ``C4``-equivariant; otherwise
    plain channels and ``BatchNorm2d``. :meth:`regularization_loss` is the hinge loss summed over the layers (the
    Lightning module multiplies it by alpha). Hidden sizes: module docstring ("Size").
    """

    def __init__(self, in_frames: int, layout: FieldLayout, *, symmetry: str = "rotation", width: int = 64,
                 layers: int = 5, kernel_size: int = 3, grid_size: GridSize = 64,
                 n_scales: int = N_SCALES, scale_ratio: float = SCALE_RATIO,
                 max_parameters: int = PARAMETER_CAP) -> None:
        super().__init__()
        check_symmetry("CLCNN", symmetry)
        check_smoke_args("CLCNN", in_frames, width, layers)
        self.in_frames, self.layout, self.symmetry, self.grid_size = in_frames, layout, symmetry, grid_size
        types = SteerableFamily(kernel_size, 4) if symmetry == "rotation" else ConvFamily(kernel_size)
        pixels = grid_shape(grid_size)[0] * grid_shape(grid_size)[1]
        target = capped_target(conv_budget(in_frames, layout, width, layers, kernel_size) * pixels, max_parameters)
        in_type = types.history_type(layout, in_frames)
        out_type = types.history_type(layout, 1)

        def count(sizes: tuple[int, ...]) -> int:
            total, current = 0, in_type
            for n in sizes:
                total += LocallyConnected2d.parameters_for(types.channels(current), types.channels(
                    types.hidden_type(n)), kernel_size, grid_size) + types.norm_parameters(n)
                current = types.hidden_type(n)
            return total + LocallyConnected2d.parameters_for(types.channels(current), layout.channels, kernel_size,
                                                             grid_size, bias=True)

        self.sizes = fit_sizes(layers - 1, count, target)
        feature_types = [in_type, *(types.hidden_type(n) for n in self.sizes), out_type]
        self.local = nn.ModuleList(
            LocallyConnected2d(types.channels(a), types.channels(b), kernel_size, grid_size, bias=i == len(self.sizes))
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
                f"grid_size={self.grid_size}")
