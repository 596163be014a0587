"""Smoke plumes whose symmetry breaking grows from exact symmetry to strong breaking, for two families and two kinds
of breaking each (issue 22 item 3; the graded sets of ICML 2022 sec. 5.2 generalised).

Every set is one batched PhiFlow call of :mod:`datamodules.smoke_sim` (same solver) with 4 inflow sites ``j = 0..3``
related by the family's group, times ``strengths`` buoyancy strengths ``beta_s`` in ``linspace(1, 2) beta``. Level
``i`` of ``levels`` has breaking strength

    eps_i = max_eps * i / (levels - 1),   i = 0 .. levels - 1   (level 0: exact symmetry).

Families (the group ``G`` and the sites):

* ``rotation`` -- the C4 sites of :mod:`datamodules.smoke_levels` in the closed box: site ``j`` is site 0 (bottom,
  buoyancy direction ``e_0 = +y``) turned by ``j`` quarter turns counter-clockwise about the box centre, with
  buoyancy direction ``e_j = R^j e_0``.
* ``translation`` -- 4 sites at the same height, ``x_j = n/8 + j n/4``, buoyancy ``+y``, in a box that is periodic
  along x (top and bottom walls closed): site ``j`` is site 0 shifted by ``j n / 4`` cells, a symmetry of the box.
  (The smoke-translation benchmark's box has closed side walls, which break translation at every strength; the
  periodic box makes level 0 exactly symmetric.)

Kinds (the force per unit smoke density ``s`` of simulation ``(s, j)``, and the buoyancy factor ``b(x)`` of the box;
the solver adds ``dt s b(x) F`` to the velocity every step):

* ``buoyancy`` (both families; the history *can* reveal it) -- ``F_{s,j} = beta_s (1 + eps d_j) e_j``, ``b = 1``,
  with the per-site offsets ``d = (0, 0.3, -0.3, 0.6)`` of :data:`datamodules.smoke_levels.OFFSETS`. For rotation this
  is exactly the levels generator. Brought back to site 0, the simulations of one strength are the *same* system up
  to one number per simulation, the buoyancy factor ``1 + eps d_j``, and every frame carries it: the plume's
  velocity per unit density grows with it. A G-equivariant model that reads that number off its input (as it reads
  the buoyancy strength ``beta_s``, which also varies across simulations) can fit every simulation, so the
  one-step map on the data stays equivariant.
* ``wind`` (rotation; the history *cannot* reveal it) -- ``F_{s,j} = beta_s e_j + eps beta W``, ``W = (0.5, 0)``:
  the smoke is also pushed towards +x, the same vector for every site (a tilted gravity; a force on the fluid that
  does not depend on the smoke would be a pure gradient in the closed box and be removed by the pressure
  projection). Brought back to site 0, site ``j`` feels ``R^-j W``: a side wind for sites 0 and 2, a head wind for
  site 1, a tail wind for site 3.
* ``field`` (translation; the history *cannot* reveal it) -- ``F_{s,j} = beta_s e_y`` and
  ``b(x) = 1 + eps A sin(2 pi x / n)``, ``A = 0.5``: a buoyancy field fixed in the box, which each site's plume meets
  at its own phase. Brought back to site 0, site ``j`` rises through ``b`` shifted by ``-j n / 4``.

What "cannot reveal" means here: in ``wind`` and ``field`` the breaking is not a number of the simulation but a
property of the lab frame -- an absolute direction (``W``) or absolute positions (``b(x)``) -- and a G-equivariant
model is by construction blind to absolute direction and position: at a given state it must predict the same
increment, turned or shifted, at every site, whereas the data's increment carries ``eps dt s`` times a lab-frame
term that does not turn or move with the site. Its input frames show that term only through its past effect on the
flow (a tilt, an uneven rise), never the term itself. The study (:mod:`symbench.studies.strength`) measures whether
this is what separates the two kinds.

Data equivariance error of a set, as in sec. 5.2 and :mod:`datamodules.smoke_levels`: every site-``j`` simulation is
brought back to site 0 with the exact grid action (rotation: ``rot90(., -j)`` of :func:`symbench.symmetry.rot90`;
translation: a cyclic shift by ``-j n / 4`` cells along x, vector components unchanged) and compared with the
site-0 simulation of the same strength,

    E_data = mean_{s, j = 1..3} mean |g_j^-1 x_{s,j} - x_{s,0}|      (L1 over frames, pixels, channels).

Storage: ``<root>/smoke-strength/<preset>-<family>-<kind>-<key>/level-<i>/`` in the :mod:`datamodules.store` format
(one atomic write per level; simulations strength-major, then site), reused when the key matches.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from datamodules import smoke_levels
from datamodules import store
from datamodules.smoke_levels import LAYOUT, OFFSETS, SITES, PlumeSets, level_dir, load_level  # noqa: F401
from datamodules.smoke_sim import GENERATOR_REVISION, BoxForcing, SimConfig, SmokeSimParams, sim_configs
from symbench import extras

KINDS: dict[str, tuple[str, ...]] = {"rotation": ("buoyancy", "wind"), "translation": ("buoyancy", "field")}
REVEALED = "buoyancy"  # the kind the history reveals; the others are fixed in the lab frame
WIND = (0.5, 0.0)  # W: lab-frame push on the smoke per unit eps and base buoyancy (rotation, kind wind)
WAVE = 0.5  # A: amplitude of the lab-frame buoyancy wave per unit eps (translation, kind field)
STRENGTH_REVISION = 1


def check_kind(family: str, kind: str) -> None:
    """One-line ``ValueError`` for a family or kind that does not exist."""
    if family not in KINDS:
        raise ValueError(f"unknown family {family!r}; choose from {', '.join(KINDS)}")
    if kind not in KINDS[family]:
        raise ValueError(f"unknown kind {kind!r} for family {family}; choose from {', '.join(KINDS[family])}")


@dataclass(frozen=True)
class StrengthParams(PlumeSets):
    """Everything that determines the graded sets of one family and kind (grid units; module docstring): the shared
    sizes and the family and kind. Implements :class:`datamodules.smoke_levels.GradedSets`."""

    levels: int = 5
    strengths: int = 1
    family: str = "rotation"
    kind: str = REVEALED

    def __post_init__(self) -> None:
        check_kind(self.family, self.kind)
        if self.levels < 2 or self.strengths < 1:
            raise ValueError(f"need levels >= 2 and strengths >= 1, got {self.levels}, {self.strengths}")
        if self.family == "translation" and self.resolution % (2 * SITES):
            raise ValueError(f"translation: resolution {self.resolution} must be a multiple of {2 * SITES} (sites "
                             "n/8 + j n/4 on cell boundaries, shifts of whole cells)")
        if not 0 <= self.max_eps * max(-min(OFFSETS), WAVE) < 1:
            raise ValueError(f"max_eps={self.max_eps} gives a non-positive buoyancy factor")
        self.sim_params()  # the solver's own checks (grid, frames, dt)

    def sim_params(self) -> SmokeSimParams:
        """The solver parameters of one set (all simulations in one batched call)."""
        sims = SITES * self.strengths
        return SmokeSimParams(self.family, resolution=self.resolution, sims=sims, x_positions=SITES,
                              frames=self.frames, spinup=self.spinup, dt=self.dt, inflow_radius=self.inflow_radius,
                              inflow_rate=self.inflow_rate, buoyancy=self.buoyancy, group_size=sims,
                              solver_tolerance=self.solver_tolerance)

    def site_factors(self, level: int) -> tuple[float, ...]:
        """``1 + eps d_j`` for kind ``buoyancy``, ones otherwise."""
        eps = self.eps(level) if self.kind == REVEALED else 0.0
        return tuple(1.0 + eps * d for d in OFFSETS)

    def wind(self, level: int) -> tuple[float, float]:
        """The lab-frame push ``eps beta W`` on the smoke (zero unless kind ``wind``)."""
        eps = self.eps(level) if self.kind == "wind" else 0.0
        return eps * self.buoyancy * WIND[0], eps * self.buoyancy * WIND[1]

    def configs(self, level: int) -> list[SimConfig]:
        """The simulations of ``level``, strength-major then site: force ``beta_s f_j e_j + wind``."""
        factors, (wx, wy) = self.site_factors(level), self.wind(level)
        n = self.resolution
        if self.family == "rotation":
            sites = [(c.cx, c.cy, np.sign(c.force_x), np.sign(c.force_y)) for c in sim_configs(self.sim_params())]
        else:
            sites = [(n / 8 + j * n / SITES, 5 * n / 64, 0.0, 1.0) for j in range(SITES)] * self.strengths
        out = []
        for i, (x, y, ex, ey) in enumerate(sites):
            magnitude = float(self.strength_values()[i // SITES] * factors[i % SITES])
            out.append(SimConfig(float(x), float(y), self.inflow_radius, float(ex) * magnitude + wx,
                                 float(ey) * magnitude + wy, self.dt, 1.0))
        return out

    def forcing(self, level: int) -> BoxForcing | None:
        """The box: closed and uniform for rotation; periodic in x, with the wave ``eps A`` for kind ``field``."""
        if self.family == "rotation":
            return None
        return BoxForcing(wave=self.eps(level) * WAVE if self.kind == "field" else 0.0, periodic_x=True)

    def meta(self, level: int) -> dict[str, Any]:
        forcing = self.forcing(level)
        return {"eps": self.eps(level), "family": self.family, "kind": self.kind,
                "site_factors": list(self.site_factors(level)), "wind": list(self.wind(level)),
                "box": asdict(forcing) if forcing is not None else None,
                "strengths": self.strength_values().tolist(), "site_convention": site_convention(self.family)}

    def key(self) -> str:
        """Short hash of every parameter, the PhiFlow version and both generator revisions."""
        return store.content_key(self.to_dict(), extras.version("phiflow", "smoke"), GENERATOR_REVISION,
                                 STRENGTH_REVISION)


def site_convention(family: str) -> str:
    if family == "rotation":
        return smoke_levels.SITE_CONVENTION
    return "site j = site 0 shifted by j n/4 cells towards +x (periodic): roll(x_site0, j n/4, x) ~ x_site_j"


# Sizes per preset; the family and kind are set by :func:`params`. cpu: per family and kind 5 sets of the levels
# study's cpu size (8 simulations x 50 solver steps at 32 x 32; docs/strength.md has the measured generation time).
PRESETS: dict[str, StrengthParams] = {
    "tiny": StrengthParams(resolution=16, levels=3, strengths=1, frames=6, spinup=2, inflow_radius=2.0),  # tests
    "cpu": StrengthParams(levels=5, strengths=2),
    "paper": StrengthParams(resolution=64, levels=10, strengths=4, frames=50, inflow_radius=5.0),
}


def params(preset: str, family: str, kind: str) -> StrengthParams:
    """The sets of ``family`` / ``kind`` at ``preset`` (one-line errors for unknown names)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown smoke-strength preset {preset!r}; available presets: {', '.join(PRESETS)}")
    check_kind(family, kind)
    return replace(PRESETS[preset], family=family, kind=kind)


