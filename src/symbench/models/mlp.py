"""MLP: the multi-layer perceptron baseline of the ICML 2022 smoke benchmarks (Wang, Walters & Yu, sec. 5, "MLP: a
non-equivariant baseline with a weaker inductive bias than convolution").

The history ``(B, T_in, C, H, W)`` is flattened to ``T_in C H W`` inputs, then ``layers - 1`` units of
``Linear -> BatchNorm1d -> ReLU`` of ``hidden_width`` units each and a biased ``Linear`` to the ``C H W`` outputs of
the next frame. Every grid point is its own input, so the model is bound to ``grid_size x grid_size``.

Size. The MLP has its own width, not ConvNet's budget: the paper tunes every model's hidden dimension over 64 .. 512
(Table 3) under a cap of 1e7 parameters (sec. 5, app. A.1), and Rose-STL-Lab/Approximately-Equivariant-Nets builds
its MLP with ``hidden_dim`` units in every hidden layer. The first and last linears cost ``(T_in C + C) H W`` per
hidden unit, so matching ConvNet's parameter count left one unit per layer at the cpu preset (35 k parameters for
``T_in = 10`` velocity frames on 32x32), a rank-1 bottleneck that forecast worse than predicting zero.
:data:`HIDDEN_WIDTH` = 64 is Table 3's smallest hidden dimension and the largest power of two under the 1e7 cap on
the paper's 64x64 grid (5.79 M parameters for ``T_in = 10`` velocity frames; 128 units would take 11.6 M); at the
cpu preset's 32x32 it is 1.46 M parameters (:func:`mlp_parameters`; every run's row records its count in
``params``). Presets set it per model (``model_hparams: {mlp: {hidden_width: ...}}``).

Departure from the reference: its hidden linears carry a bias ahead of the batch norm, which the norm's shift makes
redundant; here they are bias-free (the same functions, ``hidden_width`` fewer parameters per layer).
"""

from __future__ import annotations

from torch import Tensor, nn

from symbench.fields import FieldLayout
from symbench.layers import check_history
from symbench.models.conv_net import check_smoke_args, check_symmetry

HIDDEN_WIDTH = 64


def mlp_parameters(n_in: int, n_out: int, sizes: tuple[int, ...]) -> int:
    """Parameters of :class:`MLP` with these hidden sizes: bias-free hidden linears with BN (2 per unit), a biased
    output linear."""
    widths = [n_in, *sizes]
    hidden = sum(a * b + 2 * b for a, b in zip(widths[:-1], widths[1:]))
    return hidden + (sizes[-1] + 1) * n_out


class MLP(nn.Module):
    """Fully connected forecaster ``(B, T_in, C, grid_size, grid_size) -> (B, C, grid_size, grid_size)`` with
    ``layers - 1`` hidden layers of ``hidden_width`` units (module docstring). ``symmetry`` is checked and otherwise
    ignored; ``width`` (ConvNet's channel count, shared by the smoke presets) and ``kernel_size`` are accepted for the
    smoke models' common interface and do not size the MLP."""

    def __init__(self, in_frames: int, layout: FieldLayout, *, symmetry: str = "rotation", width: int = 64,
                 layers: int = 5, kernel_size: int = 3, grid_size: int = 64,
                 hidden_width: int = HIDDEN_WIDTH) -> None:
        super().__init__()
        check_symmetry("MLP", symmetry)
        check_smoke_args("MLP", in_frames, width, layers)
        if hidden_width < 1:
            raise ValueError(f"MLP needs hidden_width >= 1, got {hidden_width}")
        self.in_frames, self.layout, self.grid_size = in_frames, layout, grid_size
        n_in, n_out = in_frames * layout.channels * grid_size**2, layout.channels * grid_size**2
        self.sizes = (hidden_width,) * (layers - 1)
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
