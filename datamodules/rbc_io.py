"""Rayleigh–Bénard file readers and the grid pipeline shared with the generator (:mod:`datamodules.rbc_sim`).

Orientation (see :mod:`symbench.fields`): a frame is ``(C, H, W)`` with axis -1 = x and rows running towards -y,
so row 0 is the top (cold) wall and the last row the bottom (hot) wall. Velocity channels are ``(vx, vy)`` with
``vy > 0`` meaning upward motion (Dedalus' ``u_z`` keeps its sign; only the row order is flipped).

Pipeline from a Dedalus ``(x, z)`` grid to tiles (one function, :class:`DedalusGrid`, used by the generator and
by :func:`read_dedalus_snapshots`):

1. z sits on the Chebyshev–Gauss points of ChebyshevT. The N grid values define the unique polynomial of degree
   N-1 (the solver's own spectral representation), which is evaluated at uniform cell centres
   ``z_j = z0 + (j + 1/2) Lz / n`` with ``n = Lz / dx`` rows, so pixels are square.
2. Transpose ``(x, z) -> (z, x)`` and flip z so row 0 is the top.
3. Cut x into ``tiles`` square tiles and area-average each down to ``resolution``:
   ``out[i, j] = mean(a[f i : f (i+1), f j : f (j+1)])`` with ``f = size / resolution``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from symbench.fields import VELOCITY_2D, FieldLayout

_REL_TOL = 1e-6


def area_downsample(a: np.ndarray, resolution: int) -> np.ndarray:
    """Area-average the last two (square) axes of ``a`` down to ``resolution x resolution``."""
    size = a.shape[-1]
    if a.shape[-2] != size:
        raise ValueError(f"area_downsample needs square frames, got {a.shape[-2]}x{size}")
    if resolution <= 0 or size % resolution:
        raise ValueError(f"resolution {resolution} must divide the tile size {size} (area averaging by whole pixels)")
    f = size // resolution
    if f == 1:
        return a
    return a.reshape(*a.shape[:-2], resolution, f, resolution, f).mean(axis=(-3, -1))


def tile_frames(frames: np.ndarray, tiles: int | None = None, resolution: int | None = None) -> np.ndarray:
    """Cut ``(T, C, H, W)`` into square tiles along x: ``(tiles, T, C, r, r)``.

    ``tiles=None`` takes ``W / H`` tiles (W must be a multiple of H); ``resolution=None`` keeps ``H``.
    """
    if frames.ndim != 4:
        raise ValueError(f"frames must be (T, C, H, W), got shape {frames.shape}")
    h, w = frames.shape[-2:]
    if tiles is None:
        if w % h:
            raise ValueError(f"width {w} is not a multiple of height {h}: pass tiles= explicitly")
        tiles = w // h
    if tiles <= 0 or w % tiles or w // tiles != h:
        raise ValueError(f"{tiles} tiles of a {h}x{w} frame are not square (need tiles = {w / h:g})")
    split = frames.reshape(*frames.shape[:-1], tiles, h)  # (T, C, H, tiles, h)
    split = np.moveaxis(split, -2, 0)  # (tiles, T, C, H, h)
    return area_downsample(split, h if resolution is None else resolution)


def chebyshev_bounds(z: np.ndarray) -> tuple[float, float]:
    """Interval ``(z0, z1)`` whose Chebyshev–Gauss points (``cos(pi (i + 1/2) / N)`` mapped affinely) are ``z``."""
    z = np.asarray(z, dtype=np.float64)
    n = z.size
    if n < 2:
        raise ValueError(f"need at least 2 z points, got {n}")
    nodes = -np.cos(np.pi * (np.arange(n) + 0.5) / n)
    half, centre = np.polyfit(nodes, z, 1)
    if np.max(np.abs(centre + half * nodes - z)) > _REL_TOL * abs(half):
        raise ValueError("z grid is not a Chebyshev-Gauss grid (ChebyshevT); cannot interpolate it spectrally")
    return centre - abs(half), centre + abs(half)


def chebyshev_to_uniform(z: np.ndarray, rows: int) -> np.ndarray:
    """Matrix ``M`` (rows, N) with ``M @ f(z) = f(z_uniform)`` for every polynomial f of degree < N.

    ``z_uniform`` are the cell centres of ``rows`` equal cells between the bounds of ``z``.
    """
    z = np.asarray(z, dtype=np.float64)
    z0, z1 = chebyshev_bounds(z)
    centre, half = (z0 + z1) / 2, (z1 - z0) / 2
    target = z0 + (np.arange(rows) + 0.5) * (z1 - z0) / rows
    vander_src = np.polynomial.chebyshev.chebvander((z - centre) / half, z.size - 1)
    vander_dst = np.polynomial.chebyshev.chebvander((target - centre) / half, z.size - 1)
    # M = V_dst V_src^{-1}; V_src on Gauss points is well conditioned (cond ~ sqrt(2)).
    return np.linalg.solve(vander_src.T, vander_dst.T).T


@dataclass
class DedalusGrid:
    """The Dedalus ``(x, z)`` grid of one run and how it maps to square, row-down tiles.

    ``x`` must be uniform (RealFourier) and ``z`` Chebyshev–Gauss (ChebyshevT, bounds inferred). The number of
    uniform rows is ``Lz / dx`` (square pixels) and must be a whole number.
    """

    x: np.ndarray
    z: np.ndarray
    tiles: int | None = None
    resolution: int | None = None
    interp: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.x = np.asarray(self.x, dtype=np.float64)
        self.z = np.asarray(self.z, dtype=np.float64)
        dx = np.diff(self.x)
        if self.x.size < 2 or np.max(np.abs(dx - dx.mean())) > _REL_TOL * abs(dx.mean()):
            raise ValueError("x grid is not uniform (expected a RealFourier/Fourier basis along x)")
        z0, z1 = chebyshev_bounds(self.z)
        rows = (z1 - z0) / abs(dx.mean())
        if abs(rows - round(rows)) > 1e-6 * rows:
            raise ValueError(f"height {z1 - z0:g} is {rows:.4f} x-pixels, not a whole number: pixels cannot be square")
        self.interp = chebyshev_to_uniform(self.z, int(round(rows)))

    @property
    def rows(self) -> int:
        return self.interp.shape[0]

    def frames(self, velocity: np.ndarray, scalars: Sequence[np.ndarray] = ()) -> np.ndarray:
        """``velocity (T, 2, Nx, Nz)`` (u_x, u_z) and scalars ``(T, Nx, Nz)`` -> ``(tiles, T, C, r, r)`` float32.

        Channels are ``(vx, vy, *scalars)``; rows run downwards (row 0 = top wall), vy > 0 is upward.
        """
        velocity = np.asarray(velocity)
        if velocity.ndim != 4 or velocity.shape[1] != 2 or velocity.shape[2:] != (self.x.size, self.z.size):
            raise ValueError(f"velocity must be (T, 2, {self.x.size}, {self.z.size}), got {velocity.shape}")
        channels = np.concatenate([velocity, *(np.asarray(s)[:, None] for s in scalars)], axis=1)
        uniform = np.swapaxes(channels @ self.interp.T, -1, -2)[:, :, ::-1, :]  # (T, C, rows, Nx), top row first
        return tile_frames(uniform, self.tiles, self.resolution).astype(np.float32)


_SET_NUMBER = re.compile(r"_s(\d+)\.h5$")


def _set_order(path: Path) -> tuple[str, int]:
    match = _SET_NUMBER.search(path.name)
    return (path.name[: match.start()], int(match.group(1))) if match else (path.name, 0)


def _snapshot_files(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not items:
        raise ValueError("no Dedalus snapshot paths given")
    files: list[Path] = []
    for item in map(Path, items):
        if item.is_dir():
            found = sorted(item.glob("*_s*.h5"), key=_set_order)
            if not found:
                raise FileNotFoundError(f"no Dedalus set files (*_s<N>.h5) in directory {item}")
            files.extend(found)
        elif item.is_file():
            files.append(item)
        else:
            raise FileNotFoundError(f"Dedalus snapshot path {item} does not exist")
    return files


def _task(handle, name: str, path: Path):
    tasks = handle.get("tasks")
    if tasks is None:
        raise ValueError(f"{path} is not a Dedalus file handler output (no 'tasks' group)")
    if name not in tasks:
        raise KeyError(f"task {name!r} not in {path}; available tasks: {', '.join(sorted(tasks)) or 'none'}")
    dset = tasks[name]
    if "grid_space" in dset.attrs and not np.all(dset.attrs["grid_space"]):
        raise ValueError(f"task {name!r} in {path} was saved in coefficient layout; save it with layout='g'")
    return dset


def _scale(dset, axis: int) -> np.ndarray:
    scales = dset.dims[axis].values()
    if not scales:
        raise ValueError(f"task {dset.name!r} has no grid attached to axis {axis}")
    return np.asarray(scales[0][:], dtype=np.float64)


def read_dedalus_snapshots(
    paths: str | Path | Sequence[str | Path],
    *,
    velocity_task: str = "u",
    buoyancy_task: str | None = None,
    tiles: int | None = None,
    resolution: int | None = None,
) -> tuple[np.ndarray, FieldLayout]:
    """Read Dedalus' HDF5 snapshots (``evaluator.add_file_handler``) of a 2D ``(x, z)`` run into tiles.

    ``paths``: a handler directory (its ``*_s<N>.h5`` set files), one file, or a list of them; all are sets of one
    run and are concatenated in time in ``scales/sim_time`` order. ``velocity_task`` names a vector task
    ``(writes, 2, Nx, Nz)``; ``buoyancy_task`` an optional scalar task ``(writes, Nx, Nz)``. Grids come from the
    HDF5 dimension scales (axis -2 = x uniform, axis -1 = z Chebyshev). Returns ``(tiles, T, C, r, r)`` float32
    with channels ``(vx, vy[, buoyancy])`` in the row-down orientation, and its :class:`FieldLayout`.
    """
    import h5py

    grid: DedalusGrid | None = None
    times: list[np.ndarray] = []
    chunks: list[np.ndarray] = []
    for path in _snapshot_files(paths):
        try:
            handle = h5py.File(path, "r")
        except OSError as err:
            raise ValueError(f"{path} is not a readable HDF5 file ({err})") from None
        with handle:
            vel = _task(handle, velocity_task, path)
            if vel.ndim != 4 or vel.shape[1] != 2:
                raise ValueError(f"task {velocity_task!r} in {path} is not a 2D vector field (shape {vel.shape})")
            writes = min(vel.shape[0], int(handle.attrs.get("writes", vel.shape[0])))
            scalars = []
            if buoyancy_task is not None:
                buo = _task(handle, buoyancy_task, path)
                if buo.shape[1:] != vel.shape[2:]:
                    raise ValueError(f"task {buoyancy_task!r} has grid {buo.shape[1:]}, velocity has {vel.shape[2:]}")
                scalars.append(buo[:writes])
            x, z = _scale(vel, 2), _scale(vel, 3)
            if grid is None:
                grid = DedalusGrid(x, z, tiles, resolution)
            elif not (np.allclose(grid.x, x) and np.allclose(grid.z, z)):
                raise ValueError(f"{path} has a different grid from the first snapshot file")
            times.append(np.asarray(handle["scales/sim_time"][:writes]))
            chunks.append(grid.frames(vel[:writes], scalars))
    t = np.concatenate(times)
    order = np.argsort(t, kind="stable")
    if np.any(np.diff(t[order]) <= 0):
        raise ValueError("snapshot files repeat simulation times: they are not sets of one run")
    array = np.concatenate(chunks, axis=1)[:, order]
    layout = VELOCITY_2D if buoyancy_task is None else FieldLayout.of("velocity:vector", "buoyancy:scalar")
    return array, layout


def load_paper_tensor(
    path: str | Path, *, resolution: int = 64, tiles: int | None = None, chunk: int = 64
) -> tuple[np.ndarray, FieldLayout]:
    """Load the ICLR 2021 RBC tensor ``(T, 2, H, W)`` (``rbc_data.pt`` is 2000 x 2 x 256 x 1792) into tiles.

    Accepts a ``.pt`` holding one tensor (``torch.load(weights_only=True, mmap=True)``) or a ``.npy`` (memory
    mapped). When W = k H it is cut into k square tiles (``tiles`` overrides k), each area-averaged to
    ``resolution``; returns ``(k, T, 2, r, r)`` float32. The original code subsampled with ``[::4, ::4]`` instead.

    Orientation assumption (the file carries no metadata): channel 0 is the horizontal velocity u_x, channel 1
    the vertical velocity with positive = upward, and rows are stored top wall first (image order), which is
    already our convention, so no flip or sign change is applied.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"RBC tensor file {path} does not exist")
    if path.suffix == ".npy":
        data = np.load(path, mmap_mode="r")
    elif path.suffix in (".pt", ".pth"):
        import torch

        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # legacy (non-zip) serialisation cannot be memory-mapped
            obj = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(obj, torch.Tensor):
            raise ValueError(f"{path} holds a {type(obj).__name__}, expected one (T, 2, H, W) tensor")
        data = obj.detach().float().numpy() if obj.dtype not in (torch.float32, torch.float64) else obj.numpy()
    else:
        raise ValueError(f"unsupported RBC tensor file {path.name}: expected .pt or .npy")
    if data.ndim != 4 or data.shape[1] != 2:
        raise ValueError(f"{path} has shape {tuple(data.shape)}, expected (T, 2, H, W)")
    # Time chunks keep memory at one chunk of full frames (the paper's tensor is 7.3 GB as float32).
    parts = [
        tile_frames(np.asarray(data[s : s + chunk], dtype=np.float32), tiles, resolution)
        for s in range(0, data.shape[0], chunk)
    ]
    return np.concatenate(parts, axis=1), VELOCITY_2D
