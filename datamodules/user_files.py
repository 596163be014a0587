"""A user's own files: variable-name mappings, path specifications and a content-derived dataset id.

* :func:`schema` -- ``names`` as a preset schema name (``CMEMS``, ``DUACS``, ...), a mapping of roles to the file's
  names (``{u: UWND, v: VWND, time: TIME, lat: FNOCY, lon: FNOCX}``) or that mapping written in YAML / JSON flow
  style. Roles a mapping leaves out do not exist in the files (``depth``/``time``: no such dimension).
* :func:`netcdf_files` -- ``path`` as one file, a glob, a directory (every file with a NetCDF suffix in it) or a list
  of these.
* :func:`open_by_variable` -- u and v (or any variables) in different files: each variable's files are joined along
  time, then the variables are merged on their common grid and time axis; a one-line error names the files whose
  grids or times do not match.
* :func:`dataset_id` -- the id of a user's dataset: a hash of the files' names and bytes and of the options that
  choose what is read from them, so the same files in another place get the same id.
"""

from __future__ import annotations

import glob as globlib
import json
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import xarray as xr
import yaml

from datamodules import ocean_io, store
from datamodules.ocean_io import OceanDataError, OceanNames

NETCDF_SUFFIXES = (".nc", ".nc4", ".cdf", ".netcdf", ".nc3")
PathSpec = str | Path | Sequence[str | Path]
NameSpec = str | Mapping[str, str | None]


def schema(names: NameSpec, presets: Mapping[str, OceanNames]) -> OceanNames:
    """The :class:`OceanNames` of a preset name, a mapping or a YAML / JSON flow mapping (keys: the roles
    ``u v temperature ssh time depth lat lon``). Raises ``ValueError`` naming the bad key or text."""
    if isinstance(names, str):
        if names in presets:
            return presets[names]
        try:
            parsed = yaml.safe_load(names)
        except yaml.YAMLError:
            parsed = None
        if not isinstance(parsed, dict):
            raise ValueError(f"unknown ocean schema {names!r}: neither a schema ({', '.join(presets)}) nor a mapping such as "
                             "'{u: UWND, v: VWND, time: TIME, lat: LAT, lon: LON}'")
        names = parsed
    roles = [f.name for f in dataclass_fields(OceanNames)]
    unknown = sorted(set(map(str, names)) - set(roles))
    if unknown:
        raise ValueError(f"names: unknown role(s) {unknown}; the roles are {', '.join(roles)}")
    for key in ("lat", "lon"):
        if not names.get(key):
            raise ValueError(f"names: a mapping needs the {key!r} coordinate's name, e.g. {{{key}: ...}}")
    given = {k: (None if v is None else str(v)) for k, v in names.items()}
    return OceanNames(**{r: given.get(r) for r in roles})


def describe_names(names: NameSpec) -> str:
    """A canonical text of ``names`` (for ids and hashes): the preset name, or the mapping as sorted JSON."""
    if isinstance(names, str):
        try:
            parsed = yaml.safe_load(names)
        except yaml.YAMLError:
            return names
        names = parsed if isinstance(parsed, dict) else names
    return names if isinstance(names, str) else json.dumps({str(k): v for k, v in names.items()}, sort_keys=True)


def expand(paths: PathSpec, suffixes: Sequence[str] | None = None, what: str = "NetCDF") -> list[Path]:
    """Files named by ``paths``: files, globs and directories (their files whose suffix is in ``suffixes``, sorted;
    every file when None), in the order given. Raises :class:`OceanDataError` for a name that matches nothing."""
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    found: list[Path] = []
    for item in items:
        p = Path(item).expanduser()
        if p.is_dir():
            found += sorted(f for f in p.rglob("*") if f.is_file() and (suffixes is None or f.suffix.lower() in suffixes))
        elif any(c in str(item) for c in "*?["):
            matched = [Path(x) for x in sorted(globlib.glob(str(p)))]
            if not matched:
                raise OceanDataError(f"{item}: no file matches this pattern")
            found += matched
        elif p.is_file():
            found.append(p)
        else:
            raise OceanDataError(f"{p}: no such {what} file or directory")
    if not found:
        kinds = "" if suffixes is None else f" ({', '.join(suffixes)})"
        raise OceanDataError(f"no {what} files{kinds} found at {paths}")
    return found


