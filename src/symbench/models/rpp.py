"""RPP: Residual Pathway Priors (Finzi, Benton & Wilson, NeurIPS 2021), a baseline of the ICML 2022 smoke
benchmarks (Wang, Walters & Yu, sec. 5: "the combination of MLP and ConvNet for translation, ConvNet and E2CNN for
rotation, and ConvNet and SESN for scaling").

Every layer is an equivariant layer plus a non-equivariant ("free") layer of the same input and output shape,
``y = E x + F x``. The prior is Finzi et al.'s: Gaussian (L2) on both pathways, much stronger on the free one,
:meth:`RPP.regularization_loss` ``= sum ||theta_F||^2 + equivariant_prior * sum ||theta_E||^2`` (all weights and
biases of the pathways; the Lightning module multiplies it by alpha). ``equivariant_prior`` defaults to 1e-2, the
ratio of the two weight decays of mfinzi/residual-pathway-priors' CIFAR runner (1e-4 equivariant, 1e-2 free); it
must be below 1. (Rose-STL-Lab/Approximately-Equivariant-Nets has the same two-pathway L2 helper with equal default
weights, 1e-6 each, and its training script adds no prior for Rpp.) With the free pathway zero the network is exactly
the equivariant one.

* ``translation``: ``E`` = convolution (the ConvNet); ``F`` = the paper's MLP pathway ("the combination of MLP and
  ConvNet for translation"): a dense linear map of the whole grid through a bottleneck, ``Linear(C_in H W, r) ->
  Linear(r, C_out H W)`` (:class:`GridLinear`, ``free_rank`` ``r = 32`` and no nonlinearity between the two, as the
  ``RPPBlock`` of Rose-STL-Lab/Approximately-Equivariant-Nets). The dense pathway costs ``r (C_in + C_out) H W``
  per layer, above the whole ConvNet budget, so the translation RPP is sized like every model with grid-sized
  weights (:mod:`symbench.models.budget`): its ConvNet at the preset's width plus the pathway, hidden sizes fitted
  down only where that exceeds ``max_parameters`` (default the paper's ``10^7``).
* ``rotation``: ``E`` = escnn ``R2Conv`` between regular fields of ``C_N``; ``F`` = a plain ``Conv2d`` on the same
  channels. The sum is normalised by ``InnerBatchNorm`` (not ``BatchNorm2d`` as in
  Rose-STL-Lab/Approximately-Equivariant-Nets), so that the network with ``F = 0`` is exactly equivariant also after
  training.
* ``scaling``: ``E`` = SESN's scale-steerable correlation on the growing scales (:mod:`symbench.layers.scale_steerable`,
  via :class:`~symbench.models.smoke_families.ScaleFamily`); ``F`` = one plain
  convolution applied to every level with the same, un-rescaled kernel; the free head convolves the mean over the
  levels. Bias-free ``ScaleBatchNorm2d`` after the sum.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from symbench.fields import FieldLayout
from symbench.layers import check_history, same_padding, stack_frames
from symbench.layers.pixel_mixing import GridSize, grid_shape
from symbench.layers.scale_conv import split_levels
from symbench.models.conv_net import check_smoke_args, check_symmetry, conv_budget
from symbench.layers.scale_steerable import DEFAULT_SCALES
from symbench.models.budget import PARAMETER_CAP, capped_target, fit_sizes
from symbench.models.smoke_families import DEFAULT_GROUP_ORDER, FeatureType, LayerFamily, layer_family


FREE_RANK = 32  # the bottleneck of the reference RPPBlock's linear pathway
EQUIVARIANT_PRIOR = 1e-2  # equivariant / free weight decay of mfinzi/residual-pathway-priors' CIFAR runner


class ResidualPathway(nn.Module):
    """``y = equivariant(x) + free(x)`` (Finzi et al. 2021)."""

    def __init__(self, equivariant: nn.Module, free: nn.Module) -> None:
        super().__init__()
        self.equivariant = equivariant
        self.free = free

    def forward(self, x: Tensor) -> Tensor:
        return self.equivariant(x) + self.free(x)


class GridLinear(nn.Module):
    """The translation RPP's free pathway ``(B, C_in, H, W) -> (B, C_out, H, W)``: ``W_2 W_1 vec(f) + b_2 + W_2 b_1``
    with ``W_1: C_in H W -> rank`` and ``W_2: rank -> C_out H W`` (every output pixel sees every input pixel)."""

    def __init__(self, in_channels: int, out_channels: int, grid_size: GridSize, rank: int) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"RPP's free_rank must be >= 1, got {rank}")
        self.grid_shape = grid_shape(grid_size)
        pixels = self.grid_shape[0] * self.grid_shape[1]
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * pixels, rank),
                                 nn.Linear(rank, out_channels * pixels), nn.Unflatten(1, (out_channels, *self.grid_shape)))

    @staticmethod
    def parameters_for(in_channels: int, out_channels: int, grid_size: GridSize, rank: int) -> int:
        h, w = grid_shape(grid_size)
        return (in_channels * h * w + 1) * rank + (rank + 1) * out_channels * h * w

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2:] != self.grid_shape:
            raise ValueError(f"RPP (translation) is built for a {self.grid_shape[0]}x{self.grid_shape[1]} grid, "
                             f"got {tuple(x.shape[-2:])}; set grid_size to the data's grid")
        return self.net(x)


class LevelwiseConv2d(nn.Module):
    """One plain convolution applied to each of the ``S`` levels of ``(B, S * C_in, H, W)`` with the same kernel
    (not rescaled per level, hence not scale-equivariant)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, n_scales: int) -> None:
        super().__init__()
        self.n_scales = n_scales
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=same_padding(kernel_size), bias=False)

    def forward(self, x: Tensor) -> Tensor:
        batch, _, height, width = x.shape
        y = self.conv(x.reshape(batch * self.n_scales, -1, height, width))
        return y.reshape(batch, -1, height, width)


