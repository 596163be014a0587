"""A 2D planar jet simulated with PhiFlow and written as time-resolved PIV files: the stand-in for the NASA
multi-stream jet measurements of the ICML 2022 paper (Wang, Walters & Yu, sec. 5.3, appendix A.4).

Physics (PhiFlow's incompressible Navier-Stokes solver, grid units: cell size 1, jet velocity ``U = 1``):

    v*      = advect_MacCormack(v_n, v_n, dt) + dt nu lap v                (explicit diffusion, nu = U D / Re)
    v*      = v_jet(y, t)  in the nozzle zone (the first ``NOZZLE`` columns)
    v_{n+1} = v* - grad p,   div v_{n+1} = 0                                (CG pressure solve)

on an ``NX x NY`` staggered grid, float64, with zero-gradient velocity (pressure 0) on every side: fluid leaves
through the outlet on the right and is entrained through the left and lateral sides, as around a jet issuing into
quiescent fluid. The nozzle zone holds the fluid at the slot profile: a top hat of width ``D = slot_width`` cells
centred on the middle row with ``tanh`` edges one cell thick, ``u = U (1 + a(t))``, ``v = U b(t)`` inside the slot,
``u = v = 0`` beside it (the nozzle's face). ``a`` (varicose) and ``b`` (sinuous) are the seeded perturbation of the
inflow: ``modes`` sinusoids of Strouhal numbers ``f D / U`` drawn in [0.1, 0.6] with random phases, rms amplitude
``perturbation``, plus white noise of rms ``noise``; each run (seed ``[seed, run]``) draws its own. The shear
layers roll up into vortices, the jet flaps and spreads, the centreline velocity decays and the momentum flux
``int u^2 dy`` stays roughly constant downstream. The initial field is the parallel jet ``u = U profile(y)``
everywhere; the first ``spinup`` solver steps (about 1.5 domain lengths at ``U``, until it has left) are discarded.

Field of view: a grid of ``stations = (n_cross, n_axial)`` PIV stations of ``station_shape = (H, W)`` vectors,
``vector_spacing`` cells apart (1: one vector per cell; 0.5: two per cell, velocities interpolated linearly like the
overlapping interrogation windows of PIV), covering ``n_cross H`` vectors centred on the jet axis and ``n_axial W``
from the nozzle exit. The simulation domain adds ``lateral_margin`` of the window height on each side and
``outlet_margin`` of its length before the outlet (aspect ratio streamwise:cross-stream about 2:1 to 3:1). As in
the NASA data each station is later one trajectory (:mod:`datamodules.jetflow`); here the stations are cut from
one concurrent field, where the experiment acquired them one at a time.

Physical scaling (kinematic; the simulated Reynolds number is the physical one): a water jet (``nu = 1e-6 m^2/s``)
from a slot ``slot_m`` wide at ``jet_velocity`` m/s. A cell is ``dx = slot_m / D`` metres, a grid time unit
``dx / jet_velocity`` seconds, and ``Re = jet_velocity slot_m / 1e-6`` (1000 for the defaults: 10 mm, 0.1 m/s).
x is measured from the nozzle exit, y from the jet axis (positive up), u, v in m/s.

Size limit: phiml 1.16 indexes the pressure matrix with 32-bit integers and fails above :data:`MAX_CELLS` cells
(checked by :class:`JetSimParams`); the paper preset therefore samples its 69 x 496 vectors at ``vector_spacing``
0.5 from a 105 x 301 cell domain.

Output (:func:`generate`): ``<dir>/run_000/frame_00000.dat``, ... one ASCII Tecplot PIV file per saved frame
(:func:`datamodules.piv_io.write_tecplot`: x, y in m, u, v in m/s, SOLUTIONTIME in s from the first saved frame)
and ``<dir>/jetflow.json`` (parameters, station layout, scaling, diagnostics), written to a temporary directory
that is renamed into place when everything is done (a killed run leaves nothing half-written; it is not resumed).

Backend: PhiFlow on PyTorch (CPU, float64) with ``math.jit_compile``: about 10x faster than without, because
PhiFlow's Python overhead dominates at these grid sizes (the jit and plain results agree bit for bit); all runs are
batched along ``run``. The backend is selected with a context manager, so PhiFlow's global default is untouched.
"""

from __future__ import annotations

