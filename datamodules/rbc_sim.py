"""Rayleigh–Bénard convection generated with Dedalus 3, cut into square tiles like the paper's RBC data.

Paper §5.2 / App. B: 2D turbulent RBC (lattice Boltzmann, Ra = 2.5e8), 1792 x 256 frames cut into 7 tiles of
256 x 256, downsampled to 64 x 64. Here a spectral solver replaces the LBM data, which cannot be downloaded. The
2D Boussinesq equations in free-fall units (length Lz = 1, buoyancy jump 1, velocity sqrt(g alpha dT Lz)):

    div u = 0
    db/dt + u.grad b = kappa lap b,                kappa = (Ra Pr)^(-1/2)
    du/dt + u.grad u = -grad p + nu lap u + b e_z,  nu = (Ra / Pr)^(-1/2)

on x in [0, Lx) periodic (RealFourier), z in [0, 1] (ChebyshevT) with no-slip walls, b = 1 at the bottom (hot)
and b = 0 at the top (cold). Solved in Dedalus' first-order tau formulation (tau fields lifted onto the
highest mode of the first-derivative basis), RK222, CFL time step with safety 0.5 capped at ``max_dt``; the
start is the conductive profile b = 1 - z plus seeded Gaussian noise of amplitude 1e-3 damped by z (1 - z).

Frames are taken at exactly ``spinup + k frame_dt``: each frame interval is split into equal steps no longer
than the CFL step, so the step size only changes when the CFL estimate does (Dedalus refactorises its
matrices on every change). Grid pipeline and orientation: :mod:`datamodules.rbc_io`.

The solver runs in a child process with ``OMP_NUM_THREADS=1``: it must be set before numpy/FFTW initialise,
and threaded FFTW is about 4x slower on small 2D grids.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from datamodules import store
from datamodules.rbc_io import DedalusGrid
from symbench import extras
from symbench.fields import FieldLayout

FIELDS = ("velocity", "buoyancy")
NOISE = 1e-3
# Bump when the generator's output changes for unchanged parameters: invalidates datasets on disk.
GENERATOR_REVISION = 1
ORIENTATION = "rows run towards -y (row 0 = cold top wall, last row = hot bottom wall); velocity (vx, vy), vy > 0 up"


@dataclass(frozen=True)
class RBCSimParams:
    """Everything that determines a generated RBC dataset (free-fall units; domain height 1)."""

    rayleigh: float
    prandtl: float = 1.0
    lx: float = 7.0
    nx: int = 448
    nz: int = 64
    tiles: int = 7
    resolution: int = 64
    frames: int = 500
    frame_dt: float = 0.07
    spinup: float = 28.0
    max_dt: float = 0.1
    seed: int = 0
    fields: tuple[str, ...] = ("velocity",)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(self.fields))
        if "velocity" not in self.fields or not set(self.fields) <= set(FIELDS) or len(set(self.fields)) != len(self.fields):
            raise ValueError(f"fields must contain 'velocity' and may add 'buoyancy' (each once), got {self.fields}")
        if self.rayleigh <= 0 or self.prandtl <= 0 or self.lx <= 0:
            raise ValueError("rayleigh, prandtl and lx must be positive")
        if self.frames < 1 or self.frame_dt <= 0 or self.spinup < 0 or self.max_dt <= 0:
            raise ValueError("need frames >= 1, frame_dt > 0, spinup >= 0 and max_dt > 0")
        rows = self.nx / self.lx  # uniform rows over the unit height with square pixels
        if abs(rows - round(rows)) > 1e-9 * rows or self.nx % self.tiles or self.nx // self.tiles != round(rows):
            raise ValueError(
                f"nx={self.nx}, lx={self.lx}, tiles={self.tiles} do not give square tiles: need nx/tiles = nx/lx"
            )
        if self.tile_size % self.resolution:
            raise ValueError(f"resolution {self.resolution} must divide the tile size {self.tile_size}")

    @property
    def tile_size(self) -> int:
        """Pixels per tile side on the uniform grid before downsampling."""
        return self.nx // self.tiles

    @property
    def layout(self) -> FieldLayout:
        return FieldLayout.of("velocity:vector", *(f"{f}:scalar" for f in self.fields if f != "velocity"))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["fields"] = list(self.fields)
        return d

    def key(self) -> str:
        """Short hash of every parameter, the Dedalus version and the generator revision."""
        return store.content_key(self.to_dict(), extras.version("dedalus", "rbc"), GENERATOR_REVISION)


# Measured on the project's 2-core machine (OMP_NUM_THREADS=1). Resolution check: the top 10 % of modes stay below
# 1e-3 of the peak in x and z (three decades) at every saved frame, and the frames have no grid-scale ringing.
# cpu (Ra = 1e6 on 224 x 32, the 32 x 32 tiles the cpu benchmark trains on): top-mode tail 3.1e-4 (x) / 9e-5 (z),
# Nu ~ 8.4, kinetic energy 0.046 and steady from t = 28 (the spin-up); at Ra = 2e6 the tail reaches 9e-4 and at 5e6
# 5e-3, so 1e6 is the highest Ra this grid resolves. frame_dt = 0.25 (rms speed 0.30, ~2.4 px per frame) makes
# forecasting a real task: on the last 20 % of time, normalised, repeating the last frame has a 10-step horizon
# RMSE of 0.24 and linear extrapolation 0.24 (at frame_dt = 0.07 they were 0.033 and 0.015, and nothing learned
# beat them). About 1 s of wall per free-fall time: 2.6 min. paper (448 x 64): Ra = 5e6 (at 1e7 about 19 % of
# the frames showed 2-pixel ringing at the bottom wall; tail 2e-5 at 5e6), frame_dt = 0.5, where persistence's
# horizon RMSE measured 0.17 (every 8th frame of a frame_dt = 0.07 run); ~7 s per free-fall time, about 2 h.
# tiny (Ra = 1e5, 16 px per unit): begins in the linear growth phase and convects from t ~ 13.
PRESETS: dict[str, RBCSimParams] = {
    "tiny": RBCSimParams(
        rayleigh=1e5, nx=112, nz=16, resolution=16, frames=110, frame_dt=0.25, spinup=8.0, max_dt=0.1, seed=0
    ),
    "cpu": RBCSimParams(rayleigh=1e6, nx=224, nz=32, resolution=32, frames=500, frame_dt=0.25, spinup=28.0,
                        max_dt=0.1, seed=0),
    "paper": RBCSimParams(rayleigh=5e6, frames=2000, frame_dt=0.5, spinup=28.0, max_dt=0.1, seed=0),
}


def default_dir(root: Path, preset: str) -> Path:
    """``root / "rbc" / "<preset>-<key>"``: the key changes whenever a parameter or the solver version does."""
    if preset not in PRESETS:
        raise KeyError(f"unknown RBC preset {preset!r}; available presets: {', '.join(PRESETS)}")
    return Path(root) / "rbc" / f"{preset}-{PRESETS[preset].key()}"


@dataclass
class SimulationResult:
    """Tiled frames ``(tiles, frames, C, r, r)`` float32 of one run, their layout and solver diagnostics."""

    array: np.ndarray
    layout: FieldLayout
    diagnostics: dict[str, Any] = field(default_factory=dict)


def simulate(params: RBCSimParams, *, snapshot_dir: Path | None = None, progress: bool = False) -> SimulationResult:
    """Run the solver in a child process (``OMP_NUM_THREADS=1``) and return the tiled frames.

    ``snapshot_dir``: also write every frame through Dedalus' own ``add_file_handler`` (tasks ``u`` and, with
    buoyancy, ``b``) to that directory in set files of 16 writes, e.g. to test
    :func:`datamodules.rbc_io.read_dedalus_snapshots`. ``diagnostics`` holds the kinetic-energy and Nusselt
    series, the spectral tails (resolution check), wall time and the rms displacement in pixels per frame.
    """
    total = params.spinup + (params.frames - 1) * params.frame_dt
    with tempfile.TemporaryDirectory(prefix="symbench-rbc-") as work:
        work_dir = Path(work)
        (work_dir / "params.json").write_text(json.dumps(params.to_dict()))
        command = _worker_command(work_dir, snapshot_dir)
        root = Path(__file__).resolve().parents[1]
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(root), str(root / "src"), os.environ.get("PYTHONPATH")])),
        }
        start = time.perf_counter()
        _run_worker(command, env, total, progress)
        wall = time.perf_counter() - start
        array = np.load(work_dir / "frames.npy")
        diagnostics = json.loads((work_dir / "diagnostics.json").read_text())
    diagnostics["wall_time_s"] = round(wall, 2)
    speed = np.sqrt(np.mean(np.sum(array[:, :, :2].astype(np.float64) ** 2, axis=2)))
    diagnostics["rms_velocity"] = float(speed)
    # Pixels travelled per frame at the saved resolution: tile side (length lx / tiles) is `resolution` pixels.
    diagnostics["rms_px_per_frame"] = float(speed * params.frame_dt * params.resolution * params.tiles / params.lx)
    return SimulationResult(array, params.layout, diagnostics)


def _worker_command(work_dir: Path, snapshot_dir: Path | None) -> list[str]:
    command = [sys.executable, "-m", "datamodules.rbc_sim", str(work_dir)]
    return command + ([str(Path(snapshot_dir).resolve())] if snapshot_dir is not None else [])


def _run_worker(command: list[str], env: dict[str, str], total: float, progress: bool) -> None:
    """Run the child, turning its ``@@t <sim_time>`` lines into a tqdm bar over simulated time."""
    from tqdm.auto import tqdm

    tail: deque[str] = deque(maxlen=20)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    bar = tqdm(total=round(total, 6), unit="t", desc="dedalus RBC", disable=not progress, leave=False)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("@@t "):
                bar.update(min(float(line.split()[1]), total) - bar.n)
            elif line.strip():
                tail.append(line.rstrip())
        code = proc.wait()
    finally:
        bar.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if code != 0:
        last = tail[-1] if tail else "no output"
        raise RuntimeError(f"Dedalus RBC solver failed (exit code {code}): {last}\n" + "\n".join(tail))


def generate(params: RBCSimParams, out_dir: Path, progress: bool = True) -> Path:
    """Simulate and write ``(tiles, frames, C, r, r)`` to ``out_dir`` atomically; reuse it when the key matches."""
    return store.generate_once(
        out_dir, params.key(), lambda: simulate(params, progress=progress), params=params.to_dict(),
        solver="dedalus", solver_version=extras.version("dedalus", "rbc"), rayleigh=params.rayleigh,
        prandtl=params.prandtl, frame_dt=params.frame_dt, orientation=ORIENTATION)


# ---------------------------------------------------------------- solver (runs inside the child process only)


def _build_solver(params: RBCSimParams):
    """Dedalus IVP of the Boussinesq equations (module docstring) at rest plus seeded noise.

    Returns ``(solver, u, b, ez, x, z)`` with ``ez`` the upward unit vector field and ``x``, ``z`` the scale-1 grids.
    """
    d3 = extras.require("dedalus.public", "rbc")

    lz = 1.0
    coords = d3.CartesianCoordinates("x", "z")
    dist = d3.Distributor(coords, dtype=np.float64)
    xbasis = d3.RealFourier(coords["x"], size=params.nx, bounds=(0, params.lx), dealias=3 / 2)
    zbasis = d3.ChebyshevT(coords["z"], size=params.nz, bounds=(0, lz), dealias=3 / 2)
    p = dist.Field(name="p", bases=(xbasis, zbasis))
    b = dist.Field(name="b", bases=(xbasis, zbasis))
    u = dist.VectorField(coords, name="u", bases=(xbasis, zbasis))
    tau_p = dist.Field(name="tau_p")
    tau_b1 = dist.Field(name="tau_b1", bases=xbasis)
    tau_b2 = dist.Field(name="tau_b2", bases=xbasis)
    tau_u1 = dist.VectorField(coords, name="tau_u1", bases=xbasis)
    tau_u2 = dist.VectorField(coords, name="tau_u2", bases=xbasis)

    kappa, nu = _diffusivities(params)
    _, ez = coords.unit_vector_fields(dist)
    lift_basis = zbasis.derivative_basis(1)

    def lift(a):
        return d3.Lift(a, lift_basis, -1)

    grad_u = d3.grad(u) + ez * lift(tau_u1)  # first-order reduction: tau_1 enters the gradient
    grad_b = d3.grad(b) + ez * lift(tau_b1)
    problem = d3.IVP([p, b, u, tau_p, tau_b1, tau_b2, tau_u1, tau_u2], namespace=locals())
    problem.add_equation("trace(grad_u) + tau_p = 0")
    problem.add_equation("dt(b) - kappa*div(grad_b) + lift(tau_b2) = - u@grad(b)")
    problem.add_equation("dt(u) - nu*div(grad_u) + grad(p) - b*ez + lift(tau_u2) = - u@grad(u)")
    problem.add_equation("b(z=0) = 1")
    problem.add_equation("u(z=0) = 0")
    problem.add_equation("b(z=lz) = 0")
    problem.add_equation("u(z=lz) = 0")
    problem.add_equation("integ(p) = 0")  # pressure gauge
    solver = problem.build_solver(d3.RK222)

    x, z = dist.local_grids(xbasis, zbasis, scales=1)  # one process: the local grid is the whole grid
    b.fill_random("g", seed=params.seed, distribution="normal", scale=NOISE)
    b["g"] *= z * (lz - z)  # no noise on the walls
    b["g"] += lz - z  # conductive profile: hot bottom, cold top
    return solver, u, b, ez, x, z


def _diffusivities(params: RBCSimParams) -> tuple[float, float]:
    """Free-fall units: kappa = (Ra Pr)^(-1/2), nu = (Ra / Pr)^(-1/2)."""
    return (params.rayleigh * params.prandtl) ** -0.5, (params.rayleigh / params.prandtl) ** -0.5


def _solve(params: RBCSimParams, work_dir: Path, snapshot_dir: Path | None, report: Callable[[float], None]) -> None:
    """Integrate, writing the tiled frames to ``work_dir/frames.npy`` and ``diagnostics.json``."""
    d3 = extras.require("dedalus.public", "rbc")

    solver, u, b, ez, x, z = _build_solver(params)
    kappa, nu = _diffusivities(params)
    cfl = d3.CFL(solver, initial_dt=params.max_dt, cadence=10, safety=0.5, threshold=0.05,
                 max_change=1.5, min_change=0.5, max_dt=params.max_dt)
    cfl.add_velocity(u)
    volume = params.lx * 1.0  # unit height
    ke_op = d3.integ(0.5 * u @ u) / volume
    flux_op = d3.integ((u @ ez) * b) / volume  # Nu = 1 + <w b> / kappa (volume average)

    handler = None
    if snapshot_dir is not None:
        handler = solver.evaluator.add_file_handler(snapshot_dir, group="frames", max_writes=16)
        handler.add_task(u, name="u", layout="g", scales=1)
        if "buoyancy" in params.fields:
            handler.add_task(b, name="b", layout="g", scales=1)

    grid = DedalusGrid(x.ravel(), z.ravel(), params.tiles, params.resolution)
    out = np.lib.format.open_memmap(
        work_dir / "frames.npy", mode="w+", dtype=np.float32,
        shape=(params.tiles, params.frames, params.layout.channels, params.resolution, params.resolution),
    )
    series: list[list[float]] = []
    dt = params.max_dt

    def scalar(op) -> float:
        return float(op.evaluate()["g"].ravel()[0])

    def record() -> None:
        ke = scalar(ke_op)
        if not math.isfinite(ke):
            raise FloatingPointError(f"solver diverged by t={solver.sim_time:.3f}: lower max_dt or rayleigh")
        series.append([round(solver.sim_time, 6), ke, 1 + scalar(flux_op) / kappa])
        report(solver.sim_time)

    def advance(span: float) -> None:
        """Advance by ``span`` in equal steps no longer than the CFL step (exact landing time)."""
        nonlocal dt
        target = solver.sim_time + span
        steps = max(1, math.ceil(span / cfl.compute_timestep() - 1e-9))
        dt = span / steps
        while steps:
            limit = cfl.compute_timestep()
            if limit < dt * (1 - 1e-9):  # flow sped up mid-interval: re-split what is left
                remaining = target - solver.sim_time
                steps = max(1, math.ceil(remaining / limit - 1e-9))
                dt = remaining / steps
            solver.step(dt)
            steps -= 1
        record()

    record()
    chunks = [params.frame_dt] * int(params.spinup // params.frame_dt)
    rest = params.spinup - sum(chunks)
    for span in chunks + ([rest] if rest > 1e-9 * params.frame_dt else []):
        advance(span)
    first_frame = len(series) - 1
    times: list[float] = []
    tails: list[tuple[float, float]] = []
    for k in range(params.frames):
        if k:
            advance(params.frame_dt)
        u.change_scales(1)
        scalars = []
        if "buoyancy" in params.fields:
            b.change_scales(1)
            scalars.append(np.array(b["g"])[None])
        out[:, k] = grid.frames(np.array(u["g"])[None], scalars)[:, 0]
        if handler is not None:
            solver.evaluate_handlers([handler], dt=dt)
        times.append(solver.sim_time)
        tails.append(_tails(np.array(u["c"])))
    out.flush()
    del out
    saved = np.array(series[first_frame:])
    diagnostics = {
        "frame_times": [times[0], times[-1]],
        "kinetic_energy_series": series,  # [t, volume-mean 0.5|u|^2, Nusselt] every frame_dt from the start
        "kinetic_energy_mean": float(saved[:, 1].mean()),
        "nusselt_mean": float(saved[:, 2].mean()),
        "kappa": kappa,
        "nu": nu,
        "iterations": solver.iteration,
        # Resolution check per saved frame: largest |coefficient| of u among the top 10 % of modes over the
        # largest one, along x and z; the worst frame and the median.
        "spectral_tail_max": np.max(tails, axis=0).tolist(),
        "spectral_tail_median": np.median(tails, axis=0).tolist(),
    }
    (work_dir / "diagnostics.json").write_text(json.dumps(diagnostics))


def _tails(coeffs: np.ndarray) -> tuple[float, float]:
    """Top-10 %-of-modes to peak ratio of ``|coeffs|`` (component, kx, Chebyshev degree) along x and along z."""
    mag = np.abs(coeffs)
    out = []
    for spectrum in (mag.max(axis=(0, 2)), mag.max(axis=(0, 1))):
        out.append(float(spectrum[-max(1, spectrum.size // 10):].max() / spectrum.max()))
    return out[0], out[1]


def _main(argv: list[str]) -> None:
    work_dir = Path(argv[0])
    snapshot_dir = Path(argv[1]) if len(argv) > 1 else None
    params = RBCSimParams(**json.loads((work_dir / "params.json").read_text()))
    _solve(params, work_dir, snapshot_dir, lambda t: print(f"@@t {t:.6f}", flush=True))


if __name__ == "__main__":
    _main(sys.argv[1:])