class LevelMeanConv2d(nn.Module):
    """The free head of the scaling RPP: a plain biased convolution of the mean over the levels."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, n_scales: int) -> None:
        super().__init__()
        self.n_scales = n_scales
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=same_padding(kernel_size))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(split_levels(x, self.n_scales).mean(1))


class FreeLayers:
    """The free (non-equivariant) layers of one symmetry, matching the shapes of ``family``'s layers."""

    def __init__(self, family: LayerFamily, kernel_size: int, grid_size: GridSize, rank: int) -> None:
        self.family, self.kernel_size = family, kernel_size
        self.grid_size, self.rank = grid_size, rank

    def layer(self, a: FeatureType, b: FeatureType, out_channels: int | None = None) -> nn.Module:
        """Free layer from type ``a`` to type ``b``, or to ``out_channels`` plain channels (the biased head)."""
        k, symmetry, head = self.kernel_size, self.family.symmetry, out_channels is not None
        if symmetry == "translation":
            return GridLinear(int(a), out_channels or int(b), self.grid_size, self.rank)  # type: ignore[arg-type]
        if symmetry == "rotation":
            return nn.Conv2d(self.family.channels(a), out_channels or self.family.channels(b), k,
                             padding=same_padding(k), bias=head)
        n_scales = self.family.n_scales  # type: ignore[union-attr]
        if head:
            return LevelMeanConv2d(int(a), out_channels, k, n_scales)  # type: ignore[arg-type]
        return LevelwiseConv2d(int(a), int(b), k, n_scales)  # type: ignore[arg-type]

    def parameters(self, a: FeatureType, b: FeatureType, out_channels: int | None = None) -> int:
        k, symmetry, head = self.kernel_size, self.family.symmetry, out_channels is not None
        if symmetry == "translation":
            return GridLinear.parameters_for(int(a), out_channels or int(b),  # type: ignore[arg-type]
                                             self.grid_size, self.rank)
        if symmetry == "rotation":
            c_in, c_out = self.family.channels(a), out_channels or self.family.channels(b)
        else:
            c_in, c_out = int(a), out_channels or int(b)  # type: ignore[arg-type]
        return c_in * c_out * k * k + (c_out if head else 0)


