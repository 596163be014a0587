"""Charged N-body systems in R^n (ICML 2024 workshop, "When is a task a good candidate for an equivariant network?",
section 4.1 and appendix A; set-up of Kipf et al. 2018 without its box and its force clipping per coordinate).

N = 5 particles of unit mass and charges c_i in {-1, +1} move in R^n. The force on particle i is

    F_i = k * sum_{j != i} c_i c_j (x_i - x_j) / |x_i - x_j|^n,                                        (S1)

so its size is proportional to the relative charge c_i c_j and inversely proportional to the (n-1)-th power of the
distance, and like charges (c_i c_j = +1) repel. Each pair term is capped at |f_ij| <= F_max (Kipf et al. cap the
force at 0.1 / dt); the cap is a function of |x_i - x_j| only, so it keeps f_ji = -f_ij (total momentum is
conserved) and E(n)-equivariance. T steps of (symplectic) Euler with step dt,

    v^{t+1} = v^t + dt F(x^t),     x^{t+1} = x^t + dt v^{t+1},                                         (S2)

map a sample (x^(0), v^(0), c) to its target x^(T). Initial positions are N(0, loc_std^2) per coordinate and initial
velocities have random directions and norm vel_norm (Kipf et al.: 1 and 0.5).

Arrays are cached as ``<root>/nbody/<preset>-<hash>/n<k>.npz`` (written atomically); the hash covers every
parameter that changes the data, so changing one regenerates rather than reuses.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from datamodules.sharding import eval_loader
from symbench.results import atomic_write

N_PARTICLES = 5
SIM_VERSION = 1


@dataclass(frozen=True)
class NBodySim:
    """Every parameter of the simulator and of the sample sizes (one preset = one of these)."""

    dims: tuple[int, ...] = (2, 3, 4, 6, 8)
    n_train: int = 10_000
    n_test: int = 2_000
    steps: int = 10_000
    dt: float = 1e-3
    strength: float = 1.0
    max_force: float = 100.0  # = 0.1 / dt, Kipf et al.'s cap
    loc_std: float = 1.0
    vel_norm: float = 0.5
    n_particles: int = N_PARTICLES
    seed: int = 0
    chunk: int = 4096  # trajectories integrated at once (memory only; the result does not depend on it)

    def digest(self) -> str:
        """Ten hex digits of a hash of every parameter that changes the arrays (not ``dims`` or ``chunk``)."""
        keys = {k: v for k, v in asdict(self).items() if k not in ("dims", "chunk")}
        keys["version"] = SIM_VERSION
        return hashlib.sha1(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:10]


# Presets change sizes only: the physics (dt, strength, cap, initial distribution) is the same in all three.
PRESETS: dict[str, NBodySim] = {
    "paper": NBodySim(),
    "cpu": NBodySim(n_train=2_000, n_test=500, steps=1_000),
    "tiny": NBodySim(dims=(2, 3), n_train=64, n_test=33, steps=50),  # odd: a padded test shard would show
}


def pair_forces(x: Tensor, charges: Tensor, strength: float, max_force: float) -> Tensor:
    """Total force (S1) on each particle, ``x`` of shape (B, N, n), ``charges`` (B, N) -> (B, N, n).

    The pair term is built once as an antisymmetric (B, N, N, n) array and summed over j, so sum_i F_i = 0 up to
    round-off."""
    n = x.shape[-1]
    diff = x.unsqueeze(2) - x.unsqueeze(1)  # x_i - x_j
    dist = diff.norm(dim=-1)
    eye = torch.eye(x.shape[1], dtype=torch.bool, device=x.device)
    safe = torch.where(eye, torch.ones_like(dist), dist)
    size = strength * charges.unsqueeze(2) * charges.unsqueeze(1) / safe ** (n - 1)
    size = size.clamp(-max_force, max_force).masked_fill(eye, 0.0)
    return (size / safe).unsqueeze(-1).mul(diff).sum(dim=2)


def integrate(x: Tensor, v: Tensor, charges: Tensor, sim: NBodySim, progress=None) -> tuple[Tensor, Tensor]:
    """``sim.steps`` symplectic Euler steps (S2) of a batch; returns (x^(T), v^(T)). ``progress``: called per step."""
    for _ in range(sim.steps):
        v = v + sim.dt * pair_forces(x, charges, sim.strength, sim.max_force)
        x = x + sim.dt * v
        if progress is not None:
            progress()
    return x, v


def initial_state(count: int, n: int, sim: NBodySim, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Random (x^(0), v^(0), c) of ``count`` systems in R^n, float64, drawn from ``generator``."""
    shape = (count, sim.n_particles, n)
    x = torch.randn(shape, generator=generator, dtype=torch.float64) * sim.loc_std
    v = torch.randn(shape, generator=generator, dtype=torch.float64)
    v = v * sim.vel_norm / v.norm(dim=-1, keepdim=True)
    c = torch.randint(0, 2, shape[:2], generator=generator).to(torch.float64) * 2 - 1
    return x, v, c


