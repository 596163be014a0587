"""Transformed test splits really are the transforms of ``orig`` (the ICLR 2021 code once saved ``rot`` unrotated)."""

import pytest
import torch

from datamodules.transformed import TransformedWindowDataset
from datamodules.windows import TimeRange, WindowDataset
from symbench.fields import FieldLayout

LAYOUT = FieldLayout.of("velocity:vector")


def windows(frames: int = 60, size: int = 8, in_frames: int = 3, out_frames: int = 2) -> WindowDataset:
    data = torch.randn(2, frames, 2, size, size, generator=torch.Generator().manual_seed(0))
    return WindowDataset(data, TimeRange(10, frames), in_frames, out_frames, stride=3)


def split(name: str, seed: int = 7, **kw) -> TransformedWindowDataset:
    return TransformedWindowDataset(windows(**kw), LAYOUT, name, seed=seed)


def rot90_by_hand(w: torch.Tensor, k: int) -> torch.Tensor:
    """Counter-clockwise k*90 degrees, rows running towards -y: grid rot90 and (u, v) -> (-v, u) per quarter turn."""
    for _ in range(k):
        g = torch.rot90(w, 1, dims=(-2, -1))
        w = torch.stack([-g[..., 1, :, :], g[..., 0, :, :]], dim=-3)
    return w


def test_orig_split_is_the_test_windows():
    orig, base = split("orig"), windows()
    for i in range(len(base)):
        for a, b in zip(orig[i], base[i]):
            assert torch.equal(a, b)


def test_rot_split_is_rotated_with_its_vectors_and_not_the_original():
    rot, orig = split("rot"), split("orig")
    ks = set()
    for i in range(len(rot)):
        k = int(rot.element.k[i])
        ks.add(k)
        for r, o in zip(rot[i], orig[i]):
            torch.testing.assert_close(r, rot90_by_hand(o, k), rtol=0, atol=0)
            assert not torch.allclose(r, o)
    assert ks == {1, 2, 3}


def test_uniform_motion_and_magnitude_splits():
    um, mag, orig = split("um"), split("mag"), split("orig")
    for i in range(len(orig)):
        c = um.element.c[i]
        assert c.abs().max() <= 1 and c.abs().min() > 0
        torch.testing.assert_close(um[i][0] - orig[i][0], c.view(2, 1, 1).expand_as(orig[i][0]))
        torch.testing.assert_close(um[i][1] - orig[i][1], c.view(2, 1, 1).expand_as(orig[i][1]))
        a = mag.element.a[i]
        assert 0 <= a <= 2
        torch.testing.assert_close(mag[i][0], a * orig[i][0])
        torch.testing.assert_close(mag[i][1], a * orig[i][1])


def test_splits_are_deterministic_per_seed():
    a, b, c = split("um", seed=3), split("um", seed=3), split("um", seed=4)
    assert torch.equal(a[5][0], b[5][0])
    assert not torch.equal(a[5][0], c[5][0])


def test_scale_split_matches_the_analytic_space_time_scaling():
    """On w = (alpha + beta x + gamma t, delta y) the split must be lam * w(c + lam (x - c), t0 + lam^2 t) exactly."""
    frames, size = 200, 16
    t = torch.arange(frames, dtype=torch.float32).view(frames, 1, 1)
    x = torch.arange(size, dtype=torch.float32).view(1, 1, size)
    y = torch.arange(size, dtype=torch.float32).view(1, size, 1)
    u = (0.5 + 0.1 * x + 0.01 * t).expand(frames, size, size)
    v = (0.2 * y).expand(frames, size, size)
    data = torch.stack([u, v], dim=1)[None].clone()
    ds = TransformedWindowDataset(WindowDataset(data, TimeRange(0, frames), 3, 2, stride=7), LAYOUT, "scale", seed=1)
    assert ds[0][0].shape == (3, 2, size // 2, size // 2)
    lams = ds.element.lam
    assert lams.min() >= 0.2 and lams.max() <= 2 and (lams - 1).abs().min() > 1e-3
    centre = (size - 1) / 2
    out_centre = (size // 2 - 1) / 2
    for i in range(len(ds)):
        lam = float(lams[i])
        window = torch.cat(ds[i])
        # recover the source start time from the first frame's mean u (u is linear in t)
        xs = centre + lam * (torch.arange(size // 2) - out_centre)
        ys = centre + lam * (torch.arange(size // 2) - out_centre)
        t0 = (window[0, 0].mean() / lam - 0.5 - 0.1 * xs.mean()) / 0.01
        assert abs(t0 - round(float(t0))) < 1e-2  # windows start on an integer frame
        steps = torch.arange(5, dtype=torch.float32).view(5, 1, 1)
        expect_u = lam * (0.5 + 0.1 * xs.view(1, 1, -1) + 0.01 * (round(float(t0)) + lam**2 * steps))
        expect_v = lam * (0.2 * ys.view(1, -1, 1)).expand(5, size // 2, size // 2)
        torch.testing.assert_close(window[:, 0], expect_u.expand(5, size // 2, size // 2), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(window[:, 1], expect_v, atol=1e-4, rtol=1e-4)


def test_scale_split_refuses_a_test_range_that_is_too_short():
    """20 windows that fill their range exactly: any lam > 1 needs more frames than the range has."""
    data = torch.zeros(20, 5, 2, 8, 8)
    exact = WindowDataset(data, TimeRange(0, 5), 3, 2)
    with pytest.raises(ValueError, match="scale split needs"):
        TransformedWindowDataset(exact, LAYOUT, "scale", seed=1)


def test_unknown_split_name():
    with pytest.raises(ValueError, match="unknown test split"):
        split("shear")
