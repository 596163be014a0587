"""Readers (and a Tecplot writer) of 2D PIV velocity fields: the reading layer of the jet-flow data family.

Why: the jet-flow benchmarks train on time-resolved planar PIV measurements, which reach us in the exchange formats
of the PIV packages. This module reads one field per file into a :class:`PIVField` (and a time-ordered set of files
into a :class:`PIVSeries`) in the suite's conventions (README, "Conventions"):

- arrays are ``(H, W)`` indexed (row, col); axis -1 is x (columns run towards +x) and ROWS RUN TOWARDS -y: row 0 is
  the largest y (the top, as in an image). Files stored the other way round are flipped; flipping the grid order
  never changes the sign of a component: ``u`` is always the x component and ``v`` the y component;
- ``u``, ``v`` are float32; ``mask`` is True where the vector is valid. Invalid vectors (NaN, masked, flagged,
  disabled) are False in the mask and 0 in ``u``, ``v``: no NaN leaves a reader;
- the grid is regular: ``x`` and ``y`` are evenly spaced (relative tolerance :data:`SPACING_RTOL`, which absorbs the
  rounding of text files) and are returned exactly evenly spaced; anything else is a one-line ``ValueError``.

Formats (``fmt`` of :func:`read_piv`; chosen from the extension, then from the contents):

============= ===================== ==========================================================================
``fmt``       files                 notes
============= ===================== ==========================================================================
``davis``     ``.vc7`` (``.im7``)   LaVision DaVis, through PyPI ``lvpyio`` (imported only here). Velocities as
                                    ``lvpyio``'s ``as_masked_array()`` gives them (physical units, signed along
                                    the physical axes); vector (i, j) sits at
                                    ``offset + (j + 0.5) * grid * slope`` (the position of the centre of its
                                    interrogation window); time from the ``AcqTimeSeries`` attribute.
``tecplot``   ``.dat``, TSI ``.vec``  ASCII Tecplot, POINT packing, one zone: ``VARIABLES = "x", "y", "u", "v"``
                                    (units as ``"x [mm]"``, ``"x (mm)"`` or ``"X mm"``), ``ZONE I=.., J=..``,
                                    ``SOLUTIONTIME`` read as the time. Written by :func:`write_tecplot`.
``mat``       ``.mat``              MATLAB v5 (scipy) or v7.3 / HDF5 (h5py): PIVlab sessions (``resultslist``)
                                    and exports (``u_original`` ...), PIVMat structs (``x``, ``y``, ``vx``,
                                    ``vy``), or plain ``x``, ``y``, ``u``, ``v`` variables.
``openpiv``   ``.txt``, ``.vec``    Columns ``x y u v [flags mask]`` (OpenPIV), whitespace or comma separated,
                                    optional ``#`` header naming the columns.
``davis_txt`` ``.txt``              DaVis text export: ``#DaVis ... 2D-vector ... "mm" ... "m/s"`` header, tab
                                    separated, DECIMAL COMMAS.
============= ===================== ==========================================================================

Text files (``.dat``, ``.txt``, ``.vec``, ``.csv``, no extension) are told apart by their first lines.

Validity flags: a column (or variable) ``valid``/``isValid`` (nonzero = valid); OpenPIV ``mask`` and ``flags``
(nonzero = masked / outlier); TSI ``CHC`` (<= 0: no valid vector); PIVlab ``typevector`` (1 regular; 0 masked, 2
filtered i.e. interpolated, both invalid). DaVis text and PIVMat structs have no flag: they store invalid vectors as
exact zeros, so an exact (0, 0) vector is invalid there.

Axis directions: coordinates are taken as the file states them, except for PIVlab, whose arrays are image rows (top
row first) and whose default coordinates are image coordinates (y and v pointing DOWN): when y grows down the rows,
y and v are negated so that y points up (exports calibrated with "y increases to top" are left as they are).
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from symbench.results import atomic_write

FORMATS = ("davis", "tecplot", "mat", "openpiv", "davis_txt")
SPACING_RTOL = 1e-2  # text files print coordinates to ~5 digits; a stretched grid differs by far more
LVPYIO_INSTALL = 'pip install "lvpyio==1.3.0"'  # lvpyio >= 1.3.1 requires numpy >= 2; the suite pins numpy < 2

_EXTENSIONS = {".vc7": "davis", ".im7": "davis", ".mat": "mat"}
_SNIFFED = (".dat", ".txt", ".vec", ".csv", "")  # text formats told apart by their first lines
_SERIES_SUFFIXES = {"davis": {".vc7", ".im7"}, "tecplot": {".dat", ".vec"}, "mat": {".mat"},
                    "openpiv": {".txt", ".vec", ".csv"}, "davis_txt": {".txt"}}  # files a folder series takes
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_COMPONENT = {"x": "x", "y": "y", "u": "u", "vx": "u", "u_x": "u", "velocity u": "u", "v": "v", "vy": "v",
              "u_y": "v", "velocity v": "v"}
_FLAG = {"valid": "valid", "isvalid": "valid", "mask": "mask", "flags": "flags", "flag": "flags", "chc": "chc",
         "typevector": "typevector"}


# --------------------------------------------------------------------------------------------------- structures

@dataclass
class PIVField:
    """One planar velocity field on a regular grid, in the suite's orientation (see the module docstring).

    ``x`` (W,) increasing, ``y`` (H,) decreasing (row 0 = largest y); ``u``, ``v`` float32 (H, W), the x and y
    components; ``mask`` bool (H, W), True = valid; ``units`` = (length, velocity), "" when the file does not say;
    ``time`` in seconds when the file records it; ``aux``: the file's own metadata (Tecplot ``DATASETAUXDATA``
    pairs, e.g. TSI Insight's ``MicrosecondsPerDeltaT`` and ``MicrometersPerPixelX``), converted by
    :mod:`datamodules.piv_units`."""

    x: np.ndarray
    y: np.ndarray
    u: np.ndarray
    v: np.ndarray
    mask: np.ndarray
    units: tuple[str, str] = ("", "")
    time: float | None = None
    source: str = ""
    aux: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = self.source or "PIV field"
        mask = np.asarray(self.mask, dtype=bool)
        u = np.asarray(self.u, dtype=np.float64)
        v = np.asarray(self.v, dtype=np.float64)
        if u.ndim != 2 or u.shape != v.shape or u.shape != mask.shape:
            raise ValueError(f"{where}: u, v and mask must share one 2D shape, got {u.shape}, {v.shape}, "
                             f"{mask.shape}")
        self.x = _regular(np.asarray(self.x, dtype=np.float64), "x", where, u.shape[1], increasing=True)
        self.y = _regular(np.asarray(self.y, dtype=np.float64), "y", where, u.shape[0], increasing=False)
        mask = mask & np.isfinite(u) & np.isfinite(v)
        self.u = np.where(mask, u, 0.0).astype(np.float32)
        self.v = np.where(mask, v, 0.0).astype(np.float32)
        self.mask = mask
        self.units = (str(self.units[0]), str(self.units[1]))
        self.time = None if self.time is None else float(self.time)

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W)."""
        return self.u.shape

    @property
    def dx(self) -> float:
        """Grid spacing along x (positive)."""
        return float(self.x[1] - self.x[0])

    @property
    def dy(self) -> float:
        """Grid spacing along y (positive; ``y`` itself decreases down the rows)."""
        return float(self.y[0] - self.y[1])

    @property
    def velocity(self) -> np.ndarray:
        """float32 (2, H, W): components (u, v) = (x, y)."""
        return np.stack([self.u, self.v])


