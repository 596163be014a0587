"""MLP: the multi-layer perceptron baseline of the ICML 2022 smoke benchmarks (Wang, Walters & Yu, sec. 5, "MLP: a
non-equivariant baseline with a weaker inductive bias than convolution").

The history ``(B, T_in, C, H, W)`` is flattened to ``T_in C H W`` inputs, then ``layers - 1`` units of
``Linear -> BatchNorm1d -> ReLU`` (bias-free linears: the batch norm shifts) and a biased ``Linear`` to the
``C H W`` outputs of the next frame. Every grid point is its own input, so the model is bound to
``grid_size x grid_size``.

Size. The hidden sizes are fitted to the ConvNet budget (:func:`mlp_sizes`). The first and last linears cost
``(T_in C + C) H W`` per hidden unit, so the hidden layers are narrow (5-6 units for ``T_in = 10`` velocity frames
on 32x32 at width 64). The budget cannot be met below the cost of one unit per layer, about ``(T_in C + 2 C) H W``:
the model then has one unit per layer and more parameters than the budget (25 k instead of 10 k for ``T_in = 10``,
32x32, width 16; within 10 % from width 26 on 32x32, from width 54 on 64x64).
"""

from __future__ import annotations

from torch import Tensor, nn

from symbench.fields import FieldLayout
from symbench.layers import check_history
from symbench.models.conv_net import check_smoke_args, check_symmetry, conv_budget
from symbench.models.budget import fit_sizes

UNIFORM_TOLERANCE = 0.08


def mlp_parameters(n_in: int, n_out: int, sizes: tuple[int, ...]) -> int:
    """Parameters of :class:`MLP` with these hidden sizes: bias-free hidden linears with BN (2 per unit), a biased
    output linear."""
    widths = [n_in, *sizes]
    hidden = sum(a * b + 2 * b for a, b in zip(widths[:-1], widths[1:]))
    return hidden + (sizes[-1] + 1) * n_out


def mlp_sizes(n_in: int, n_out: int, n_hidden: int, target: int) -> tuple[int, ...]:
    """Hidden sizes for ``target`` parameters: :func:`fit_sizes` (each ``h`` or ``h + 1``) when within
    :data:`UNIFORM_TOLERANCE` of the target, else the closest of that and a first hidden layer of ``h - 1 .. h + 1``
    units followed by layers fitted to the rest. The first layer costs ``n_in`` per unit and the last ``n_out``, so
    sizing them separately matches the budget where uniform sizes step over it."""
    def count(sizes: tuple[int, ...]) -> int:
        return mlp_parameters(n_in, n_out, sizes)

    best = fit_sizes(n_hidden, count, target)
    if n_hidden == 1 or abs(count(best) / target - 1) <= UNIFORM_TOLERANCE:
        return best
    for first in range(max(1, best[0] - 1), best[0] + 2):
        rest = fit_sizes(n_hidden - 1, lambda s, first=first: count((first, *s)), target)
        if abs(count((first, *rest)) - target) < abs(count(best) - target):
            best = (first, *rest)
    return best


class MLP(nn.Module):
    """Fully connected forecaster ``(B, T_in, C, grid_size, grid_size) -> (B, C, grid_size, grid_size)``;
    ``symmetry`` is checked and otherwise ignored (module docstring)."""

    def __init__(self, in_frames: int, layout: FieldLayout, *, symmetry: str = "rotation", width: int = 64,
                 layers: int = 5, kernel_size: int = 3, grid_size: int = 64) -> None:
        super().__init__()
        check_symmetry("MLP", symmetry)
        check_smoke_args("MLP", in_frames, width, layers)
        self.in_frames, self.layout, self.grid_size = in_frames, layout, grid_size
        n_in, n_out = in_frames * layout.channels * grid_size**2, layout.channels * grid_size**2
        budget = conv_budget(in_frames, layout, width, layers, kernel_size)
        self.sizes = mlp_sizes(n_in, n_out, layers - 1, budget)
        units: list[nn.Module] = [nn.Flatten()]
        for a, b in zip([n_in, *self.sizes[:-1]], self.sizes):
            units += [nn.Linear(a, b, bias=False), nn.BatchNorm1d(b), nn.ReLU()]
        units.append(nn.Linear(self.sizes[-1], n_out))
        self.net = nn.Sequential(*units)

    def forward(self, x: Tensor) -> Tensor:
        check_history(x, self.in_frames, self.layout.channels, "MLP")
        if x.shape[-2:] != (self.grid_size, self.grid_size):
            raise ValueError(f"MLP is built for a {self.grid_size}x{self.grid_size} grid, got "
                             f"{tuple(x.shape[-2:])}; set grid_size to the data's grid")
        return self.net(x).view(x.shape[0], self.layout.channels, self.grid_size, self.grid_size)

    def extra_repr(self) -> str:
        return f"in_frames={self.in_frames}, fields={self.layout}, grid_size={self.grid_size}, sizes={self.sizes}"
