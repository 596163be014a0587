"""The jet-flow family (ICML 2022 sec. 5.3): the PhiFlow jet written as Tecplot PIV files (determinism, atomic
writes, orientation and the physics of a planar jet), stations cut from the PIV field, the test_future /
test_domain splits, a training-only normaliser, the PIV source (valid mask, skipped stations, cache) and errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules import jetflow, jetflow_sim, piv_io
from datamodules.jetflow import JetFlowDataModule

TINY = jetflow_sim.PRESETS["tiny"]
SMALL = dataclasses.replace(TINY, runs=1, frames=3, spinup=6)  # a few solver steps of the tiny geometry
WINDOWS = dict(in_frames=3, train_steps=2, rollout_steps=4, batch_size=8)


@pytest.fixture(scope="module")
def jet_root(tmp_path_factory) -> Path:
    """The tiny preset generated once (PhiFlow, ~8 s on one thread)."""
    root = tmp_path_factory.mktemp("jet")
    jetflow.generate_preset("tiny", root, progress=False)
    return root


def _files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_generation_is_deterministic_atomic_and_reused(tmp_path, monkeypatch):
    a = jetflow_sim.generate(SMALL, tmp_path / "a", progress=False)
    b = jetflow_sim.generate(SMALL, tmp_path / "b", progress=False)
    files = _files(a)
    assert sorted(files) == ["jetflow.json", "run_000/frame_00000.dat", "run_000/frame_00001.dat",
                             "run_000/frame_00002.dat"]
    assert files == _files(b)  # same seed -> the same bytes
    other = jetflow_sim.generate(dataclasses.replace(SMALL, seed=1), tmp_path / "c", progress=False)
    assert _files(other)["run_000/frame_00002.dat"] != files["run_000/frame_00002.dat"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]  # no temporary directory left

    real = jetflow_sim.simulate

    def killed_after_two_frames(params, on_frame, step_done=None):
        def write_then_die(k, velocity):
            on_frame(k, velocity)  # frame k is written to the temporary directory
            if k == 1:
                raise KeyboardInterrupt

        real(params, write_then_die, step_done)

    monkeypatch.setattr(jetflow_sim, "simulate", killed_after_two_frames)
    with pytest.raises(KeyboardInterrupt):
        jetflow_sim.generate(SMALL, tmp_path / "d", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]  # nothing half-written
    monkeypatch.setattr(jetflow_sim, "simulate", lambda *args, **kwargs: pytest.fail("simulated again"))
    assert jetflow_sim.generate(SMALL, a, progress=False) == a and _files(a) == files  # same key: reused


def test_oversampled_field_of_view_is_centred_on_the_slot():
    p = dataclasses.replace(SMALL, vector_spacing=0.5)  # two PIV vectors per cell, as the paper preset
    x, y = p.coordinates()
    assert np.allclose(np.diff(x), p.dx / 2) and np.allclose(y, -y[::-1]) and x[0] == pytest.approx(p.dx / 4)
    frames: list[np.ndarray] = []
    jetflow_sim.simulate(p, lambda k, velocity: frames.append(velocity))
    assert len(frames) == p.frames and frames[0].shape == (1, 2, *p.window)
    u = frames[-1][0, 0, :, 1]  # rows y up, next to the nozzle, U = 1
    distance = np.abs(np.arange(len(u)) + 0.5 - len(u) / 2) * p.vector_spacing  # from the axis, cells
    slot = distance < p.slot_width / 2 - 1
    assert u[slot].min() > 0.85 and np.abs(u[~slot]).max() <= u[slot].min()
    assert np.abs(u[distance > p.slot_width]).max() < 0.05
    np.testing.assert_allclose(u, u[::-1], atol=0.05)  # symmetric about the axis after a few steps


def test_tiny_files_read_back_as_an_unsteady_jet_towards_plus_x(jet_root):
    directory = jetflow_sim.default_dir(jet_root, "tiny")
    meta = json.loads((directory / jetflow_sim.META_FILE).read_text())
    assert meta["runs"] == ["run_000", "run_001"] and meta["params"] == json.loads(json.dumps(TINY.to_dict()))
    assert meta["scaling"]["reynolds"] == pytest.approx(1000)
    U, (n_cross, n_axial), (h, w) = TINY.jet_velocity, TINY.stations, TINY.station_shape
    for run in meta["runs"]:
        s = piv_io.read_piv_series(directory / run)
        assert s.velocity.shape == (TINY.frames, 2, n_cross * h, n_axial * w) and s.units == ("m", "m/s")
        assert s.mask.all() and np.allclose(np.diff(s.times), TINY.frame_interval)
        assert s.x[0] == pytest.approx(TINY.dx / 2) and s.y[0] > 0 > s.y[-1]  # x from the nozzle, rows towards -y
        u, v = s.velocity[:, 0], s.velocity[:, 1]
        mean_u = u.mean(0)
        axis = np.abs(s.y) < TINY.dx  # the two rows beside the axis
        assert mean_u[axis, :w].mean() > 0.85 * U  # the jet core leaves the nozzle at U towards +x
        assert np.abs(mean_u[:3]).max() < 0.1 * U and np.abs(mean_u[-3:]).max() < 0.1 * U  # quiescent far field
        # entrainment towards the axis: v < 0 above the jet, v > 0 below (a row flip would swap these signs)
        mean_v = v.mean(0)
        assert mean_v[: h // 2].mean() < -0.002 * U and mean_v[-(h // 2):].mean() > 0.002 * U
        stations = [slice(a * w, (a + 1) * w) for a in range(n_axial)]
        profiles = [mean_u[:, c].mean(1) for c in stations]
        centre = [p.max() for p in profiles]
        width = [(p > p.max() / 2).sum() for p in profiles]
        flux = [(u[:, :, c] ** 2).mean(0).mean(1).sum() * (s.y[0] - s.y[1]) for c in stations]
        assert centre[-1] < centre[0] and width[-1] > width[0]  # the centreline velocity decays, the jet spreads
        assert max(flux) / min(flux) < 1.3  # momentum flux roughly conserved downstream
        assert np.isclose(flux[0], U**2 * TINY.slot_m, rtol=0.3)
        assert v[:, :, stations[-1]].std(0).max() > 0.1 * U  # unsteady: vortices shed from the shear layers


def _module(root: Path, **kwargs) -> JetFlowDataModule:
    return JetFlowDataModule(preset="tiny", root=str(root), **{**WINDOWS, **kwargs})


def test_stations_are_slices_of_the_piv_field(jet_root):
    directory = jetflow_sim.default_dir(jet_root, "tiny")
    fields = [piv_io.read_piv_series(directory / r).velocity for r in ("run_000", "run_001")]
    dm = _module(jet_root)
    array, layout = dm.load()
    assert dm.resolve_station_shape() == (16, 16) and str(layout) == "velocity:vector"
    assert array.shape == (12, TINY.frames, 2, 16, 16) and dm.valid_mask.shape == (12, TINY.frames, 16, 16)
    assert dm.trajectory_stations == [(r, s) for r in range(2) for s in range(6)]
    for i, (run, s) in enumerate(dm.trajectory_stations):
        axial, cross = divmod(s, 2)
        np.testing.assert_array_equal(array[i], fields[run][:, :, 16 * cross : 16 * cross + 16,
                                                             16 * axial : 16 * axial + 16])
    small = _module(jet_root, station_shape=(8, 12), stations=(2, 3), station_offset=(4, 5))
    part, _ = small.load()
    assert part.shape == (12, TINY.frames, 2, 8, 12)
    np.testing.assert_array_equal(part[6 + 5], fields[1][:, :, 12:20, 29:41])  # run 1, axial 2, cross 1
    centred, _ = _module(jet_root, station_shape=(10, 20)).load()  # 3x2 stations centred in the 32x48 field
    np.testing.assert_array_equal(centred[0], fields[0][:, :, 1:11, 4:24])


def test_splits_hold_out_stations_and_later_times(jet_root):
    dm = _module(jet_root)
    dm.setup()
    held = dm.domain_station_ids()
    assert len(held) == 1 and held == _module(jet_root).domain_station_ids()  # seeded, 20 % of 6 stations
    domain = dm.domain_trajectories()
    assert [dm.trajectory_stations[i][1] for i in domain] == held * 2  # that station in both runs
    array = torch.from_numpy(np.array(dm.load()[0]))
    normalized = dm.normalizer.normalize(array)
    kept = [i for i in range(12) if i not in domain]
    train, val, future = dm.datasets["train"], dm.datasets["val"], dm.datasets["test_future"]
    torch.testing.assert_close(train.data, normalized[kept])  # the held-out station never trains
    torch.testing.assert_close(dm.datasets["test_domain"].data, normalized[domain])
    assert train.range.stop <= val.range.start and val.range.stop <= future.range.start
    assert min(future.starts) >= train.range.stop + len(val.range)
    assert train.starts[-1] + WINDOWS["in_frames"] + WINDOWS["train_steps"] <= train.range.stop
    chosen = _module(jet_root, domain_stations=[0, 5])
    assert [chosen.trajectory_stations[i] for i in chosen.domain_trajectories()] == [(0, 0), (0, 5), (1, 0), (1, 5)]


def test_normaliser_is_fitted_on_the_training_range_of_training_stations(jet_root):
    reference = _module(jet_root)
    reference.setup()
    dm = _module(jet_root)
    array, layout = dm.load()
    train_stop = reference.datasets["train"].range.stop
    spoiled = np.array(array)
    spoiled[:, train_stop:] *= 100.0  # validation and test times
    spoiled[dm.domain_trajectories()] *= 100.0  # held-out stations
    dm._cache = (spoiled, layout)
    dm.setup()
    kept = [i for i in range(len(array)) if i not in dm.domain_trajectories()]
    expected = np.sqrt((array[kept, :train_stop].astype(np.float64) ** 2).sum(2).mean())
    assert dm.normalizer.scale.tolist() == pytest.approx([expected] * 2, rel=1e-5)
    assert reference.normalizer.scale.tolist() == pytest.approx(dm.normalizer.scale.tolist(), rel=1e-5)


def _write_runs(folder: Path, runs: int = 2, frames: int = 6) -> None:
    """User PIV files: a 20 x 30 field per frame, the upper-left 10 x 10 block invalid in run 1."""
    x, y = np.arange(30) * 1e-3, np.arange(20)[::-1] * 1e-3
    rng = np.random.default_rng(3)
    for run in range(runs):
        for k in range(frames):
            u, v = rng.normal(size=(2, 20, 30))
            mask = np.ones((20, 30), bool)
            if run == 1:
                mask[:10, :10] = False
            field = piv_io.PIVField(x, y, u, v, mask, units=("m", "m/s"), time=0.01 * k, source="f")
            piv_io.write_tecplot(folder / f"run{run}" / f"B{k:04d}.dat", field)


def test_piv_source_masks_skips_and_caches(tmp_path, monkeypatch):
    _write_runs(tmp_path / "piv")
    dm = JetFlowDataModule(source="piv", path=str(tmp_path / "piv"), root=str(tmp_path / "data"),
                           station_shape=(10, 10), **WINDOWS)
    with pytest.warns(UserWarning, match="run 1 station 0 skipped: 0% valid"):
        array, _ = dm.load()
    assert array.shape == (11, 6, 2, 10, 10) and (1, 0) not in dm.trajectory_stations and dm.valid_mask.all()
    one = JetFlowDataModule(source="piv", path=str(tmp_path / "piv" / "run1"), root=str(tmp_path / "data"),
                            station_shape=(10, 10), min_valid_fraction=0.0, **WINDOWS)
    single, _ = one.load()  # a folder of files is one run; with no threshold the invalid station stays
    assert single.shape == (6, 6, 2, 10, 10) and not one.valid_mask[0].any() and not single[0].any()
    assert dm.load_mask() is None  # every kept vector valid: plain (history, target) batches
    static = one.load_mask()  # the invalid station's vectors are masked in the loss and the metrics
    assert static.shape == (6, 10, 10) and not static[0].any() and static[1:].all()
    assert len(list((tmp_path / "data" / "jetflow" / "piv-cache").glob("*.npz"))) == 2

    def no_reading(*args, **kwargs):
        raise AssertionError("read the PIV files again instead of the cache")

    monkeypatch.setattr(piv_io, "read_piv_series", no_reading)
    again = JetFlowDataModule(source="piv", path=str(tmp_path / "piv"), root=str(tmp_path / "data"),
                              station_shape=(10, 10), min_valid_fraction=0.5, **WINDOWS)
    with pytest.warns(UserWarning, match="skipped"):
        np.testing.assert_array_equal(again.load()[0], array)


def _one_line(excinfo: pytest.ExceptionInfo) -> None:
    assert "\n" not in str(excinfo.value)


def test_bad_input_gives_one_line_errors(tmp_path):
    missing = "no jet-flow dataset at .*; create it with `symbench data generate jetflow --preset tiny"
    with pytest.raises(FileNotFoundError, match=missing) as e:
        _module(tmp_path).load()
    _one_line(e)
    with pytest.raises(FileNotFoundError, match="no such folder") as e:
        JetFlowDataModule(source="piv", path=str(tmp_path / "nope")).load()
    _one_line(e)
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="no PIV files") as e:
        JetFlowDataModule(source="piv", path=str(tmp_path / "empty")).load()
    _one_line(e)
    _write_runs(tmp_path / "piv", runs=1, frames=2)
    with pytest.raises(ValueError, match=r"station_shape \(23, 62\) is larger than the 20x30") as e:
        JetFlowDataModule(source="piv", path=str(tmp_path / "piv"), root=str(tmp_path)).load()
    _one_line(e)
    for make in (lambda: JetFlowDataModule(preset="huge"), lambda: jetflow.generate_preset("huge", tmp_path),
                 lambda: jetflow_sim.default_dir(tmp_path, "huge")):
        with pytest.raises(ValueError, match="unknown jetflow preset 'huge'; available presets: tiny, cpu, paper"):
            make()
    with pytest.raises(ValueError, match="needs --data.path"):
        JetFlowDataModule(source="piv")
    with pytest.raises(ValueError, match="cells; PhiFlow's pressure solve") as e:
        dataclasses.replace(TINY, stations=(4, 8), station_shape=(32, 62))
    _one_line(e)
    with pytest.raises(ValueError, match=r"domain_stations \[9\] out of range") as e:
        JetFlowDataModule(source="piv", path=str(tmp_path / "piv"), root=str(tmp_path), station_shape=(10, 10),
                          domain_stations=[9]).domain_trajectories()
    _one_line(e)


def test_bench_jetflow_tiny_runs_table2_models(tmp_path):
    """`symbench bench jetflow` at tiny for one model of each symmetry group of Table 2 (the data generated first)."""
    import csv

    from symbench import cli

    names = ["conv", "lift_rot", "rsteer_ts"]
    args = ["--preset", "tiny", "--root", str(tmp_path / "data"), "--results", str(tmp_path / "results"),
            "--runs", str(tmp_path / "runs"), "--no-progress", "--models", *names]
    assert cli.main(["bench", "jetflow", *args]) == 0
    rows = list(csv.DictReader((tmp_path / "results" / "jetflow" / "runs.csv").open()))
    assert {(r["model"], r["split"]) for r in rows if r["metric"] == "rmse"} == {
        (m, s) for m in names for s in ("test_future", "test_domain")}