@dataclass
class PIVSeries:
    """Fields of several files on one grid, in file-name order: ``velocity`` float32 (T, 2, H, W), ``mask`` bool
    (T, H, W), ``times`` float64 (T,) in seconds (NaN where a file records none); ``aux``: the first file's
    metadata."""

    velocity: np.ndarray
    mask: np.ndarray
    x: np.ndarray
    y: np.ndarray
    units: tuple[str, str]
    times: np.ndarray
    paths: list[Path] = field(default_factory=list)
    aux: dict[str, str] = field(default_factory=dict)

    @property
    def common_mask(self) -> np.ndarray:
        """bool (H, W): valid in every frame."""
        return self.mask.all(axis=0)


# --------------------------------------------------------------------------------------------------- public API

def read_piv(path: str | Path, fmt: str | None = None, frame: int = 0) -> PIVField:
    """Read one PIV field from ``path``; ``fmt`` (one of :data:`FORMATS`) overrides the detection; ``frame`` picks
    a field of a multi-frame ``.mat`` (PIVlab session or export, PIVMat struct array)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such PIV file")
    fmt = fmt if fmt is not None else detect_format(path)
    readers = {"davis": _read_davis, "tecplot": _read_tecplot, "openpiv": _read_openpiv,
               "davis_txt": _read_davis_txt, "mat": lambda p: _read_mat(p, frame)}
    if fmt not in readers:
        raise ValueError(f"{path}: unknown PIV format {fmt!r}; use one of {', '.join(FORMATS)}")
    try:
        return readers[fmt](path)
    except ImportError:
        raise
    except Exception as err:  # a library's own error about a damaged file: one line that names the file
        if str(path) in str(err):
            raise
        first = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
        raise ValueError(f"{path}: not a readable {fmt} PIV file ({first[:200]})") from None


def read_piv_series(paths_or_dir: str | Path | Sequence[str | Path], fmt: str | None = None) -> PIVSeries:
    """Read several files (a sequence of paths, or every file of the format in a folder) sorted by file name into
    one :class:`PIVSeries`; all must share the grid and units."""
    paths = _series_paths(paths_or_dir, fmt)
    fields = [read_piv(p, fmt) for p in paths]
    first = fields[0]
    for p, f in zip(paths[1:], fields[1:]):
        same = f.shape == first.shape and np.allclose(f.x, first.x, rtol=0, atol=1e-6 * first.dx) and \
            np.allclose(f.y, first.y, rtol=0, atol=1e-6 * first.dy)
        if not same:
            raise ValueError(f"{p}: its {f.shape[1]}x{f.shape[0]} grid (x {f.x[0]:g}..{f.x[-1]:g}, y {f.y[0]:g}.."
                             f"{f.y[-1]:g}) differs from {paths[0].name}'s {first.shape[1]}x{first.shape[0]} grid "
                             f"(x {first.x[0]:g}..{first.x[-1]:g}, y {first.y[0]:g}..{first.y[-1]:g})")
        if f.units != first.units:
            raise ValueError(f"{p}: units {f.units} differ from {paths[0].name}'s {first.units}")
    times = np.array([np.nan if f.time is None else f.time for f in fields], dtype=np.float64)
    return PIVSeries(np.stack([f.velocity for f in fields]), np.stack([f.mask for f in fields]), first.x.copy(),
                     first.y.copy(), first.units, times, list(paths), dict(first.aux))


def write_tecplot(path: str | Path, field: PIVField) -> Path:
    """Write ``field`` as ASCII Tecplot (POINT packing, one zone, I = x fastest, J from the smallest y up) with a
    validity column ``isValid``, atomically (temporary file in the same folder, then ``os.replace``); float32
    velocities are written with 9 significant digits, so :func:`read_piv` gives them back exactly."""
    if not isinstance(field, PIVField):
        raise TypeError(f"write_tecplot needs a PIVField, got {type(field).__name__}")
    length, velocity = field.units
    names = [_with_unit("x", length), _with_unit("y", length), _with_unit("u", velocity), _with_unit("v", velocity),
             "isValid"]
    h, w = field.shape
    title = (Path(field.source).name or "piv").replace('"', "'")
    zone = f'ZONE T="{title}", I={w}, J={h}, DATAPACKING=POINT'
    if field.time is not None:
        zone += f", SOLUTIONTIME={field.time!r}"
    header = 'TITLE = "symbench PIV field"\nVARIABLES = ' + ", ".join(f'"{n}"' for n in names) + "\n" + zone + "\n"
    xx, yy = np.meshgrid(field.x, field.y)
    rows = slice(None, None, -1)  # bottom row (smallest y) first
    columns = (xx[rows].ravel(), yy[rows].ravel(), field.u[rows].ravel(), field.v[rows].ravel(),
               field.mask[rows].ravel())
    lines = [f"{a:.10g} {b:.10g} {c:.9g} {d:.9g} {int(e)}" for a, b, c, d, e in zip(*columns)]
    text = header + "\n".join(lines) + "\n"
    return atomic_write(Path(path), lambda out: out.write(text.encode("utf-8")))


def detect_format(path: str | Path) -> str:
    """The :data:`FORMATS` entry of ``path``, from its extension and, for text, its first lines."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    with open(path, "rb") as f:
        head = f.read(4096)
    if head.startswith(_HDF5_SIGNATURE) or head.startswith(b"MATLAB"):
        return "mat"
    if b"\0" not in head:
        text = head.decode("latin-1")
        if text.lstrip().startswith("#DaVis"):
            return "davis_txt"
        if re.search(r"\bVARIABLES\s*=", text, re.IGNORECASE):
            return "tecplot"
        if suffix in _SNIFFED and _first_data_line(text.splitlines()) is not None:
            return "openpiv"
    raise ValueError(f"{path}: unknown PIV format (extension {suffix or 'none'!r}); pass fmt= one of "
                     f"{', '.join(FORMATS)}")