import json
import logging
import math as pymath
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from datamodules import piv_io, store
from symbench import extras

GENERATOR_REVISION = 1
META_FILE = "jetflow.json"
NOZZLE = 3  # cells of the nozzle zone where the inflow profile is imposed
WATER_VISCOSITY = 1e-6  # m^2/s
MAX_CELLS = 46340  # phiml 1.16 indexes the pressure matrix (cells^2 entries) with 32-bit integers: 46340^2 < 2^31
ORIENTATION = ("PIV files: x from the nozzle exit (m), y from the jet axis (m, up), u, v (m/s); read by piv_io into "
               "(T, 2, H, W) with rows towards -y, the jet flowing towards +x")


@dataclass(frozen=True)
class JetSimParams:
    """Everything that determines a generated jet-flow dataset (grid units unless a name says otherwise)."""

    stations: tuple[int, int] = (3, 8)  # (cross-stream, axial) stations in the field of view
    station_shape: tuple[int, int] = (23, 62)  # (H, W) vectors per station
    vector_spacing: float = 1.0  # cells between PIV vectors
    slot_width: int = 8  # D, cells
    runs: int = 2  # independent runs (seeds [seed, run] of the inflow perturbation)
    frames: int = 100  # saved frames per run
    frame_every: int = 2  # solver steps per saved frame
    spinup: int = 300  # solver steps discarded before the first saved frame
    dt: float = 1.0  # time step, grid units (CFL about 1.3 at the peak velocity)
    slot_m: float = 0.01  # physical slot width, m
    jet_velocity: float = 0.1  # physical jet velocity, m/s (water: Re = jet_velocity slot_m / 1e-6)
    perturbation: float = 0.05  # rms of the sinusoidal inflow perturbation, fraction of U
    noise: float = 0.02  # rms of the white-noise inflow perturbation, fraction of U
    modes: int = 5  # sinusoids per perturbation component
    lateral_margin: float = 0.25  # cells beside the field of view, fraction of its height, each side
    outlet_margin: float = 0.2  # cells between the field of view and the outlet, fraction of its length
    seed: int = 0
    solver_tolerance: float = 1e-5

    def __post_init__(self) -> None:
        ints = (*self.stations, *self.station_shape, self.slot_width, self.runs, self.frames, self.frame_every)
        if len(self.stations) != 2 or len(self.station_shape) != 2 or min(ints) < 1:
            raise ValueError("stations and station_shape need two positive entries; slot_width, runs, frames and "
                             "frame_every must be >= 1")
        if self.slot_width < 2 or self.frames < 2 or self.spinup < 0 or self.dt <= 0:
            raise ValueError(f"need slot_width >= 2, frames >= 2, spinup >= 0 and dt > 0, got {self.slot_width}, "
                             f"{self.frames}, {self.spinup}, {self.dt}")
        if self.slot_m <= 0 or self.jet_velocity <= 0 or self.perturbation < 0 or self.noise < 0:
            raise ValueError("slot_m and jet_velocity must be positive, perturbation and noise non-negative")
        if not 0 < self.vector_spacing <= 4:
            raise ValueError(f"vector_spacing must lie in (0, 4] cells, got {self.vector_spacing}")
        ny, nx = self.grid
        if ny * nx > MAX_CELLS:
            raise ValueError(f"the {nx}x{ny} simulation grid has {ny * nx} cells; PhiFlow's pressure solve (phiml "
                             f"1.16) fails above {MAX_CELLS}: use fewer or smaller stations or smaller margins")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def key(self) -> str:
        """Short hash of every parameter, the PhiFlow version and the generator revision."""
        return store.content_key(self.to_dict(), extras.version("phiflow", "smoke"), GENERATOR_REVISION)

    # -- geometry (cells) --------------------------------------------------------------------------------------------
    @property
    def window(self) -> tuple[int, int]:
        """(rows, columns) of PIV vectors in the field of view: the stations side by side."""
        return self.stations[0] * self.station_shape[0], self.stations[1] * self.station_shape[1]

    @property
    def window_cells(self) -> tuple[float, float]:
        """(height, length) of the field of view in cells."""
        h, w = self.window
        return h * self.vector_spacing, w * self.vector_spacing

    @property
    def grid(self) -> tuple[int, int]:
        """(NY, NX) of the simulation: the field of view plus the lateral and outlet margins."""
        h, w = self.window_cells
        lateral = max(self.slot_width, pymath.ceil(self.lateral_margin * h))
        outlet = max(self.slot_width, pymath.ceil(self.outlet_margin * w))
        return pymath.ceil(h) + 2 * lateral, NOZZLE + pymath.ceil(w) + outlet

    # -- physical scaling --------------------------------------------------------------------------------------------
    @property
    def dx(self) -> float:
        """Cell size, m."""
        return self.slot_m / self.slot_width

    def coordinates(self) -> tuple[np.ndarray, np.ndarray]:
        """x (W,) from the nozzle exit and y (H,) from the jet axis, top row first, of the PIV vectors, in m."""
        h, w = self.window
        step = self.vector_spacing * self.dx
        return (np.arange(w) + 0.5) * step, (h / 2 - 0.5 - np.arange(h)) * step

    @property
    def time_unit(self) -> float:
        """Seconds per grid time unit (a cell crossed at the jet velocity)."""
        return self.dx / self.jet_velocity

    @property
    def frame_interval(self) -> float:
        """Seconds between saved frames."""
        return self.frame_every * self.dt * self.time_unit

    @property
    def reynolds(self) -> float:
        return round(self.jet_velocity * self.slot_m / WATER_VISCOSITY, 9)

    @property
    def steps(self) -> int:
        return self.spinup + self.frames * self.frame_every

    def layout(self) -> dict[str, Any]:
        """The station layout for the metadata file: station ``s = i_axial * n_cross + i_cross`` covers rows
        ``i_cross H ...`` and columns ``i_axial W ...`` of the field of view (row 0 = top), in vectors."""
        n_cross, n_axial = self.stations
        h, w = self.station_shape
        return {"stations": list(self.stations), "station_shape": list(self.station_shape),
                "order": "s = i_axial * n_cross + i_cross; rows from the top (largest y), columns from the nozzle",
                "boxes": [{"station": a * n_cross + c, "rows": [c * h, (c + 1) * h], "cols": [a * w, (a + 1) * w]}
                          for a in range(n_axial) for c in range(n_cross)]}


