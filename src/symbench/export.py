"""``symbench data export <dataset> --format netcdf|zarr``: a self-describing copy of a stored dataset, readable by
xarray alone.

The copy holds what the dataset's datamodule loads -- ``(trajectory, time, y, x)`` per channel -- with:

* one variable per scalar field and two per vector field (``<name>_x``, ``<name>_y``), each with CF-style attributes
  ``long_name``, ``units`` (when the source states them), ``field_kind`` (scalar / vector) and, for vectors,
  ``vector_component`` and ``vector_field``: a reader can rebuild the suite's field declaration;
* coordinates ``trajectory``, ``time`` (seconds when the data know their time step, else frame numbers), ``y`` and
  ``x`` (cell indices; row 0 is the largest y, columns run towards +x: :mod:`symbench.fields`);
* ``valid`` (1 = data defined) when the data carry a mask (ocean land, missing PIV vectors): ``trajectory, y, x``
  when it is the same in every frame, else ``trajectory, time, y, x``;
* global attributes: ``Conventions``, the dataset name, the field declaration, the orientation, and the generator
  or source parameters as JSON (``source_params``).

Formats: ``netcdf`` (one file, xarray's netCDF4 engine) or ``zarr`` (a directory store in Zarr format 2 with
consolidated metadata, readable by ``xr.open_zarr`` with zarr-python 2 or 3); both hold the same variables,
coordinates and attributes, and are written atomically (a failed export leaves nothing behind).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

import datamodules
from datamodules import store
from symbench import __version__
from symbench.fields import FieldLayout
from symbench.results import atomic_path



def dataset_of(dataset: str, options: dict[str, Any]) -> xr.Dataset:
    """The datamodule of ``dataset`` built with ``options`` (preset, root, source, ...), loaded, as an
    :class:`xarray.Dataset` (see the module docstring). Missing data raise the datamodule's own error."""
    dm = datamodules.entry(dataset).datamodule_class()(**options)
    array, layout = dm.load()
    return to_xarray(np.asarray(array), layout, dm.load_mask(), dm.describe(), dataset)


def to_xarray(array: np.ndarray, layout: FieldLayout, mask: np.ndarray | None, facts: dict[str, Any],
              name: str) -> xr.Dataset:
    """``array (n_traj, T, C, H, W)`` with its field declaration as a CF-style :class:`xarray.Dataset`."""
    params = facts.get("source_params", {}) or {}
    step = params.get("time_step") or params.get("frame_dt") or (params.get("grid") or {}).get("time_step")
    dims = ("trajectory", "time", "y", "x")
    units = (params.get("grid") or {}).get("units", ["", ""])[1] if isinstance(params.get("grid"), dict) else ""
    data_vars: dict[str, Any] = {}
    channel = 0
    for field in layout.fields:
        if field.kind == "vector":
            for axis, component in zip("xyz", range(layout.width(field))):
                attrs = {"long_name": f"{field.name} ({axis} component)", "field_kind": "vector",
                         "vector_field": field.name, "vector_component": axis}
                data_vars[f"{field.name}_{axis}"] = (dims, array[:, :, channel + component],
                                                     {**attrs, **({"units": units} if units else {})})
            channel += layout.width(field)
        else:
            data_vars[field.name] = (dims, array[:, :, channel], {"long_name": field.name, "field_kind": "scalar"})
            channel += 1
    n, t, _, h, w = array.shape
    time = np.arange(t, dtype=np.float64) * float(step) if step else np.arange(t)
    coords = {"trajectory": np.arange(n), "time": ("time", time, {"units": "s"} if step else {"long_name": "frame"}),
              "y": ("y", np.arange(h), {"long_name": "row (0 = largest y)"}),
              "x": ("x", np.arange(w), {"long_name": "column (towards +x)"})}
    if mask is not None:  # (trajectory, y, x) when the same in every frame, else per frame
        mask_dims = dims if np.ndim(mask) == 4 else ("trajectory", "y", "x")
        data_vars["valid"] = (mask_dims, np.asarray(mask, dtype=np.int8),
                              {"long_name": "data defined", "flag_values": [0, 1], "flag_meanings": "invalid valid"})
    attrs = {"Conventions": "CF-1.8", "title": f"symbench dataset {facts.get('dataset', name)}", "dataset": name,
             "fields": " ".join(str(f) for f in layout.fields), "orientation": "row 0 is the largest y; x east",
             "source_params": json.dumps(params, sort_keys=True, default=str),
             "history": f"symbench {__version__} data export"}
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


FORMATS = {"netcdf": ".nc", "zarr": ".zarr"}


def export(dataset: str, options: dict[str, Any], fmt: str, out: str | Path | None = None) -> Path:
    """Write :func:`dataset_of` as ``fmt`` to ``out`` (default ``<dataset>-<preset>.nc``/``.zarr``); returns it."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose {' or '.join(FORMATS)}")
    if fmt == "zarr" and importlib.util.find_spec("zarr") is None:
        raise ValueError("--format zarr needs the zarr package, which is missing here: pip install 'zarr>=2.18,<4'")
    ds = dataset_of(dataset, options)
    path = Path(out) if out else Path(f"{dataset}-{options.get('preset', 'cpu')}{FORMATS[fmt]}")
    if fmt == "zarr":
        with store.atomic_directory(path) as tmp:
            ds.to_zarr(tmp, mode="w", zarr_format=2, consolidated=True)
    else:
        with atomic_path(path) as tmp:
            ds.to_netcdf(tmp, engine="netcdf4")
    return path