# --------------------------------------------------------------------------------------------------- grid

def _regular(c: np.ndarray, name: str, where: str, n: int, increasing: bool) -> np.ndarray:
    """``c`` (n,) checked evenly spaced and monotonic in the wanted direction, returned exactly evenly spaced."""
    if c.ndim != 1 or c.size != n:
        raise ValueError(f"{where}: {name} has shape {c.shape}, expected ({n},)")
    if n < 2:
        raise ValueError(f"{where}: a PIV grid needs at least 2 points along {name}, got {n}")
    step = (c[-1] - c[0]) / (n - 1)
    if not np.isfinite(step) or step == 0 or (step > 0) != increasing:
        raise ValueError(f"{where}: {name} must {'increase' if increasing else 'decrease'} along the grid "
                         f"({name}[0]={c[0]:g}, {name}[-1]={c[-1]:g})")
    steps = np.diff(c)
    if np.abs(steps - step).max() > SPACING_RTOL * abs(step):
        raise ValueError(f"{where}: irregular grid, {name} spacing varies from {steps.min():g} to {steps.max():g}; "
                         f"read_piv needs evenly spaced coordinates")
    return c[0] + step * np.arange(n)


def _oriented(x: np.ndarray, y: np.ndarray, u: np.ndarray, v: np.ndarray, valid: np.ndarray,
              units: tuple[str, str], time: float | None, source: Path) -> PIVField:
    """A :class:`PIVField` from arrays indexed [iy, ix] with 1D coordinates in either order: columns are put in
    increasing x and rows in decreasing y (grid order only; components keep their sign)."""
    cols = slice(None, None, -1) if x.size > 1 and x[-1] < x[0] else slice(None)
    rows = slice(None, None, -1) if y.size > 1 and y[-1] > y[0] else slice(None)
    return PIVField(x[cols], y[rows], u[rows, cols], v[rows, cols], valid[rows, cols], units, time, str(source))