def _preset(**sizes: Any) -> JetSimParams:
    return JetSimParams(**sizes)


# Measured on the project's 2-core machine (1 thread, the other core busy): tiny ~8 s, cpu ~2 min. spinup: about 1.5
# domain lengths at the jet velocity, so that the initial parallel jet has left the domain (checked at cpu: the
# station statistics are stationary from there on). The paper preset samples two vectors per cell (MAX_CELLS).
PRESETS: dict[str, JetSimParams] = {
    "tiny": _preset(stations=(2, 3), station_shape=(16, 16), slot_width=4, runs=2, frames=32, frame_every=2,
                    spinup=80),
    "cpu": _preset(stations=(2, 5), station_shape=(32, 32), slot_width=8, runs=2, frames=120, frame_every=2,
                   spinup=300),
    "paper": _preset(stations=(3, 8), station_shape=(23, 62), vector_spacing=0.5, slot_width=8, runs=2, frames=200,
                     frame_every=2, spinup=480, lateral_margin=1.0),
}


def check_preset(preset: str) -> JetSimParams:
    if preset not in PRESETS:
        raise ValueError(f"unknown jetflow preset {preset!r}; available presets: {', '.join(PRESETS)}")
    return PRESETS[preset]


def default_dir(root: Path, preset: str) -> Path:
    """``root / "jetflow" / "<preset>-<key>"``: the key changes whenever a parameter or PhiFlow does."""
    return Path(root) / "jetflow" / f"{preset}-{check_preset(preset).key()}"


def exists(directory: Path, key: str | None = None) -> bool:
    """True when ``directory`` holds a finished dataset (with ``key``, when given)."""
    meta = Path(directory) / META_FILE
    if not meta.is_file():
        return False
    return key is None or json.loads(meta.read_text()).get("key") == key


