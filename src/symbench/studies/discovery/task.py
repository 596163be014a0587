"""The task of the symmetry-discovery study: a synthetic map with a known symmetry subgroup ``H`` of ``O_h`` and its
data (:class:`SyntheticTask`, :func:`make_dataset`, :class:`OrbitData`), and the Lightning module that fits a
:class:`~symbench.studies.discovery.model.DiscoveryModel` to it (:class:`DiscoveryModule`).

* **Task**: inputs are random smooth scalar fields ``x`` on an ``N^3`` torus (white noise under a Gaussian low-pass in
  Fourier space, unit variance); the target is the ``H``-average of a plain periodic convolution with a fixed random
  kernel ``k``, ``T(x) = 1/|H| sum_{u in H} T_u (k * T_u^-1 x)`` (optionally followed by a pointwise ``tanh``;
  pointwise maps keep the symmetry). ``T`` commutes with every ``u`` in ``H`` by construction and, for a generic ``k``
  of size 5, with no element outside ``H`` (:meth:`SyntheticTask.equivariance_errors` checks it numerically). A
  size-3 ``k`` is not enough for chiral subgroups: the ``C4`` orbits of the 27 taps are the ``C4v`` orbits, so the
  ``C4``-average of a 3^3 kernel is also mirror-symmetric.
* **Data**: every random field comes with its 48 images ``T_g x`` under all of ``O_h`` (with targets ``T(T_g x)``).
  This uses nothing about ``H``: it only makes the empirical input distribution exactly ``O_h``-invariant, so the
  empirical loss is invariant under exactly the symmetry of ``T`` (the permutation ``w_l(h) -> w_l(u^-1 h)`` of the
  relaxed weights for ``u`` in ``H``) and full-orbit batches give gradients with that symmetry up to round-off.
* **Training** (:class:`DiscoveryModule`): Adam on the normalised MSE ``||f(x) - y||^2 / ||y||^2`` of one orbit of 48
  fields per step (step ``t`` uses orbit ``t mod F``), plus ``alpha`` times the ICML 2022 penalty
  ``sum_l sum_{g,h} |w_l(g) - w_l(h)|``; validated and tested on held-out orbits (normalised MSE pooled over them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import lightning as L
import torch
import torch.nn.functional as F
import torchmetrics
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from symbench.studies.discovery.model import DiscoveryModel, SubgroupSpec
from symbench.symmetry.octahedral import FULL_OCTAHEDRAL, Octahedral, act_on_grid, group_elements


def periodic_conv(x: Tensor, kernel: Tensor) -> Tensor:
    """Cross-correlation of ``x (B, 1, N, N, N)`` with ``kernel (k, k, k)`` (odd ``k``) on the torus."""
    k = kernel.shape[-1]
    pad = k // 2
    return F.conv3d(F.pad(x, (pad,) * 6, mode="circular"), kernel.view(1, 1, k, k, k).to(x.dtype))


def smooth_fields(count: int, size: int, generator: torch.Generator, length: float = 1.0,
                  dtype: torch.dtype = torch.float32) -> Tensor:
    """``(count, 1, N, N, N)`` random smooth periodic fields: white noise times ``exp(-(length |k|)^2 / 2)`` in
    Fourier space (an isotropic filter, so the distribution is ``O_h``-invariant), each normalised to zero mean and
    unit standard deviation."""
    noise = torch.randn(count, 1, size, size, size, generator=generator, dtype=torch.float64)
    k = 2 * math.pi * torch.fft.fftfreq(size, dtype=torch.float64)
    k2 = k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2
    x = torch.fft.ifftn(torch.fft.fftn(noise, dim=(-3, -2, -1)) * torch.exp(-0.5 * length**2 * k2),
                        dim=(-3, -2, -1)).real
    x = x - x.mean(dim=(-3, -2, -1), keepdim=True)
    return (x / x.std(dim=(-3, -2, -1), keepdim=True)).to(dtype)


@dataclass(frozen=True)
class SyntheticTask:
    """``T(x) = act(1/|H| sum_{u in H} T_u (k * T_u^-1 x))`` on scalar fields ``(B, 1, N, N, N)``: exactly
    ``H``-equivariant by construction (the ``H``-average of a plain periodic convolution with the random kernel
    ``kernel (k, k, k)``), ``act`` the identity or ``tanh``."""

    subgroup: tuple[Octahedral, ...]
    kernel: Tensor
    nonlinearity: Literal["none", "tanh"] = "none"

    @classmethod
    def random(cls, subgroup: SubgroupSpec = "C4v", kernel_size: int = 5, seed: int = 0,
               nonlinearity: Literal["none", "tanh"] = "none") -> "SyntheticTask":
        g = torch.Generator().manual_seed(seed)
        kernel = torch.randn(kernel_size, kernel_size, kernel_size, generator=g, dtype=torch.float64)
        return cls(group_elements(subgroup), kernel / kernel.norm(), nonlinearity)

    def averaged_kernel(self) -> Tensor:
        """``1/|H| sum_u T_u k``: the same map as one convolution (``T_u (k * T_u^-1 x) = (T_u k) * x`` on the
        torus)."""
        return torch.stack([act_on_grid(self.kernel, u) for u in self.subgroup]).mean(0)

    def __call__(self, x: Tensor) -> Tensor:
        y = torch.zeros_like(x)
        for u in self.subgroup:  # the definition, literally
            y = y + act_on_grid(periodic_conv(act_on_grid(x, u.inverse()), self.kernel), u)
        y = y / len(self.subgroup)
        return torch.tanh(y) if self.nonlinearity == "tanh" else y

    def equivariance_errors(self, x: Tensor, group: SubgroupSpec = "Oh") -> Tensor:
        """``(|G|,)``: ``||T(T_g x) - T_g T(x)|| / ||T(x)||`` for every ``g`` of ``group`` (~round-off for ``g`` in
        ``H``)."""
        y = self(x)
        return torch.stack([(self(act_on_grid(x, g)) - act_on_grid(y, g)).norm() / y.norm()
                            for g in group_elements(group)])


def orbit(x: Tensor, group: SubgroupSpec = "Oh") -> Tensor:
    """``(|G| B, ...)``: ``T_g x`` for every ``g`` (element-major) of the fields ``x (B, 1, N, N, N)``."""
    return torch.cat([act_on_grid(x, g).contiguous() for g in group_elements(group)])


def make_dataset(task: SyntheticTask, fields: int, size: int, seed: int,
                 dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """``(x, y)``, both ``(fields, 48, 1, N, N, N)``: ``fields`` random smooth fields with all 48 images under
    ``O_h`` each, and the targets ``T(x)``. Closing the inputs under all of ``O_h`` needs no knowledge of ``H``."""
    g = torch.Generator().manual_seed(seed)
    base = smooth_fields(fields, size, g, dtype=torch.float64)
    x = orbit(base).view(len(FULL_OCTAHEDRAL), fields, 1, size, size, size).transpose(0, 1)
    y = task(x.reshape(-1, 1, size, size, size)).view_as(x)
    return x.to(dtype).contiguous(), y.to(dtype).contiguous()


class OrbitData(L.LightningDataModule):
    """Training orbits ``train = (x, y)`` (each ``(F, 48, 1, N, N, N)``), one per step in order (no shuffling: step
    ``t`` sees orbit ``t mod F``), and held-out orbits ``test`` for validation and test."""

    def __init__(self, train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor]) -> None:
        super().__init__()
        self.train, self.test = TensorDataset(*train), TensorDataset(*test)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train, batch_size=1, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.test, batch_size=1)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test, batch_size=1)


class DiscoveryModule(L.LightningModule):
    """Fits ``net`` to orbits: loss ``||f(x) - y||^2 / ||y||^2 + alpha * net.regularization_loss()`` (Adam, ``lr``);
    ``losses`` holds the fit term of every training step. ``val_fit`` / ``test_fit``: the normalised MSE pooled over
    the held-out orbits, ``sum ||f(x) - y||^2 / sum ||y||^2``."""

    def __init__(self, net: DiscoveryModel, lr: float = 1e-2, alpha: float = 1e-5) -> None:
        super().__init__()
        self.net, self.lr, self.alpha = net, lr, alpha
        self.losses: list[float] = []
        self.error, self.norm = torchmetrics.SumMetric(), torchmetrics.SumMetric()

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        x, y = batch[0][0], batch[1][0]  # one orbit (48, 1, N, N, N)
        fit = (self.net(x) - y).pow(2).sum() / y.pow(2).sum()
        self.losses.append(float(fit.detach()))
        self.log("train_fit", fit)
        return fit + self.alpha * self.net.regularization_loss()

    def _evaluate(self, batch: Sequence[Tensor]) -> None:
        x, y = batch[0][0], batch[1][0]
        self.error.update((self.net(x) - y).pow(2).sum().double())
        self.norm.update(y.pow(2).sum().double())

    def _log_fit(self, name: str) -> None:
        self.log(name, (self.error.compute() / self.norm.compute()).float())
        self.error.reset()
        self.norm.reset()

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        self._evaluate(batch)

    def on_validation_epoch_end(self) -> None:
        self._log_fit("val_fit")

    def test_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        self._evaluate(batch)

    def on_test_epoch_end(self) -> None:
        self._log_fit("test_fit")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.net.parameters(), lr=self.lr)