def _from_points(x: np.ndarray, y: np.ndarray, u: np.ndarray, v: np.ndarray, valid: np.ndarray,
                 units: tuple[str, str], time: float | None, source: Path) -> PIVField:
    """A field from scattered rows (x, y, u, v, valid) that must fill a regular grid exactly once, in any order."""
    axes, index = [], []
    for c, name in ((x, "x"), (y, "y")):
        if not np.isfinite(c).all():
            raise ValueError(f"{source}: {name} coordinates contain NaN or inf")
        values = np.unique(c)
        axis = _regular(values, name, str(source), values.size, increasing=True)
        axes.append(axis)
        index.append(np.rint((c - axis[0]) / (axis[1] - axis[0])).astype(np.int64))
    (xs, ys), (ix, iy) = axes, index
    count = np.zeros((ys.size, xs.size), dtype=np.int64)
    np.add.at(count, (iy, ix), 1)
    if not (count == 1).all():
        raise ValueError(f"{source}: the {x.size} vectors do not fill the {xs.size}x{ys.size} grid once each "
                         f"({int((count == 0).sum())} missing, {int((count > 1).sum())} repeated)")
    grids = []
    for values, fill in ((u, 0.0), (v, 0.0), (valid, False)):
        g = np.full((ys.size, xs.size), fill, dtype=np.asarray(values).dtype)
        g[iy, ix] = values
        grids.append(g)
    return _oriented(xs, ys, *grids, units, time, source)


# --------------------------------------------------------------------------------------------------- text

def _first_data_line(lines: list[str]) -> int | None:
    """Index of the first line whose first token is a number (commas count as separators)."""
    for i, line in enumerate(lines):
        tokens = line.replace(",", " ").split()
        if tokens and _is_number(tokens[0]):
            return i
    return None


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _table(lines: list[str], path: Path, ncol: int | None = None, decimal_comma: bool = False) -> np.ndarray:
    """float64 (n, ncol) from text rows; ``decimal_comma``: ',' is the decimal mark, else a separator."""
    body = "\n".join(lines)
    body = body.replace(",", ".") if decimal_comma else body.replace(",", " ")
    first = next((ln for ln in body.splitlines() if ln.strip()), "")
    ncol = ncol or len(first.split())
    try:
        values = np.array(body.split(), dtype=np.float64)
    except ValueError as e:
        raise ValueError(f"{path}: non-numeric value in the data ({e})") from None
    if ncol == 0 or values.size == 0 or values.size % ncol:
        raise ValueError(f"{path}: {values.size} numbers do not make rows of {ncol} columns")
    return values.reshape(-1, ncol)


def _name_unit(label: str) -> tuple[str, str]:
    """("x", "mm") from "x [mm]", "x (mm)" or "X mm"; (label, "") otherwise. The name is lower-cased."""
    label = label.strip()
    m = re.match(r"^(.*?)\s*[\[(]\s*(.*?)\s*[\])]$", label)
    if m:
        return m.group(1).strip().lower(), m.group(2)
    tokens = label.split()
    if len(tokens) == 2 and tokens[0].lower() in _COMPONENT:
        return tokens[0].lower(), tokens[1]
    return label.lower(), ""


