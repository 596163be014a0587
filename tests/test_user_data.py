"""A user's own files to a leaderboard from the command line alone (``symbench bench <benchmark> --data.*``): NetCDF
with names unlike any preset schema, u and v in two files, an all-fill frame, no units; and bad input as one line."""

from __future__ import annotations

import csv
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from datamodules.ocean import OceanDataModule
from symbench import cli
from symbench.data_options import board_name, parse_data_options
from symbench.fields import FieldLayout

NAMES = "{u: UWND, v: VWND, time: TIME, lat: FNOCY, lon: FNOCX}"
LAT, LON = np.linspace(40.0, 9.0, 32), np.linspace(100.0, 147.0, 48)  # rows north -> south, 100..147 E
TIMES = np.arange("2020-01-01", "2020-02-01", dtype="datetime64[D]")  # 31 days
MISSING_DAY = 10


def write_wind(path: Path, name: str, values: np.ndarray, units: str | None, lat: np.ndarray = LAT) -> Path:
    """One variable as a user's NetCDF file: upper-case names, ``_FillValue -9999``, ``units`` only when given."""
    attrs = {} if units is None else {"units": units}
    ds = xr.Dataset({name: (("TIME", "FNOCY", "FNOCX"), np.where(np.isnan(values), -9999.0, values), attrs)},
                    coords={"TIME": TIMES[:len(values)], "FNOCY": lat, "FNOCX": LON})
    ds.to_netcdf(path, encoding={name: {"_FillValue": -9999.0, "dtype": "float32"}})
    return path


@pytest.fixture(scope="module")
def storm(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    """u (no units, m/s) in ``wind_u.cdf`` and v (``CM/S``) in ``wind_v.nc4``; a land corner; day 10 all fill."""
    folder = tmp_path_factory.mktemp("storm")
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=(2, len(TIMES), len(LAT), len(LON)))
    land = (np.arange(len(LAT))[:, None] < 6) & (np.arange(len(LON))[None] < 6)
    u[:, land], v[:, land] = np.nan, np.nan
    u[MISSING_DAY], v[MISSING_DAY] = np.nan, np.nan
    u[3, 20:28, 36:44] = np.nan  # a quarter of a tile missing on one day (a cloud): not land
    write_wind(folder / "wind_u.cdf", "UWND", u, None)
    write_wind(folder / "wind_v.nc4", "VWND", 100 * v, "CM/S")
    return folder, u, v


def test_data_options_from_the_command_line():
    """YAML values (mappings, numbers, lists), text paths, several values as a list; anything else is one line."""
    options = parse_data_options(["--data.path", "2021", "on.nc", "--data.names", NAMES, "--data.region", "-30", "0",
                                  "-180", "-150", "--data.tile=8"])
    assert options == {"path": ["2021", "on.nc"], "names": yaml.safe_load(NAMES), "region": [-30, 0, -180, -150],
                       "tile": 8}
    for bad, message in ((["tiny"], "unrecognized argument 'tiny'"), (["--data.tile"], "--data.tile needs a value")):
        with pytest.raises(ValueError, match=message):
            parse_data_options(bad)


