"""Forced 3D turbulence from fluidsim's pseudo-spectral ``ns3d`` solver, for 3D super-resolution (slides: isotropic
turbulence and channel flow, low-resolution inputs downsampled by 4).

Two flows in a periodic cube of side ``L = 2 pi`` (``n^3`` grid points):

* ``isotropic``: forced homogeneous isotropic turbulence. fluidsim's ``tcrandom`` forcing (a time-correlated random
  solenoidal force on the shell ``nkmin_forcing <= |k| <= nkmax_forcing`` of wavenumbers, in units of
  ``2 pi / L = 1``, normalised to inject energy at ``forcing_rate``) on all three components. Its statistics are
  invariant under the whole octahedral group ``O_h`` (48 elements).
* ``sheared``: the same random forcing plus a steady body force ``F sin(2 pi z / L) e_x`` (``F = shear_forcing``;
  ``z`` measured from the grid centre in the suite's convention) that drives a mean shear flow
  ``<v_x>(z) ~ U sin(2 pi z / L)`` -- 3D Kolmogorov flow on top of isotropic forcing, the stand-in for channel
  flow (a streamwise mean velocity varying across one axis). With the default ``F = 2``: ``U ~ 2.5-3.8`` against
  a fluctuation rms of 1.5-1.8, and ``<v_x^2>`` is 3-6 times ``<v_z^2>`` (measured, tiny and cpu presets). It
  breaks ``O_h`` down to the signed permutations ``R = diag(a, b, c)`` with ``a = c``: :data:`SHEARED_SUBGROUP` =
  ``{I, mirror y -> -y, half turn about y, inversion}``, the point group ``C2h`` (``2/m``) with its two-fold axis
  along the spanwise direction y. (None of
  the z-axis subgroups named in :mod:`symbench.symmetry.octahedral` -- C4, D4, C4v, D4h -- contains the
  symmetry-broken statistics: a quarter turn about z turns the streamwise x into y, and the mirror ``z -> -z``
  reverses the mean flow.) The mean profile is odd about the grid centre, which is what keeps the half turn about
  y and the inversion (both ``z -> -z`` together with ``v_x -> -v_x``) in the group.

Solver (fluidsim 26.10, ``fluidsim.solvers.ns3d``): RK4 with exact integrating factor for the viscosity ``nu_2``,
2/3 dealiasing; the time step is fixed inside every frame interval (so the frames fall exactly at
``spinup + k frame_dt``) and chosen at the start of each interval from the CFL number ``cfl`` (fluidsim's own
RK4 default is 1.0; :func:`simulate` uses 0.5). The viscosity is ``viscosity`` or, when that is ``None``, set from
the grid so that ``k_max eta = kmax_eta`` with the Kolmogorov scale ``eta = (nu^3 / forcing_rate)^(1/4)`` and
``k_max = n / 3`` (the dealiasing cutoff): the presets then only change sizes, and the Reynolds number grows with
the resolution. The dissipation measured on the frames (``nu <|curl v|^2>``) is about 3 times ``forcing_rate``
for the isotropic flow (fluidsim's ``tcrandom`` normalisation injects more than its nominal rate here; the shear
force adds as much again), so the measured ``k_max eta`` (in the diagnostics) is about 0.75 times the nominal
one: with the default 1.3 the isotropic runs measure ``k_max eta ~ 0.99`` and the sheared ones ``~ 0.8-0.85``.
Measured Taylor Reynolds numbers: ``Re_lambda ~ 6`` (tiny, 16^3), 16 (cpu isotropic, 32^3), 22 (cpu sheared).
fluidsim computes its integrating factors ``exp(-nu k^2 dt)`` once when ``USE_CFL`` is off; :func:`_set_dt`
recomputes them whenever the step changes (otherwise the viscous damping is that of fluidsim's ``deltat0``).

Randomness and seeding: the initial condition is our own (a seeded ``numpy.random.Generator`` draws a solenoidal
random field with energy at ``|k| <= 3``, rms velocity about 1; for ``sheared`` plus the mean profile that the
force maintains, so the spin-up is short). fluidsim's ``tcrandom`` forcing draws its random arrays from numpy's
*legacy global* RNG (``np.random.seed`` / ``randint`` / ``random``); :func:`run_fluidsim` seeds that global RNG
with a per-run seed derived from ``(seed, run index)`` right before the solver is built and restores the caller's
global RNG state afterwards. fluidsim's own ``noise`` initial condition is not used: it reseeds the global RNG with
a constant 42, which would give every run the same forcing. The same parameters give the same frames bit for bit.

Axis convention (the suite's, :mod:`symbench.symmetry.octahedral`): fluidsim stores a 3D field as ``(nz, ny, nx)``
with ``x, y, z`` increasing with the index (``oper.get_XYZ_loc``). Frames are ``(3, D, H, W)`` with channels
``(v_x, v_y, v_z)``, axis ``D`` = fluidsim's z (index towards +z, unchanged), ``W`` = x (unchanged) and ``H`` =
fluidsim's y reversed (row ``i`` holds fluidsim's ``y`` index ``n - 1 - i``, so rows run towards -y). Reversing the
storage order of the rows does not change the physical y axis, so ``v_y`` keeps its sign (negating it would mirror
the velocity without mirroring the coordinates and the field would no longer be divergence-free -- the tests check
the divergence). :func:`from_fluidsim` is this conversion; :func:`datamodules.turb3d.read_fluidsim_run` uses it on
fluidsim's own ``state_phys_t*.nc`` files.

Saved: ``(n_traj, frames, 3, n, n, n)`` float32, one field ``velocity:vector`` (ndim 3), frames
``spinup + k frame_dt`` for ``k = 0 .. frames - 1``, time in units where ``L = 2 pi`` and ``forcing_rate = 1``
(a large-eddy turnover time is about 2).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from datamodules import store
from symbench import extras
from symbench.fields import FieldLayout
from symbench.symmetry.octahedral import ROT_Y90, Octahedral, subgroup_closure

# Bump when the generator's output changes for unchanged parameters: invalidates datasets on disk.
GENERATOR_REVISION = 1
BOX = 2 * math.pi
FLOWS = ("isotropic", "sheared")
LAYOUT = FieldLayout.of("velocity:vector", ndim=3)
ORIENTATION = ("(D, H, W) = (z, y, x); rows run towards -y (fluidsim's y index reversed), depth towards +z; "
               "channels (vx, vy, vz); periodic box of side 2 pi")

MIRROR_Y = Octahedral(((1, 0, 0), (0, -1, 0), (0, 0, 1)))
"""``y -> -y`` (the spanwise mirror of the sheared flow)."""
SHEARED_SUBGROUP = subgroup_closure([MIRROR_Y, ROT_Y90 @ ROT_Y90])
"""The 4 elements of ``O_h`` that leave the sheared flow's statistics invariant: ``C2h`` about y (see the module
docstring)."""


@dataclass(frozen=True)
class Turb3DSimParams:
    """Everything that determines a generated 3D turbulence dataset (box side 2 pi)."""

    n: int = 32  # grid points per side
    n_traj: int = 4  # independent runs (different seeds)
    frames: int = 32  # saved frames per run, after the spin-up
    frame_dt: float = 0.25  # time between saved frames
    spinup: float = 8.0  # time simulated before the first saved frame
    flow: str = "isotropic"  # "isotropic" or "sheared"
    forcing_rate: float = 1.0  # energy injection rate of the random forcing
    nkmin_forcing: int = 2  # random forcing on nkmin <= |k| <= nkmax (units 2 pi / L)
    nkmax_forcing: int = 3
    shear_forcing: float = 2.0  # amplitude F of the steady force F sin(2 pi z / L) e_x ("sheared" only)
    viscosity: float | None = None  # nu; None: from kmax_eta
    kmax_eta: float = 1.3  # nominal k_max eta (eta from forcing_rate); measured k_max eta is about 0.75x this
    cfl: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.flow not in FLOWS:
            raise ValueError(f"flow must be one of {FLOWS}, got {self.flow!r}")
        if self.n < 8 or self.n % 2 or self.n_traj < 1 or self.frames < 1:
            raise ValueError(f"need an even n >= 8, n_traj >= 1 and frames >= 1; got {self.n}, {self.n_traj}, "
                             f"{self.frames}")
        if self.frame_dt <= 0 or self.spinup < 0 or self.forcing_rate <= 0 or not 0 < self.cfl <= 1:
            raise ValueError("need frame_dt > 0, spinup >= 0, forcing_rate > 0 and 0 < cfl <= 1")
        if not 1 <= self.nkmin_forcing <= self.nkmax_forcing or self.nkmax_forcing > self.n // 3:
            raise ValueError(f"need 1 <= nkmin_forcing <= nkmax_forcing <= n // 3 (inside the dealiased range); got "
                             f"{self.nkmin_forcing}, {self.nkmax_forcing} for n = {self.n}")
        if (self.viscosity is not None and self.viscosity <= 0) or self.kmax_eta <= 0:
            raise ValueError("viscosity (when given) and kmax_eta must be positive")

    @property
    def layout(self) -> FieldLayout:
        return LAYOUT

    @property
    def nu(self) -> float:
        """The kinematic viscosity: ``viscosity`` or the one with ``k_max eta = kmax_eta`` (``k_max = n / 3``)."""
        if self.viscosity is not None:
            return float(self.viscosity)
        eta = self.kmax_eta / (self.n / 3.0)
        return (self.forcing_rate * eta**4) ** (1.0 / 3.0)

    def times(self) -> np.ndarray:
        return self.spinup + self.frame_dt * np.arange(self.frames)

    def run_seed(self, run: int) -> int:
        """Seed of run ``run`` (used for our initial condition and for fluidsim's global-RNG forcing)."""
        return int(np.random.SeedSequence([self.seed, run]).generate_state(1)[0] & 0x7FFFFFFF)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def key(self) -> str:
        """Short hash of every parameter and the generator revision."""
        return store.content_key(self.to_dict(), GENERATOR_REVISION)


# Generation incl. writing, measured on the project's 2-core machine (OMP_NUM_THREADS=1, fluidsim 26.10, pyfftw),
# isotropic / sheared: tiny 2.8 s (of which ~2 s is importing and JIT-loading fluidsim) / 1.3 s; cpu 50 s / 78 s
# (4 runs of 14 time units; dt ~ 0.006-0.01 from the CFL limit). paper (64^3, nu = 0.024) was not generated here:
# a 64^3 run costs >= 22 s per time unit (measured over its first 1.25 units, dt 0.005 -> 0.003), so about 10 min
# per isotropic run of 26 units and roughly 1.5 h (isotropic) / 2 h (sheared) for the 8 runs.
# frame_dt = 0.25 is about an eighth of a large-eddy turnover (L_f / u_rms ~ 2.5 / 1.3).
PRESETS: dict[str, Turb3DSimParams] = {
    "tiny": Turb3DSimParams(n=16, n_traj=2, frames=8, frame_dt=0.25, spinup=3.0),
    "cpu": Turb3DSimParams(n=32, n_traj=4, frames=32, frame_dt=0.25, spinup=6.0),
    "paper": Turb3DSimParams(n=64, n_traj=8, frames=64, frame_dt=0.25, spinup=10.0),
}


def preset_params(preset: str, flow: str = "isotropic") -> Turb3DSimParams:
    """The preset's parameters for ``flow``."""
    if preset not in PRESETS:
        raise KeyError(f"unknown turb3d preset {preset!r}; available presets: {', '.join(PRESETS)}")
    if flow not in FLOWS:
        raise ValueError(f"flow must be one of {FLOWS}, got {flow!r}")
    from dataclasses import replace

    return replace(PRESETS[preset], flow=flow)


def default_dir(root: Path, preset: str, flow: str = "isotropic") -> Path:
    """``root / "turb3d" / "<preset>-<flow>-<key>"``: the key changes whenever a parameter or the revision does."""
    return Path(root) / "turb3d" / f"{preset}-{flow}-{preset_params(preset, flow).key()}"


# ----------------------------------------------------------------------------------------------- conversion


def from_fluidsim(vx: np.ndarray, vy: np.ndarray, vz: np.ndarray) -> np.ndarray:
    """fluidsim's ``(nz, ny, nx)`` components -> one suite frame ``(3, D, H, W)`` float32 (rows reversed)."""
    v = np.stack([np.asarray(vx), np.asarray(vy), np.asarray(vz)])
    if v.ndim != 4:
        raise ValueError(f"expected three (nz, ny, nx) arrays, got shapes {np.shape(vx)}, {np.shape(vy)}, "
                         f"{np.shape(vz)}")
    return np.ascontiguousarray(v[:, :, ::-1, :], dtype=np.float32)


def to_fluidsim(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`from_fluidsim`: ``(3, D, H, W)`` -> ``(vx, vy, vz)`` each ``(nz, ny, nx)``."""
    v = np.asarray(frame)[:, :, ::-1, :]
    return v[0], v[1], v[2]


def centred_z(n: int) -> np.ndarray:
    """Depth coordinate of every index measured from the grid centre, ``(k - (n - 1) / 2) L / n``."""
    return (np.arange(n) - (n - 1) / 2) * (BOX / n)


def shear_profile(n: int) -> np.ndarray:
    """``sin(2 pi z / L)`` on the depth axis (odd about the grid centre): the shape of the shear force and flow."""
    return np.sin(2 * np.pi * centred_z(n) / BOX)


# ------------------------------------------------------------------------------------------- fluidsim setup


def fluidsim_environment() -> None:
    """Keep fluidsim/fluiddyn out of the home directory and quiet. They read ``FLUIDSIM_PATH`` and
    ``FLUIDDYN_PATH_WARNING`` when first imported (fluiddyn creates ``~/.fluiddyn`` otherwise), so this must run
    before anything imports fluidsim; existing settings are kept."""
    base = Path(tempfile.gettempdir()) / "symbench-fluidsim"
    os.environ.setdefault("FLUIDSIM_PATH", str(base / "runs"))
    os.environ.setdefault("FLUIDDYN_PATH_WARNING", str(base / "warnings"))
    for name in ("fluidsim", "fluiddyn", "fluidfft", "transonic"):
        logging.getLogger(name).setLevel(logging.ERROR)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """fluidsim prints its progress with ``print``: swallow stdout and its warnings."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _simul_class() -> Any:
    fluidsim_environment()
    with _quiet():
        return extras.require("fluidsim.solvers.ns3d.solver", "turb3d").Simul


def fluidsim_version() -> str:
    _simul_class()
    return str(extras.require("fluidsim", "turb3d").__version__)


def make_fluidsim_params(params: Turb3DSimParams, out_root: str | Path, save: bool = False) -> Any:
    """fluidsim ``ns3d`` parameters of one run of ``params`` (output under ``out_root``; files only if ``save``)."""
    simul = _simul_class()
    p = simul.create_default_params()
    p.oper.nx = p.oper.ny = p.oper.nz = params.n
    p.oper.Lx = p.oper.Ly = p.oper.Lz = BOX
    p.nu_2 = params.nu
    p.forcing.enable = True
    p.forcing.type = "tcrandom"
    p.forcing.key_forced = ["vx_fft", "vy_fft", "vz_fft"]
    p.forcing.nkmin_forcing = params.nkmin_forcing
    p.forcing.nkmax_forcing = params.nkmax_forcing
    p.forcing.forcing_rate = params.forcing_rate
    p.init_fields.type = "in_script"
    p.time_stepping.type_time_scheme = "RK4"
    p.time_stepping.USE_CFL = False
    p.time_stepping.USE_T_END = False
    p.time_stepping.it_end = 0
    p.short_name_type_run = f"symbench_{params.flow}"
    p.NEW_DIR_RESULTS = True
    p.output.sub_directory = str(Path(out_root).absolute())  # absolute: replaces $FLUIDSIM_PATH as the base
    p.output.HAS_TO_SAVE = bool(save)
    p.output.ONLINE_PLOT_OK = False
    p.output.periods_print.print_stdout = 0
    for key in list(p.output.periods_save._key_attribs):
        setattr(p.output.periods_save, key, 0)  # phys fields are saved explicitly at the frame times
    return p


def initial_velocity(params: Turb3DSimParams, run: int) -> np.ndarray:
    """Seeded solenoidal random field ``(3, nz, ny, nx)`` in fluidsim's order, rms about 1 per component, energy at
    ``|k| <= 3``; for ``sheared`` plus the expected mean profile ``U sin(2 pi z / L) e_x``."""
    n = params.n
    rng = np.random.default_rng(params.run_seed(run))
    k1 = np.fft.fftfreq(n, 1.0 / n)
    kz, ky, kx = np.meshgrid(k1, k1, k1, indexing="ij")
    k2 = kx**2 + ky**2 + kz**2
    noise = np.fft.fftn(rng.standard_normal((3, n, n, n)), axes=(1, 2, 3))
    noise *= np.exp(-k2 / (2 * 1.5**2))
    div = (kx * noise[0] + ky * noise[1] + kz * noise[2]) / np.where(k2 == 0, 1.0, k2)
    for c, kc in enumerate((kx, ky, kz)):
        noise[c] -= kc * div
    noise[:, 0, 0, 0] = 0.0
    v = np.fft.ifftn(noise, axes=(1, 2, 3)).real
    v /= np.sqrt(np.mean(v**2))
    if params.flow == "sheared":
        v[0] += _shear_amplitude_guess(params) * _fluidsim_profile(n)[:, None, None]
    return v


def _fluidsim_profile(n: int) -> np.ndarray:
    """:func:`shear_profile` on fluidsim's z index (the depth axis is not reversed by the conversion)."""
    return shear_profile(n)


def _shear_amplitude_guess(params: Turb3DSimParams) -> float:
    """Mean-flow amplitude the shear force roughly sustains: ``F / ((nu + nu_t) k^2)`` with an eddy viscosity
    ``nu_t ~ 0.5`` (measured ``F / U - nu`` = 0.4-0.7 at 16^3-32^3); only a starting point for the spin-up."""
    return params.shear_forcing / (params.nu + 0.5)


class _ShearForcing:
    """fluidsim's forcing object with the steady shear force added to whatever it returns."""

    def __init__(self, sim: Any, amplitude: float):
        self._get = sim.forcing.get_forcing
        n = sim.params.oper.nz
        fx = amplitude * np.broadcast_to(_fluidsim_profile(n)[:, None, None], sim.oper.shapeX_loc).copy()
        zero = np.zeros_like(fx)
        self._force = sim.state.state_spect.copy()
        self._force[:] = 0
        for key, f in (("vx_fft", fx), ("vy_fft", zero), ("vz_fft", zero)):
            self._force.set_var(key, sim.oper.fft(f))

    def __call__(self) -> Any:
        return self._get() + self._force


@contextlib.contextmanager
def _global_numpy_seed(seed: int) -> Iterator[None]:
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _cfl_substeps(sim: Any, interval: float, cfl: float) -> tuple[int, float]:
    """Fewest equal steps over ``interval`` with ``dt sum_i max|v_i| / dx <= cfl`` at the current state."""
    dx = BOX / sim.params.oper.nx
    rate = sum(float(np.abs(sim.oper.ifft(sim.state.get_var(k))).max()) for k in ("vx_fft", "vy_fft", "vz_fft")) / dx
    n_sub = max(1, math.ceil(interval * rate / cfl - 1e-9))
    return n_sub, interval / n_sub


def _set_dt(sim: Any, dt: float) -> None:
    """Set fluidsim's time step. Without ``USE_CFL`` fluidsim computes the integrating factors
    ``exp(-nu k^2 dt)`` once, for ``deltat0``, so they are recomputed here whenever the step changes."""
    ts = sim.time_stepping
    ts.deltat = dt
    coefs = ts.exact_linear_coefs
    if coefs.dt_old != dt:
        coefs.compute(dt)


def _frame(sim: Any) -> np.ndarray:
    ifft = sim.oper.ifft
    return from_fluidsim(*(ifft(sim.state.get_var(k)) for k in ("vx_fft", "vy_fft", "vz_fft")))


def run_fluidsim(params: Turb3DSimParams, run: int = 0, save_dir: str | Path | None = None) -> dict[str, Any]:
    """Run one trajectory with fluidsim; returns ``{"frames": (T, 3, n, n, n) float32, "times", "dt", "path_run"}``.

    With ``save_dir``, fluidsim writes its own ``state_phys_t*.nc`` file at every saved frame (through
    ``sim.output.phys_fields.save()``) into a run directory under ``save_dir`` (``path_run``); otherwise nothing
    is written (fluidsim's output root is still a temporary directory).
    """
    simul = _simul_class()
    with contextlib.ExitStack() as stack:
        out_root = save_dir if save_dir is not None else stack.enter_context(
            tempfile.TemporaryDirectory(prefix="symbench-fluidsim-"))
        p = make_fluidsim_params(params, out_root, save=save_dir is not None)
        stack.enter_context(_quiet())
        with _global_numpy_seed(params.run_seed(run)):
            sim = simul(p)
            v0 = [sim.oper.fft(np.ascontiguousarray(c)) for c in initial_velocity(params, run)]
            sim.oper.project_perpk3d(*v0)
            sim.oper.dealiasing(*v0)
            sim.state.init_statespect_from(vx_fft=v0[0], vy_fft=v0[1], vz_fft=v0[2])
            sim.state.statephys_from_statespect()  # the first RK stage reads state_phys
            if params.flow == "sheared":
                sim.forcing.get_forcing = _ShearForcing(sim, params.shear_forcing)
            ts = sim.time_stepping
            # fluidsim computes the (normalised, dt-dependent) forcing in prepare_main_loop only when it saves
            # files: compute it here, with the first step's dt, so that runs with and without files are identical
            _set_dt(sim, _cfl_substeps(sim, params.frame_dt, params.cfl)[1])
            sim.forcing.compute()
            ts.prepare_main_loop()

            def advance(interval: float) -> tuple[int, float]:
                n_sub, dt = _cfl_substeps(sim, interval, params.cfl)
                _set_dt(sim, dt)
                sim.params.time_stepping.it_end = ts.it + n_sub
                ts.main_loop()
                return n_sub, dt

            steps_spin = math.ceil(params.spinup / params.frame_dt - 1e-9) if params.spinup > 0 else 0
            dts: list[float] = []
            for _ in range(steps_spin):
                dts.append(advance(params.spinup / steps_spin)[1])
            frames = np.empty((params.frames, 3, params.n, params.n, params.n), dtype=np.float32)
            for k in range(params.frames):
                if k:
                    dts.append(advance(params.frame_dt)[1])
                ts.t = float(params.times()[k])  # exact frame time (removes round-off of the summed steps)
                frames[k] = _frame(sim)
                if save_dir is not None:
                    sim.output.phys_fields.save()
            path_run = str(sim.output.path_run)
            if save_dir is not None:
                sim.output.close_files()
    if not np.isfinite(frames).all():
        raise FloatingPointError(f"fluidsim run {run} of {params} blew up (NaN/inf); lower cfl or raise viscosity")
    return {"frames": frames, "times": params.times(), "dt": dts, "path_run": path_run}


# ------------------------------------------------------------------------------------------------ diagnostics


def kinetic_energy(array: np.ndarray) -> np.ndarray:
    """``0.5 <|v|^2>`` over the grid of every frame: ``(..., 3, D, H, W)`` -> ``(...)`` (float64)."""
    a = np.asarray(array, dtype=np.float64)
    return 0.5 * (a**2).sum(axis=-4).mean(axis=(-3, -2, -1))


def spectral_gradients(frame: np.ndarray) -> np.ndarray:
    """``d v_c / d a`` of a frame ``(3, D, H, W)`` on the box of side 2 pi in the suite's convention: returns
    ``(3 components, 3 directions (x, y, z), D, H, W)``; ``d/dy`` is minus the derivative along the rows."""
    v = np.asarray(frame, dtype=np.float64)
    n_d, n_h, n_w = v.shape[-3:]
    kz = np.fft.fftfreq(n_d, 1.0 / n_d)[:, None, None] * (2 * np.pi / BOX)
    ky = -np.fft.fftfreq(n_h, 1.0 / n_h)[None, :, None] * (2 * np.pi / BOX)  # rows run towards -y
    kx = np.fft.fftfreq(n_w, 1.0 / n_w)[None, None, :] * (2 * np.pi / BOX)
    vh = np.fft.fftn(v, axes=(-3, -2, -1))
    out = np.empty((3, 3, n_d, n_h, n_w))
    for a, k in enumerate((kx, ky, kz)):
        d = 1j * k * vh
        if k.shape[-1] == n_w and n_w % 2 == 0:
            d[..., n_w // 2] = 0  # Nyquist derivatives are undefined on an even grid
        if k.shape[-2] == n_h and n_h % 2 == 0:
            d[..., n_h // 2, :] = 0
        if k.shape[-3] == n_d and n_d % 2 == 0:
            d[..., n_d // 2, :, :] = 0
        out[:, a] = np.fft.ifftn(d, axes=(-3, -2, -1)).real
    return out


def divergence_ratio(frame: np.ndarray) -> float:
    """``rms(div v) / rms(grad v)`` of one frame (spectral derivatives): about round-off for fluidsim's fields."""
    g = spectral_gradients(frame)
    div = g[0, 0] + g[1, 1] + g[2, 2]
    return float(np.sqrt(np.mean(div**2)) / np.sqrt(np.mean(g**2) * 3))


def run_statistics(frames: np.ndarray, nu: float, forcing_scale: float) -> dict[str, float]:
    """Energy, rms velocity, dissipation, Taylor scale and Reynolds numbers of one run ``(T, 3, D, H, W)``."""
    f = np.asarray(frames, dtype=np.float64)
    fluct = f - f.mean(axis=(0, 3, 4), keepdims=True)  # minus the time- and plane-mean profile <v>(z)
    u_rms = float(np.sqrt((fluct**2).mean() ))
    enstrophy = []
    for frame in f[:: max(1, len(f) // 4)]:
        g = spectral_gradients(frame)
        w = np.stack([g[2, 1] - g[1, 2], g[0, 2] - g[2, 0], g[1, 0] - g[0, 1]])
        enstrophy.append(float((w**2).sum(axis=0).mean()))
    eps = nu * float(np.mean(enstrophy))
    lam = math.sqrt(15 * nu * u_rms**2 / eps) if eps > 0 else float("nan")
    eta = (nu**3 / eps) ** 0.25 if eps > 0 else float("nan")
    n = f.shape[-1]
    return {
        "kinetic_energy_mean": float(kinetic_energy(f).mean()),
        "u_rms_fluctuation": u_rms,
        "dissipation": eps,
        "taylor_microscale": lam,
        "re_lambda": u_rms * lam / nu,
        "re_forcing_scale": u_rms * forcing_scale / nu,
        "kmax_eta": (n / 3) * eta,
    }


@dataclass
class SimulationResult:
    """Frames ``(n_traj, frames, 3, n, n, n)`` float32, their layout and per-run facts."""

    array: np.ndarray
    layout: FieldLayout
    diagnostics: dict[str, Any] = field(default_factory=dict)


def simulate(params: Turb3DSimParams, progress: bool = False) -> SimulationResult:
    """Run the ``n_traj`` independent fluidsim simulations of ``params`` one after the other."""
    from tqdm.auto import tqdm

    out = np.empty((params.n_traj, params.frames, 3, params.n, params.n, params.n), dtype=np.float32)
    runs: list[dict[str, Any]] = []
    start = time.perf_counter()
    forcing_scale = BOX / (0.5 * (params.nkmin_forcing + params.nkmax_forcing))
    for i in tqdm(range(params.n_traj), desc=f"turb3d {params.flow} {params.n}^3", unit="run",
                  disable=not progress, leave=False):
        t0 = time.perf_counter()
        res = run_fluidsim(params, i)
        out[i] = res["frames"]
        stats = run_statistics(res["frames"], params.nu, forcing_scale)
        stats["wall_time_s"] = round(time.perf_counter() - t0, 3)
        stats["seed"] = params.run_seed(i)
        stats["dt_min"], stats["dt_max"] = float(min(res["dt"], default=0)), float(max(res["dt"], default=0))
        stats["energy_first_last"] = [float(kinetic_energy(res["frames"][0])), float(kinetic_energy(res["frames"][-1]))]
        if params.flow == "sheared":
            profile = res["frames"][:, 0].mean(axis=(0, 2, 3))
            s = shear_profile(params.n)
            stats["mean_shear_amplitude"] = float(profile @ s / (s @ s))
        runs.append(stats)
    diagnostics = {
        "nu": params.nu,
        "fluidsim": fluidsim_version(),
        "times": params.times().tolist(),
        "runs": runs,
        "max_divergence_ratio": max(divergence_ratio(out[i, -1]) for i in range(params.n_traj)),
        "wall_time_s": round(time.perf_counter() - start, 3),
    }
    return SimulationResult(out, params.layout, diagnostics)


def generate(params: Turb3DSimParams, out_dir: Path, progress: bool = True) -> Path:
    """Simulate and write ``(n_traj, frames, 3, n, n, n)`` to ``out_dir`` atomically; reuse it when the key matches."""
    return store.generate_once(
        out_dir, params.key(), lambda: simulate(params, progress=progress), params=params.to_dict(),
        solver="fluidsim ns3d (pseudo-spectral, RK4, tcrandom forcing)", solver_version=GENERATOR_REVISION,
        frame_dt=params.frame_dt, orientation=ORIENTATION)


def generate_preset(preset: str, root: Path, progress: bool = True, flow: str = "isotropic") -> Path:
    """Run (or reuse) the fluidsim simulations of ``preset`` for ``flow``; returns the data directory."""
    return generate(preset_params(preset, flow), default_dir(Path(root), preset, flow), progress=progress)