def _columns(names: list[str], table: np.ndarray, path: Path) -> dict[str, Any]:
    """Roles x, y, u, v (required), validity and units from column names."""
    roles: dict[str, int] = {}
    units: dict[str, str] = {}
    flags: list[tuple[str, int]] = []
    for i, label in enumerate(names):
        name, unit = _name_unit(label)
        if name in _COMPONENT and _COMPONENT[name] not in roles:
            roles[_COMPONENT[name]] = i
            units[_COMPONENT[name]] = unit
        elif name in _FLAG:
            flags.append((_FLAG[name], i))
    missing = [r for r in ("x", "y", "u", "v") if r not in roles]
    if missing:
        raise ValueError(f"{path}: no {'/'.join(missing)} column among {names}; a PIV file needs x, y, u, v")
    valid = np.ones(table.shape[0], dtype=bool)
    for kind, i in flags:
        valid &= _flag_valid(kind, table[:, i])
    return {"x": table[:, roles["x"]], "y": table[:, roles["y"]], "u": table[:, roles["u"]],
            "v": table[:, roles["v"]], "valid": valid,
            "units": (units["x"] or units["y"], units["u"] or units["v"])}


def _flag_valid(kind: str, values: np.ndarray) -> np.ndarray:
    """True where a flag column marks the vector valid (see the module docstring)."""
    if kind == "valid":
        return values != 0
    if kind == "chc":
        return values > 0
    if kind == "typevector":
        return values == 1
    return values == 0  # OpenPIV mask / flags


def _read_openpiv(path: Path) -> PIVField:
    lines = path.read_text(errors="replace").splitlines()
    start = _first_data_line(lines)
    if start is None:
        raise ValueError(f"{path}: no numeric rows")
    table = _table(lines[start:], path)
    header = [ln.lstrip("#").split() for ln in lines[:start] if ln.strip().startswith("#")]
    names = header[-1] if header and len(header[-1]) == table.shape[1] else _openpiv_names(table)
    cols = _columns(names, table, path)
    return _from_points(cols["x"], cols["y"], cols["u"], cols["v"], cols["valid"], cols["units"], None, path)


def _openpiv_names(table: np.ndarray) -> list[str]:
    """Columns of a header-less OpenPIV file: x y u v, then flags and mask; a lone fifth column is the mask only
    when it holds 0/1 (older OpenPIV files put the signal-to-noise ratio there)."""
    n = table.shape[1]
    if n < 4:
        return ["x", "y", "u", "v"][:n]
    if n == 5:
        binary = np.isin(table[:, 4], (0.0, 1.0)).all()
        return ["x", "y", "u", "v", "mask" if binary else "col5"]
    return ["x", "y", "u", "v", "flags", "mask"][:n] + [f"col{i + 1}" for i in range(6, n)]


def _read_davis_txt(path: Path) -> PIVField:
    lines = path.read_text(encoding="latin-1").splitlines()
    head = lines[0] if lines else ""
    if not head.startswith("#DaVis") or "2D-vector" not in head:
        raise ValueError(f"{path}: not a DaVis 2D-vector text export (first line {head[:60]!r})")
    quoted = re.findall(r'"([^"]*)"', head)  # "position" "mm" "position" "mm" "velocity" "m/s"
    units = (quoted[1], quoted[5]) if len(quoted) >= 6 else ("", "")
    table = _table(lines[1:], path, decimal_comma=True)
    if table.shape[1] != 4:
        raise ValueError(f"{path}: DaVis 2D-vector text needs 4 columns x y u v, got {table.shape[1]}")
    x, y, u, v = table.T
    valid = ~((u == 0) & (v == 0))  # DaVis exports disabled vectors as exact zeros
    return _from_points(x, y, u, v, valid, units, None, path)


def _read_tecplot(path: Path) -> PIVField:
    lines = path.read_text(errors="replace").splitlines()
    start = _first_data_line(lines)
    header = "\n".join(lines[:start] if start is not None else lines)
    names = _tecplot_variables(header, path)
    if start is None:
        raise ValueError(f"{path}: Tecplot file without data rows")
    zone = _tecplot_zone(header, path)
    rest = lines[start:]
    if any(re.match(r"\s*ZONE\b", ln, re.IGNORECASE) for ln in rest):
        raise ValueError(f"{path}: holds several Tecplot zones; read_piv reads files of one zone")
    table = _table(rest, path, ncol=len(names))
    if zone.get("I") and zone.get("J") and zone["I"] * zone["J"] != table.shape[0]:
        raise ValueError(f"{path}: ZONE I={zone['I']}, J={zone['J']} but {table.shape[0]} data rows")
    cols = _columns(names, table, path)
    piv = _from_points(cols["x"], cols["y"], cols["u"], cols["v"], cols["valid"], cols["units"],
                       zone.get("SOLUTIONTIME"), path)
    piv.aux = dict(re.findall(r'\bDATASETAUXDATA\s+(\w+)\s*=\s*"([^"]*)"', header, re.IGNORECASE))
    return piv


def _tecplot_variables(header: str, path: Path) -> list[str]:
    m = re.search(r"\bVARIABLES\s*=\s*(.*?)(?=\b(?:ZONE|DATASETAUXDATA|AUXDATA|VARAUXDATA|TITLE)\b|\Z)", header,
                  re.IGNORECASE | re.DOTALL)
    if not m:
        raise ValueError(f"{path}: Tecplot header without VARIABLES")
    chunk = m.group(1)
    names = re.findall(r'"([^"]*)"', chunk) or [t for t in re.split(r"[\s,]+", chunk.strip()) if t]
    return names


