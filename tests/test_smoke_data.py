"""PhiFlow smoke families (ICML 2022 sec. 5.1): determinism, resumable atomic generation, orientation, symmetry
breaking, the PhiFlow scene reader, and disjoint test_future / test_domain splits."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules import smoke_io, smoke_sim, store
from datamodules.smoke import SmokeDataModule
from symbench import symmetry
from symbench.fields import FieldLayout

SMALL = dict(resolution=16, frames=3, spinup=1, inflow_radius=2.0)


def _tiny(root: Path) -> tuple[np.ndarray, FieldLayout, dict]:
    return store.read_trajectories(smoke_sim.default_dir(root, "rotation", "tiny"))


def test_generation_is_deterministic_for_a_seed():
    p = smoke_sim.SmokeSimParams("translation", sims=2, x_positions=2, **SMALL)
    configs = smoke_sim.sim_configs(p)
    a = smoke_sim.simulate_group(p, configs)
    b = smoke_sim.simulate_group(p, configs)
    assert np.array_equal(a, b)
    assert np.abs(a[:, -1, :2]).max() > 1e-3  # the plume moves


def test_params_validate_and_key_tracks_every_parameter():
    p = smoke_sim.SmokeSimParams("scaling", sims=8)
    for name, value in [("buoyancy", 0.2), ("dt", 0.25), ("seed", 1), ("frames", 50)]:
        assert dataclasses.replace(p, **{name: value}).key() != p.key()
    with pytest.raises(ValueError, match="unknown smoke symmetry"):
        smoke_sim.SmokeSimParams("shear")
    with pytest.raises(ValueError, match="multiple of 4"):
        smoke_sim.SmokeSimParams("rotation", sims=6)
    held = p.domain_sims()
    assert len(held) == 2 and held == sorted(set(held)) and held == smoke_sim.SmokeSimParams("scaling", sims=8).domain_sims()


def test_killed_generation_resumes_at_the_first_unfinished_group(tmp_path, monkeypatch):
    p = smoke_sim.SmokeSimParams("rotation", sims=4, group_size=2, **SMALL)
    reference = smoke_sim.simulate_group(p, smoke_sim.sim_configs(p)[:2])
    calls: list[int] = []
    real = smoke_sim.simulate_group

    def dies_on_second_group(params, configs, step_done=None):
        calls.append(len(calls))
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process is killed mid-generation
        return real(params, configs, step_done)

    monkeypatch.setattr(smoke_sim, "simulate_group", dies_on_second_group)
    out = tmp_path / "rot"
    with pytest.raises(KeyboardInterrupt):
        smoke_sim.generate(p, out, progress=False)
    assert not out.exists()  # nothing half-written in place of the dataset
    assert (tmp_path / ".rot.partial" / "group000.npy").is_file()
    calls.clear()
    monkeypatch.setattr(smoke_sim, "simulate_group", lambda *a, **k: (calls.append(0), real(*a, **k))[1])
    smoke_sim.generate(p, out, progress=False)
    assert len(calls) == 1  # only the unfinished group ran again
    array, layout, meta = store.read_trajectories(out)
    assert array.shape == (4, 3, 3, 16, 16) and str(layout) == str(smoke_sim.LAYOUT)
    assert np.array_equal(array[:2], reference)
    assert meta["params"] == p.to_dict() and meta["solver"] == "phiflow" and meta["domain_sims"] == p.domain_sims()
    assert not (tmp_path / ".rot.partial").exists()


def test_tiny_family_orientation_plumes_rise_from_their_sites(smoke_root):
    array, layout, meta = _tiny(smoke_root)
    assert array.shape == (8, 30, 3, 16, 16) and np.isfinite(array).all()
    bottom = array[0, -1]  # first simulation: bottom site, buoyancy +y; rows run towards -y
    assert bottom[1, 8:, 6:10].mean() > 0.05  # upward flow above the inflow (the box mean is 0: closed walls)
    assert bottom[2, -3:].mean() > bottom[2, :3].mean()  # densest at the bottom inflow, not at the top wall
    right = array[1, -1]  # right site pushes -x
    assert right[0, 6:10, 8:].mean() < -0.05


def test_rotation_family_is_c4_related_but_not_symmetric(smoke_root):
    array, layout, meta = _tiny(smoke_root)
    vel = FieldLayout.of("velocity:vector", "density:scalar")
    frames = torch.from_numpy(array[:, -1].copy())
    bottom, right = frames[0], frames[1]  # same strength row, sites 0 and 1 (right = bottom turned by +90 deg)
    turned = symmetry.rot90(bottom, vel, 1)
    corr = torch.corrcoef(torch.stack([turned[:2].flatten(), right[:2].flatten()]))[0, 1]
    plain = torch.corrcoef(torch.stack([bottom[:2].flatten(), right[:2].flatten()]))[0, 1]
    assert corr > 0.9 > plain
    gap = (turned - right).abs().mean() / right.abs().mean()
    assert gap > 0.05  # different buoyancy factor per site: not an exact rotation
    assert json.loads(json.dumps(meta["sims"]))[1]["force_x"] < 0


def test_splits_are_disjoint_and_domain_sims_are_held_out(smoke_root):
    dm = SmokeDataModule(symmetry="rotation", preset="tiny", root=str(smoke_root), in_frames=3, train_steps=2,
                         rollout_steps=4, eval_stride=1)
    dm.setup()
    array, _, meta = _tiny(smoke_root)
    held = meta["domain_sims"]
    assert dm.domain_trajectories() == held and 0 < len(held) < 8
    trained = [i for i in range(8) if i not in held]
    used: dict[str, set[tuple[int, int]]] = {}
    for name in ("train", "val", "test_future"):
        ds = dm.datasets[name]
        used[name] = {(trained[t], f) for i in range(len(ds)) for t, s in [ds.locate(i)]
                      for f in range(s, s + ds.in_frames + ds.out_frames)}
    assert not used["train"] & used["val"] and not used["train"] & used["test_future"]
    assert not used["val"] & used["test_future"]
    domain = dm.datasets["test_domain"]
    assert domain.data.shape[0] == len(held) and len(domain) > 0
    # the test_domain windows are the held-out simulations, normalised with the training statistics
    raw = torch.from_numpy(array[held][:, :, :2].copy())
    assert torch.allclose(dm.normalizer.denormalize(domain.data), raw, atol=1e-5)
    assert [name for name in dm.test_splits] == ["test_future", "test_domain"]


def test_scene_reader_reads_phiflow_scene_files(tmp_path):
    from phi.flow import Box, CenteredGrid, Scene

    bounds = Box(x=8, y=6)
    rng = np.random.default_rng(0)
    expected = np.zeros((2, 3, 3, 6, 8), dtype=np.float32)
    for s in range(2):
        scene = Scene.create(str(tmp_path), name="sim", copy_calling_script=False)
        for frame in range(3):
            vx, vy, d = (rng.normal(size=(8, 6)) for _ in range(3))  # (x, y) arrays, y up
            from phi import math

            velocity = CenteredGrid(math.tensor(np.stack([vx, vy], -1), math.spatial("x,y"),
                                                math.channel(vector="x,y")), 0, bounds, x=8, y=6)
            smoke = CenteredGrid(math.tensor(d, math.spatial("x,y")), 0, bounds, x=8, y=6)
            scene.write({"velocity": velocity, "smoke": smoke}, frame=frame)
            expected[s, frame, 0], expected[s, frame, 1] = vx.T[::-1], vy.T[::-1]
            expected[s, frame, 2] = d.T[::-1]
    array, layout = smoke_io.read_scenes(tmp_path)
    assert layout.names() == ["velocity", "density"] and layout.n_vectors == 1
    assert np.allclose(array, expected, atol=1e-6)
    with pytest.raises(FileNotFoundError, match="holds no PhiFlow scenes"):
        smoke_io.read_scenes(tmp_path / "sim_000000")


def test_bad_input_one_line_errors(smoke_root, tmp_path):
    with pytest.raises(ValueError, match="unknown smoke symmetry"):
        SmokeDataModule(symmetry="shear")
    with pytest.raises(ValueError, match="unknown field"):
        SmokeDataModule(symmetry="rotation", preset="tiny", root=str(smoke_root), fields=("pressure",)).load()
    with pytest.raises(store.DataNotFoundError, match="symbench data generate"):
        SmokeDataModule(symmetry="rotation", preset="tiny", root=str(tmp_path)).setup()