def netcdf_files(paths: PathSpec) -> list[Path]:
    """:func:`expand` with the NetCDF suffixes (``.nc .nc4 .cdf .netcdf .nc3``)."""
    return expand(paths, NETCDF_SUFFIXES)


def _variables_of(path: Path) -> set[str]:
    ds = ocean_io.open_file(path)
    try:
        return set(map(str, ds.variables))
    finally:
        ds.close()


def open_by_variable(paths: PathSpec, names: OceanNames, variables: Sequence[str]) -> xr.Dataset:
    """Lazily open ``variables`` (roles or names) from ``paths``, each from the files that hold it.

    Files holding the same set of wanted variables are one time series (:func:`~datamodules.ocean_io.open_ocean`);
    the series are merged by variable and must share the grid (``lat``/``lon`` values) and the time axis."""
    files = netcdf_files(paths)
    wanted = [names.variable(v) for v in variables]
    held = {path: _variables_of(path) & set(wanted) for path in files}
    for name in wanted:
        if not any(name in h for h in held.values()):
            listing = ", ".join(f"{p.name}: {sorted(_variables_of(p))}" for p in files[:3])
            raise OceanDataError(f"no file holds variable {name!r} ({listing}{', ...' if len(files) > 3 else ''})")
    groups: dict[frozenset[str], list[Path]] = {}
    for path, h in held.items():
        if h:
            groups.setdefault(frozenset(h), []).append(path)
    parts, covered = [], set()
    for group, group_files in groups.items():
        todo = [n for n in wanted if n in group and n not in covered]
        if todo:
            parts.append((group_files, ocean_io.open_ocean(group_files, names, todo)))
            covered |= set(todo)
    if len(parts) == 1:
        return parts[0][1]
    first_files, first = parts[0]
    for group_files, ds in parts[1:]:
        _check_same_axes(first, ds, names, first_files[0], group_files[0])
    merged = xr.Dataset({n: ds[n].variable for _, ds in parts for n in ds.data_vars},
                        coords={c: first[c].variable for c in first.coords}, attrs=dict(first.attrs))
    merged.encoding["source"] = str(first_files[0])
    closers = [ds.close for _, ds in parts]
    merged.set_close(lambda: [c() for c in closers])
    return merged


def _check_same_axes(a: xr.Dataset, b: xr.Dataset, names: OceanNames, path_a: Path, path_b: Path) -> None:
    for c in (names.lat, names.lon):
        if a[c].shape != b[c].shape or not np.allclose(a[c].values, b[c].values, equal_nan=True):
            raise OceanDataError(f"{path_b}: its {c!r} grid {a[c].shape}->{b[c].shape} differs from that of {path_a}; "
                                 "variables in separate files must share one grid")
    t = names.time
    has_a, has_b = t is not None and t in a.coords, t is not None and t in b.coords
    if has_a != has_b or (has_a and not np.array_equal(a[t].values, b[t].values)):
        count = (a.sizes.get(t, 0), b.sizes.get(t, 0)) if t else (0, 0)
        raise OceanDataError(f"{path_b}: its {t!r} axis ({count[1]} steps) differs from that of {path_a} "
                             f"({count[0]} steps); variables in separate files must share one time axis")


def dataset_id(paths: PathSpec, *choices: Any) -> str:
    """The id of a user's dataset: :func:`datamodules.store.content_key` of the files' content key
    (:func:`datamodules.store.data_key`: names relative to the path and bytes) and of ``choices`` (names, task, ...):
    the same files read the same way give the same id wherever they lie. Checks first that ``paths`` name files."""
    expand(paths, what="data")
    return store.content_key(store.data_key(paths), *choices)