def _tecplot_zone(header: str, path: Path) -> dict[str, Any]:
    """I, J, packing and SOLUTIONTIME of the ZONE record (quoted strings blanked first)."""
    plain = re.sub(r'"[^"]*"', '""', header)
    m = re.search(r"\bZONE\b(.*)", plain, re.IGNORECASE | re.DOTALL)
    if not m:
        return {}
    text = m.group(1)
    zone: dict[str, Any] = {}
    for key in ("I", "J"):
        k = re.search(rf"\b{key}\s*=\s*(\d+)", text, re.IGNORECASE)
        if k:
            zone[key] = int(k.group(1))
    packing = re.search(r"\b(?:F|DATAPACKING)\s*=\s*(\w+)", text, re.IGNORECASE)
    if packing and packing.group(1).upper() != "POINT":
        raise ValueError(f"{path}: Tecplot {packing.group(1)} packing is not supported; export with POINT packing")
    t = re.search(r"\bSOLUTIONTIME\s*=\s*([-+0-9.eE]+)", text, re.IGNORECASE)
    if t:
        zone["SOLUTIONTIME"] = float(t.group(1))
    return zone


def _with_unit(name: str, unit: str) -> str:
    return f"{name} [{unit}]" if unit else name


# --------------------------------------------------------------------------------------------------- DaVis (lvpyio)

def _lvpyio() -> Any:
    try:
        return importlib.import_module("lvpyio")
    except ImportError:
        raise ImportError(f"reading LaVision DaVis .vc7/.im7 files needs lvpyio: {LVPYIO_INSTALL}") from None


def _read_davis(path: Path) -> PIVField:
    lv = _lvpyio()
    frame = lv.read_buffer(str(path))[0]
    if not hasattr(frame, "grid"):
        raise ValueError(f"{path}: holds a DaVis image, not a vector field (no u/v components)")
    arr = frame.as_masked_array()
    u = np.ma.getdata(arr["u"]).astype(np.float64)
    v = np.ma.getdata(arr["v"]).astype(np.float64)
    valid = ~(np.ma.getmaskarray(arr["u"]) | np.ma.getmaskarray(arr["v"]))
    h, w = u.shape
    sx, sy = frame.scales.x, frame.scales.y
    x = sx.offset + (np.arange(w) + 0.5) * frame.grid.x * sx.slope  # centre of interrogation window j
    y = sy.offset + (np.arange(h) + 0.5) * frame.grid.y * sy.slope
    units = (sx.unit, frame.scales.i.unit)
    return _oriented(x, y, u, v, valid, units, _davis_time(frame.attributes), path)


def _davis_time(attributes: dict[str, Any]) -> float | None:
    """Seconds from DaVis' ``AcqTimeSeries`` attribute (e.g. '1529976 µs'), None if absent."""
    m = re.match(r"\s*([-+0-9.eE]+)\s*(\S+)", str(attributes.get("AcqTimeSeries", "")))
    scale = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6}.get(m.group(2)) if m else None
    return float(m.group(1)) * scale if scale is not None else None


# --------------------------------------------------------------------------------------------------- MATLAB

def _read_mat(path: Path, frame: int) -> PIVField:
    with open(path, "rb") as f:
        head = f.read(520)
    hdf5 = head.startswith(_HDF5_SIGNATURE) or head[512:520] == _HDF5_SIGNATURE
    content = _load_mat73(path) if hdf5 else _load_mat5(path)
    if "resultslist" in content:
        return _pivlab_session(content, frame, path)
    if "u_original" in content:
        return _pivlab_export(content, frame, path)
    for value in content.values():
        if _is_pivmat(value):
            return _pivmat(value, frame, path)
    if {"x", "y", "u", "v"} <= set(content):
        get = {k: _cell_item(content[k], frame, k, path) for k in ("x", "y", "u", "v")}
        valid = np.ones(np.shape(get["u"]), bool)
        if "typevector" in content:
            valid = _flag_valid("typevector", np.asarray(_cell_item(content["typevector"], frame, "typevector", path)))
        x, y, u, v, valid = _rectilinear(get["x"], get["y"], get["u"], get["v"], valid, path)
        return _oriented(x, y, u, v, valid, ("", ""), None, path)
    raise ValueError(f"{path}: no PIV velocity found (expected PIVlab 'resultslist' or 'u_original', a PIVMat "
                     f"struct with vx/vy, or variables x, y, u, v); variables: {sorted(content)}")