def simulate(count: int, n: int, sim: NBodySim, seed: int, show_progress: bool = False) -> dict[str, np.ndarray]:
    """``count`` samples in R^n: arrays ``x0`` (count, N, n), ``v0``, ``charges`` (count, N) and target ``xT``."""
    from tqdm.auto import tqdm

    gen = torch.Generator().manual_seed(seed)
    x0, v0, c = initial_state(count, n, sim, gen)
    chunks = range(0, count, sim.chunk)
    bar = tqdm(total=sim.steps * len(chunks), desc=f"n-body n={n}", disable=not show_progress, leave=False)
    finals = [integrate(x0[s:s + sim.chunk], v0[s:s + sim.chunk], c[s:s + sim.chunk], sim, bar.update)[0]
              for s in chunks]
    bar.close()
    return {"x0": x0.numpy(), "v0": v0.numpy(), "charges": c.numpy(), "xT": torch.cat(finals).numpy()}


def dataset_dir(root: str | Path, preset: str, sim: NBodySim) -> Path:
    return Path(root) / "nbody" / f"{preset}-{sim.digest()}"


def ensure(root: str | Path, preset: str, n: int, show_progress: bool = False,
           sim: NBodySim | None = None) -> Path:
    """Path of the cached ``n<k>.npz`` (train then test samples), simulating and writing it first if missing."""
    sim = sim or PRESETS[preset]
    path = dataset_dir(root, preset, sim) / f"n{n}.npz"
    if not path.is_file():
        # One stream per dimension: the n=4 data do not depend on which other dimensions a preset holds.
        arrays = simulate(sim.n_train + sim.n_test, n, sim, seed=sim.seed * 1000 + n, show_progress=show_progress)
        atomic_write(path, lambda f: np.savez(f, **arrays))
    return path


def load(path: str | Path) -> dict[str, Tensor]:
    with np.load(path) as z:
        return {k: torch.from_numpy(z[k]) for k in z.files}


class NBodyDataModule(L.LightningDataModule):
    """Samples ((x^(0), v^(0), c), x^(T)) of one dimension n as float32 tensors; the first ``n_train`` are train."""

    def __init__(self, root: str | Path, preset: str, n: int, batch_size: int = 128, show_progress: bool = False,
                 sim: NBodySim | None = None, shuffle_seed: int = 0) -> None:
        super().__init__()
        self.root, self.preset, self.n, self.batch_size = Path(root), preset, n, batch_size
        self.shuffle_seed = shuffle_seed
        self.sim = sim or PRESETS[preset]
        self.show_progress = show_progress

    def prepare_data(self) -> None:
        ensure(self.root, self.preset, self.n, self.show_progress, self.sim)

    def setup(self, stage: str | None = None) -> None:
        a = load(ensure(self.root, self.preset, self.n, self.show_progress, self.sim))
        tensors = [a[k].float() for k in ("x0", "v0", "charges", "xT")]
        k = self.sim.n_train
        self.train_set = TensorDataset(*(t[:k] for t in tensors))
        self.test_set = TensorDataset(*(t[k:] for t in tensors))

    def train_dataloader(self) -> DataLoader:
        gen = torch.Generator().manual_seed(self.shuffle_seed)
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, generator=gen)

    def test_dataloader(self) -> DataLoader:
        return eval_loader(self.test_set, 1024, self.trainer)


def with_sizes(preset: str, **sizes: int) -> NBodySim:
    """A preset with some sizes changed (tests use it for faster data)."""
    return replace(PRESETS[preset], **sizes)
