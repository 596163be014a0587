"""3D turbulence (fluidsim ns3d): the generated data, its axis convention, isotropy and the sheared variant's
symmetry breaking, fluidsim's own files, coarsening and the super-resolution datamodule."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules import store, turb3d_sim  # noqa: E402

turb3d_sim.fluidsim_environment()  # before fluidsim is first imported: keeps fluiddyn out of the home directory
pytest.importorskip("fluidsim")
from datamodules.turb3d import (  # noqa: E402
    Turb3DSRDataModule,
    coarsen,
    gaussian_filter,
    read_fluidsim_run,
    split_frames,
)
from datamodules.turb3d_sim import PRESETS, SHEARED_SUBGROUP, default_dir, generate, preset_params  # noqa: E402
from symbench.fields import FieldLayout  # noqa: E402
from symbench.symmetry import octahedral as oh  # noqa: E402

LAYOUT = FieldLayout.of("velocity:vector", ndim=3)


@pytest.fixture(scope="module")
def turb_root(tmp_path_factory) -> Path:
    """The tiny preset of both flows, generated once for this module (~2 s each)."""
    root = tmp_path_factory.mktemp("turb3d")
    for flow in turb3d_sim.FLOWS:
        generate(preset_params("tiny", flow), default_dir(root, "tiny", flow), progress=False)
    return root


def load(root: Path, flow: str) -> np.ndarray:
    array, layout, meta = store.read_trajectories(default_dir(root, "tiny", flow))
    assert layout == LAYOUT and meta["fields"] == ["velocity:vector"]
    return np.asarray(array, dtype=np.float64)


def frames_tensor(array: np.ndarray) -> torch.Tensor:
    """``(n_traj, T, 3, D, H, W)`` -> ``(n_traj * T, 3, D, H, W)`` float64 tensor."""
    return torch.from_numpy(np.ascontiguousarray(array.reshape(-1, *array.shape[2:])))


def mean_profile_field(x: torch.Tensor) -> torch.Tensor:
    """The time- and (x, y)-plane mean of every component, broadcast back over the plane: ``(3, D, H, W)``."""
    return x.mean(dim=(0, -2, -1), keepdim=True)[0].expand(x.shape[1:])


def relative_change(x: torch.Tensor, g) -> float:
    """How much the mean-flow statistic of the data changes when every frame is transformed by ``g``."""
    before = mean_profile_field(x)
    after = mean_profile_field(oh.act_on_fields(x, LAYOUT, g))
    return float((after - before).norm() / before.norm())


# ------------------------------------------------------------------------------------------- generated data


def test_tiny_preset_generates_the_declared_nontrivial_frames_and_is_reused(turb_root, monkeypatch):
    p = PRESETS["tiny"]
    for flow in turb3d_sim.FLOWS:
        directory = default_dir(turb_root, "tiny", flow)
        assert directory.name.startswith(f"tiny-{flow}-")
        array, layout, meta = store.read_trajectories(directory)
        assert array.shape == (p.n_traj, p.frames, 3, p.n, p.n, p.n) and array.dtype == np.float32
        assert layout.ndim == 3 and layout.channels == 3 and meta["params"]["flow"] == flow
        assert np.isfinite(array).all()
        energy = turb3d_sim.kinetic_energy(array)  # (n_traj, T)
        assert (energy > 0.1).all()  # O(1) velocities (u_rms ~ 1-1.5), sustained by the forcing
        assert (energy[:, -1] > 0.5 * energy[:, 0]).all()
        assert np.abs(np.diff(array, axis=1)).mean() > 0.01  # frames evolve
        assert not np.allclose(array[0], array[1])  # runs differ (different seeds)
        assert np.allclose(meta["diagnostics"]["times"], p.times())

    # a second generate reuses the stored data without simulating
    def fail(*args, **kwargs):
        raise AssertionError("simulate must not run again")

    monkeypatch.setattr(turb3d_sim, "simulate", fail)
    directory = default_dir(turb_root, "tiny", "isotropic")
    stamp = (directory / store.ARRAY_FILE).stat().st_mtime_ns
    assert generate(preset_params("tiny", "isotropic"), directory, progress=False) == directory
    assert (directory / store.ARRAY_FILE).stat().st_mtime_ns == stamp


def test_generation_is_reproducible_and_seeded():
    p = dataclasses.replace(PRESETS["tiny"], n_traj=1, frames=2, spinup=0.5)
    state = np.random.get_state()
    a = turb3d_sim.simulate(p).array
    assert np.random.get_state()[1].tolist() == state[1].tolist()  # the caller's global RNG is restored
    b = turb3d_sim.simulate(p).array
    c = turb3d_sim.simulate(dataclasses.replace(p, seed=1)).array
    assert np.array_equal(a, b) and not np.allclose(a, c)


def test_laminar_shear_flow_reaches_the_viscous_balance():
    """Without random forcing (rate 1e-9) and at Re = U / nu = 4 the shear force F sin(z) e_x holds the laminar
    Kolmogorov flow U = F / (nu k^2) with k = 1: checks the force amplitude, its profile and the viscous term
    (fluidsim's integrating factors must follow the step that :func:`run_fluidsim` chooses)."""
    p = dataclasses.replace(PRESETS["tiny"], flow="sheared", n_traj=1, frames=2, frame_dt=0.5, spinup=8.0,
                            forcing_rate=1e-9, viscosity=0.5, shear_forcing=1.0)
    frames = turb3d_sim.run_fluidsim(p, 0)["frames"].astype(np.float64)
    s = turb3d_sim.shear_profile(p.n)
    expected = 2.0 * s[:, None, None]  # F / nu = 2, odd about the grid centre
    assert np.abs(frames[-1, 0] - expected).max() < 0.05
    assert np.abs(frames[-1, 1:]).max() < 0.05


def test_velocity_is_solenoidal_in_the_suite_convention(turb_root):
    for flow in turb3d_sim.FLOWS:
        array = load(turb_root, flow)
        ratios = [turb3d_sim.divergence_ratio(array[r, t]) for r in range(array.shape[0]) for t in (0, -1)]
        assert max(ratios) < 1e-5, ratios  # float32 round-off (~1e-7)
    frame = array[0, -1]
    # the convention matters: fluidsim's own row order, or a sign flip of v_y, is not divergence-free here
    assert turb3d_sim.divergence_ratio(frame[:, :, ::-1]) > 0.1
    assert turb3d_sim.divergence_ratio(frame * np.array([1, -1, 1])[:, None, None, None]) > 0.1
    assert turb3d_sim.divergence_ratio(frame[[1, 0, 2]]) > 0.1


def test_isotropic_flow_is_isotropic_and_the_sheared_flow_is_not(turb_root):
    iso, shear = load(turb_root, "isotropic"), load(turb_root, "sheared")
    var_iso = (iso**2).mean(axis=(0, 1, 3, 4, 5))
    assert var_iso.max() / var_iso.min() < 1.5, var_iso  # measured 1.04 (tiny and cpu)
    var_shear = (shear**2).mean(axis=(0, 1, 3, 4, 5))
    assert var_shear[0] > 2.5 * max(var_shear[1], var_shear[2]), var_shear  # measured 5.9 (tiny), 2.8 (cpu)

    # the mean profile <v_x>(z) = U sin(2 pi z / L), U ~ 3.7 (tiny), odd about the grid centre; <v_y>, <v_z> ~ 0
    profile = shear.mean(axis=(0, 1, 4, 5))  # (3, D)
    s = turb3d_sim.shear_profile(shear.shape[-1])
    amplitude = profile[0] @ s / (s @ s)
    assert amplitude > 1.5
    assert np.corrcoef(profile[0], s)[0, 1] > 0.9
    assert np.abs(profile[1:]).max() < 0.3 * amplitude
    assert abs(iso.mean(axis=(0, 1, 4, 5))[0] @ s / (s @ s)) < 0.3 * amplitude


def test_sheared_statistics_keep_exactly_the_documented_subgroup(turb_root):
    x = frames_tensor(load(turb_root, "sheared"))
    assert len(SHEARED_SUBGROUP) == 4
    assert {g.matrix for g in SHEARED_SUBGROUP} == {
        ((1, 0, 0), (0, 1, 0), (0, 0, 1)), ((1, 0, 0), (0, -1, 0), (0, 0, 1)),
        ((-1, 0, 0), (0, 1, 0), (0, 0, -1)), ((-1, 0, 0), (0, -1, 0), (0, 0, -1))}
    changes = {g.matrix: relative_change(x, g) for g in oh.FULL_OCTAHEDRAL}
    kept = {m for m, c in changes.items() if c < 0.5}  # measured <= 0.16 (tiny), the others >= 0.91
    assert kept == {g.matrix for g in SHEARED_SUBGROUP}, sorted(changes.values())
    assert min(c for m, c in changes.items() if m not in kept) > 0.7
    # in particular the quarter turns that move the shear axis, and the named z-axis groups, are broken
    for g in (oh.ROT_Y90, oh.ROT_X90, oh.ROT_Z90, oh.MIRROR_Z):
        assert changes[g.matrix] > 0.7

    # second moments: invariant under the subgroup (it only flips signs), not under a quarter turn about y
    def variances(t: torch.Tensor) -> torch.Tensor:
        return (t**2).mean(dim=(0, 2, 3, 4))

    v = variances(x)
    for g in SHEARED_SUBGROUP:
        assert torch.allclose(variances(oh.act_on_fields(x, LAYOUT, g)), v)
    assert (variances(oh.act_on_fields(x, LAYOUT, oh.ROT_Y90)) - v).abs().max() > 0.5 * v.max()


# -------------------------------------------------------------------------------------------- fluidsim files


def test_read_fluidsim_run_matches_the_generator_and_a_plain_fluidsim_run(tmp_path):
    p = dataclasses.replace(PRESETS["tiny"], n_traj=1, frames=3, spinup=0.5)
    res = turb3d_sim.run_fluidsim(p, 0, save_dir=tmp_path / "gen")
    array, layout, times = read_fluidsim_run(res["path_run"])
    assert layout == LAYOUT and array.shape == (1, 3, 3, 16, 16, 16) and array.dtype == np.float32
    assert np.array_equal(array[0], res["frames"])
    assert np.allclose(times, p.times())
    # same frames as the in-memory generator (no files)
    assert np.array_equal(turb3d_sim.run_fluidsim(p, 0)["frames"], res["frames"])

    # a plain fluidsim run with its own periodic output (fluidsim's noise initial field, tcrandom forcing)
    turb3d_sim.fluidsim_environment()
    with turb3d_sim._quiet():
        from fluidsim.solvers.ns3d.solver import Simul

        params = Simul.create_default_params()
        params.oper.nx = params.oper.ny = params.oper.nz = 16
        params.oper.Lx = params.oper.Ly = params.oper.Lz = 2 * math.pi
        params.nu_2 = 0.1
        params.init_fields.type = "noise"
        params.forcing.enable = True
        params.forcing.type = "tcrandom"
        params.forcing.key_forced = ["vx_fft", "vy_fft", "vz_fft"]
        params.forcing.nkmin_forcing, params.forcing.nkmax_forcing = 2, 3
        params.time_stepping.t_end = 0.6
        params.output.periods_save.phys_fields = 0.2
        params.output.sub_directory = str(tmp_path / "plain")
        params.short_name_type_run = "plain"
        sim = Simul(params)
        sim.time_stepping.start()
    files = sorted(Path(sim.output.path_run).glob("state_phys_t*.nc"))
    array, _, times = read_fluidsim_run(sim.output.path_run)
    assert array.shape[:2] == (1, len(files)) and len(files) >= 4
    assert (np.diff(times) > 0).all() and times[0] == 0.0
    assert abs(times[-1] - sim.time_stepping.t) < 1e-12
    expected = turb3d_sim.from_fluidsim(*(sim.state.get_var(k) for k in ("vx", "vy", "vz")))
    assert np.array_equal(array[0, -1], expected)
    assert max(turb3d_sim.divergence_ratio(f) for f in array[0]) < 1e-5


def test_read_fluidsim_run_errors_are_one_line(tmp_path):
    import h5py

    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_fluidsim_run(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no fluidsim state files"):
        read_fluidsim_run(tmp_path)
    with h5py.File(tmp_path / "state_phys_t000.000.nc", "w") as f:
        g = f.create_group("state_phys")
        g.attrs["time"] = 0.0
        for k in ("vx", "vy", "vz"):
            g[k] = np.zeros((4, 4))
    with pytest.raises(ValueError, match="expected a 3D field"):
        read_fluidsim_run(tmp_path)


# ---------------------------------------------------------------------------------------- low resolution


def test_coarsen_is_block_averaging_and_keeps_the_mean():
    rng = np.random.default_rng(0)
    u = rng.standard_normal((2, 3, 8, 12, 16))
    low = coarsen(u, 4)
    assert low.shape == (2, 3, 2, 3, 4)
    assert np.isclose(low[1, 2, 1, 2, 3], u[1, 2, 4:8, 8:12, 12:16].mean())
    assert np.allclose(low.mean(axis=(-3, -2, -1)), u.mean(axis=(-3, -2, -1)))
    assert np.allclose(coarsen(torch.from_numpy(u), 4).numpy(), low)

    # analytic: the block mean of sin(theta j + phi) over j = 4b .. 4b + 3 is sin at the block centre times the
    # discrete box-filter gain sin(2 theta) / (4 sin(theta / 2))
    n, m = 16, 3
    theta = 2 * np.pi * m / n
    j = np.arange(n)
    field = 0.7 + np.broadcast_to(np.sin(theta * j + 0.3), (n, n, n))
    centres = 4 * np.arange(n // 4) + 1.5
    expected = 0.7 + np.sin(theta * centres + 0.3) * np.sin(2 * theta) / (4 * np.sin(theta / 2))
    assert np.allclose(coarsen(field, 4)[0, 0], expected)

    # the Gaussian pre-filter damps a Fourier mode by exp(-k^2 sigma^2 / 2) and keeps the mean
    smooth = gaussian_filter(field, 1.5)
    assert np.allclose(smooth - 0.7, (field - 0.7) * np.exp(-0.5 * (theta * 1.5) ** 2))
    assert np.isclose(coarsen(field, 4, gaussian_sigma=1.5).mean(), field.mean())
    with pytest.raises(ValueError, match="must divide"):
        coarsen(u, 3)


def test_coarsen_commutes_with_the_octahedral_group():
    x = torch.randn(2, 3, 8, 8, 8, dtype=torch.float64)
    for g in (oh.ROT_Y90, oh.ROT_Z90, turb3d_sim.MIRROR_Y, oh.INVERSION, oh.OCTAHEDRAL[7]):
        assert torch.allclose(coarsen(oh.act_on_fields(x, LAYOUT, g), 4), oh.act_on_fields(coarsen(x, 4), LAYOUT, g))


def test_datamodule_yields_factor_4_pairs_split_by_time_and_run(turb_root, tmp_path):
    dm = Turb3DSRDataModule(preset="tiny", root=str(turb_root), flow="sheared", factor=4, batch_size=3,
                            split_fractions=(0.5, 0.25, 0.25))
    low, high = next(iter(dm.train_dataloader()))
    assert low.shape == (3, 3, 4, 4, 4) and high.shape == (3, 3, 16, 16, 16)
    assert low.dtype == high.dtype == torch.float32
    assert torch.allclose(low, coarsen(high, 4))
    train_t = {t for _, t in dm.splits["train"]}
    val_t = {t for _, t in dm.splits["val"]}
    test_t = {t for _, t in dm.splits["test"]}
    assert max(train_t) < min(val_t) and max(val_t) < min(test_t)
    assert len(dm.datasets["train"]) == 2 * 4 and len(dm.datasets["test"]) == 2 * 2
    array = np.asarray(store.read_trajectories(default_dir(turb_root, "tiny", "sheared"))[0])
    run, t = dm.splits["test"][-1]
    assert torch.equal(dm.datasets["test"][len(dm.datasets["test"]) - 1][1], torch.from_numpy(array[run, t].copy()))

    held = split_frames(4, 10, (0.6, 0.2, 0.2), holdout_runs=1)
    assert {r for r, _ in held["train"]} == {0, 1, 2} and 3 in {r for r, _ in held["test"]}
    assert max(t for _, t in held["train"]) < min(t for _, t in held["test"])

    with pytest.raises(store.DataNotFoundError, match="no dataset"):
        Turb3DSRDataModule(preset="tiny", root=str(tmp_path), flow="isotropic").setup()
    with pytest.raises(ValueError, match="unknown turb3d preset|unknown"):
        Turb3DSRDataModule(preset="huge", root=str(tmp_path))

    # fluidsim's own files as the source
    p = dataclasses.replace(PRESETS["tiny"], n_traj=1, frames=4, spinup=0.25)
    path_run = turb3d_sim.run_fluidsim(p, 0, save_dir=tmp_path / "fs")["path_run"]
    dm = Turb3DSRDataModule(source="fluidsim", path=path_run, batch_size=1, split_fractions=(0.5, 0.25, 0.25))
    low, high = next(iter(dm.test_dataloader()))
    assert low.shape == (1, 3, 4, 4, 4) and high.shape == (1, 3, 16, 16, 16)