def _load_mat5(path: Path) -> dict[str, Any]:
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        content = loadmat(str(path), simplify_cells=True)
    except (ValueError, NotImplementedError, OSError, MatReadError) as e:
        raise ValueError(f"{path}: not a readable MATLAB file ({str(e).splitlines()[0]})") from None
    return {k: v for k, v in content.items() if not k.startswith("__")}


def _load_mat73(path: Path) -> dict[str, Any]:
    """Variables of a MATLAB v7.3 (HDF5) file, arrays in MATLAB (row, col) order, cells as object arrays,
    structs as dicts, char arrays as str."""
    try:
        h5py = importlib.import_module("h5py")
    except ImportError:
        raise ImportError(f"{path} is a MATLAB v7.3 (HDF5) file; reading it needs h5py: pip install h5py") from None
    with h5py.File(path, "r") as f:
        return {k: _h5_value(f[k], f) for k in f if not k.startswith("#")}


def _h5_value(obj: Any, f: Any) -> Any:
    import h5py

    if isinstance(obj, h5py.Group):
        return {k: _h5_value(obj[k], f) for k in obj if not k.startswith("#")}
    attrs = obj.attrs
    if attrs.get("MATLAB_empty", 0):
        return np.zeros((0, 0))
    data = obj[()]
    if obj.dtype.kind == "O":  # cell array: object references
        cells = np.empty(data.shape, dtype=object)
        for idx, ref in np.ndenumerate(data):
            cells[idx] = _h5_value(f[ref], f)
        return cells.T
    cls = attrs.get("MATLAB_class", b"")
    if (cls.decode() if isinstance(cls, bytes) else str(cls)) == "char":
        return "".join(chr(c) for c in np.asarray(data).T.ravel())
    data = np.asarray(data)
    return data.T if data.ndim == 2 else data


def _cell_item(value: Any, frame: int, name: str, path: Path) -> Any:
    """Frame ``frame`` of a per-frame cell (list or object array), or the value itself for frame 0."""
    if isinstance(value, list) or (isinstance(value, np.ndarray) and value.dtype == object):
        items = list(np.asarray(value, dtype=object).ravel()) if not isinstance(value, list) else value
        if not 0 <= frame < len(items):
            raise ValueError(f"{path}: frame {frame} out of range; {name} holds {len(items)} frames")
        return items[frame]
    if frame:
        raise ValueError(f"{path}: frame {frame} out of range; {name} holds one frame")
    return value


def _rectilinear(x: Any, y: Any, u: Any, v: Any, valid: np.ndarray, path: Path) -> tuple[np.ndarray, ...]:
    """1D x (W,), y (H,) and [iy, ix] arrays from MATLAB meshgrid (x along columns), ndgrid (x along rows) or
    1D coordinates."""
    x, y, u, v = (np.atleast_1d(np.asarray(a, dtype=np.float64)) for a in (x, y, u, v))
    valid = np.asarray(valid, dtype=bool)
    if u.ndim != 2 or u.shape != v.shape:
        raise ValueError(f"{path}: u and v must be 2D arrays of one shape, got {u.shape} and {v.shape}")
    if x.ndim == 2 and y.ndim == 2:
        if x.shape != u.shape or y.shape != u.shape:
            raise ValueError(f"{path}: x, y {x.shape} do not match u {u.shape}")
        if np.allclose(x, x[:1, :]) and np.allclose(y, y[:, :1]):  # meshgrid: x along columns
            return x[0, :], y[:, 0], u, v, valid
        if np.allclose(x, x[:, :1]) and np.allclose(y, y[:1, :]):  # ndgrid: x along rows
            return x[:, 0], y[0, :], u.T, v.T, valid.T
        raise ValueError(f"{path}: x and y do not form a rectilinear grid")
    x1, y1 = x.ravel(), y.ravel()
    if u.shape == (y1.size, x1.size):
        return x1, y1, u, v, valid
    if u.shape == (x1.size, y1.size):
        return x1, y1, u.T, v.T, valid.T
    raise ValueError(f"{path}: u {u.shape} does not match x ({x1.size}) and y ({y1.size})")


