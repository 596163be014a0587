"""Dense message-passing networks for N-body systems on the complete graph of N nodes (ICML 2024 workshop, "When is
a task a good candidate for an equivariant network?", appendix A).

Both models map (x^(0), v^(0), c), shapes (B, N, n), (B, N, n), (B, N), to predicted final positions (B, N, n);
edge attributes are the relative charges e_ij = c_i c_j, and sums run over j != i.

* :class:`GNN` -- message passing (Gilmer et al. 2017), eq. (6)-(8); positions and velocities are plain node inputs,
  so the network is permutation-equivariant but not E(n)-equivariant.
* :class:`EGNN` -- E(n)-equivariant graph convolutions (Satorras et al. 2021), eq. (2)-(5), in the velocity form of
  Satorras et al.'s N-body experiment: h^0 = |v^(0)|, and each layer moves x by an equivariant velocity.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    """Two-layer perceptron with SiLU, the phi_* of eq. (2)-(8)."""
    return nn.Sequential(nn.Linear(d_in, hidden), nn.SiLU(), nn.Linear(hidden, d_out))


def pairs(h: Tensor) -> Tensor:
    """(B, N, F) -> (B, N, N, 2F): entry [b, i, j] = [h_i, h_j]."""
    n = h.shape[1]
    return torch.cat([h.unsqueeze(2).expand(-1, -1, n, -1), h.unsqueeze(1).expand(-1, n, -1, -1)], dim=-1)


def off_diagonal(n: int, like: Tensor) -> Tensor:
    """(N, N, 1) mask, 0 on the diagonal: restricts the sums to j != i."""
    return (1.0 - torch.eye(n, dtype=like.dtype, device=like.device)).unsqueeze(-1)


def relative_charges(charges: Tensor) -> Tensor:
    """e_ij = c_i c_j, (B, N) -> (B, N, N, 1)."""
    return (charges.unsqueeze(2) * charges.unsqueeze(1)).unsqueeze(-1)


class GCL(nn.Module):
    """Graph convolution, eq. (6)-(8): m_ij = phi_e(h_i, h_j, e_ij), m_i = sum_{j != i} m_ij,
    h_i^{l+1} = h_i^l + phi_h(h_i^l, m_i) (residual form)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.phi_e = nn.Sequential(mlp(2 * hidden + 1, hidden, hidden), nn.SiLU())
        self.phi_h = mlp(2 * hidden, hidden, hidden)

    def forward(self, h: Tensor, e: Tensor) -> Tensor:
        m_ij = self.phi_e(torch.cat([pairs(h), e], dim=-1))  # (6)
        m_i = (m_ij * off_diagonal(h.shape[1], h)).sum(dim=2)  # (7)
        return h + self.phi_h(torch.cat([h, m_i], dim=-1))  # (8)


class GNN(nn.Module):
    """Non-equivariant baseline: h_i^0 = W [x_i, v_i, |v_i|], ``layers`` x eq. (6)-(8), x_i^(T) ~ x_i + W_out h_i^L.

    The skip x_i + ... lets both models start from the identity in positions; it does not make the GNN equivariant
    because W_out h^L is built from raw coordinates."""

    def __init__(self, n: int, hidden: int = 64, layers: int = 4) -> None:
        super().__init__()
        self.embed = nn.Linear(2 * n + 1, hidden)
        self.convs = nn.ModuleList(GCL(hidden) for _ in range(layers))
        self.out = nn.Linear(hidden, n)

    def forward(self, x: Tensor, v: Tensor, charges: Tensor) -> Tensor:
        h = self.embed(torch.cat([x, v, v.norm(dim=-1, keepdim=True)], dim=-1))
        e = relative_charges(charges)
        for conv in self.convs:
            h = conv(h, e)
        return x + self.out(h)


class EGCL(nn.Module):
    """E(n)-equivariant graph convolution, eq. (2)-(5), velocity form (Satorras et al. 2021, eq. 7):

        m_ij = phi_e(h_i, h_j, |x_i - x_j|^2, e_ij)                                    (2)
        v_i  = phi_v(h_i) v_i^(0) + C sum_{j != i} (x_i - x_j) phi_x(m_ij),  C = 1/(N-1)   (3)
        x_i <- x_i + v_i
        m_i  = sum_{j != i} m_ij                                                       (4)
        h_i <- h_i + phi_h(h_i, m_i)                                                   (5)

    Only invariants (|x_i - x_j|, |v|, e_ij) enter the MLPs, and x, v enter linearly through differences and
    scalings, so an orthogonal Q and translation t act as x -> Qx + t, v -> Qv on the outputs. ``update_h=False``
    (the last layer, whose h nothing reads) leaves out (4)-(5) and phi_h: no parameter without a gradient, which
    DDP refuses."""

    def __init__(self, hidden: int, update_h: bool = True) -> None:
        super().__init__()
        self.phi_e = nn.Sequential(mlp(2 * hidden + 2, hidden, hidden), nn.SiLU())
        self.phi_x = mlp(hidden, hidden, 1)
        self.phi_v = mlp(hidden, hidden, 1)
        self.phi_h = mlp(2 * hidden, hidden, hidden) if update_h else None
        # Small position steps at initialisation (as Satorras et al.), so deep stacks start near x^(0) + v^(0).
        nn.init.xavier_uniform_(self.phi_x[-1].weight, gain=1e-3)

    def forward(self, h: Tensor, x: Tensor, v0: Tensor, e: Tensor) -> tuple[Tensor, Tensor]:
        n = h.shape[1]
        diff = x.unsqueeze(2) - x.unsqueeze(1)  # x_i - x_j
        d2 = (diff ** 2).sum(dim=-1, keepdim=True)
        mask = off_diagonal(n, h)
        m_ij = self.phi_e(torch.cat([pairs(h), d2, e], dim=-1))  # (2)
        v = self.phi_v(h) * v0 + (diff * self.phi_x(m_ij) * mask).sum(dim=2) / (n - 1)  # (3)
        if self.phi_h is None:
            return h, x + v
        m_i = (m_ij * mask).sum(dim=2)  # (4)
        return h + self.phi_h(torch.cat([h, m_i], dim=-1)), x + v  # (5)


class EGNN(nn.Module):
    """E(n)-equivariant model: h_i^0 = W |v_i^(0)| (appendix A), ``layers`` x :class:`EGCL`, prediction x^L."""

    def __init__(self, n: int, hidden: int = 64, layers: int = 4) -> None:
        super().__init__()
        self.embed = nn.Linear(1, hidden)
        self.convs = nn.ModuleList(EGCL(hidden, update_h=i < layers - 1) for i in range(layers))

    def forward(self, x: Tensor, v: Tensor, charges: Tensor) -> Tensor:
        h = self.embed(v.norm(dim=-1, keepdim=True))
        e = relative_charges(charges)
        for conv in self.convs:
            h, x = conv(h, x, v, e)
        return x
