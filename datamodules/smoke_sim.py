"""2D smoke plumes generated with PhiFlow, each family with one symmetry broken (ICML 2022 sec. 5.1).

Physics (PhiFlow's incompressible Euler solver, Boussinesq buoyancy, no viscosity; grid units, cell size 1):

    smoke_{n+1} = advect_MacCormack(smoke_n, v_n, dt) + dt * r * inflow      (inflow: a disc of radius R)
    v*          = advect_semi-Lagrangian(v_n, v_n, dt) + dt * smoke * beta(x) * e
    v_{n+1}     = v* - grad p,   div v_{n+1} = 0                              (CG pressure solve, closed box)

on a ``resolution x resolution`` closed box (velocity zero at the walls, zero-gradient smoke), float64 (float32
pressure solves diverge), all simulations of a family batched along one batch dimension. Families (counts for the
``paper`` preset; ``cpu`` and ``tiny`` use fewer or smaller simulations, never other code):

* ``translation`` -- 35 inflow positions (7 x-positions x 5 heights). The buoyancy is ``beta`` in the left half of
  the box and ``2 beta`` in the right half, and the walls are closed: a shifted inflow does not give a shifted plume.
* ``rotation`` -- 4 inflow sites related by the C4 rotations about the box centre (bottom pushing +y, right pushing
  -x, top pushing -y, left pushing +x) x 10 strengths. The strength is multiplied by a factor of the site
  (:data:`SITE_FACTORS`), so a rotated simulation is not a simulation of the set.
* ``scaling`` -- 40 spatial steps ``dx = lam`` log-spaced in [1/2, 2] with temporal steps ``dt lam``: a plume of fixed
  physical inflow radius seen at 40 zooms. In grid units that is inflow radius ``R / lam``, time step ``dt lam`` and
  buoyancy ``beta_j / lam``; velocities are stored in physical units (``lam`` x grid units). Without buoyancy changes
  the set would be scale-symmetric up to resolution; ``beta_j`` varies across simulations (golden-ratio sequence in
  ``[beta, 1.5 beta]``) to break it.

The box may also impose a :class:`BoxForcing` fixed in the lab frame (the graded sets of
:mod:`datamodules.smoke_strength`): a buoyancy factor ``1 + wave sin(2 pi x / n)`` along x and periodic x walls; by
default each family's own box (closed; the translation family's two halves).

Saved per frame (one frame per solver step after ``spinup`` steps): velocity at cell centres (vector, x first) and
smoke density (scalar), rows flipped from PhiFlow's y-up arrays to this suite's rows-towards--y convention (y
components keep their physical sign). The held-out ``test_domain`` simulations (a seeded 20 %) are recorded in the
metadata. Generation runs in groups of ``group_size`` simulations; each finished group is saved under a
``.partial`` directory, so a killed generation restarts at the first unfinished group, and the dataset appears
atomically when all groups are done.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from datamodules import store
from symbench import extras
from symbench.fields import FieldLayout

SYMMETRIES = ("translation", "rotation", "scaling")
SITE_FACTORS = (1.0, 1.3, 0.7, 1.6)  # rotation family: strength factor of the bottom, right, top, left sites
GENERATOR_REVISION = 1
ORIENTATION = "rows run towards -y (row 0 = top wall); velocity (vx, vy), vy > 0 up; density scalar"
LAYOUT = FieldLayout.of("velocity:vector", "density:scalar")


@dataclass(frozen=True)
class SmokeSimParams:
    """Everything that determines a generated smoke family (grid units; see the module docstring)."""

    symmetry: str
    resolution: int = 64
    sims: int = 40  # translation: must be x_positions * heights
    x_positions: int = 7  # translation only
    frames: int = 120
    spinup: int = 10
    dt: float = 0.5
    inflow_radius: float = 5.0
    inflow_rate: float = 0.2
    buoyancy: float = 0.1
    domain_fraction: float = 0.2
    seed: int = 0
    group_size: int = 8
    solver_tolerance: float = 1e-5

    def __post_init__(self) -> None:
        if self.symmetry not in SYMMETRIES:
            raise ValueError(f"unknown smoke symmetry {self.symmetry!r}; choose one of {', '.join(SYMMETRIES)}")
        if self.resolution < 8 or self.frames < 2 or self.spinup < 0 or self.dt <= 0 or self.group_size < 1:
            raise ValueError("need resolution >= 8, frames >= 2, spinup >= 0, dt > 0 and group_size >= 1")
        if self.symmetry == "rotation" and self.sims % 4:
            raise ValueError(f"the rotation family needs a multiple of 4 simulations (4 sites), got {self.sims}")
        if self.symmetry == "translation" and (self.x_positions < 1 or self.sims % self.x_positions):
            raise ValueError(f"translation: sims={self.sims} must be x_positions={self.x_positions} x heights")
        if not 0 < self.domain_fraction < 1 or self.sims < 2:
            raise ValueError(f"need at least 2 simulations and 0 < domain_fraction < 1, got {self.sims}, "
                             f"{self.domain_fraction}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def key(self) -> str:
        """Short hash of every parameter, the PhiFlow version and the generator revision."""
        return store.content_key(self.to_dict(), extras.version("phiflow", "smoke"), GENERATOR_REVISION)

    def domain_sims(self) -> list[int]:
        """The held-out ``test_domain`` simulations: a seeded ``domain_fraction`` of them (at least one), sorted."""
        n = max(1, round(self.sims * self.domain_fraction))
        return sorted(np.random.default_rng(self.seed).permutation(self.sims)[:n].tolist())


def _family(symmetry: str, **sizes: Any) -> SmokeSimParams:
    return SmokeSimParams(symmetry=symmetry, **sizes)


# Measured on the project's 2-core machine (64 x 64, float64, 16 simulations per batched call): ~1 s per solver step.
PRESETS: dict[str, dict[str, SmokeSimParams]] = {
    "tiny": {s: _family(s, resolution=16, sims=8, x_positions=4, frames=30, spinup=2,
                        inflow_radius=2.0) for s in SYMMETRIES},
    "cpu": {
        "translation": _family("translation", sims=21, x_positions=7),
        "rotation": _family("rotation", sims=20),
        "scaling": _family("scaling", sims=20),
    },
    "paper": {
        "translation": _family("translation", sims=35, x_positions=7, frames=300),
        "rotation": _family("rotation", sims=40, frames=300),
        "scaling": _family("scaling", sims=40, frames=300),
    },
}


def default_dir(root: Path, symmetry: str, preset: str) -> Path:
    """``root / "smoke-<symmetry>" / "<preset>-<key>"``: the key changes whenever a parameter or PhiFlow does."""
    if preset not in PRESETS:
        raise KeyError(f"unknown smoke preset {preset!r}; available presets: {', '.join(PRESETS)}")
    return Path(root) / f"smoke-{symmetry}" / f"{preset}-{PRESETS[preset][symmetry].key()}"


@dataclass(frozen=True)
class SimConfig:
    """One simulation in grid units: inflow disc, buoyancy direction and strength, time step, velocity unit."""

    cx: float
    cy: float  # y up (PhiFlow)
    radius: float
    force_x: float
    force_y: float
    dt: float
    velocity_unit: float  # physical velocity = velocity_unit x grid velocity


def sim_configs(p: SmokeSimParams) -> list[SimConfig]:
    """The ``p.sims`` simulations of the family, in dataset order."""
    n, s = p.resolution, p.resolution / 64  # positions are given for 64 x 64 and scaled to the grid
    if p.symmetry == "translation":
        heights = p.sims // p.x_positions
        xs = np.linspace(8, 56, p.x_positions) * s
        ys = np.linspace(5, 25, heights) * s if heights > 1 else np.array([5 * s])
        return [SimConfig(float(x), float(y), p.inflow_radius, 0.0, p.buoyancy, p.dt, 1.0) for y in ys for x in xs]
    if p.symmetry == "rotation":
        c, near = n / 2, 5 * s
        sites = [((c, near), (0.0, 1.0)), ((n - near, c), (-1.0, 0.0)), ((c, n - near), (0.0, -1.0)),
                 ((near, c), (1.0, 0.0))]
        strengths = np.linspace(1.0, 2.0, p.sims // 4) * p.buoyancy
        return [SimConfig(x, y, p.inflow_radius, fx * b * f, fy * b * f, p.dt, 1.0)
                for b in strengths for ((x, y), (fx, fy)), f in zip(sites, SITE_FACTORS)]
    lams = np.geomspace(0.5, 2.0, p.sims)
    betas = p.buoyancy * (1.0 + 0.5 * ((np.arange(p.sims) * 0.6180339887) % 1.0))
    out = []
    for lam, beta in zip(lams, betas):
        radius = p.inflow_radius / lam
        out.append(SimConfig(n / 2, 2 * s + radius, radius, 0.0, float(beta / lam), p.dt * lam, float(lam)))
    return out


@dataclass(frozen=True)
class BoxForcing:
    """What the box imposes on every simulation, fixed in the lab frame (it never moves or turns with the inflow):
    the buoyancy factor ``(1 + step [x >= n/2]) (1 + wave sin(2 pi x / n))`` at cell centres ``x`` (grid units) and,
    with ``periodic_x``, periodic left / right walls (the top and bottom walls stay closed)."""

    step: float = 0.0
    wave: float = 0.0
    periodic_x: bool = False

    @classmethod
    def of_family(cls, p: SmokeSimParams) -> BoxForcing:
        """The family's own box: buoyancy ``beta`` left, ``2 beta`` right for translation; uniform otherwise."""
        return cls(step=1.0) if p.symmetry == "translation" else cls()

    def profile(self, x: Any, n: int) -> Any:
        """The buoyancy factor at ``x`` (a PhiFlow tensor of x coordinates) on an ``n``-cell box."""
        math = extras.require("phi.math", "smoke")

        factor = math.where(x < n / 2, 1.0, 1.0 + self.step)
        return factor * (1.0 + self.wave * math.sin(2 * np.pi * x / n)) if self.wave else factor


