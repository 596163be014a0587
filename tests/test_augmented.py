"""The Augm training set (ICLR 2021 sec. 5.2): three times the windows, the copies really transformed, fixed seeds;
and the grid coarsening option of the data modules."""

import numpy as np
import pytest
import torch

from datamodules.augmented import AugmentedWindowDataset
from datamodules.base import ForecastDataModule, coarsen_grid
from datamodules.windows import TimeRange, WindowDataset
from symbench.fields import FieldLayout

LAYOUT = FieldLayout.of("velocity:vector")


def windows(frames: int = 80, size: int = 8) -> WindowDataset:
    data = torch.randn(2, frames, 2, size, size, generator=torch.Generator().manual_seed(0))
    return WindowDataset(data, TimeRange(0, frames), in_frames=3, out_frames=2, stride=5)


def augmented(group: str, copies: int = 2, seed: int = 3) -> AugmentedWindowDataset:
    return AugmentedWindowDataset(windows(), LAYOUT, group, copies=copies, seed=seed)


@pytest.mark.parametrize("group", ["um", "mag", "rot", "scale"])
def test_the_training_set_is_three_times_larger_and_its_copies_are_transformed(group: str) -> None:
    base, aug = windows(), augmented(group)
    n = len(base)
    assert len(aug) == 3 * n
    size = (4, 4) if group == "scale" else (8, 8)
    for i in range(n):
        original = torch.cat(aug[i])
        assert original.shape[-2:] == size
        for copy in (1, 2):
            g = aug.transformed[copy - 1].element_of(i)
            moved = torch.cat(aug[copy * n + i])
            assert moved.shape == original.shape
            assert not torch.allclose(moved, original), f"{group} copy {copy} of window {i} is untransformed"
            if group != "scale":  # the copies are the group's action on the original window
                torch.testing.assert_close(moved, g.act(original[None], LAYOUT)[0])
    with pytest.raises(IndexError):
        aug[3 * n]


def test_scale_originals_are_the_central_crop_and_scale_one_reproduces_them() -> None:
    base, aug = windows(), augmented("scale")
    history, target = base[4]
    crop_history, crop_target = aug[4]
    torch.testing.assert_close(crop_history, history[..., 2:6, 2:6], rtol=0, atol=0)
    torch.testing.assert_close(crop_target, target[..., 2:6, 2:6], rtol=0, atol=0)


def test_rot_copies_cover_all_three_quarter_turns_and_the_set_is_fixed() -> None:
    aug = augmented("rot")
    ks = {int(k) for t in aug.transformed for k in t.element.k}
    assert ks == {1, 2, 3}
    again = augmented("rot")
    for i in range(len(aug)):
        assert all(torch.equal(a, b) for a, b in zip(aug[i], again[i]))
    other_seed = augmented("rot", seed=4)
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(aug, other_seed))


def test_bad_augmentation_is_one_clear_line() -> None:
    with pytest.raises(ValueError, match="unknown augmentation 'shear'; choose one of um, mag, rot"):
        augmented("shear")
    with pytest.raises(ValueError, match="augment_copies"):
        augmented("rot", copies=0)


def test_coarsening_averages_blocks_and_keeps_a_uniform_field() -> None:
    x = torch.arange(16.0).view(1, 1, 4, 4)
    torch.testing.assert_close(coarsen_grid(x, 2), torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))
    uniform = torch.full((2, 3, 2, 6, 6), 0.7)
    torch.testing.assert_close(coarsen_grid(uniform, 3), torch.full((2, 3, 2, 2, 2), 0.7))
    assert coarsen_grid(x, 1) is x
    with pytest.raises(ValueError, match="does not divide the 4x4 grid"):
        coarsen_grid(x, 3)


class _Random(ForecastDataModule):
    """Random velocity trajectories: 2 x 60 frames on 8 x 8."""

    def load(self) -> tuple[np.ndarray, FieldLayout]:
        return np.random.default_rng(0).normal(size=(2, 60, 2, 8, 8)).astype(np.float32), LAYOUT


def _epoch_ids(loader) -> list[bytes]:
    """The windows one pass of ``loader`` yields, each identified by its history's bytes."""
    return [h.numpy().tobytes() for history, _ in loader for h in history]


def test_an_augm_epoch_is_one_pass_of_the_original_windows_drawn_from_the_augmented_set():
    sizes = {"in_frames": 3, "train_steps": 2, "rollout_steps": 2, "batch_size": 4}
    plain, augm = _Random(**sizes), _Random(**sizes, augment="um")  # continuous group: no two copies alike
    plain.setup("fit")
    augm.setup("fit")
    n = len(plain.datasets["train"])
    assert len(augm.datasets["train"]) == 3 * n
    torch.manual_seed(0)
    loader = augm.train_dataloader()
    first, second = _epoch_ids(loader), _epoch_ids(loader)
    assert len(first) == len(second) == n == len(_epoch_ids(plain.train_dataloader()))
    assert len(set(first)) == n and set(first) != set(second)  # no repeats within an epoch; a fresh draw each epoch
    originals = {augm.datasets["train"][i][0].numpy().tobytes() for i in range(n)}
    assert originals - set(first) and set(first) - originals  # transformed copies drawn, some originals not
