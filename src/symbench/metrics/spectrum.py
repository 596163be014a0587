"""Radially binned kinetic-energy spectra and the Energy Spectrum Error (ICLR 2021 sec. 5, appendix B.7)."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


def _radial_bin_index(h: int, w: int, device: torch.device) -> tuple[Tensor, int]:
    """Bin of every DFT mode of an ``h x w`` grid, flattened row-major, and the number of bins ``K``.

    Wavenumbers are counted in cycles per ``L = min(h, w)`` pixels, assuming square cells:
    ``kappa = (m_x L / w, m_y L / h)`` for the integer DFT mode ``(m_x, m_y)``; on a square grid this is the mode
    index itself. Mode ``kappa`` goes to bin ``k = floor(|kappa| + 1/2)``, i.e. ``k - 1/2 <= |kappa| < k + 1/2``.
    Modes with ``k >= K = L // 2 + 1`` (the corners of the spectral square beyond the inscribed circle) get the
    index ``K``, a bin that callers drop.
    """
    length = min(h, w)
    ky = torch.fft.fftfreq(h, d=1.0 / length, device=device, dtype=torch.float64)
    kx = torch.fft.fftfreq(w, d=1.0 / length, device=device, dtype=torch.float64)
    radius = torch.sqrt(ky[:, None].square() + kx[None, :].square())
    n_bins = length // 2 + 1
    index = torch.floor(radius + 0.5).long().clamp_max(n_bins)
    return index.flatten(), n_bins


def radial_energy_spectrum(vel: Tensor) -> Tensor:
    r"""Kinetic-energy spectrum :math:`E(k)` of a 2-D velocity field ``vel`` of shape ``(..., 2, H, W)``.

    .. math::
        E(k) = \sum_{k - 1/2 \le |\kappa| < k + 1/2} \tfrac12 \left(|\hat u(\kappa)|^2 + |\hat v(\kappa)|^2\right),
        \qquad \hat u(\kappa) = \frac{1}{HW} \sum_x u(x)\, e^{-2\pi i\, m \cdot x / N},

    for integer bins ``k = 0 .. K-1``, ``K = min(H, W) // 2 + 1``, returned as ``(..., K)``. The DFT is normalised
    so that Parseval reads :math:`\sum_\kappa \tfrac12(|\hat u|^2 + |\hat v|^2) = \tfrac12\,\mathrm{mean}_x(u^2 + v^2)`,
    the mean kinetic energy. Modes with :math:`|\kappa| \ge K - 1/2` (the corners beyond the inscribed circle, e.g.
    the checkerboard) are **dropped**, so :math:`\sum_k E(k)` equals the mean kinetic energy exactly when the field
    has no energy there. ``|kappa|`` is measured in cycles per ``min(H, W)`` pixels (square cells), so the spectrum
    is invariant under 90-degree rotations also on rectangular grids.
    """
    if vel.ndim < 3 or vel.shape[-3] != 2:
        raise ValueError(f"radial_energy_spectrum: expected a 2-D velocity (..., 2, H, W), got {tuple(vel.shape)}")
    h, w = vel.shape[-2:]
    power = 0.5 * torch.fft.fft2(vel, norm="forward").abs().square().sum(-3)
    index, n_bins = _radial_bin_index(h, w, vel.device)
    flat = power.reshape(-1, h * w)
    binned = flat.new_zeros(flat.shape[0], n_bins + 1).index_add_(1, index, flat)
    return binned[:, :n_bins].reshape(*power.shape[:-2], n_bins)


def turbulent_energy_spectrum(vel: Tensor) -> Tensor:
    r"""Turbulence kinetic-energy spectrum of rollouts ``vel`` ``(B, S, 2, H, W)``, returned as ``(B, K)``.

    ICLR 2021 appendix B.7: with the fluctuation :math:`u' = u - \overline{u}` about the mean over the ``S`` steps,
    :math:`E(k) = \frac1S \sum_t E_{u'(t)}(k)` (:func:`radial_energy_spectrum` of each step, averaged over steps),
    so that :math:`\sum_k E(k) = \mathrm{mean}_x \tfrac12 \overline{(u'^2 + v'^2)}`, the mean turbulence kinetic
    energy (up to the dropped corner modes).
    """
    if vel.ndim != 5:
        raise ValueError(f"turbulent_energy_spectrum: expected (B, S, 2, H, W), got {tuple(vel.shape)}")
    fluctuation = vel - vel.mean(dim=1, keepdim=True)
    return radial_energy_spectrum(fluctuation).mean(dim=1)


class EnergySpectrumError(Metric):
    r"""Energy Spectrum Error (ICLR 2021 sec. 5, appendix B.7): RMSE between log10 turbulence energy spectra.

    .. math::
        \mathrm{ESE} = \sqrt{\operatorname{mean}_{b,\, k \ge 1}
            \left(\log_{10} E^{\mathrm{pred}}_b(k) - \log_{10} E^{\mathrm{true}}_b(k)\right)^2}

    with :math:`E_b` the :func:`turbulent_energy_spectrum` of sample ``b`` (fluctuations about the rollout mean,
    spectrum per step, averaged over the steps); the mean runs over samples and bins ``k = 1 .. K-1`` (bin 0, the
    spatial mean of the fluctuation, is left out). Computed in float64.

    Floor: both spectra are clamped from below at ``rel_floor`` times the target sample's total fluctuation energy
    :math:`\sum_k E^{\mathrm{true}}_b(k)` (plus the smallest positive float64, for a target that does not fluctuate),
    so a constant field gives a finite error (about ``-log10(rel_floor)`` per empty bin against a fluctuating target,
    0 against a constant one). Scaling a field by ``a`` shifts every non-floored log spectrum by ``log10(a^2)``.

    Difference from the paper's code (Rose-STL-Lab/Equivariant-Net): it took the spectrum of a single scalar field, the
    per-pixel TKE :math:`\overline{(u'^2 + v'^2)}/2` (a temporal-variance map), and left log10(0) unguarded. Here the
    spectrum is that of the velocity fluctuations themselves, whose sum over ``k`` is the mean TKE as B.7 states.

    States: the sum of squared log differences and their count, both reduced by ``sum`` across DDP ranks. Updates
    may use different grids (``K`` may change between updates).
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    sum_sq_log_diff: Tensor
    count: Tensor

    def __init__(self, rel_floor: float = 1e-12, **kwargs) -> None:
        super().__init__(**kwargs)
        if not rel_floor > 0:
            raise ValueError(f"EnergySpectrumError: rel_floor must be > 0, got {rel_floor}")
        self.rel_floor = rel_floor
        self.add_state("sum_sq_log_diff", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred_vel: Tensor, target_vel: Tensor) -> None:
        """Accumulate rollouts of velocity ``(B, S, 2, H, W)``; ``S >= 2`` (fluctuations need several steps)."""
        if pred_vel.shape != target_vel.shape:
            raise ValueError(
                f"EnergySpectrumError: pred {tuple(pred_vel.shape)} and target {tuple(target_vel.shape)} differ"
            )
        if pred_vel.ndim != 5 or pred_vel.shape[1] < 2 or min(pred_vel.shape[-2:]) < 2:
            raise ValueError(
                f"EnergySpectrumError: expected (B, S>=2, 2, H>=2, W>=2) velocity rollouts, got {tuple(pred_vel.shape)}"
            )
        e_pred = turbulent_energy_spectrum(pred_vel.double())
        e_true = turbulent_energy_spectrum(target_vel.double())
        floor = self.rel_floor * e_true.sum(-1, keepdim=True) + torch.finfo(torch.float64).tiny
        log_diff = torch.log10(torch.maximum(e_pred, floor)) - torch.log10(torch.maximum(e_true, floor))
        self.sum_sq_log_diff += log_diff[:, 1:].square().sum()
        self.count += log_diff[:, 1:].numel()

    def compute(self) -> Tensor:
        return (self.sum_sq_log_diff / self.count).sqrt()
