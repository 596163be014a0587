"""RBC data: Dedalus generator (tiny preset), grid pipeline, Dedalus HDF5 reader and the paper-tensor loader."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from datamodules import rbc_sim, store
from datamodules.rbc_io import DedalusGrid, chebyshev_to_uniform, load_paper_tensor, read_dedalus_snapshots
from datamodules.rbc_sim import PRESETS, RBCSimParams, default_dir, generate, simulate

TINY = dataclasses.replace(PRESETS["tiny"], fields=("velocity", "buoyancy"))


def gauss_points(n: int, z0: float = 0.0, z1: float = 1.0) -> np.ndarray:
    """Chebyshev-Gauss points of ChebyshevT on [z0, z1], increasing like Dedalus' grid."""
    return z0 + (z1 - z0) * (1 - np.cos(np.pi * (np.arange(n) + 0.5) / n)) / 2


# ------------------------------------------------------------------------------------------- grid pipeline


def test_chebyshev_interpolation_is_exact_for_the_spectral_polynomial():
    z = gauss_points(12, 0.5, 2.5)
    poly = np.polynomial.Polynomial([0.3, -1.0, 0.7, 2.0, 0.0, -0.4, 0.1, 0, 0, 0, 0, 0.01])  # degree 11 < 12
    m = chebyshev_to_uniform(z, 8)
    target = 0.5 + (np.arange(8) + 0.5) * 2.0 / 8
    np.testing.assert_allclose(m @ poly(z), poly(target), atol=1e-10)
    with pytest.raises(ValueError, match="not a Chebyshev-Gauss grid"):
        chebyshev_to_uniform(np.linspace(0, 1, 12), 8)


def test_dedalus_grid_orientation_and_tiling_on_a_known_field():
    nx, nz, lx = 28, 10, 7.0
    x = np.arange(nx) * lx / nx
    z = gauss_points(nz)
    xx, zz = np.meshgrid(x, z, indexing="ij")
    u = np.stack([xx, 0.5 + 0 * zz])[None]  # u_x = x (grows to the right), u_z = +0.5 (upward)
    b = (1 - zz)[None]  # conductive: hot (1) at the bottom z = 0
    grid = DedalusGrid(x, z, tiles=7, resolution=2)
    out = grid.frames(u, [b])
    assert grid.rows == 4 and out.shape == (7, 1, 3, 2, 2)
    # 4 uniform rows with centres z = 7/8, 5/8, 3/8, 1/8 (top first): b = 1/8, 3/8 | 5/8, 7/8, averaged in pairs
    np.testing.assert_allclose(out[0, 0, 2], [[0.25, 0.25], [0.75, 0.75]], atol=1e-6)
    np.testing.assert_allclose(out[:, 0, 1], 0.5, atol=1e-6)  # upward u_z stays positive vy
    np.testing.assert_allclose(out[3, 0, 0], [[3.125, 3.625]] * 2, atol=1e-6)  # tile 3 holds x = 3.0 ... 3.75


def test_dedalus_grid_rejects_non_square_pixels_and_tiles():
    with pytest.raises(ValueError, match="not a whole number"):
        DedalusGrid(np.arange(30) * 7 / 30, gauss_points(8))
    with pytest.raises(ValueError, match="not square"):
        DedalusGrid(np.arange(28) * 7 / 28, gauss_points(8), tiles=5).frames(np.zeros((1, 2, 28, 8)))


# ----------------------------------------------------------------------------------------- paper loader