def simulate_group(p: SmokeSimParams, configs: list[SimConfig], step_done: Any = None,
                   forcing: BoxForcing | None = None) -> np.ndarray:
    """Run ``configs`` as one batched PhiFlow simulation in the box ``forcing`` (default: the family's,
    :meth:`BoxForcing.of_family`); returns ``(len(configs), frames, 3, n, n)`` float32."""
    math = extras.require("phi.math", "smoke")
    from phi.flow import (ZERO_GRADIENT, Box, CenteredGrid, Solve, Sphere, StaggeredGrid, advect, batch, extrapolation,
                          fluid, resample, vec)

    math.set_global_precision(64)
    box = BoxForcing.of_family(p) if forcing is None else forcing
    n = p.resolution
    sim = batch(sim=len(configs))

    def per_sim(values: list[float]) -> Any:
        return math.tensor(values, sim)

    walls_s, walls_v = ZERO_GRADIENT, extrapolation.ZERO
    if box.periodic_x:
        walls_s = extrapolation.combine_sides(x=extrapolation.PERIODIC, y=ZERO_GRADIENT)
        walls_v = extrapolation.combine_sides(x=extrapolation.PERIODIC, y=extrapolation.ZERO)
    bounds = Box(x=n, y=n)
    dt = per_sim([c.dt for c in configs])
    inflow = CenteredGrid(Sphere(x=per_sim([c.cx for c in configs]), y=per_sim([c.cy for c in configs]),
                                 radius=per_sim([c.radius for c in configs])), walls_s, bounds, x=n, y=n)
    force = vec(x=per_sim([c.force_x for c in configs]), y=per_sim([c.force_y for c in configs]))
    profile = CenteredGrid(lambda pos: box.profile(pos.vector["x"], n), walls_s, bounds, x=n, y=n)
    smoke = CenteredGrid(0, walls_s, bounds, x=n, y=n)
    velocity = StaggeredGrid(0, walls_v, bounds, x=n, y=n)
    unit = np.array([c.velocity_unit for c in configs]).reshape(-1, 1, 1, 1)
    out = np.empty((len(configs), p.frames, 3, n, n), dtype=np.float32)
    pressure = None
    for step in range(p.spinup + p.frames):
        smoke = advect.mac_cormack(smoke, velocity, dt=dt) + inflow * (p.inflow_rate * dt)
        buoyancy = resample(smoke * profile * force, to=velocity)
        velocity = advect.semi_lagrangian(velocity, velocity, dt=dt) + buoyancy * dt
        solve = Solve("CG", p.solver_tolerance, p.solver_tolerance, max_iterations=2000, rank_deficiency=0,
                      x0=pressure)
        velocity, pressure = fluid.make_incompressible(velocity, (), solve)
        k = step - p.spinup
        if k >= 0:
            v = velocity.at_centers().values.numpy("sim,vector,y,x") * unit  # vector order x, y; y up
            d = smoke.values.numpy("sim,y,x")
            out[:, k, :2] = v[:, :, ::-1]  # rows towards -y; components keep their sign
            out[:, k, 2] = d[:, ::-1]
        if step_done is not None:
            step_done(len(configs))
    if not np.isfinite(out).all():
        raise FloatingPointError("PhiFlow smoke simulation produced NaN/inf; lower dt or buoyancy")
    return out