class RPP(nn.Module):
    """Residual-pathway forecaster ``(B, T_in, C, H, W) -> (B, C, H, W)``: ``layers - 1`` units of
    ``(E + F) -> norm -> ReLU`` and a head ``E + F`` to the layout's fields, with ``E`` / ``F`` and the norm of the
    symmetry (module docstring). Hidden sizes fitted to ``conv_budget``; ``grid_size`` (one side or ``(H, W)``) is
    the grid the translation model's locally connected pathway is built for."""

    def __init__(self, in_frames: int, layout: FieldLayout, *, symmetry: str = "rotation", width: int = 64,
                 layers: int = 5, kernel_size: int = 3, grid_size: GridSize = 64,
                 group_order: int = DEFAULT_GROUP_ORDER,
                 scales: Sequence[float] = DEFAULT_SCALES, scalar_power: float = 0.0,
                 free_rank: int = FREE_RANK, equivariant_prior: float = EQUIVARIANT_PRIOR,
                 max_parameters: int = PARAMETER_CAP) -> None:
        super().__init__()
        check_symmetry("RPP", symmetry)
        check_smoke_args("RPP", in_frames, width, layers)
        if not 0 <= equivariant_prior < 1:
            raise ValueError(f"RPP's equivariant_prior must be in [0, 1) (a weaker prior than the free pathway's), "
                             f"got {equivariant_prior}")
        self.in_frames, self.layout, self.symmetry = in_frames, layout, symmetry
        self.equivariant_prior = equivariant_prior
        family = layer_family(symmetry, kernel_size, group_order, scales, scalar_power)
        free = FreeLayers(family, kernel_size, grid_size, free_rank)
        in_type = family.history_type(layout, in_frames)

        def count(sizes: tuple[int, ...]) -> int:
            total, current = 0, in_type
            for n in sizes:
                hidden = family.hidden_type(n)
                total += family.conv_parameters(current, hidden) + free.parameters(current, hidden)
                total += family.norm_parameters(n)
                current = hidden
            return total + family.head_parameters(current, layout) + free.parameters(current, current,
                                                                                      layout.channels)

        budget = conv_budget(in_frames, layout, width, layers, kernel_size)
        if symmetry == "translation":  # grid-sized free pathway: the ConvNet at this width plus its MLP pathway
            budget = capped_target(count((width,) * (layers - 1)), max_parameters)
        self.sizes = fit_sizes(layers - 1, count, budget)
        units: list[nn.Module] = [family.lift(layout, in_frames)]
        current = in_type
        for n in self.sizes:
            hidden = family.hidden_type(n)
            units += [ResidualPathway(family.conv(current, hidden), free.layer(current, hidden)), family.norm(n),
                      nn.ReLU()]
            current = hidden
        units.append(ResidualPathway(family.head(current, layout), free.layer(current, current, layout.channels)))
        self.net = nn.Sequential(*units)

    def forward(self, x: Tensor) -> Tensor:
        check_history(x, self.in_frames, self.layout.channels, "RPP")
        return self.net(stack_frames(x))

    def free_parameters(self) -> list[nn.Parameter]:
        """The parameters of the non-equivariant pathway."""
        return [p for m in self.modules() if isinstance(m, ResidualPathway) for p in m.free.parameters()]

    def equivariant_parameters(self) -> list[nn.Parameter]:
        """The parameters of the equivariant pathway."""
        return [p for m in self.modules() if isinstance(m, ResidualPathway) for p in m.equivariant.parameters()]

    def regularization_loss(self) -> Tensor:
        """The residual pathway prior ``sum ||theta_F||^2 + equivariant_prior * sum ||theta_E||^2``."""
        free = torch.stack([p.square().sum() for p in self.free_parameters()]).sum()
        equivariant = torch.stack([p.square().sum() for p in self.equivariant_parameters()]).sum()
        return free + self.equivariant_prior * equivariant

    def extra_repr(self) -> str:
        return f"in_frames={self.in_frames}, fields={self.layout}, symmetry={self.symmetry!r}, sizes={self.sizes}"
