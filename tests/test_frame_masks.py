"""Per-frame validity masks: a point missing in one frame only is left out of that frame's loss and metrics and counts
in every other frame; land (invalid in every frame) behaves as before (a static mask)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datamodules.base import ForecastDataModule, compact_mask
from datamodules.transformed import TransformedWindowDataset
from datamodules.windows import TimeRange, WindowDataset
from symbench.fields import FieldLayout
from symbench.forecast import ForecastModule, rollout, step_mse

LAYOUT = FieldLayout.of("height:scalar")
T_IN, STEPS, FRAMES, SIZE = 2, 2, 16, 4
GAP = (10, 1, 2)  # (frame, row, column): missing on this frame only (a target of the first test window)


def _series() -> tuple[np.ndarray, np.ndarray]:
    """One trajectory ``(1, 16, 1, 4, 4)`` with a land column (column 0) and the :data:`GAP`; NaN where invalid."""
    values = np.random.default_rng(5).normal(3.0, 2.0, size=(1, FRAMES, 1, SIZE, SIZE))
    valid = np.ones((1, FRAMES, SIZE, SIZE), bool)
    valid[:, :, :, 0] = False
    valid[0, GAP[0], GAP[1], GAP[2]] = False
    return np.where(valid[:, :, None], values, np.nan).astype(np.float32), valid


class Series(ForecastDataModule):
    def load(self) -> tuple[np.ndarray, FieldLayout]:
        return _series()[0], LAYOUT

    def load_mask(self) -> np.ndarray:
        return compact_mask(_series()[1])


def _persistence_by_hand(z: np.ndarray, valid: np.ndarray, starts: range) -> tuple[np.ndarray, np.ndarray]:
    """Squared-error sums and counts per step of persistence on the filled normalised series ``z (T, H, W)``: the
    last history frame repeated, each predicted frame set to 0 where its target frame is invalid before it is fed
    back; only valid (point, frame) pairs of the targets count."""
    sse, count = np.zeros(STEPS), np.zeros(STEPS)
    for t0 in starts:
        pred = z[t0 + T_IN - 1]
        for s in range(STEPS):
            frame = t0 + T_IN + s
            pred = np.where(valid[frame], pred, 0.0)
            sse[s] += ((pred - z[frame]) ** 2)[valid[frame]].sum()
            count[s] += valid[frame].sum()
    return sse, count


def test_rmse_leaves_out_a_point_only_in_the_frame_where_it_is_missing():
    """Test-split RMSE per step and over the horizon equal the pooled errors over the valid (point, frame) pairs
    computed by hand; the gap point counts in every other frame; the inputs are 0 where their frame is invalid."""
    dm = Series(in_frames=T_IN, train_steps=1, rollout_steps=STEPS, split_fractions=(0.25, 0.25, 0.5),
                test_splits=["test_future"], batch_size=2, eval_batch_size=2)
    dm.setup()
    raw, valid = _series()
    shift, scale = float(dm.normalizer.shift[0]), float(dm.normalizer.scale[0])
    train = raw[0, :4, 0][valid[0, :4]]
    assert shift == pytest.approx(train.mean(), rel=1e-6) and scale == pytest.approx(train.std(ddof=1), rel=1e-5)
    z = np.where(valid[0], (raw[0, :, 0] - shift) / scale, 0.0)
    dataset = dm.datasets["test_future"]
    history, _, mask = dataset[1]  # frames 9..12: the gap is in its history
    assert mask.shape == (T_IN + STEPS, SIZE, SIZE) and history[1, 0, GAP[1], GAP[2]] == 0
    assert history[0, 0, GAP[1], GAP[2]] != 0  # the same point in the frame before is data

    module = ForecastModule("persistence", fields=dm.fields, in_frames=T_IN, train_steps=1, rollout_steps=STEPS,
                            test_splits=dm.test_splits)
    for batch in dm.test_dataloader()[0]:
        module.test_step(batch, 0)
    metric = module.test_rmse[0]
    sse, count = _persistence_by_hand(z, valid[0], range(8, 13))
    assert metric.count.tolist() == count.tolist() == [5 * 12 - 1, 5 * 12]  # the gap point counts on the other days
    result = metric.compute()
    np.testing.assert_allclose(result["per_step"].numpy(), np.sqrt(sse / count), rtol=1e-5)
    assert result["horizon"].item() == pytest.approx(np.sqrt(sse.sum() / count.sum()), rel=1e-5)


def test_loss_ignores_a_missing_point_in_its_frame_only():
    """The training loss of one step is the MSE over the points valid in that step's target frame; the rollout sets
    each predicted frame to 0 where its target frame is invalid (so ESE and thermal energy see 0 in both)."""
    gen = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, STEPS, 1, SIZE, SIZE, generator=gen), torch.randn(2, STEPS, 1, SIZE, SIZE,
                                                                                   generator=gen)
    mask = torch.ones(2, T_IN + STEPS, SIZE, SIZE, dtype=torch.bool)
    mask[:, :, :, 0] = False  # land
    mask[0, T_IN, 1, 2] = False  # missing in the first target frame of window 0 only
    sq = (pred - target) ** 2
    step0 = torch.cat([sq[0, 0, 0][mask[0, T_IN]], sq[1, 0, 0][mask[1, T_IN]]]).mean()
    step1 = sq[:, 1, 0, :, 1:].mean()  # every sea point, the gap point included
    torch.testing.assert_close(step_mse(pred, target, mask), torch.stack([step0, step1]))
    garbage = target.clone()
    garbage[0, 0, 0, 1, 2] = 1e6  # the missing pair: ignored
    torch.testing.assert_close(step_mse(pred, garbage, mask), step_mse(pred, target, mask))
    garbage[0, 1, 0, 1, 2] = 1e6  # the same point one frame later: counted
    assert step_mse(pred, garbage, mask)[1] > 1e9

    class Shift(torch.nn.Module):  # the last frame + 1
        def forward(self, history: torch.Tensor) -> torch.Tensor:
            return history[:, -1] + 1

    frames = rollout(Shift(), torch.zeros(2, T_IN, 1, SIZE, SIZE), STEPS, mask)
    assert frames[0, 0, 0, 1, 2] == 0 and frames[0, 1, 0, 1, 2] == 1  # zeroed in its frame, fed back as 0
    assert frames[1, :, 0, 1, 2].tolist() == [1.0, 2.0] and frames[..., 0].abs().max() == 0


def test_a_mask_without_gaps_stays_static():
    """Land only (the same in every frame): one ``(n, H, W)`` mask, the path and results of before; a gap: per frame."""
    valid = np.ones((2, 5, 3, 3), bool)
    valid[:, :, 0] = False
    static = compact_mask(valid)
    assert static.shape == (2, 3, 3) and np.array_equal(static, valid[:, 0])
    valid[1, 2, 1, 1] = False
    assert np.array_equal(compact_mask(valid), valid)


@pytest.mark.parametrize("transform", ["rot", "rot_any", "um", "scale"])
def test_transformed_splits_move_per_frame_masks_like_static_ones(transform):
    """A per-frame mask that does not change between frames moves exactly like the static mask; a gap moves with
    its frame (rotations by quarter turns: the moved data are 0 wherever the moved mask is False)."""
    gen = torch.Generator().manual_seed(1)
    data = torch.randn(2, 24, 1, 8, 8, generator=gen)
    land = torch.ones(2, 8, 8, dtype=torch.bool)
    land[:, :3, :2] = False
    per_frame = land[:, None].expand(-1, 24, -1, -1).clone()
    kwargs = {"in_frames": 1, "out_frames": 1}
    moved_static = TransformedWindowDataset(WindowDataset(data, TimeRange(0, 24), mask=land, **kwargs), LAYOUT,
                                            transform, seed=3)
    moved = TransformedWindowDataset(WindowDataset(data, TimeRange(0, 24), mask=per_frame, **kwargs), LAYOUT,
                                     transform, seed=3)
    for index in (0, 7, 30):
        static_mask, frame_masks = moved_static[index][2], moved[index][2]
        assert frame_masks.shape == (2, *static_mask.shape)
        assert all(torch.equal(m, static_mask) for m in frame_masks)
    if transform == "rot":
        per_frame[0, 5, 6, 7] = False
        data = torch.where(per_frame[:, :, None], data, torch.zeros(()))
        split = TransformedWindowDataset(WindowDataset(data, TimeRange(0, 24), mask=per_frame, **kwargs), LAYOUT,
                                         transform, seed=3)
        history, target, mask = split[4]  # frames 4 (history) and 5 (target, with the gap)
        assert int((~mask[1]).sum()) == int((~mask[0]).sum()) + 1
        assert torch.cat([history, target])[:, 0][~mask].abs().max() == 0