def test_names_paths_and_units_of_a_users_files(storm):
    """The mapping and the two files give u and v exactly (v converted from cm/s); land is the corner only (the
    all-fill day is dropped and named; the points missing on one day are not land and are masked on that day only);
    the held-out longitudes default to the file's own east."""
    folder, u, v = storm
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dm = OceanDataModule(source="netcdf", path=[str(folder / "wind_u.cdf"), str(folder / "wind_v.nc4")],
                             names=NAMES, preset="tiny", tile=16, tile_stride=16, max_land_fraction=0.2)
        tiles, _ = dm.load()
    messages = [str(w.message) for w in caught]
    assert any("dropped 1 frame(s)" in m and "2020-01-11" in m for m in messages), messages
    assert any("'UWND' has no units attribute; taken as m/s" in m for m in messages), messages
    assert not any("'VWND' has no units" in m for m in messages)
    days = np.delete(np.arange(len(TIMES)), MISSING_DAY)
    assert tiles.shape == (6, 30, 2, 16, 16)
    (r, c) = dm.origins[1]  # a tile without land or cloud
    assert np.allclose(tiles[1, :, 0], u[days][:, r:r + 16, c:c + 16], atol=1e-6)
    assert np.allclose(tiles[1, :, 1], v[days][:, r:r + 16, c:c + 16], atol=1e-5)
    masks = dm.load_mask()  # per frame: the cloud of day 3 is missing on that day only
    assert masks.shape == (6, 30, 16, 16)
    assert int((~masks[0].any(0)).sum()) == 36  # the 6x6 land corner of the first tile, the all-fill day not counted
    assert int((~masks[0]).sum()) == 36 * 30  # land in every frame, nothing else
    assert dm.origins == [(0, 0), (0, 16), (16, 0), (16, 16), (0, 32), (16, 32)]  # west, then east
    assert [m.all() for m in masks] == [False, True, True, True, True, False]  # land; the cloud of day 3
    gaps = (~masks[5]).sum(axis=(1, 2))  # kept (not 25 % land): out of the loss and metrics on day 3 alone
    assert np.flatnonzero(gaps).tolist() == [3] and int(gaps[3]) == 64
    assert dm.tiling.domain_lon_min == pytest.approx(LON[32]) and dm.domain_trajectories() == [4, 5]
    assert len(dm.describe()["data_key"]) == 10  # the content key of the two files


def test_bench_on_a_users_netcdf_writes_its_own_leaderboard(storm, tmp_path):
    """`symbench bench ocean --data.path DIR --data.names '{...}'` ends in rows of the user's dataset id."""
    folder, _, _ = storm
    args = ["bench", "ocean", "--preset", "tiny", "--models", "unet", "--root", str(tmp_path / "data"),
            "--results", str(tmp_path / "results"), "--runs", str(tmp_path / "runs"), "--no-progress",
            "--data.source", "netcdf", "--data.path", str(folder), "--data.names", NAMES]
    assert cli.main(args) == 0
    board = board_name("ocean", parse_data_options(args[args.index("--data.source"):]))
    assert board.startswith("ocean-") and board != "ocean"
    rows = list(csv.DictReader((tmp_path / "results" / board / "runs.csv").open()))
    assert {(r["model"], r["split"]) for r in rows if r["metric"] == "rmse"} == {
        ("unet", "test_future"), ("unet", "test_domain")}
    assert (tmp_path / "results" / board / "leaderboard.md").is_file()
    assert not (tmp_path / "results" / "ocean").exists()
    moved = shutil.copytree(folder, tmp_path / "elsewhere")  # the id is the content's, not the place's
    assert board_name("ocean", {"source": "netcdf", "path": str(moved), "names": NAMES}) == board

    # The run's resolved configuration lies beside its checkpoints; `symbench fit -c` repeats the run with it.
    (config,) = (tmp_path / "runs").glob("ocean/tiny/unet/seed0-*/config.yaml")
    saved = yaml.safe_load(config.read_text())
    assert saved["data"]["init_args"]["names"] == yaml.safe_load(NAMES) and saved["seed_everything"] == 0
    assert saved["data"]["init_args"]["path"] == str(folder) and saved["model"]["model"] == "unet"
    again = tmp_path / "again"
    assert cli.main(["fit", "-c", str(config), "--trainer.default_root_dir", str(again),
                     "--trainer.enable_progress_bar", "false", "--trainer.logger", "false"]) == 0
    assert list(again.rglob("best-epoch=0.ckpt"))


