"""Planar-jet velocity forecasting on PIV stations (ICML 2022, Wang, Walters & Yu, sec. 5.3 and appendix A.4).

The paper trains on time-resolved PIV of NASA multi-stream jets acquired at 24 stations (8 axial locations x 3
vertical stations), each station a ``62 x 23`` sub-region whose time series is one trajectory. Here a field of view
(from :mod:`datamodules.jetflow_sim`, or a user's own PIV files) is cut into a grid of stations:

* **reading** -- every run (a folder of PIV files, one file per frame, in file-name order) goes through
  :func:`datamodules.piv_io.read_piv_series`, exactly as a measurement would, then to SI units
  (:mod:`datamodules.piv_units`: pixels per dT converted when the files carry the scale and dT, the time axis
  filled, ``frame_interval`` seconds between frames if given): ``(T, 2, H, W)`` in m/s, rows towards -y, invalid
  vectors zero. Runs must share the grid; longer runs are cut to the shortest (with a warning). The
  parsed runs are cached as ``.npz`` under ``<root>/jetflow/piv-cache/`` (keyed by the files' names, sizes and
  modification times), since parsing text PIV files is the slow part at the paper's size;
* **stations** -- ``station_shape = (H_s, W_s)`` (default: the generated dataset's own, else the paper's
  ``(23, 62)``), ``stations = (n_cross, n_axial)`` (default: as many as fit) placed side by side starting at
  ``station_offset = (row, col)`` of the field (default: centred). Station ``s = i_axial * n_cross + i_cross``
  covers rows ``row + i_cross H_s ...`` (row 0 = top) and columns ``col + i_axial W_s ...``. Trajectory ``i`` is
  (run, station) :attr:`trajectory_stations` ``[i]``, run-major: the array is ``(n_runs * n_stations, T, 2, H_s,
  W_s)``, fields ``velocity:vector``;
* **valid vectors** -- :attr:`valid_mask` ``(n_traj, T, H_s, W_s)`` says which vectors the PIV files flag valid;
  the loss and the metrics skip a vector in the frames where it is invalid (:meth:`JetFlowDataModule.load_mask`); a
  (run, station) whose valid fraction is below ``min_valid_fraction`` is left out with a one-line warning;
* **splits** (the paper's two test sets, ICML 2022 sec. 5) -- ``test_domain``: every trajectory of the held-out
  stations (``domain_stations``; default a seeded ``domain_fraction`` of them, at least one), whole time range;
  the other stations are split in time into training, validation and ``test_future`` (``split_fractions``,
  default 50/25/25). The normaliser (one scale for the velocity) is fitted on the training range of the training
  stations only (:class:`~datamodules.base.ForecastDataModule`).

Sources: ``generated`` (the preset's dataset under ``<root>/jetflow/<preset>-<key>``, made by ``symbench data
generate jetflow``) or ``piv`` (``path``: a folder of PIV files, one run, or a folder of run folders; any format
:mod:`datamodules.piv_io` reads, ``piv_format`` to force one).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from datamodules import jetflow_sim, piv_io, piv_units, store
from datamodules.base import compact_mask
from datamodules.stored import StoredDataModule, select_fields
from symbench.fields import FieldLayout
from symbench.results import atomic_write

Source = Literal["generated", "piv"]
LAYOUT = FieldLayout.of("velocity:vector")
PAPER_STATION = (23, 62)  # (H, W): the paper's 62 x 23 sub-regions
PIV_SUFFIXES = {".dat", ".vec", ".txt", ".csv", ".mat", ".vc7", ".im7"}  # the files piv_io reads from a folder
CACHE_REVISION = 2  # 2: SI units and filled time axes (datamodules.piv_units)


class JetFlowDataModule(StoredDataModule):
    """Jet-flow velocity windows of PIV stations with the ``test_future`` and ``test_domain`` splits."""

    label, sources, presets = "jetflow", ("generated", "piv"), jetflow_sim.PRESETS
    path_hint = "a folder of PIV files (one run) or a folder of run folders"

    def __init__(
        self,
        preset: str = "cpu",
        root: str = "data",
        source: Source = "generated",
        path: str | None = None,
        fields: Sequence[str] = ("velocity",),
        station_shape: Sequence[int] | None = None,
        stations: Sequence[int] | None = None,
        station_offset: Sequence[int] | None = None,
        domain_stations: Sequence[int] | None = None,
        domain_fraction: float = 0.2,
        domain_seed: int = 0,
        min_valid_fraction: float = 0.9,
        piv_format: str | None = None,
        frame_interval: float | None = None,
        cache: bool = True,
        test_splits: Sequence[str] = ("test_future", "test_domain"),
        split_fractions: Sequence[float] = (0.5, 0.25, 0.25),
        rollout_steps: int = 20,
        **kwargs: Any,
    ):
        super().__init__(preset, root, source, path, fields, test_splits=test_splits, split_fractions=split_fractions,
                         rollout_steps=rollout_steps, **kwargs)
        self.station_shape = None if station_shape is None else _pair(station_shape, "station_shape", minimum=1)
        self.stations = None if stations is None else _pair(stations, "stations", minimum=1)
        self.station_offset = None if station_offset is None else _pair(station_offset, "station_offset", minimum=0)
        if not 0 < domain_fraction < 1:
            raise ValueError(f"domain_fraction must lie in (0, 1), got {domain_fraction}")
        if not 0 <= min_valid_fraction <= 1:
            raise ValueError(f"min_valid_fraction must lie in [0, 1], got {min_valid_fraction}")
        self._domain_override = None if domain_stations is None else sorted({int(s) for s in domain_stations})
        self.domain_fraction, self.domain_seed = domain_fraction, domain_seed
        self.min_valid_fraction, self.piv_format, self.cache = min_valid_fraction, piv_format, cache
        self.frame_interval = None if frame_interval is None else float(frame_interval)
        self.valid_mask: np.ndarray | None = None  # bool (n_traj, T, H_s, W_s), set by load()
        self.trajectory_stations: list[tuple[int, int]] = []  # (run, station) of every trajectory
        self.station_boxes: list[tuple[slice, slice]] = []  # (rows, cols) of every station in the field
        self.n_stations = 0

    @property
    def data_dir(self) -> Path:
        return jetflow_sim.default_dir(Path(self.root), self.preset)

    def family(self) -> str:
        return "jetflow"

    # -- reading ---------------------------------------------------------------------------------------------------
    def run_dirs(self) -> list[Path]:
        """The run folders of the source, in order (also reads the generated dataset's metadata)."""
        if self.source == "generated":
            directory = self.data_dir
            if not jetflow_sim.exists(directory):
                raise store.DataNotFoundError(f"no jet-flow dataset at {directory}; create it with `symbench data "
                                              f"generate jetflow --preset {self.preset} --root {self.root}`")
            self._meta = json.loads((directory / jetflow_sim.META_FILE).read_text())
            return [directory / r for r in self._meta["runs"]]
        folder = Path(self.path)  # type: ignore[arg-type]
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such folder; source='piv' needs --data.path pointing at "
                                    f"{self.path_hint}")
        if _holds_piv(folder):
            return [folder]
        runs = sorted(d for d in folder.iterdir() if d.is_dir() and _holds_piv(d))
        if not runs:
            raise FileNotFoundError(f"{folder}: no PIV files ({', '.join(sorted(PIV_SUFFIXES))}) in this folder or "
                                    "its subfolders")
        return runs

    def read_runs(self) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """Velocity ``(R, T, 2, H, W)`` float32, valid mask ``(R, T, H, W)`` and grid facts of every run."""
        dirs = self.run_dirs()
        series = [self._read_run(d) for d in dirs]
        first = series[0]
        for d, s in zip(dirs[1:], series[1:]):
            if s["velocity"].shape[2:] != first["velocity"].shape[2:] or not (
                    np.allclose(s["x"], first["x"]) and np.allclose(s["y"], first["y"])):
                raise ValueError(f"{d}: its PIV grid ({s['velocity'].shape[-1]}x{s['velocity'].shape[-2]}) differs "
                                 f"from the first run's ({first['velocity'].shape[-1]}x{first['velocity'].shape[-2]});"
                                 " every run must share one grid")
        frames = min(s["velocity"].shape[0] for s in series)
        if any(s["velocity"].shape[0] != frames for s in series):
            warnings.warn(f"jetflow: runs hold {sorted({s['velocity'].shape[0] for s in series})} frames; "
                          f"all are cut to the shortest ({frames})", stacklevel=2)
        velocity = np.stack([s["velocity"][:frames] for s in series])
        mask = np.stack([s["mask"][:frames] for s in series])
        steps = np.diff(first["times"])
        step = float(steps.mean()) if steps.size and np.isfinite(steps).all() else None
        return velocity, mask, {"x": first["x"], "y": first["y"], "units": [str(u) for u in first["units"]],
                                "time_step": step}

    def _read_run(self, directory: Path) -> dict[str, np.ndarray]:
        cache = self._cache_file(directory) if self.cache else None
        if cache is not None and cache.is_file():
            with np.load(cache, allow_pickle=False) as z:
                run = {k: z[k] for k in z.files}
        else:
            run = self._parse_run(directory)
            if cache is not None:
                atomic_write(cache, lambda f: np.savez(f, **run))
        for note in run["notes"]:  # said on every read, cached or not
            warnings.warn(f"jetflow: {note}", stacklevel=3)
        return run

    def _parse_run(self, directory: Path) -> dict[str, np.ndarray]:
        s, notes = piv_units.to_physical(piv_io.read_piv_series(directory, self.piv_format), self.frame_interval)
        times = s.times[np.isfinite(s.times)]
        if times.size == len(s.times) and np.any(np.diff(times) <= 0):
            raise ValueError(f"{directory}: the files' times do not increase with their names; name the files so "
                             "that they sort in time order")
        return {"velocity": s.velocity, "mask": s.mask, "x": s.x, "y": s.y, "times": s.times,
                "units": np.array(s.units), "notes": np.array(notes, dtype=str)}

    def _cache_file(self, directory: Path) -> Path:
        """``<root>/jetflow/piv-cache/<key>.npz``: the key covers the folder, its files' names, sizes and
        modification times, the format and the reader revision."""
        files = sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in os.scandir(directory) if e.is_file())
        key = store.content_key(str(directory.resolve()), files, self.piv_format, self.frame_interval,
                                CACHE_REVISION)
        return Path(self.root) / "jetflow" / "piv-cache" / f"{key}.npz"

    # -- stations --------------------------------------------------------------------------------------------------
    def resolve_station_shape(self) -> tuple[int, int]:
        """The explicit ``station_shape``, else the generated dataset's, else the paper's (23, 62)."""
        if self.station_shape is not None:
            return self.station_shape
        recorded = self._meta.get("layout", {}).get("station_shape")
        return (int(recorded[0]), int(recorded[1])) if recorded else PAPER_STATION

    def layout_stations(self, height: int, width: int) -> list[tuple[slice, slice]]:
        """(rows, cols) of every station of an ``height x width`` field, station ``s = i_axial * n_cross + i_cross``."""
        h, w = self.resolve_station_shape()
        if h > height or w > width:
            raise ValueError(f"station_shape ({h}, {w}) is larger than the {height}x{width} (HxW) PIV field; "
                             "set a smaller --data.station_shape")
        n_cross, n_axial = self.stations if self.stations is not None else (height // h, width // w)
        if self.station_offset is not None:
            row, col = self.station_offset
        else:
            row, col = (height - n_cross * h) // 2, (width - n_axial * w) // 2
        if row + n_cross * h > height or col + n_axial * w > width:
            raise ValueError(f"{n_cross}x{n_axial} stations of ({h}, {w}) from offset ({row}, {col}) need "
                             f"{row + n_cross * h}x{col + n_axial * w} vectors; the PIV field has {height}x{width}")
        return [(slice(row + c * h, row + (c + 1) * h), slice(col + a * w, col + (a + 1) * w))
                for a in range(n_axial) for c in range(n_cross)]

    def load(self) -> tuple[np.ndarray, FieldLayout]:
        if self._cache is None:
            velocity, mask, grid = self.read_runs()
            self.station_boxes = self.layout_stations(*velocity.shape[-2:])
            self.n_stations = len(self.station_boxes)
            arrays, masks, labels = [], [], []
            for run in range(velocity.shape[0]):
                for s, (rows, cols) in enumerate(self.station_boxes):
                    valid = mask[run, :, rows, cols]
                    if valid.mean() < self.min_valid_fraction:
                        warnings.warn(f"jetflow: run {run} station {s} skipped: {valid.mean():.0%} valid vectors "
                                      f"< min_valid_fraction {self.min_valid_fraction:.0%}", stacklevel=2)
                        continue
                    arrays.append(velocity[run, :, :, rows, cols])
                    masks.append(valid)
                    labels.append((run, s))
            if not arrays:
                raise ValueError(f"jetflow: every station has fewer than {self.min_valid_fraction:.0%} valid vectors; "
                                 "lower --data.min_valid_fraction")
            self.valid_mask, self.trajectory_stations = np.stack(masks), labels
            self._meta = {**self._meta, "grid": {"x": [float(grid["x"][0]), float(grid["x"][-1])],
                                                 "y": [float(grid["y"][0]), float(grid["y"][-1])],
                                                 "units": grid["units"], "time_step": grid["time_step"]}}
            self._cache = select_fields(np.ascontiguousarray(np.stack(arrays)), LAYOUT, self.field_names)
        return self._cache

    def load_mask(self) -> np.ndarray | None:
        """The valid vectors of each station: ``(n_traj, H, W)`` when the same in every frame, else per frame
        ``(n_traj, T, H, W)`` (:func:`~datamodules.base.compact_mask`); the loss and the metrics skip a missing vector
        in the frames where it is missing (``None`` when all are valid, as in the generated jet)."""
        self.load()
        assert self.valid_mask is not None
        return None if self.valid_mask.all() else compact_mask(self.valid_mask)

    def domain_station_ids(self) -> list[int]:
        """The held-out stations: ``domain_stations``, else a seeded ``domain_fraction`` of them (at least one, and
        none for a single station when ``test_domain`` is not among the test splits)."""
        self.load()
        n = self.n_stations
        if self._domain_override is not None:
            bad = [s for s in self._domain_override if not 0 <= s < n]
            if bad:
                raise ValueError(f"domain_stations {bad} out of range; the layout has stations 0..{n - 1}")
            if len(self._domain_override) >= n:
                raise ValueError(f"domain_stations hold out all {n} stations; keep at least one for training")
            return self._domain_override
        if n < 2 and "test_domain" not in self.test_splits:
            return []
        if n < 2:
            raise ValueError(f"jetflow: {n} station cannot be split into training and test_domain stations; use a "
                             "smaller station_shape")
        k = min(n - 1, max(1, round(self.domain_fraction * n)))
        return sorted(np.random.default_rng(self.domain_seed).permutation(n)[:k].tolist())

    def domain_trajectories(self) -> list[int]:
        held = set(self.domain_station_ids())
        return [i for i, (_, s) in enumerate(self.trajectory_stations) if s in held]

    def describe(self) -> dict[str, Any]:
        facts = super().describe()
        facts["stations"] = {"station_shape": list(self.resolve_station_shape()), "n_stations": self.n_stations,
                             "domain_stations": self.domain_station_ids(), "grid": self._meta.get("grid")}
        return facts


def _pair(values: Sequence[int], name: str, minimum: int) -> tuple[int, int]:
    pair = tuple(int(v) for v in values)
    if len(pair) != 2 or min(pair) < minimum:
        raise ValueError(f"{name} must be two integers >= {minimum} (rows, columns), got {list(values)}")
    return pair  # type: ignore[return-value]


def _holds_piv(folder: Path) -> bool:
    return any(p.is_file() and p.suffix.lower() in PIV_SUFFIXES for p in folder.iterdir())


def generate_preset(preset: str, root: Path, progress: bool = True) -> Path:
    """Run (or reuse) the PhiFlow jet of ``preset``; returns its data directory."""
    params = jetflow_sim.check_preset(preset)
    return jetflow_sim.generate(params, jetflow_sim.default_dir(Path(root), preset), progress=progress)