def default_dir(root: str | Path, preset: str, p: StrengthParams) -> Path:
    """``root / "smoke-strength" / "<preset>-<family>-<kind>-<key>"``; level ``i`` in ``level-<i>``."""
    return Path(root) / "smoke-strength" / f"{preset}-{p.family}-{p.kind}-{p.key()}"


def generate_preset(preset: str, family: str, kind: str, root: str | Path = "data", progress: bool = True) -> Path:
    """Generate (or reuse) every level of ``family`` / ``kind`` at ``preset`` under ``root``; returns the directory."""
    p = params(preset, family, kind)
    return smoke_levels.generate(p, default_dir(root, preset, p), progress, name=f"smoke-strength {family} {kind}")


def shifted_back(array: np.ndarray | Any) -> Any:
    """``(strengths, 4, T, C, H, W)`` torch tensor: each site-``j`` simulation shifted by ``-j n / 4`` cells along x
    (cyclic; vector components unchanged), so that every simulation shows the site-0 plume."""
    import torch

    x = torch.from_numpy(np.array(array, dtype=np.float32))
    if x.shape[0] % SITES or x.shape[-1] % SITES:
        raise ValueError(f"expected a multiple of {SITES} simulations and of {SITES} columns, got {tuple(x.shape)}")
    x = x.reshape(-1, SITES, *x.shape[1:])
    step = x.shape[-1] // SITES
    return torch.stack([torch.roll(x[:, j], -j * step, dims=-1) for j in range(SITES)], dim=1)


def data_equivariance_error(array: np.ndarray | Any, family: str) -> float:
    """``E_data`` of a set of ``family`` (module docstring)."""
    back = smoke_levels.rotated_back if family == "rotation" else shifted_back
    return smoke_levels.data_equivariance_error(array, back=back)