def test_bad_files_give_one_line_naming_the_file(storm, tmp_path, capsys):
    folder, u, v = storm
    not_netcdf = tmp_path / "notes.nc"
    not_netcdf.write_text("u,v\n1,2\n")
    truncated = tmp_path / "cut.nc"
    truncated.write_bytes((folder / "wind_u.cdf").read_bytes()[:2000])
    other_grid = write_wind(tmp_path / "v_shifted.nc", "VWND", v, "m/s", lat=LAT + 0.5)
    cases = [([not_netcdf], "notes.nc: cannot open as NetCDF"),
             ([truncated], "cut.nc: cannot open as NetCDF"),
             ([folder / "wind_u.cdf"], "no file holds variable 'VWND'"),
             ([folder / "wind_u.cdf", other_grid], "v_shifted.nc: its 'FNOCY' grid"),
             ([tmp_path / "absent.nc"], "absent.nc: no such data file or directory"),
             ([folder], "unknown role(s) ['speed']")]
    for paths, message in cases:
        names = NAMES if "speed" not in message else "{speed: S, lat: FNOCY, lon: FNOCX}"
        code = cli.main(["bench", "ocean", "--preset", "tiny", "--models", "unet", "--no-progress",
                         "--results", str(tmp_path / "results"), "--runs", str(tmp_path / "runs"),
                         "--data.source", "netcdf", "--data.path", *map(str, paths), "--data.names", names])
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.count("\n") == 1, (message, err)
    assert cli.main(["bench", "ocean", "--data.colour", "red"]) == 2
    assert "OceanDataModule has no option --data.colour" in capsys.readouterr().err
    written = [p for p in tmp_path.rglob("*") if p.is_file() and {"results", "runs"} & set(p.parts)]
    assert [p.name for p in written if p.name != ".lock"] == []  # the run locks only, nothing half-written


# ------------------------------------------------------------------------------------------------------ PIV series

PIV_GRID = (32, 48)  # rows, columns of vectors
DT_US, UM_PER_PX = 50.0, 20.0  # Insight's MicrosecondsPerDeltaT and MicrometersPerPixelX/Y


