"""Training-set augmentation of the ICLR 2021 paper's *Augm* baselines (sec. 5.2, Table 2).

"Augm is ResNet (U-net) trained on the augmented training set with additional samples applied with random
transformations from the relevant symmetry group ... three times the size of the original training set." The
augmented set here is the original training windows followed by ``copies`` transformed copies of all of them
(``copies = 2`` gives the paper's 3x). Each copy draws one group element per window, once, from a generator seeded
by ``seed + copy`` (the same fixed set every epoch, every run and every DDP rank), from the same distributions and
with the same actions as the transformed test splits (:mod:`datamodules.transformed`, :mod:`symbench.symmetry`).

``scale`` is the one group whose samples change the grid: ``lam w(c + lam (x - c), lam^2 t)`` with ``lam <= 2`` only
stays inside the tile on its central half, which is where the ``scale`` test split lives. So for ``scale`` every
training window, original or scaled, is taken on that central half grid (the originals are the ``lam = 1`` crop),
and a batch never mixes grid sizes.

An epoch is one pass's worth of the *original* windows (:attr:`AugmentedWindowDataset.epoch_windows`, drawn by
:func:`epoch_sampler`): each epoch draws that many windows, without replacement, from the whole augmented set, so an
Augm model takes as many gradient steps per epoch as its backbone and meets each original window (as itself or a
transformed copy) once per epoch on average.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from datamodules.transformed import TransformedWindowDataset
from datamodules.windows import WindowDataset
from symbench.fields import FieldLayout

AUGMENTATIONS = ("um", "mag", "rot", "rot_any", "scale")


def check_augment(augment: str | None) -> None:
    """One-line ``ValueError`` unless ``augment`` is ``None`` or a group of :data:`AUGMENTATIONS`."""
    if augment is not None and augment not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {augment!r}; choose one of {', '.join(AUGMENTATIONS)} (or none)")


class CentralCrop(Dataset):
    """The windows of ``windows`` cut to the central ``size`` square (the ``lam = 1`` member of the scale split)."""

    def __init__(self, windows: WindowDataset, size: tuple[int, int]):
        self.windows, self.size = windows, size
        h, w = windows.data.shape[-2:]
        self.top, self.left = (h - size[0]) // 2, (w - size[1]) // 2

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> tuple[Tensor, ...]:
        rows, cols = slice(self.top, self.top + self.size[0]), slice(self.left, self.left + self.size[1])
        return tuple(t[..., rows, cols] for t in self.windows[index])  # history, target (and the mask)


class AugmentedWindowDataset(Dataset):
    """Item ``i < N``: original window ``i``; item ``N c + i``: window ``i`` under copy ``c``'s element for it."""

    def __init__(self, windows: WindowDataset, layout: FieldLayout, augment: str, copies: int = 2, seed: int = 0):
        check_augment(augment)
        if copies < 1:
            raise ValueError(f"augment_copies must be >= 1, got {copies}")
        self.augment, self.copies = augment, copies
        self.transformed = [TransformedWindowDataset(windows, layout, augment, seed=seed + c) for c in range(copies)]
        size = self.transformed[0].scale_size
        self.original: Dataset = CentralCrop(windows, size) if augment == "scale" else windows
        self.n = len(windows)

    @property
    def epoch_windows(self) -> int:
        """Windows per training epoch: the number of original windows."""
        return self.n

    def __len__(self) -> int:
        return self.n * (1 + self.copies)

    def __getitem__(self, index: int) -> tuple[Tensor, ...]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} augmented windows")
        copy, i = divmod(index, self.n)
        return self.original[i] if copy == 0 else self.transformed[copy - 1][i]



class EpochSampler(Sampler[int]):
    """``num_samples`` distinct indices of a dataset, a fresh draw for each epoch (a permutation seeded by
    ``seed + epoch``, so every DDP rank draws the same one; Lightning splits them over the ranks)."""

    def __init__(self, size: int, num_samples: int, seed: int) -> None:
        if not 0 < num_samples <= size:
            raise ValueError(f"an epoch of {num_samples} windows needs 1..{size} of them")
        self.size, self.num_samples, self.seed, self.epoch = size, num_samples, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1  # the next pass draws anew (set_epoch, if called, sets it explicitly)
        return iter(torch.randperm(self.size, generator=gen)[: self.num_samples].tolist())


def epoch_sampler(dataset: Dataset) -> EpochSampler | None:
    """The training sampler of an augmented set (:attr:`AugmentedWindowDataset.epoch_windows` windows per epoch);
    ``None`` (an ordinary shuffle of every window) for any other dataset."""
    if not isinstance(dataset, AugmentedWindowDataset):
        return None
    return EpochSampler(len(dataset), dataset.epoch_windows, seed=torch.initial_seed())
