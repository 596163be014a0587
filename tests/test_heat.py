"""Heat diffusion: the FTCS solver (conservation, accuracy, py-pde, symmetries), the generated data and the module."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules import heat_sim, store
from datamodules.heat import HeatDataModule, generate_preset, load_temperature_array
from datamodules.heat_sim import PRESETS, HeatSimParams, default_dir, generate, solve, substeps, thermal_energy
from symbench import symmetry
from symbench.fields import FieldLayout

LAYOUT = FieldLayout.of("temperature:scalar")


def cell_centres(n: int, dx: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """``(y, x)`` coordinates of the cell centres of an ``n x n`` grid (row index first)."""
    c = (np.arange(n) + 0.5) * dx
    return np.meshgrid(c, c, indexing="ij")


def gaussian(n: int, sigma: float, centre: tuple[float, float] | None = None, dx: float = 1.0) -> np.ndarray:
    y, x = cell_centres(n, dx)
    cy, cx = centre if centre is not None else (n * dx / 2, n * dx / 2)
    return np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2))


# ------------------------------------------------------------------------------------------------ the solver


def test_total_heat_is_conserved_and_the_maximum_principle_holds():
    rng = np.random.default_rng(3)
    h0 = rng.uniform(0.0, 2.0, size=(3, 24, 24))
    h0[0, 5:12, 8:20] += 3.0  # a hot block against the walls
    alpha = np.array([2.0, 4.0, 6.0])
    out = solve(h0, alpha, frames=300, frame_dt=0.25)  # 900 steps at alpha_max dt = 0.2 for the last one
    energy = thermal_energy(out)
    assert energy.shape == (3, 300)
    drift = np.abs(energy - energy[:, :1]) / np.abs(h0).sum(axis=(1, 2))[:, None]
    assert drift.max() < 1e-12  # insulated walls: no heat leaves the box (round-off only)
    hi, lo = out.max(axis=(2, 3)), out.min(axis=(2, 3))
    assert (np.diff(hi, axis=1) <= 1e-13).all() and (np.diff(lo, axis=1) >= -1e-13).all()
    assert (np.diff(out.var(axis=(2, 3)), axis=1) <= 1e-13).all()  # diffusion only smooths
    # The run is long enough for the walls to matter: the box equilibrates to its mean, which is the initial mean.
    assert np.allclose(out[:, -1], h0.mean(axis=(1, 2))[:, None, None], atol=0.05)
    assert (hi[:, 0] - lo[:, 0] > 1.5).all()


def test_float32_storage_keeps_the_total_heat():
    out = solve(gaussian(20, 3.0, (6.0, 14.0))[None] + 0.3, 4.0, frames=100, frame_dt=0.5).astype(np.float32)
    energy = thermal_energy(out)
    assert np.abs(energy / energy[:, :1] - 1).max() < 1e-5


@pytest.mark.parametrize("k, l", [(1, 0), (1, 2)])
def test_neumann_cosine_mode_decays_analytically_with_second_order_error(k, l):
    """``cos(pi k x / L) cos(pi l y / L)`` decays as ``exp(-alpha pi^2 (k^2 + l^2) t / L^2)``; error ~ dx^2."""
    length, alpha = 1.0, 0.5
    rate = alpha * np.pi**2 * (k**2 + l**2) / length**2
    t_end = 1.0 / rate  # the mode falls to 1/e
    errors = []
    for n in (16, 32, 64):
        dx = length / n
        y, x = cell_centres(n, dx)
        mode = np.cos(np.pi * k * x / length) * np.cos(np.pi * l * y / length)
        out = solve(mode[None], alpha, frames=5, frame_dt=t_end / 4, dx=dx, courant=0.1)[0]
        exact = mode[None] * np.exp(-rate * t_end * np.arange(5) / 4)[:, None, None]
        errors.append(np.abs(out - exact).max())
    assert errors[0] < 1e-2
    ratios = [errors[i] / errors[i + 1] for i in range(2)]
    assert all(3.6 < r < 4.4 for r in ratios), (errors, ratios)  # second order: halving dx quarters the error


def test_time_step_respects_the_stability_limit():
    assert substeps(4.0, 0.1) == (2, 0.05)  # 4 * 0.05 = 0.2
    n, dt = substeps(6.0, 0.1, dx=0.5, courant=0.25)
    assert 6.0 * dt / 0.25 <= 0.25 + 1e-12 and 6.0 * (0.1 / (n - 1)) / 0.25 > 0.25
    with pytest.raises(ValueError, match="stability limit"):
        substeps(1.0, 0.1, courant=0.3)
    with pytest.raises(ValueError, match=r"\(n, H, W\)"):
        solve(np.zeros((4, 4)), 1.0, 3, 0.1)


def test_agrees_with_py_pde():
    import pde  # py-pde, a test dependency (pyproject [test])

    n, length, alpha, t_end = 32, 1.0, 1.0, 0.02
    dx = length / n
    y, x = cell_centres(n, dx)
    h0 = np.exp(-((x - 0.4) ** 2 + (y - 0.6) ** 2) / (2 * 0.08**2)) + 0.5 * (x > 0.7)  # a blob and a step
    grid = pde.CartesianGrid([[0, length], [0, length]], [n, n])  # cell-centred, axis 0 = first array axis
    eq = pde.DiffusionPDE(diffusivity=alpha, bc={"derivative": 0})

    def ours(courant: float) -> np.ndarray:
        return solve(h0[None], alpha, frames=2, frame_dt=t_end, dx=dx, courant=courant)[0, -1]

    _, dt = substeps(alpha, t_end, dx, 0.2)
    euler = eq.solve(pde.ScalarField(grid, h0), t_range=t_end, dt=dt, solver="euler", adaptive=False,
                     backend="numpy", tracker=None).data
    np.testing.assert_allclose(ours(0.2), euler, rtol=0, atol=1e-12)  # the same scheme, step for step
    # Time-accurate integration (scipy, adaptive) of py-pde's semi-discretisation: what is left is our FTCS time
    # error, first order in dt: about 1e-3 at courant 0.2 on an O(1) field, a quarter of that at courant 0.05.
    accurate = eq.solve(pde.ScalarField(grid, h0), t_range=t_end, solver="scipy", backend="numpy",
                        tracker=None, rtol=1e-10, atol=1e-12).data
    coarse, fine = np.abs(ours(0.2) - accurate).max(), np.abs(ours(0.05) - accurate).max()
    assert coarse < 2e-3 and 3.0 < coarse / fine < 5.0, (coarse, fine)


def test_quarter_turns_and_reflections_commute_with_the_solver_exactly():
    rng = np.random.default_rng(5)
    h0 = rng.normal(size=(2, 20, 20)) + gaussian(20, 2.0, (4.0, 13.0))
    alpha = np.array([1.5, 5.0])
    out = solve(h0, alpha, frames=40, frame_dt=0.3)
    for k in (1, 2, 3):
        rotated = solve(np.rot90(h0, k, axes=(1, 2)), alpha, frames=40, frame_dt=0.3)
        assert np.array_equal(rotated, np.rot90(out, k, axes=(2, 3)))
    assert np.array_equal(solve(h0[:, :, ::-1], alpha, frames=40, frame_dt=0.3), out[..., ::-1])
    assert not np.allclose(np.rot90(out, 1, axes=(2, 3)), out, atol=1e-3)  # the test case is not symmetric


def scaling_errors(n: int = 96, lam: float = 2.0, out: int = 48, steps: int = 6) -> dict[str, float]:
    """Max errors over the interior of ``T_lam H`` (by :func:`symbench.symmetry.scale`, right and wrong laws)
    against a simulation started from the scaled initial condition; values relative to the initial peak 1."""
    alpha, frame_dt, sigma = 1.0, 0.5, 6.0
    source_frames = 1 + round(lam**2) * (steps - 1)
    seq = solve(gaussian(n, sigma)[None], alpha, source_frames, frame_dt)[0]  # walls 8 sigma away
    seq_t = torch.from_numpy(seq)[:, None]
    # H'(x, t) = H(c + lam (x - c), lam^2 t): a Gaussian of width sigma / lam about the same centre.
    target = solve(gaussian(n, sigma / lam)[None], alpha, steps, frame_dt)[0]
    margin = (n - out) // 2
    target = torch.from_numpy(target[:, margin : n - margin, margin : n - margin])
    right = symmetry.scale(seq_t, LAYOUT, lam, steps, (out, out))[:, 0]
    magnitude = symmetry.scale(seq_t, LAYOUT, lam, steps, (out, out), scalar_power=1.0)[:, 0]
    time_lam1 = torch.cat([symmetry.scale(seq_t, LAYOUT, lam, 1, (out, out), t0=lam * t)[:, 0]
                           for t in range(steps)])  # time scaled by lam instead of lam^2
    return {name: float((v - target).abs().max()) for name, v in
            (("right", right), ("magnitude_lam", magnitude), ("time_lam1", time_lam1))}


def test_scaling_symmetry_h_of_lam_x_lam2_t_without_magnitude_factor():
    err = scaling_errors()
    assert err["right"] < 0.01, err  # bilinear half-pixel interpolation + the two discretisations
    assert err["time_lam1"] > 5 * err["right"] and err["magnitude_lam"] > 5 * err["right"], err


# ------------------------------------------------------------------------------------------ generated data


def test_params_validate_and_key_tracks_every_parameter():
    base = PRESETS["cpu"]
    assert base.key() == dataclasses.replace(base).key()
    changes = {"grid": 20, "n_traj": 3, "frames": 50, "frame_dt": 0.2, "alpha_min": 1.0, "alpha_max": 5.0,
               "courant": 0.1, "disc_share": 1.0, "seed": 1}
    assert set(changes) == {f.name for f in dataclasses.fields(HeatSimParams)}
    assert len({base.key()} | {dataclasses.replace(base, **{k: v}).key() for k, v in changes.items()}) == 10
    assert default_dir(Path("data"), "cpu") == Path("data/heat") / f"cpu-{base.key()}"
    assert HeatSimParams(**json.loads(json.dumps(base.to_dict()))) == base
    for bad in ({"courant": 0.3}, {"alpha_min": 7.0}, {"frames": 1}, {"disc_share": 2.0}):
        with pytest.raises(ValueError):
            dataclasses.replace(base, **bad)
    with pytest.raises(KeyError, match="available presets"):
        default_dir(Path("data"), "huge")
    assert PRESETS["paper"].grid == 50 and PRESETS["paper"].n_traj * PRESETS["paper"].frames == 6000


def test_initial_conditions_are_seeded_hot_inside_and_varied():
    params = dataclasses.replace(PRESETS["cpu"], n_traj=12)
    h0, alpha, kinds = heat_sim.initial_conditions(params)
    again, alpha2, _ = heat_sim.initial_conditions(params)
    assert np.array_equal(h0, again) and np.array_equal(alpha, alpha2)
    assert not np.array_equal(h0, heat_sim.initial_conditions(dataclasses.replace(params, seed=1))[0])
    assert set(kinds) == {"discs", "gaussians"}
    assert ((params.alpha_min <= alpha) & (alpha <= params.alpha_max)).all() and alpha.std() > 0.5
    for field, kind in zip(h0, kinds):
        if kind == "discs":  # background at the walls, hotter shapes inside
            border = np.concatenate([field[0], field[-1], field[:, 0], field[:, -1]])
            background = np.median(border)
            assert field.max() > background + 0.4 and np.mean(np.abs(border - background) < 1e-3) > 0.5


@pytest.fixture(scope="module")
def heat_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("heat")
    generate_preset("tiny", root, progress=False)
    return root


def test_generated_store_layout_meta_and_reuse(heat_root, monkeypatch):
    params = PRESETS["tiny"]
    out = default_dir(heat_root, "tiny")
    array, layout, meta = store.read_trajectories(out)
    assert array.shape == (params.n_traj, params.frames, 1, params.grid, params.grid) and array.dtype == np.float32
    assert meta["fields"] == ["temperature:scalar"] and layout.names() == ["temperature"]
    assert meta["key"] == params.key() and meta["params"] == params.to_dict()
    assert meta["diagnostics"]["max_courant"] <= params.courant + 1e-12
    assert len(meta["diagnostics"]["alpha"]) == params.n_traj
    energy = thermal_energy(np.asarray(array))
    assert np.abs(energy / energy[:, :1] - 1).max() < 1e-5  # the stored float32 fields keep the thermal energy
    assert np.abs(np.diff(array[:, :, 0], axis=1)).max() > 1e-2  # and they do change

    def no_solver(*args, **kwargs):
        raise AssertionError("the solver ran although the dataset was reusable")

    monkeypatch.setattr(heat_sim, "simulate", no_solver)
    assert generate(params, out, progress=False) == out
    with pytest.raises(AssertionError, match="reusable"):
        generate(dataclasses.replace(params, seed=9), out, progress=False)


def test_datamodule_windows_and_transformed_splits(heat_root):
    dm = HeatDataModule(preset="tiny", root=str(heat_root), in_frames=3, train_steps=2, rollout_steps=3,
                        batch_size=4, eval_stride=2)
    dm.setup()
    assert dm.fields == ["temperature:scalar"] and dm.test_splits == ["orig", "mag", "rot", "scale"]
    assert dm.describe()["dataset"] == "heat-generated"
    history, target = next(iter(dm.train_dataloader()))
    assert history.shape == (4, 3, 1, 16, 16) and target.shape == (4, 2, 1, 16, 16)
    orig, mag, rot, scale = (dm.datasets[s] for s in dm.test_splits)
    assert len(orig) == len(mag) == len(rot) == len(scale) > 0
    ks = set()
    for i in range(len(orig)):
        window = torch.cat(orig[i])
        k = int(rot.element.k[i])
        ks.add(k)
        torch.testing.assert_close(torch.cat(rot[i]), torch.rot90(window, k, dims=(-2, -1)), rtol=0, atol=0)
        torch.testing.assert_close(torch.cat(mag[i]), mag.element.a[i] * window)
        sh, st = scale[i]
        assert sh.shape == (3, 1, 8, 8) and st.shape == (3, 1, 8, 8)
    assert ks == {1, 2, 3}
    # The scale split is the heat law with scalar power 0: no magnitude factor on the resampled window.
    i = int(torch.argmax(scale.element.lam))
    lam = float(scale.element.lam[i])
    traj, t0 = scale.windows.locate(i)
    frames = symmetry.scale_extent(lam, 6, (8, 8))[0]
    t0 = min(t0, scale.windows.range.stop - frames)
    source = scale.windows.data[traj, t0 : t0 + frames]
    torch.testing.assert_close(torch.cat(scale[i]), symmetry.scale(source, LAYOUT, lam, 6, (8, 8)))
    assert lam > 1.5 and not torch.allclose(torch.cat(scale[i]), lam * symmetry.scale(source, LAYOUT, lam, 6, (8, 8)))


# ----------------------------------------------------------------------------------------- numpy source


def test_numpy_source_reads_user_arrays_and_rejects_bad_shapes(tmp_path):
    frames = np.random.default_rng(0).normal(size=(2, 30, 12, 12)).astype(np.float32)
    np.save(tmp_path / "one.npy", frames[0])
    np.savez(tmp_path / "many.npz", temperature=frames, other=np.zeros(3))
    array, layout = load_temperature_array(tmp_path / "one.npy")
    assert array.shape == (1, 30, 1, 12, 12) and layout.names() == ["temperature"]
    np.testing.assert_array_equal(array[0, :, 0], frames[0])
    dm = HeatDataModule(source="numpy", path=str(tmp_path / "many.npz"), in_frames=2, train_steps=1,
                        rollout_steps=2, test_splits=("orig", "rot"))
    dm.setup()
    assert dm.load()[0].shape == (2, 30, 1, 12, 12) and dm.describe()["dataset"] == "heat-numpy"
    np.save(tmp_path / "bad.npy", np.zeros((2, 30, 1, 12, 12), np.float32))
    with pytest.raises(ValueError, match=r"expected a temperature array \(T, H, W\) or \(n_traj, T, H, W\)") as err:
        HeatDataModule(source="numpy", path=str(tmp_path / "bad.npy")).load()
    assert "\n" not in str(err.value) and "(2, 30, 1, 12, 12)" in str(err.value)
    with pytest.raises(ValueError, match="needs --data.path"):
        HeatDataModule(source="numpy")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_temperature_array(tmp_path / "missing.npy")
    with pytest.raises(ValueError, match="unknown heat source"):
        HeatDataModule(source="paper", path="x")


@pytest.mark.parametrize("preset, window", [("tiny", 3 + 3), ("cpu", 10 + 10), ("paper", 10 + 10)])
def test_presets_hold_the_scale_split_of_their_windows(preset, window):
    """lam up to 2 reads 1 + 4 (window - 1) frames of the last 20 %: the presets' frame counts are sized for it."""
    from datamodules.windows import time_split

    params = PRESETS[preset]
    test_range = time_split(params.frames)["test"]
    frames, height, _ = symmetry.scale_extent(2.0, window, (params.grid // 2, params.grid // 2))
    assert len(test_range) >= frames and params.grid >= height