def inflow_signals(p: JetSimParams) -> tuple[np.ndarray, np.ndarray]:
    """``a``, ``b`` (runs, steps): the varicose and sinuous inflow perturbations at every solver step (fractions of
    ``U``), seeded by ``[seed, run]``."""
    t = np.arange(p.steps) * p.dt
    a, b = np.empty((p.runs, p.steps)), np.empty((p.runs, p.steps))
    for run in range(p.runs):
        rng = np.random.default_rng([p.seed, run])
        for out in (a, b):
            freq = rng.uniform(0.1, 0.6, p.modes) / p.slot_width  # Strouhal f D / U in [0.1, 0.6], U = 1
            phase = rng.uniform(0, 2 * np.pi, p.modes)
            amp = rng.uniform(0.5, 1.0, p.modes)
            amp *= p.perturbation * np.sqrt(2.0 / np.sum(amp**2))  # rms of the sum = perturbation
            out[run] = np.sin(2 * np.pi * freq[:, None] * t + phase[:, None]).T @ amp
            out[run] += rng.normal(0.0, p.noise, p.steps)
    return a, b


@contextmanager
def _phiml_debug_off() -> Any:
    """phiml 1.16's jit logs ``ML_LOGGER.debug(message, extra)`` with an argument its message does not format, so
    with DEBUG logging switched on (a user's logging config, pytest's log capture after Lightning ran) building the
    record raises ``TypeError``. Its logger is kept at INFO or above while the simulation runs."""
    logger = logging.getLogger("\u03a6-ML")
    old = logger.level
    if logger.getEffectiveLevel() < logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.setLevel(old)


