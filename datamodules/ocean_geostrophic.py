"""Surface currents from a sea-level variable (``adt``/``ssh``/``zos``; the ``ssh`` role of a schema): the reading
side of ``--data.currents geostrophic``.

u = -(g/f) d(eta)/dy, v = (g/f) d(eta)/dx on the sphere (:func:`datamodules.ocean_io.geostrophic_currents`), with
fourth-order centred differences by default: against the DUACS global map's own ``ugos``/``vgos`` (tests) second
order underestimates speed by a few per cent where fourth order matches to a slope of ~1. Sea level in m (``cm``
converted, no units: a warning, taken as m); cells whose stencil touches land or leaves the box, and the band within
5 degrees of the equator (f -> 0), are invalid.
"""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr

from datamodules import ocean_io
from datamodules.ocean_io import OceanCoords, OceanDataError, OceanNames, Region

LEVEL_UNITS = {"m": 1.0, "meter": 1.0, "meters": 1.0, "metre": 1.0, "metres": 1.0, "cm": 0.01, "centimeters": 0.01,
               "mm": 0.001}


def level_factor(units: str, name: str, source: str) -> float:
    """The factor to metres of a sea-level variable's ``units``."""
    key = units.strip().lower()
    if not key:
        warnings.warn(f"{source}: sea-level variable {name!r} has no units attribute; taken as m", stacklevel=3)
        return 1.0
    if key not in LEVEL_UNITS:
        raise OceanDataError(f"{source}: sea-level variable {name!r} has units {units!r}; known: "
                             f"{', '.join(LEVEL_UNITS)}")
    return LEVEL_UNITS[key]


def read_geostrophic(ds: xr.Dataset, names: OceanNames, region: Region | None = None,
                     order: int = 4) -> tuple[np.ndarray, np.ndarray, OceanCoords]:
    """Like :func:`~datamodules.ocean_io.read_fields` for ``("u", "v")``, derived from the ``ssh`` variable:
    ``(array (T, 2, H, W) float32 in m/s, mask (T, H, W), coords)``; invalid cells are 0 and False."""
    array, mask, coords = ocean_io.read_fields(ds, names, region, ["ssh"])
    if coords.curvilinear:
        raise OceanDataError(f"{ds.encoding.get('source', 'dataset')}: geostrophic currents need a 1D "
                             "latitude/longitude grid")
    name = names.variable("ssh")
    factor = level_factor(coords.units[0], name, ds.encoding.get("source", "dataset"))
    valid = np.broadcast_to(mask, (array.shape[0], *array.shape[-2:]))
    eta = np.where(valid, array[:, 0].astype(np.float64) * factor, np.nan)
    u, v = ocean_io.geostrophic_currents(eta, coords.lat, coords.lon, order=order)
    ok = np.isfinite(u) & np.isfinite(v)
    out = np.where(ok[:, None], np.stack([u, v], axis=1), 0.0).astype(np.float32)
    return out, ok, coords