def write_insight(path: Path, u: np.ndarray, v: np.ndarray, chc: np.ndarray, scale: bool = True) -> Path:
    """One TSI Insight ``.vec`` field in pixel units: the one-line Tecplot header with its DATASETAUXDATA (dT and
    the pixel size only when ``scale``), then ``X, Y, U, V, CHC`` rows, x fastest from the smallest y."""
    h, w = u.shape
    aux = ['Application="PIV"', 'SourceImageWidth="768"', 'SourceImageHeight="512"']
    if scale:
        aux += [f'MicrosecondsPerDeltaT="{DT_US:f}"', 'LengthUnit="mm"', f'MicrometersPerPixelX="{UM_PER_PX:f}"',
                f'MicrometersPerPixelY="{UM_PER_PX:f}"']
    header = (f'TITLE="D:\\jet\\{path.stem}.vec" VARIABLES="X pixel", "Y pixel", "U pixel", "V pixel", "CHC", '
              + " ".join(f"DATASETAUXDATA {a}" for a in aux) + f" ZONE I={w}, J={h}, F=POINT,")
    rows = [f"{8 + 16 * j:.6f}, {8 + 16 * i:.6f}, {u[h - 1 - i, j]:.6f}, {v[h - 1 - i, j]:.6f}, {chc[h - 1 - i, j]:d}"
            for i in range(h) for j in range(w)]
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def insight(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """32 frames of an Insight series (displacements in pixels, row 0 on top); one vector flagged (CHC -1)."""
    folder = tmp_path_factory.mktemp("insight")
    rng = np.random.default_rng(1)
    u, v = rng.normal(size=(2, 32, *PIV_GRID)).astype(np.float32).round(4)
    for k in range(32):
        chc = np.ones(PIV_GRID, dtype=int)
        chc[5, 5] = -1 if k == 7 else 1
        write_insight(folder / f"Run000001.T{k:03d}.D000.P000.H000.L.vec", u[k], v[k], chc)
    return folder, np.stack([u, v], axis=1)


def test_an_insight_series_in_pixels_becomes_si(insight, tmp_path):
    """Pixels per dT -> m/s (x dT and the pixel size of the header), coordinates in m, times k dT; a series without
    the scale stays in pixels and says so."""
    from datamodules.jetflow import JetFlowDataModule

    folder, displacement = insight
    dm = JetFlowDataModule(source="piv", path=str(folder), root=str(tmp_path), station_shape=[16, 24])
    tiles, _ = dm.load()
    (rows, cols), first = dm.station_boxes[1], dm.trajectory_stations.index((0, 1))  # clear of the flag
    assert np.allclose(tiles[first], displacement[:, :, rows, cols] * UM_PER_PX / DT_US, atol=1e-6)
    grid = dm.describe()["stations"]["grid"]
    assert grid["units"] == ["m", "m/s"] and grid["time_step"] == pytest.approx(DT_US * 1e-6)
    assert grid["x"] == pytest.approx([8 * UM_PER_PX * 1e-6, (8 + 16 * 47) * UM_PER_PX * 1e-6])
    bare = tmp_path / "bare"
    bare.mkdir()
    for k in range(2):
        write_insight(bare / f"f{k}.vec", displacement[k, 0], displacement[k, 1], np.ones(PIV_GRID, int), False)
    with pytest.warns(UserWarning, match="velocities stay in pixels per dT"):
        JetFlowDataModule(source="piv", path=str(bare), root=str(tmp_path), station_shape=[16, 24]).read_runs()


def test_bench_on_a_users_piv_series(insight, tmp_path):
    folder, _ = insight
    assert cli.main(["bench", "jetflow", "--preset", "tiny", "--models", "conv", "--root", str(tmp_path / "data"),
                     "--results", str(tmp_path / "results"), "--runs", str(tmp_path / "runs"), "--no-progress",
                     "--data.source", "piv", "--data.path", str(folder)]) == 0
    (csv_path,) = (tmp_path / "results").glob("jetflow-*/runs.csv")
    rows = list(csv.DictReader(csv_path.open()))
    assert {(r["model"], r["split"]) for r in rows if r["metric"] == "rmse"} == {
        ("conv", "test_future"), ("conv", "test_domain")}


# ------------------------------------------------------------------------------------------------- The Well HDF5

def write_the_well(path: Path, velocity: np.ndarray, buoyancy: np.ndarray, dt: float = 0.25) -> Path:
    """A Rayleigh-Benard file in The Well's layout (PolymathicAI/the_well docs/data_format.md), written with h5py:
    ``velocity`` (B, T, nx, ny, 2) in ``t1_fields``, ``buoyancy`` (B, T, nx, ny) in ``t0_fields``, y upwards."""
    import h5py

    b, t, nx, ny = buoyancy.shape
    with h5py.File(path, "w") as f:
        f.attrs.update({"dataset_name": "rayleigh_benard", "grid_type": "cartesian", "n_spatial_dims": 2,
                        "n_trajectories": b, "simulation_parameters": ["Rayleigh", "Prandtl"], "Rayleigh": 1e8,
                        "Prandtl": 1.0})
        dims = f.create_group("dimensions")
        dims.attrs["spatial_dims"] = ["x", "y"]
        dims.create_dataset("time", data=(np.arange(t) * dt).astype(np.float32)).attrs["sample_varying"] = False
        for name, n, length in (("x", nx, 4.0), ("y", ny, 1.0)):
            ds = dims.create_dataset(name, data=((np.arange(n) + 0.5) * length / n).astype(np.float32))
            ds.attrs.update({"sample_varying": False, "time_varying": False})
        bcs = f.create_group("boundary_conditions")
        for name, dim, kind, n in (("x_periodic", "x", "PERIODIC", nx), ("y_wall", "y", "WALL", ny)):
            g = bcs.create_group(name)
            g.attrs.update({"associated_dims": [dim], "associated_fields": [], "bc_type": kind,
                            "sample_varying": False, "time_varying": False})
            mask = np.zeros(n, bool)
            mask[[0, -1]] = True
            g.create_dataset("mask", data=mask)
        f.create_group("scalars").attrs["field_names"] = []
        for group, name, data in (("t0_fields", "buoyancy", buoyancy), ("t1_fields", "velocity", velocity)):
            g = f.create_group(group)
            g.attrs["field_names"] = [name]
            ds = g.create_dataset(name, data=data.astype(np.float32))
            ds.attrs.update({"dim_varying": [True, True], "sample_varying": True, "time_varying": True})
        f.create_group("t2_fields").attrs["field_names"] = []
    return path


@pytest.fixture(scope="module")
def well(tmp_path_factory) -> tuple[Path, np.ndarray]:
    folder = tmp_path_factory.mktemp("the_well")
    rng = np.random.default_rng(2)
    velocity = rng.normal(size=(2, 1, 30, 128, 32, 2)).astype(np.float32)  # files, B, T, nx, ny, (vx, vy)
    for k in range(2):
        write_the_well(folder / f"rayleigh_benard_Rayleigh_1e8_Prandtl_{k}.hdf5", velocity[k],
                       velocity[k, ..., 0] ** 2)
    return folder, velocity


def test_the_well_file_becomes_square_tiles(well):
    """Tile k of simulation b: x columns 32k..32k+31, rows the y axis from the top, 2x2 cells averaged to the tiny
    preset's 16; the time step and parameters are the file's."""
    from datamodules.rbc import RBCDataModule

    folder, velocity = well
    dm = RBCDataModule(preset="tiny", source="the_well", path=str(folder / "rayleigh_benard_*.hdf5"))
    tiles, layout = dm.load()
    assert tiles.shape == (8, 30, 2, 16, 16) and layout == FieldLayout.of("velocity:vector")
    for traj, (file, k) in ((0, (0, 0)), (6, (1, 2))):
        frames = np.moveaxis(velocity[file, 0], -1, 1).swapaxes(-1, -2)[:, :, ::-1]  # (T, 2, y from the top, x)
        block = frames[..., 32 * k:32 * (k + 1)].reshape(30, 2, 16, 2, 16, 2).mean(axis=(3, 5))
        assert np.allclose(tiles[traj], block, atol=1e-6)
    params = dm.describe()["source_params"]
    assert params["time_step"] == pytest.approx(0.25) and params["parameters"] == {"Rayleigh": 1e8, "Prandtl": 1.0}
    assert params["boundary_conditions"] == {"x": "periodic", "y": "wall"} and params["files"] == 2
    both = RBCDataModule(preset="tiny", source="the_well", path=str(folder), fields=["velocity", "buoyancy"])
    assert both.load()[1] == FieldLayout.of("velocity:vector", "buoyancy:scalar")


def test_bench_rbc_on_the_well_files(well, tmp_path, capsys):
    folder, _ = well
    common = ["--preset", "tiny", "--models", "resnet", "--max-epochs", "1", "--root", str(tmp_path / "data"),
              "--results", str(tmp_path / "results"), "--runs", str(tmp_path / "runs"), "--no-progress"]
    assert cli.main(["bench", "rbc", *common, "--data.source", "the_well",
                     "--data.path", str(folder / "rayleigh_benard_*.hdf5"), "--data.test_splits", "[orig, rot]"]) == 0
    (csv_path,) = (tmp_path / "results").glob("rbc-*/runs.csv")  # 30 frames: too short for the scale split
    splits = {r["split"] for r in csv.DictReader(csv_path.open()) if r["metric"] == "rmse"}
    assert splits == {"orig", "rot"}
    text = tmp_path / "rayleigh_benard_notes.hdf5"
    text.write_text("not HDF5")
    cut = tmp_path / "rayleigh_benard_cut.hdf5"
    cut.write_bytes(next(folder.glob("*.hdf5")).read_bytes()[:4096])
    for bad, message in ((text, "rayleigh_benard_notes.hdf5: not a readable HDF5 file"),
                         (cut, "rayleigh_benard_cut.hdf5: not a readable HDF5 file")):
        assert cli.main(["bench", "rbc", *common, "--data.source", "the_well", "--data.path", str(bad)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


# ------------------------------------------------------------------------------------------------------ exports

def test_data_export_writes_a_self_describing_netcdf(tmp_path, capsys):
    """A stored dataset (here a small heat array written in the store's layout) exported by the command line reads
    back with xarray alone: values, field kinds, time in seconds, generator parameters."""
    import json

    from datamodules import heat_sim, store

    rng = np.random.default_rng(3)
    array = rng.normal(size=(2, 6, 1, 8, 8)).astype(np.float32)
    params = {**heat_sim.PRESETS["tiny"].to_dict(), "frame_dt": 0.5}
    store.write_trajectories(heat_sim.default_dir(tmp_path, "tiny"), array, FieldLayout.of("temperature:scalar"),
                             params=params)
    out = tmp_path / "heat.nc"
    assert cli.main(["data", "export", "heat", "--preset", "tiny", "--root", str(tmp_path), "--out", str(out)]) == 0
    ds = xr.open_dataset(out)
    assert np.array_equal(ds["temperature"].values, array[:, :, 0])
    assert ds["temperature"].attrs["field_kind"] == "scalar" and ds.attrs["fields"] == "temperature:scalar"
    assert np.allclose(ds["time"].values, 0.5 * np.arange(6)) and ds["time"].attrs["units"] == "s"
    assert json.loads(ds.attrs["source_params"])["frame_dt"] == 0.5
    ds.close()
    capsys.readouterr()
    for args, message in ((["--format", "hdf"], "unknown export format 'hdf'; choose netcdf or zarr"),
                          (["--root", str(tmp_path / "none")], "no dataset at")):
        assert cli.main(["data", "export", "heat", "--preset", "tiny", "--out", str(tmp_path / "x.nc"), *args]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "x.nc").exists()


@pytest.mark.filterwarnings("ignore:.*(has no units attribute|dropped 1 frame)")  # the storm's, tested above
def test_data_export_zarr_is_the_netcdf_copy_and_keeps_per_frame_masks(storm, tmp_path, capsys, monkeypatch):
    """`--format zarr` writes the same variables, coordinates and attributes as the NetCDF copy, read back by
    ``xr.open_zarr``; a user's series with a cloud on one day exports its mask per frame. Without the zarr package:
    one line naming the pip install, nothing written."""
    folder, _, _ = storm
    common = ["data", "export", "ocean", "--preset", "tiny", "--data.source", "netcdf", "--data.path", str(folder),
              "--data.names", NAMES, "--data.tile", "16", "--data.max_land_fraction", "0.2"]
    assert cli.main([*common, "--out", str(tmp_path / "storm.nc")]) == 0
    assert cli.main([*common, "--format", "zarr", "--out", str(tmp_path / "storm.zarr")]) == 0
    with xr.open_dataset(tmp_path / "storm.nc") as nc, xr.open_zarr(tmp_path / "storm.zarr") as zarr:
        xr.testing.assert_identical(zarr.load(), nc.load())
        assert zarr["valid"].dims == ("trajectory", "time", "y", "x")  # the cloud of day 3: per frame
        assert int((zarr["valid"][5] == 0).sum()) == 64 and zarr["velocity_x"].attrs["field_kind"] == "vector"
    real = xr.Dataset.to_zarr

    def full_disk(self, store, **kwargs):  # writes the store, then fails
        real(self, store, **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(xr.Dataset, "to_zarr", full_disk)
    assert cli.main([*common, "--format", "zarr", "--out", str(tmp_path / "full.zarr")]) != 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["storm.nc", "storm.zarr"]  # nothing half-written
    monkeypatch.setattr(xr.Dataset, "to_zarr", real)
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "zarr", None)  # as if it were not installed
    assert cli.main([*common, "--format", "zarr", "--out", str(tmp_path / "none.zarr")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'zarr>=2.18,<4'" in err and err.count("\n") == 1, err
    assert not (tmp_path / "none.zarr").exists()