def paper_pattern(t: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(T, 2, 16, 112) frames whose 2x2 block means are ``coarse`` (T, 2, 8, 56); a checkerboard sits on top."""
    rng = np.random.default_rng(0)
    coarse = rng.normal(size=(t, 2, 8, 56)).astype(np.float32)
    checker = np.where((np.arange(16)[:, None] + np.arange(112)[None]) % 2, 1.0, -1.0).astype(np.float32)
    return np.kron(coarse, np.ones((2, 2), np.float32)) + 0.5 * checker, coarse


@pytest.mark.parametrize("suffix", [".npy", ".pt"])
def test_paper_tensor_tiles_and_area_averages(tmp_path, suffix):
    fine, coarse = paper_pattern()
    path = tmp_path / f"rbc_data{suffix}"
    if suffix == ".npy":
        np.save(path, fine)
    else:
        import torch

        torch.save(torch.from_numpy(fine), path)
    array, layout = load_paper_tensor(path, resolution=8, chunk=2)
    assert layout.names() == ["velocity"] and array.shape == (7, 3, 2, 8, 8)
    expected = np.stack([coarse[..., 8 * i : 8 * (i + 1)] for i in range(7)])  # tile i = columns 16i..16i+15
    np.testing.assert_allclose(array, expected, atol=1e-6)
    full, _ = load_paper_tensor(path, resolution=16, tiles=7)
    np.testing.assert_array_equal(full[2], fine[..., 32:48])


def test_paper_tensor_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_paper_tensor(tmp_path / "missing.pt")
    np.save(tmp_path / "bad.npy", np.zeros((3, 16, 112), np.float32))
    with pytest.raises(ValueError, match=r"expected \(T, 2, H, W\)"):
        load_paper_tensor(tmp_path / "bad.npy")
    np.save(tmp_path / "wide.npy", np.zeros((3, 2, 16, 100), np.float32))
    with pytest.raises(ValueError, match="not a multiple"):
        load_paper_tensor(tmp_path / "wide.npy", resolution=8)
    np.save(tmp_path / "ok.npy", np.zeros((3, 2, 16, 112), np.float32))
    with pytest.raises(ValueError, match="must divide"):
        load_paper_tensor(tmp_path / "ok.npy", resolution=5)
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(ValueError, match="expected .pt or .npy"):
        load_paper_tensor(tmp_path / "x.csv")
    import torch

    torch.save({"u": torch.zeros(3)}, tmp_path / "dict.pt")
    with pytest.raises(ValueError, match="holds a dict"):
        load_paper_tensor(tmp_path / "dict.pt")


# ---------------------------------------------------------------------------------------------- parameters


def test_params_validate_and_key_tracks_every_parameter():
    base = PRESETS["cpu"]
    assert base.key() == dataclasses.replace(base).key()
    assert len({dataclasses.replace(base, **{k: v}).key() for k, v in
                [("seed", 1), ("rayleigh", 2e6), ("frames", 10), ("fields", ("velocity", "buoyancy"))]}) == 4
    assert default_dir(Path("data"), "cpu") == Path("data/rbc") / f"cpu-{base.key()}"
    assert RBCSimParams(**json.loads(json.dumps(base.to_dict()))) == base
    with pytest.raises(ValueError, match="square tiles"):
        dataclasses.replace(base, tiles=4)
    with pytest.raises(ValueError, match="velocity"):
        dataclasses.replace(base, fields=("buoyancy",))
    with pytest.raises(ValueError, match="must divide"):
        dataclasses.replace(base, resolution=48)
    with pytest.raises(KeyError, match="available presets"):
        default_dir(Path("data"), "huge")


# ------------------------------------------------------------------------------ atomicity (no solver needed)


def entries(directory: Path) -> list[str]:
    """Names in ``directory`` including hidden temporaries; [] when it does not exist."""
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def fake_result(params: RBCSimParams) -> rbc_sim.SimulationResult:
    shape = (params.tiles, params.frames, params.layout.channels, params.resolution, params.resolution)
    return rbc_sim.SimulationResult(np.ones(shape, np.float32), params.layout, {})


def test_failed_write_leaves_no_directory_and_keeps_an_old_dataset(tmp_path, monkeypatch):
    params = dataclasses.replace(TINY, frames=2)
    monkeypatch.setattr(rbc_sim, "simulate", lambda p, **_: fake_result(p))

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    out = tmp_path / "rbc" / "tiny"
    with monkeypatch.context() as m:
        m.setattr(store.np, "save", broken_save)
        with pytest.raises(OSError, match="disk full"):
            generate(params, out, progress=False)
    assert not out.exists() and entries(out.parent) == []
    generate(params, out, progress=False)
    changed = dataclasses.replace(params, seed=5)
    with monkeypatch.context() as m:
        m.setattr(store.np, "save", broken_save)
        with pytest.raises(OSError):
            generate(changed, out, progress=False)
    assert store.read_meta(out)["key"] == params.key() and entries(out.parent) == ["tiny"]


def test_solver_crash_midway_raises_and_writes_nothing(tmp_path, monkeypatch):
    crash = "import sys; print('@@t 1.0', flush=True); sys.exit('solver diverged by t=1.000')"
    monkeypatch.setattr(rbc_sim, "_worker_command", lambda *a: [sys.executable, "-c", crash])
    out = tmp_path / "rbc" / "tiny"
    with pytest.raises(RuntimeError, match="diverged by t=1.000"):
        generate(dataclasses.replace(TINY, frames=2), out, progress=False)
    assert entries(out.parent) == []


# --------------------------------------------------------------------------------- the solver itself (tiny)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny Dedalus run that also writes its frames through Dedalus' own file handler."""
    snapshots = tmp_path_factory.mktemp("dedalus") / "snapshots"
    return simulate(TINY, snapshot_dir=snapshots), snapshots


@pytest.mark.dedalus
def test_tiny_run_is_finite_and_convecting(tiny_run):
    result, _ = tiny_run
    assert result.array.shape == (7, TINY.frames, 3, 16, 16) and np.isfinite(result.array).all()
    ke = 0.5 * np.mean(np.sum(result.array[:, :, :2].astype(np.float64) ** 2, axis=2), axis=(0, 2, 3))
    assert ke[0] > 0 and ke[-5:].mean() > 100 * ke[0]  # grows by orders of magnitude from the perturbation
    series = np.array(result.diagnostics["kinetic_energy_series"])
    assert series[0, 1] == 0.0 and series[-1, 1] > 1e-2  # rest state -> convection (free-fall units)
    assert series[-5:, 2].mean() > 1.5  # Nusselt number: heat transport clearly above conduction
    assert max(result.diagnostics["spectral_tail_max"]) < 1e-2  # highest modes small: the grid resolves the flow


@pytest.mark.dedalus
def test_tiny_run_orientation_hot_bottom_and_rising_plumes(tiny_run):
    result, _ = tiny_run
    b = result.array[:, :, 2].astype(np.float64)
    profile = b[:, 0].mean(axis=(0, 2))  # nearly conductive first frame: b = 1 - z, row 0 = top
    assert np.all(np.diff(profile) > 0) and profile[-1] > 0.8 and profile[0] < 0.2
    late = slice(-10, None)
    anomaly = b[:, late] - b[:, late].mean(axis=(0, 1, 3), keepdims=True)
    vy = result.array[:, late, 1].astype(np.float64)
    assert np.corrcoef(vy.ravel(), anomaly.ravel())[0, 1] > 0.3  # warm fluid rises: vy > 0 is up


@pytest.mark.dedalus
def test_dedalus_snapshot_reader_matches_generator_frames(tiny_run):
    result, snapshots = tiny_run
    files = sorted(snapshots.glob("*_s*.h5"))
    assert len(files) > 1  # several set files: the reader must concatenate them in time
    array, layout = read_dedalus_snapshots(snapshots, buoyancy_task="b", tiles=7, resolution=16)
    assert layout.names() == ["velocity", "buoyancy"]
    np.testing.assert_allclose(array, result.array, atol=1e-6)
    reversed_list, _ = read_dedalus_snapshots(files[::-1], tiles=7, resolution=16)
    np.testing.assert_allclose(reversed_list, result.array[:, :, :2], atol=1e-6)
    full, _ = read_dedalus_snapshots(files[0])  # tiles and resolution inferred: 7 tiles of 16 x 16
    assert full.shape == (7, 16, 2, 16, 16)
    with pytest.raises(KeyError, match="available tasks: b, u"):
        read_dedalus_snapshots(snapshots, velocity_task="velocity")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_dedalus_snapshots(snapshots / "nope_s1.h5")
    with pytest.raises(ValueError, match="not a 2D vector field"):
        read_dedalus_snapshots(snapshots, velocity_task="b")


@pytest.mark.dedalus
def test_generate_writes_reuses_and_regenerates(tiny_run, tmp_path, monkeypatch):
    result, _ = tiny_run
    out = tmp_path / "rbc" / "tiny"
    assert generate(TINY, out, progress=False) == out
    array, layout, meta = store.read_trajectories(out)
    np.testing.assert_allclose(array, result.array, atol=1e-5)  # same seed: same run (file output adds round-off)
    assert layout.names() == ["velocity", "buoyancy"] and meta["key"] == TINY.key()
    assert meta["solver"] == "dedalus" and meta["params"] == TINY.to_dict() and meta["rayleigh"] == TINY.rayleigh

    def no_solver(*args, **kwargs):
        raise AssertionError("the solver ran although the dataset was reusable")

    with monkeypatch.context() as m:
        m.setattr(rbc_sim, "simulate", no_solver)
        assert generate(TINY, out, progress=False) == out
    changed = dataclasses.replace(TINY, frames=2, spinup=0.5, fields=("velocity",))
    generate(changed, out, progress=False)
    array, layout, meta = store.read_trajectories(out)
    assert meta["key"] == changed.key() and array.shape == (7, 2, 2, 16, 16) and layout.names() == ["velocity"]
