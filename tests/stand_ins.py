"""Stand-ins for trained networks, shared by the one-step studies' tests (levels, strength)."""

from __future__ import annotations

import torch


class Asymmetric(torch.nn.Module):
    """Stands in for a trained network: not equivariant (a shift along x), no training time."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor(0.01))

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        return history[:, -1] + self.weight * torch.roll(history[:, -1], 1, dims=-1)
