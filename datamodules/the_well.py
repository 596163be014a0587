"""Reader of The Well's HDF5 layout (PolymathicAI/the_well, docs/data_format.md) for 2D Cartesian simulations, e.g.
its Rayleigh-Benard files, into the suite's square tiles.

The layout (HDF5 groups, datasets and @attributes): root attributes ``dataset_name``, ``grid_type``
(``cartesian``), ``n_spatial_dims`` (2), ``n_trajectories`` and the ``simulation_parameters`` (each also an
attribute, e.g. ``Rayleigh``); group ``dimensions`` with ``@spatial_dims`` (e.g. ``['x', 'y']``), a ``time`` dataset
(T) and one coordinate dataset per spatial dimension; group ``boundary_conditions`` (one group per condition:
``@bc_type`` periodic / wall / open, ``@associated_dims``); fields in ``t0_fields`` (scalars, ``(B, T, n1, n2)``)
and ``t1_fields`` (vectors, ``(B, T, n1, n2, 2)``, components along the spatial dims), each group listing them in
``@field_names``. Array axes follow ``@spatial_dims``.

To the suite's orientation (:mod:`symbench.fields`): axis -1 is the first spatial dimension (x), rows run towards
-y (row 0 is the largest y); components keep their sign. Each trajectory is cut along x into square tiles of the
file's height, area-averaged to the preset's resolution (:func:`datamodules.rbc_io.tile_frames`): trajectory
``b * tiles + k`` is tile ``k`` of simulation ``b``. The time step is ``dimensions/time``'s (uniform) spacing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from datamodules.rbc_io import tile_frames
from datamodules.user_files import expand
from symbench.fields import FieldLayout

SUFFIXES = (".hdf5", ".h5")


@dataclass(frozen=True)
class WellFacts:
    """What the files say besides the fields: dataset name, simulation parameters (first file), time step, the
    boundary conditions per spatial dimension, the coordinate spans and the file count."""

    dataset_name: str
    parameters: dict[str, Any]
    time_step: float
    boundary_conditions: dict[str, str]
    extent: dict[str, list[float]]
    files: int


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _read_file(path: Path, fields: Sequence[str]) -> tuple[np.ndarray, list[str], WellFacts]:
    """``(B, T, C, H, W)`` float32 (rows towards -y), the field kinds, the facts of one file."""
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path}: not a readable HDF5 file ({str(err).splitlines()[0]})") from None
    with handle:
        if handle.attrs.get("n_spatial_dims") != 2 or _text(handle.attrs.get("grid_type", "")) != "cartesian":
            raise ValueError(f"{path}: not a 2D Cartesian file of The Well's layout (n_spatial_dims="
                             f"{handle.attrs.get('n_spatial_dims')}, grid_type={handle.attrs.get('grid_type')})")
        if "dimensions" not in handle:
            raise ValueError(f"{path}: no 'dimensions' group; groups: {sorted(handle)}")
        dims = [_text(d) for d in handle["dimensions"].attrs["spatial_dims"]]
        coords = {d: np.asarray(handle["dimensions"][d][()], dtype=np.float64) for d in dims}
        time = np.asarray(handle["dimensions"]["time"][()], dtype=np.float64)
        steps = np.diff(time)
        if not steps.size or np.ptp(steps) > 1e-6 * abs(steps.mean()):
            raise ValueError(f"{path}: dimensions/time is not uniformly spaced ({time.size} steps)")
        channels, kinds = [], []
        for name in fields:
            group = next((g for g in ("t0_fields", "t1_fields") if g in handle and name in handle[g]), None)
            if group is None:
                listed = [_text(n) for g in ("t0_fields", "t1_fields") if g in handle
                          for n in handle[g].attrs.get("field_names", [])]
                raise ValueError(f"{path}: no field {name!r}; t0_fields/t1_fields hold {listed}")
            data = np.asarray(handle[group][name][()], dtype=np.float32)
            vector = group == "t1_fields"
            expected = 5 if vector else 4
            if data.ndim != expected or data.shape[2:4] != (coords[dims[0]].size, coords[dims[1]].size):
                raise ValueError(f"{path}: {group}/{name} has shape {data.shape}; expected (B, T, "
                                 f"{coords[dims[0]].size}, {coords[dims[1]].size}{', 2' if vector else ''})")
            parts = np.moveaxis(data, -1, 2) if vector else data[:, :, None]  # (B, T, c, n1, n2)
            channels.append(parts)
            kinds.append(f"{name}:{'vector' if vector else 'scalar'}")
        array = np.swapaxes(np.concatenate(channels, axis=2), -1, -2)  # (B, T, C, y, x)
        if coords[dims[1]][-1] > coords[dims[1]][0]:
            array = array[..., ::-1, :]  # row 0 = the largest y
        if coords[dims[0]][-1] < coords[dims[0]][0]:
            array = array[..., ::-1]  # columns towards +x
        bcs = {}
        for bc in handle.get("boundary_conditions", {}).values():
            for d in bc.attrs.get("associated_dims", []):
                bcs[_text(d)] = _text(bc.attrs.get("bc_type", "")).lower()
        names = [_text(p) for p in handle.attrs.get("simulation_parameters", [])]
        params = {p: float(handle.attrs[p]) for p in names if p in handle.attrs}
        facts = WellFacts(_text(handle.attrs.get("dataset_name", "")), params, float(steps.mean()), bcs,
                          {d: [float(coords[d].min()), float(coords[d].max())] for d in dims}, 1)
    return np.ascontiguousarray(array), kinds, facts


def read_well(paths: str | Path | Sequence[str | Path], fields: Sequence[str] = ("velocity",),
              resolution: int | None = None) -> tuple[np.ndarray, FieldLayout, WellFacts]:
    """Read The Well files (files, globs, directories of ``.hdf5``/``.h5``) as square tiles ``(n, T, C, r, r)``,
    their :class:`FieldLayout` and :class:`WellFacts`. Files must share grid, fields and time step."""
    arrays, first = [], None
    for path in expand(paths, SUFFIXES, what="HDF5"):
        array, kinds, facts = _read_file(path, fields)
        if first is None:
            first, first_path, first_kinds = facts, path, kinds
        elif (array.shape[1:] != arrays[0].shape[1:] or kinds != first_kinds
              or abs(facts.time_step - first.time_step) > 1e-6 * first.time_step):
            raise ValueError(f"{path}: its fields {array.shape[1:]} every {facts.time_step:g} differ from "
                             f"{first_path.name}'s {arrays[0].shape[1:]} every {first.time_step:g}")
        arrays.append(array)
    assert first is not None
    whole = np.concatenate(arrays)  # (B, T, C, H, W)
    h, w = whole.shape[-2:]
    if w % h:
        raise ValueError(f"{first_path}: a {h}x{w} (y x x) grid does not cut into square tiles ({w} % {h} != 0)")
    if resolution is not None and h % resolution:
        raise ValueError(f"{first_path}: tiles of {h} cells do not average down to {resolution} (not a divisor)")
    tiles = np.concatenate([tile_frames(b, resolution=resolution) for b in whole])
    facts = WellFacts(first.dataset_name, first.parameters, first.time_step, first.boundary_conditions,
                      first.extent, len(arrays))
    return tiles.astype(np.float32), FieldLayout.of(*first_kinds), facts