def _image_rows_up(y: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PIVlab rows are image rows (top first): if y grows down them (image coordinates), point y and v up."""
    if y.size > 1 and y[-1] > y[0]:
        return -y, -v
    return y, v


def _pivlab_session(content: dict[str, Any], frame: int, path: Path) -> PIVField:
    rl = np.asarray(content["resultslist"], dtype=object)
    if rl.ndim == 1:
        rl = rl[:, None]
    if rl.shape[0] < 4:
        raise ValueError(f"{path}: resultslist {rl.shape} lacks the x, y, u, v rows of a PIVlab session")
    if not 0 <= frame < rl.shape[1]:
        raise ValueError(f"{path}: frame {frame} out of range; resultslist holds {rl.shape[1]} frames")
    calxy = float(np.squeeze(content.get("calxy", 1.0)))
    caluv = np.squeeze(content.get("caluv", 1.0))
    calu = abs(float(np.squeeze(content.get("calu", caluv))))  # the sign of calu/calv belongs to the calibrated
    calv = abs(float(np.squeeze(content.get("calv", caluv))))  # axes; resultslist holds raw image coordinates
    x, y, u, v = (np.asarray(rl[k, frame], dtype=np.float64) for k in range(4))
    tv = rl[4, frame] if rl.shape[0] > 4 and np.size(rl[4, frame]) == np.size(u) else None
    valid = _flag_valid("typevector", np.asarray(tv)) if tv is not None else np.ones(u.shape, bool)
    x1, y1, u, v, valid = _rectilinear(x * calxy, y * calxy, u * calu, v * calv, valid, path)
    y1, v = _image_rows_up(y1, v)
    units = ("px", "px/frame") if calxy == 1 and calu == 1 else ("m", "m/s")
    return _oriented(x1, y1, u, v, valid, units, None, path)


def _pivlab_export(content: dict[str, Any], frame: int, path: Path) -> PIVField:
    get = {k: _cell_item(content[k], frame, k, path) for k in ("x", "y", "u_original", "v_original")}
    tv = content.get("typevector_original")
    tv = _cell_item(tv, frame, "typevector_original", path) if tv is not None else None
    valid = _flag_valid("typevector", np.asarray(tv)) if tv is not None and np.size(tv) else \
        np.ones(np.shape(get["u_original"]), bool)
    x1, y1, u, v, valid = _rectilinear(get["x"], get["y"], get["u_original"], get["v_original"], valid, path)
    y1, v = _image_rows_up(y1, v)
    m = re.search(r"\[(.*?)\]\s*respectively\s*\[(.*?)\]", str(content.get("units", "")))
    units = (m.group(1), m.group(2)) if m else ("", "")
    return _oriented(x1, y1, u, v, valid, units, None, path)


def _is_pivmat(value: Any) -> bool:
    first = value[0] if isinstance(value, list) and value else value
    return isinstance(first, dict) and {"x", "y", "vx", "vy"} <= set(first)


def _pivmat(value: Any, frame: int, path: Path) -> PIVField:
    """PIVMat struct (array): x (1, M), y (1, N), vx, vy (M, N); invalid vectors stored as zeros."""
    fields = value if isinstance(value, list) else [value]
    if not 0 <= frame < len(fields):
        raise ValueError(f"{path}: frame {frame} out of range; the PIVMat struct array holds {len(fields)} fields")
    s = fields[frame]
    vx, vy = np.asarray(s["vx"], dtype=np.float64), np.asarray(s["vy"], dtype=np.float64)
    valid = ~((vx == 0) & (vy == 0))
    x, y = np.ravel(s["x"]), np.ravel(s["y"])
    if vx.shape == (x.size, y.size):  # PIVMat's own layout: vx(i, j) at (x(i), y(j))
        vx, vy, valid = vx.T, vy.T, valid.T
    x1, y1, u, v, valid = _rectilinear(x, y, vx, vy, valid, path)
    t = s.get("t")
    time = float(np.squeeze(t)) if t is not None and np.size(t) == 1 else None
    return _oriented(x1, y1, u, v, valid, (str(s.get("unitx", "")), str(s.get("unitvx", ""))), time, path)


# --------------------------------------------------------------------------------------------------- series

def _series_paths(paths_or_dir: str | Path | Sequence[str | Path], fmt: str | None) -> list[Path]:
    if isinstance(paths_or_dir, (str, Path)) and Path(paths_or_dir).is_dir():
        folder = Path(paths_or_dir)
        wanted = _SERIES_SUFFIXES.get(fmt, set().union(*_SERIES_SUFFIXES.values()))
        paths = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in wanted]
        suffixes = sorted({p.suffix.lower() for p in paths})
        if fmt is None and len(suffixes) > 1:
            raise ValueError(f"{folder}: holds PIV-like files of several kinds ({', '.join(suffixes)}); pass fmt= "
                             f"or a list of paths")
        if not paths:
            raise FileNotFoundError(f"{folder}: no PIV files{f' of format {fmt}' if fmt else ''} in this folder")
    elif isinstance(paths_or_dir, (str, Path)) and Path(paths_or_dir).is_file():
        paths = [Path(paths_or_dir)]
    elif isinstance(paths_or_dir, (str, Path)):
        raise FileNotFoundError(f"{paths_or_dir}: no such folder (pass a folder or a list of PIV files)")
    else:
        paths = [Path(p) for p in paths_or_dir]
        if not paths:
            raise ValueError("read_piv_series: empty list of PIV files")
        for p in paths:
            if not p.is_file():
                raise FileNotFoundError(f"{p}: no such PIV file")
    return sorted(paths, key=lambda p: (p.name, str(p)))