def simulate(p: JetSimParams, on_frame: Callable[[int, np.ndarray], None], step_done: Any = None) -> None:
    """Run the ``p.runs`` jets as one batched PhiFlow simulation; call ``on_frame(k, velocity)`` for every saved
    frame ``k`` with ``velocity`` ``(runs, 2, H, W)`` float64 at the PIV vectors of the field of view, in grid units
    (``U = 1``), **rows y up** (PhiFlow's order), components (x, y)."""
    math = extras.require("phi.math", "smoke")
    from phi.flow import (ZERO_GRADIENT, Box, CenteredGrid, Solve, StaggeredGrid, advect, batch, diffuse, fluid,
                          resample, vec)
    from phiml.backend.torch import TORCH

    ny, nx = p.grid
    yc, half = ny / 2, p.slot_width / 2
    nu = p.slot_width / p.reynolds  # U D / Re in grid units (U = 1): the physical Re is simulated
    a_t, b_t = inflow_signals(p)
    runs = batch(run=p.runs)
    with TORCH, math.precision(64), warnings.catch_warnings(), _phiml_debug_off():
        # phiml's jit traces with torch.jit (deprecated in torch 2.13) and builds sparse CSR matrices (beta): noise
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.\w+` is deprecated", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="Sparse", category=UserWarning)
        bounds = Box(x=nx, y=ny)

        def grid(value: Any) -> Any:
            return StaggeredGrid(value, ZERO_GRADIENT, bounds, x=nx, y=ny)

        def slot(y: Any) -> Any:
            return 0.5 * (1 + math.tanh(half - abs(y - yc)))  # top hat, edges one cell thick

        (h, w), (hc, wc) = p.window, p.window_cells
        piv = CenteredGrid(0, ZERO_GRADIENT, Box(x=(NOZZLE, NOZZLE + wc), y=(yc - hc / 2, yc + hc / 2)), x=w, y=h)
        nozzle = grid(Box(x=(-1.0, float(NOZZLE)), y=(-1.0, ny + 1.0)))
        jet_u = grid(lambda pos: vec(x=slot(pos.vector["y"]), y=0 * pos.vector["y"]))
        jet_v = grid(lambda pos: vec(x=0 * pos.vector["y"], y=slot(pos.vector["y"])))

        def solve(x0: Any) -> Any:
            return Solve("CG", p.solver_tolerance, p.solver_tolerance, max_iterations=5000, x0=x0)

        def step(v: Any, pressure: Any, a: Any, b: Any) -> tuple[Any, Any]:
            v = advect.mac_cormack(v, v, p.dt)
            v = diffuse.explicit(v, nu, p.dt)
            v = v * (1 - nozzle) + (jet_u * (1 + a) + jet_v * b) * nozzle
            return fluid.make_incompressible(v, (), solve(pressure))

        jit_step = math.jit_compile(step)
        velocity, pressure = fluid.make_incompressible(math.expand(jet_u, runs), (), solve(None))
        for n in range(p.steps):
            a = math.tensor(a_t[:, n], runs)
            b = math.tensor(b_t[:, n], runs)
            velocity, pressure = jit_step(velocity, pressure, a, b)
            k, r = divmod(n + 1 - p.spinup, p.frame_every)
            if n + 1 > p.spinup and r == 0:
                frame = resample(velocity, to=piv).values.numpy("run,vector,y,x")
                if not np.isfinite(frame).all():
                    raise FloatingPointError(f"the jet simulation produced NaN/inf at step {n + 1}; lower dt")
                on_frame(k - 1, frame)
            if step_done is not None:
                step_done(1)


def piv_field(p: JetSimParams, velocity: np.ndarray, time: float, name: str) -> piv_io.PIVField:
    """One run's frame ``velocity`` ``(2, H, W)`` (grid units, rows y up) as a PIV field in metres and m/s, rows
    towards -y."""
    x, y = p.coordinates()
    u, v = velocity[:, ::-1] * p.jet_velocity
    return piv_io.PIVField(x, y, u, v, np.ones(p.window, bool), units=("m", "m/s"), time=time, source=name)


def run_dir(directory: Path, run: int) -> Path:
    return Path(directory) / f"run_{run:03d}"


def generate(p: JetSimParams, out_dir: Path, progress: bool = True) -> Path:
    """Simulate and write the dataset atomically (one Tecplot file per run and frame, plus :data:`META_FILE`);
    reuse ``out_dir`` when it already holds the dataset of ``p``."""
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    if exists(out_dir, p.key()):
        return out_dir
    stats = _Diagnostics(p)
    bar = tqdm(total=p.steps, unit="step", desc=f"phiflow jet ({p.runs} runs)", disable=not progress)
    try:
        with store.atomic_directory(out_dir) as tmp:
            for run in range(p.runs):
                run_dir(tmp, run).mkdir()

            def write(k: int, velocity: np.ndarray) -> None:
                stats.add(velocity)
                for run in range(p.runs):
                    path = run_dir(tmp, run) / f"frame_{k:05d}.dat"
                    piv_io.write_tecplot(path, piv_field(p, velocity[run], k * p.frame_interval, path.name))

            simulate(p, write, step_done=bar.update)
            meta = {"key": p.key(), "params": p.to_dict(), "solver": "phiflow",
                    "solver_version": extras.version("phiflow", "smoke"),
                    "generator_revision": GENERATOR_REVISION, "orientation": ORIENTATION, "fields": ["velocity:vector"],
                    "runs": [run_dir(tmp, r).name for r in range(p.runs)], "layout": p.layout(),
                    "scaling": {"dx_m": p.dx, "time_unit_s": p.time_unit, "frame_interval_s": p.frame_interval,
                                "reynolds": p.reynolds, "fluid": "water, nu = 1e-6 m^2/s",
                                "vector_spacing_m": p.vector_spacing * p.dx, "grid_cells": list(p.grid),
                                "nozzle_cells": NOZZLE},
                    "diagnostics": stats.result()}
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
    finally:
        bar.close()
    return out_dir


class _Diagnostics:
    """Running sums over the saved frames, in the field of view: mean and rms fluctuation of u and v per cell."""

    def __init__(self, p: JetSimParams) -> None:
        self.p, self.n = p, 0
        h, w = p.window
        self.s1 = np.zeros((2, h, w))
        self.s2 = np.zeros((2, h, w))

    def add(self, velocity: np.ndarray) -> None:
        self.s1 += velocity.sum(0)
        self.s2 += (velocity**2).sum(0)
        self.n += velocity.shape[0]

    def result(self) -> dict[str, Any]:
        mean = self.s1 / self.n
        rms = np.sqrt(np.maximum(self.s2 / self.n - mean**2, 0.0))
        w = self.p.station_shape[1]
        axial = [slice(a * w, (a + 1) * w) for a in range(self.p.stations[1])]
        return {  # per axial station, fractions of the jet velocity (grid units: U = 1)
            "centreline_u": [float(mean[0, :, s].max()) for s in axial],
            "momentum_flux_D": [float((mean[0, :, s] ** 2 + rms[0, :, s] ** 2).sum(0).mean() * self.p.vector_spacing
                                      / self.p.slot_width) for s in axial],
            "v_rms_max": [float(rms[1, :, s].max()) for s in axial],
        }
