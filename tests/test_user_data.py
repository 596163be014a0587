"""A user's own files to a leaderboard from the command line alone (``symbench bench <benchmark> --data.*``): NetCDF
with names unlike any preset schema, u and v in two files, an all-fill frame, no units; and bad input as one line."""

from __future__ import annotations

import csv
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from datamodules.ocean import OceanDataModule
from symbench import cli
from symbench.data_options import board_name, parse_data_options

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
    u[3, 20, 20] = np.nan  # one missing point on one day: not land
    write_wind(folder / "wind_u.cdf", "UWND", u, None)
    write_wind(folder / "wind_v.nc4", "VWND", 100 * v, "CM/S")
    return folder, u, v


def test_names_paths_and_units_of_a_users_files(storm):
    """The mapping and the two files give u and v exactly (v converted from cm/s); land is the corner only (the
    all-fill day is dropped and named, the one missing point is excluded from the masks); the held-out longitudes
    default to the file's own east."""
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
    (r, c) = dm.origins[-1]
    assert np.allclose(tiles[-1, :, 0], u[days][:, r:r + 16, c:c + 16], atol=1e-6)
    assert np.allclose(tiles[-1, :, 1], v[days][:, r:r + 16, c:c + 16], atol=1e-5)
    masks = dm.load_mask()
    assert int((~masks[0]).sum()) == 36  # the 6x6 land corner of the first tile, the all-fill day not counted
    assert dm.origins == [(0, 0), (0, 16), (16, 0), (16, 16), (0, 32), (16, 32)]  # west, then east
    assert [m.all() for m in masks] == [False, True, True, False, True, True]  # land; (20, 20) missing on day 3
    assert dm.tiling.domain_lon_min == pytest.approx(LON[32]) and dm.domain_trajectories() == [4, 5]


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
    assert not (tmp_path / "results").exists() and not (tmp_path / "runs").exists()
