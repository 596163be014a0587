"""Smoke plumes with graded C4 symmetry breaking: the datasets of "learning different levels of equivariance"
(ICML 2022 sec. 5.2, Fig. 4).

Each level is a small ``rotation`` family of :mod:`datamodules.smoke_sim` (same solver, same sites): 4 inflow sites
related by the C4 rotations about the box centre, the buoyancy direction turning with the site, times ``strengths``
buoyancy strengths. Site ``j`` (bottom, right, top, left) is site 0 turned by ``j`` quarter turns counter-clockwise,
and its buoyancy is multiplied by the site factor

    f_j(eps_i) = 1 + eps_i * d_j,      eps_i = max_eps * i / (levels - 1),   i = 0 .. levels - 1,

with fixed offsets ``d`` (:data:`OFFSETS`, ``d_0 = 0``). Level 0 is C4-symmetric up to solver round-off; the
asymmetry grows with ``i``.

Data equivariance error of a level (sec. 5.2, "the mean absolute error between the simulations after they are all
rotated back to the same inflow position"): every site-``j`` simulation is turned back by ``-j`` quarter turns with
the exact grid rotation :func:`symbench.symmetry.rot90` and compared with the site-0 simulation of the same
strength,

    E_data = mean_{strength, j = 1..3} mean |rot90(x_{strength, j}, -j) - x_{strength, 0}|

(L1 over all frames, pixels and channels: velocity and density, in simulation units).

Storage: ``<root>/smoke-levels/<preset>-<key>/level-<i>/`` in the :mod:`datamodules.store` format (one atomic write
per level), trajectories ordered strength-major then site, as :func:`datamodules.smoke_sim.sim_configs`. A finished
level whose key matches is reused, so a killed generation restarts at the first missing level.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from datamodules import store
from symbench import extras
from symbench.files import check_writable
from datamodules.smoke_sim import (
    GENERATOR_REVISION,
    LAYOUT,
    ORIENTATION,
    BoxForcing,
    SimConfig,
    SmokeSimParams,
    sim_configs,
    simulate_group,
)

SITES = 4  # C4: bottom, right, top, left
OFFSETS = (0.0, 0.3, -0.3, 0.6)  # d_j: how each site's buoyancy factor departs from 1 per unit of eps
LEVELS_REVISION = 1
SITE_CONVENTION = "site j = site 0 turned by j quarter turns counter-clockwise: rot90(x_site0, k=j) ~ x_site_j"


@dataclass(frozen=True)
class PlumeSets:
    """The sizes every graded family shares (grid units): ``levels`` sets of ``4 x strengths`` plumes, ``frames``
    saved after ``spinup`` solver steps of ``dt``; breaking strength ``eps`` from 0 to ``max_eps`` over the levels."""

    resolution: int = 32
    levels: int = 10
    strengths: int = 2  # buoyancy strengths, linspace(1, 2) * buoyancy; simulations per level = 4 * strengths
    frames: int = 40
    spinup: int = 10
    dt: float = 0.5
    inflow_radius: float = 2.5
    inflow_rate: float = 0.2
    buoyancy: float = 0.1
    max_eps: float = 1.0
    solver_tolerance: float = 1e-5

    def eps(self, level: int) -> float:
        """Breaking strength of ``level``: linear from 0 (level 0) to ``max_eps`` (the last level)."""
        if not 0 <= level < self.levels:
            raise ValueError(f"level {level} out of range: this preset has levels 0..{self.levels - 1}")
        return self.max_eps * level / (self.levels - 1)

    def strength_values(self) -> np.ndarray:
        return np.linspace(1.0, 2.0, self.strengths) * self.buoyancy

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LevelsParams(PlumeSets):
    """Everything that determines the graded datasets (grid units; see the module docstring)."""

    offsets: tuple[float, ...] = OFFSETS

    def __post_init__(self) -> None:
        if self.levels < 2 or self.strengths < 1:
            raise ValueError(f"need levels >= 2 and strengths >= 1, got {self.levels}, {self.strengths}")
        if len(self.offsets) != SITES or self.offsets[0] != 0:
            raise ValueError(f"offsets must hold {SITES} values with offsets[0] = 0 (the reference site), "
                             f"got {self.offsets}")
        if min(1 + self.max_eps * d for d in self.offsets) <= 0:
            raise ValueError(f"max_eps={self.max_eps} with offsets {self.offsets} gives a non-positive site factor")
        self.sim_params()  # the solver's own checks (grid, frames, dt)

    def sim_params(self) -> SmokeSimParams:
        """The :class:`SmokeSimParams` of one level (a rotation family, all simulations in one batched call)."""
        sims = SITES * self.strengths
        return SmokeSimParams("rotation", resolution=self.resolution, sims=sims, frames=self.frames,
                              spinup=self.spinup, dt=self.dt, inflow_radius=self.inflow_radius,
                              inflow_rate=self.inflow_rate, buoyancy=self.buoyancy, group_size=sims,
                              solver_tolerance=self.solver_tolerance)

    def site_factors(self, level: int) -> tuple[float, ...]:
        """``f_j = 1 + eps * d_j`` for the four sites."""
        eps = self.eps(level)
        return tuple(1.0 + eps * d for d in self.offsets)

    def configs(self, level: int) -> list[SimConfig]:
        return level_configs(self, level)

    def forcing(self, level: int) -> BoxForcing | None:
        return None  # the rotation family's closed, uniform box

    def meta(self, level: int) -> dict[str, Any]:
        return {"eps": self.eps(level), "site_factors": list(self.site_factors(level)),
                "strengths": self.strength_values().tolist(), "site_convention": SITE_CONVENTION}

    def key(self) -> str:
        """Short hash of every parameter, the PhiFlow version and both generator revisions."""
        phiflow = extras.version("phiflow", "smoke")
        return store.content_key(self.to_dict(), phiflow, GENERATOR_REVISION, LEVELS_REVISION)


PRESETS: dict[str, LevelsParams] = {
    "tiny": LevelsParams(resolution=16, levels=3, strengths=1, frames=12, spinup=2, inflow_radius=2.0),
    # 10 levels x 8 simulations x 50 solver steps at 32 x 32: ~10 s per level on one core.
    "cpu": LevelsParams(),
    "paper": LevelsParams(resolution=64, strengths=4, frames=50, inflow_radius=5.0),
}


def preset(name: str) -> LevelsParams:
    if name not in PRESETS:
        raise KeyError(f"unknown smoke-levels preset {name!r}; available presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def default_dir(root: str | Path, preset_name: str) -> Path:
    """``root / "smoke-levels" / "<preset>-<key>"``; level ``i`` lives in its ``level-<i>`` subdirectory."""
    return Path(root) / "smoke-levels" / f"{preset_name}-{preset(preset_name).key()}"


def level_dir(directory: str | Path, level: int) -> Path:
    return Path(directory) / f"level-{level}"


def level_configs(p: LevelsParams, level: int) -> list[SimConfig]:
    """The simulations of ``level``: the rotation family's sites, with buoyancy ``strength * f_j(eps)`` along the
    site's direction (strength-major, then site)."""
    factors, strengths = p.site_factors(level), p.strength_values()
    out = []
    for i, c in enumerate(sim_configs(p.sim_params())):
        magnitude = float(strengths[i // SITES] * factors[i % SITES])
        # The site's unit direction is exact (one component is 0, the other +-): keep only its sign.
        out.append(replace(c, force_x=float(np.sign(c.force_x)) * magnitude,
                           force_y=float(np.sign(c.force_y)) * magnitude))
    return out


class GradedSets(Protocol):
    """A family of graded datasets (:class:`LevelsParams`, :class:`datamodules.smoke_strength.StrengthParams`):
    ``levels`` sets, each one batched PhiFlow call of :meth:`sim_params` with the simulations :meth:`configs` in the
    box :meth:`forcing` (None: the family's own), stored with :meth:`meta` and the parameters' :meth:`key`."""

    levels: int

    def sim_params(self) -> SmokeSimParams: ...

    def configs(self, level: int) -> list[SimConfig]: ...

    def forcing(self, level: int) -> BoxForcing | None: ...

    def meta(self, level: int) -> dict[str, Any]: ...

    def key(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


def generate(p: GradedSets, out_dir: str | Path, progress: bool = True, name: str = "smoke-levels") -> Path:
    """Simulate every missing level of ``p`` under ``out_dir`` (one atomic write per level, a finished level whose
    key matches is kept); returns ``out_dir``. ``name`` labels the progress bar."""
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    todo = [i for i in range(p.levels) if not _is_current(level_dir(out_dir, i), p)]
    if todo:
        check_writable(out_dir, "--root")  # before simulating, not after
    sim = p.sim_params()
    steps = sim.sims * (sim.spinup + sim.frames)
    bar = tqdm(total=p.levels * steps, initial=(p.levels - len(todo)) * steps, unit="sim-step",
               desc=f"phiflow {name}", disable=not progress)
    try:
        for i in todo:
            configs = p.configs(i)
            array = simulate_group(sim, configs, step_done=bar.update, forcing=p.forcing(i))
            store.write_trajectories(
                level_dir(out_dir, i), array, LAYOUT, key=p.key(), params=p.to_dict(), level=i, **p.meta(i),
                solver="phiflow", solver_version=extras.version("phiflow", "smoke"), orientation=ORIENTATION,
                sims=[asdict(c) for c in configs],
            )
    finally:
        bar.close()
    return out_dir


def generate_preset(preset_name: str, root: str | Path = "data", progress: bool = True) -> Path:
    """Generate (or reuse) every level of ``preset_name`` under ``root``; returns the preset's directory."""
    return generate(preset(preset_name), default_dir(root, preset_name), progress)


def _is_current(directory: Path, p: GradedSets) -> bool:
    return store.exists(directory) and store.read_meta(directory).get("key") == p.key()


def load_level(directory: str | Path, level: int) -> tuple[np.ndarray, dict[str, Any]]:
    """``(sims, T, C, H, W)`` float32 array (memory-mapped) and metadata of ``level``."""
    array, layout, meta = store.read_trajectories(level_dir(directory, level))
    if layout != LAYOUT:
        raise ValueError(f"{level_dir(directory, level)} holds fields {layout}, expected {LAYOUT}")
    return array, meta


def rotated_back(array: np.ndarray | Any) -> Any:
    """``(strengths, 4, T, C, H, W)`` torch tensor: each site-``j`` simulation turned by ``-j`` quarter turns, so that
    every simulation shows the site-0 (bottom) plume."""
    import torch

    from symbench.symmetry import rot90

    x = torch.from_numpy(np.array(array, dtype=np.float32))  # a copy: the store memory-maps read-only
    if x.shape[0] % SITES:
        raise ValueError(f"expected a multiple of {SITES} simulations (strength-major, then site), got {x.shape[0]}")
    x = x.reshape(-1, SITES, *x.shape[1:])
    return torch.stack([rot90(x[:, j], LAYOUT, -j) for j in range(SITES)], dim=1)


def data_equivariance_error(array: np.ndarray | Any, sites: Sequence[int] = (1, 2, 3),
                            back: Callable[[Any], Any] = rotated_back) -> float:
    """``E_data``: mean over strengths and ``sites`` of mean |site j brought back - site 0| (module docstring);
    ``back`` brings every site to site 0 (``(strengths, sites, T, C, H, W)`` tensor; default: :func:`rotated_back`)."""
    from symbench.metrics.equivariance import data_equivariance_error as mean_abs

    moved = back(array).double()
    return float(sum(mean_abs(moved[:, j], moved[:, 0]) for j in sites) / len(sites))