def generate(p: SmokeSimParams, out_dir: Path, progress: bool = True) -> Path:
    """Simulate the family (resuming finished groups) and write it atomically; reuse it when the key matches."""
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    if store.exists(out_dir) and store.read_meta(out_dir).get("key") == p.key():
        return out_dir
    configs = sim_configs(p)
    partial = out_dir.with_name(f".{out_dir.name}.partial")
    partial.mkdir(parents=True, exist_ok=True)
    (partial / "params.json").write_text(json.dumps(p.to_dict(), sort_keys=True))
    groups = [list(range(i, min(i + p.group_size, p.sims))) for i in range(0, p.sims, p.group_size)]
    total = p.sims * (p.spinup + p.frames)
    done = sum(len(g) for i, g in enumerate(groups) if (partial / f"group{i:03d}.npy").is_file())
    bar = tqdm(total=total, initial=done * (p.spinup + p.frames), unit="sim-step",
               desc=f"phiflow smoke-{p.symmetry}", disable=not progress)
    try:
        for i, group in enumerate(groups):
            path = partial / f"group{i:03d}.npy"
            if path.is_file():
                continue
            array = simulate_group(p, [configs[j] for j in group], step_done=bar.update)
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, array)
            tmp.rename(path)  # a killed run keeps every finished group and restarts at the next one
    finally:
        bar.close()
    array = np.concatenate([np.load(partial / f"group{i:03d}.npy") for i in range(len(groups))])
    store.write_trajectories(
        out_dir, array, LAYOUT, key=p.key(), params=p.to_dict(), solver="phiflow",
        solver_version=extras.version("phiflow", "smoke"),
        orientation=ORIENTATION, domain_sims=p.domain_sims(), sims=[asdict(c) for c in configs],
        diagnostics={"rms_velocity": float(np.sqrt(np.mean(np.sum(array[:, :, :2].astype(np.float64) ** 2, 2)))),
                     "max_speed": float(np.sqrt(np.sum(array[:, :, :2].astype(np.float64) ** 2, 2)).max()),
                     "mean_density": float(array[:, :, 2].mean())},
    )
    shutil.rmtree(partial, ignore_errors=True)
    return out_dir

