"""Windowing, time splits and the normaliser: no window crosses a split boundary; normalisation commutes."""

import math

import pytest
import torch

from datamodules.windows import FieldNormalizer, WindowDataset, time_split
from symbench.fields import FieldLayout


def frame_index_data(n_traj: int = 3, frames: int = 50, size: int = 4) -> torch.Tensor:
    """Every pixel of frame t of trajectory n holds 1000 n + t, so a window reveals where it came from."""
    t = torch.arange(frames, dtype=torch.float32).view(1, frames, 1, 1, 1)
    n = torch.arange(n_traj, dtype=torch.float32).view(n_traj, 1, 1, 1, 1)
    return (1000 * n + t).expand(n_traj, frames, 2, size, size).clone()


def test_time_split_is_disjoint_and_covers_everything():
    ranges = time_split(50)
    assert (ranges["train"].start, ranges["train"].stop) == (0, 30)
    assert (ranges["val"].start, ranges["val"].stop) == (30, 40)
    assert (ranges["test"].start, ranges["test"].stop) == (40, 50)
    with pytest.raises(ValueError, match="sum to 1"):
        time_split(50, (0.5, 0.2, 0.2))


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_no_window_crosses_a_split_boundary(split):
    data = frame_index_data()
    r = time_split(50)[split]
    ds = WindowDataset(data, r, in_frames=4, out_frames=3)
    seen = set()
    for i in range(len(ds)):
        hist, target = ds[i]
        times = torch.cat([hist, target])[:, 0, 0, 0] % 1000
        assert times.min() >= r.start and times.max() < r.stop
        # consecutive frames, history then target, one trajectory
        assert torch.equal(times, times[0] + torch.arange(7))
        assert len(set((torch.cat([hist, target])[:, 0, 0, 0] // 1000).tolist())) == 1
        seen.add((int(times[0]), int(hist[0, 0, 0, 0] // 1000)))
    # every admissible start of every trajectory appears exactly once
    assert len(seen) == len(ds) == 3 * (len(r) - 7 + 1)


def test_stride_and_too_long_window():
    data = frame_index_data()
    ds = WindowDataset(data, time_split(50)["train"], 4, 3, stride=5)
    assert ds.starts == [0, 5, 10, 15, 20]
    with pytest.raises(ValueError, match="does not fit"):
        WindowDataset(data, time_split(50)["test"], 8, 3)


def test_normalizer_one_scale_per_vector_and_commutes_with_rotation():
    layout = FieldLayout.of("velocity:vector", "temperature:scalar")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, 8, 8, generator=g)
    x[:, 0] = 3 * x[:, 0] + 1.0  # anisotropic, shifted u: per-component statistics would differ
    x[:, 2] = 10 + 2 * x[:, 2]
    norm = FieldNormalizer.fit(layout, x)
    assert norm.scale[0] == norm.scale[1]  # one scale for both components
    assert norm.shift[0] == norm.shift[1] == 0  # no shift of vector components
    assert math.isclose(float(norm.scale[0]), float(x[:, :2].pow(2).sum(1).mean().sqrt()), rel_tol=1e-5)
    z = norm.normalize(x)
    assert abs(float(z[:, 2].mean())) < 1e-5 and abs(float(z[:, 2].std()) - 1) < 1e-3
    torch.testing.assert_close(norm.denormalize(z), x)

    def rot(f):  # 90 degrees counter-clockwise with rows running towards -y
        out = torch.rot90(f, 1, dims=(-2, -1)).clone()
        out[:, 0], out[:, 1] = -torch.rot90(f[:, 1], 1, dims=(-2, -1)), torch.rot90(f[:, 0], 1, dims=(-2, -1))
        return out

    torch.testing.assert_close(norm.normalize(rot(x)), rot(norm.normalize(x)))
    # a uniform motion stays a uniform motion after normalisation (not undone)
    c = torch.tensor([0.7, -0.3])
    moved = x.clone()
    moved[:, :2] += c.view(2, 1, 1)
    diff = norm.normalize(moved) - norm.normalize(x)
    torch.testing.assert_close(diff[:, :2], (c / norm.scale[:2]).view(1, 2, 1, 1).expand_as(diff[:, :2]))
