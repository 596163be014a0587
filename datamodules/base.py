"""Shared LightningDataModule for autoregressive forecasting on trajectory sets.

A subclass only says how to load its ``(n_traj, T, C, H, W)`` array and :class:`FieldLayout` (:meth:`load`); the
base class does the rest identically for every data family: 60/20/20 time split, normalisation fitted on the
training range (:class:`FieldNormalizer`), training windows of ``in_frames + train_steps`` frames, validation and
test rollout windows of ``in_frames + rollout_steps`` frames, and the transformed test splits of the ICLR 2021 paper.
"""

from __future__ import annotations

from typing import Any, Sequence

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from datamodules.augmented import AugmentedWindowDataset, check_augment, epoch_sampler
from datamodules.sharding import eval_sampler, replicas
from datamodules.transformed import TransformedWindowDataset
from datamodules.windows import FieldNormalizer, TimeRange, WindowDataset, time_split
from symbench import symmetry
from symbench.fields import FieldLayout


# Splits taken from the data rather than transformed from the test windows (ICML 2022 sec. 5: test_future, test_domain).
DATA_SPLITS = ("test_future", "test_domain")


class ForecastDataModule(L.LightningDataModule):
    """Windows for training (``train_steps`` targets) and rollout evaluation (``rollout_steps`` targets).

    Test dataloaders come in the order of ``test_splits``; each name is ``orig`` or a transform of
    :data:`symbench.symmetry.TRANSFORMS` applied to the ``orig`` windows with a fixed seed, or one of
    :data:`DATA_SPLITS`: ``test_future`` (= the ``orig`` windows: the last time range of the training trajectories)
    and ``test_domain`` (every window of the trajectories :meth:`domain_trajectories` holds out).

    DDP: validation and test loaders shard the windows without padding (:func:`datamodules.sharding.eval_sampler`), so every window is
    evaluated exactly once over all ranks and the metrics' summed states equal a single process's. Training keeps
    Lightning's padded, shuffled ``DistributedSampler``. A rank may get no window of one test split (the module
    then adds zeros to that split's sums) but must get some window of its stage: a stage whose largest split has
    fewer windows than there are ranks is refused with one line on every rank (Lightning would skip the loop on the
    empty ranks and leave the others waiting in their reductions).
    """

    def __init__(
        self,
        in_frames: int = 10,
        train_steps: int = 3,
        rollout_steps: int = 10,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        train_stride: int = 1,
        eval_stride: int = 1,
        split_fractions: Sequence[float] = (0.6, 0.2, 0.2),
        test_splits: Sequence[str] = ("orig",),
        transform_seed: int = 1234,
        num_workers: int = 0,
        coarsen: int = 1,
        augment: str | None = None,
        augment_copies: int = 2,
    ):
        super().__init__()
        self.allow_zero_length_dataloader_with_multiple_devices = True  # an empty shard of one split (see above)
        check_augment(augment)
        if coarsen < 1:
            raise ValueError(f"coarsen must be an integer >= 1, got {coarsen}")
        unknown = [s for s in test_splits if s not in symmetry.TRANSFORMS + DATA_SPLITS]
        if unknown:
            raise ValueError(f"unknown test split(s) {unknown}; "
                             f"choose from {', '.join(symmetry.TRANSFORMS + DATA_SPLITS)}")
        if in_frames < 1 or train_steps < 1 or rollout_steps < 1:
            raise ValueError("in_frames, train_steps and rollout_steps must all be >= 1")
        self.in_frames, self.train_steps, self.rollout_steps = in_frames, train_steps, rollout_steps
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.train_stride, self.eval_stride = train_stride, eval_stride
        self.split_fractions = tuple(split_fractions)
        self.test_splits = list(test_splits)
        self.transform_seed = transform_seed
        self.num_workers = num_workers
        self.coarsen, self.augment, self.augment_copies = coarsen, augment, augment_copies
        self._layout: FieldLayout | None = None
        self.normalizer: FieldNormalizer | None = None
        self.datasets: dict[str, Any] = {}

    # -- what a data family provides -------------------------------------------------------------------------------
    def load(self) -> tuple[np.ndarray, FieldLayout]:
        """Return the raw trajectory set ``(n_traj, T, C, H, W)`` and its field declaration."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Facts about the data for leaderboard rows and logs (dataset name, source parameters)."""
        return {}

    def load_mask(self) -> np.ndarray | None:
        """Where the data are defined, bool (True = valid, e.g. ocean; False = land or a missing measurement):
        ``(n_traj, H, W)`` when the same in every frame, ``(n_traj, T, H, W)`` per frame (:func:`compact_mask`), or
        ``None`` when every point is (the default). With a mask, windows carry theirs as a third item, the normaliser
        is fitted on valid (point, frame) pairs only, invalid ones are set to 0 after normalising (no NaN reaches a
        model: zero velocity, the training mean of a scalar), and the loss and metrics count a target point only in
        the frames where it is valid."""
        return None

    def domain_trajectories(self) -> list[int]:
        """Trajectories held out for the ``test_domain`` split (never trained on, validated on or normalised by);
        none by default."""
        return []

    # -- derived ---------------------------------------------------------------------------------------------------
    @property
    def layout(self) -> FieldLayout:
        if self._layout is None:
            self._layout = self.load()[1]
        return self._layout

    @property
    def fields(self) -> list[str]:
        return [str(f) for f in self.layout.fields]

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        array, layout = self.load()
        self._layout = layout
        ranges = time_split(array.shape[1], self.split_fractions)  # type: ignore[arg-type]
        raw = coarsen_grid(torch.from_numpy(np.array(array, dtype=np.float32)), self.coarsen)  # a private copy
        mask = self._validity_mask(raw)
        held_out = self.domain_trajectories()
        if "test_domain" in self.test_splits and not held_out:
            raise ValueError(f"{type(self).__name__} holds out no trajectories: it has no test_domain split")
        fitted = [i for i in range(raw.shape[0]) if i not in set(held_out)]
        fit_frames = slice(ranges["train"].start, ranges["train"].stop)
        fit_mask = None if mask is None else _frame_axes(mask)[fitted, fit_frames if mask.ndim == 4 else slice(None)]
        self.normalizer = FieldNormalizer.fit(layout, raw[fitted, fit_frames], fit_mask)
        data = self.normalizer.normalize(raw)
        if mask is not None:  # where(), not a product: invalid points may hold NaN
            data = torch.where(_frame_axes(mask), data, torch.zeros((), dtype=data.dtype))
        domain, data = data[held_out], data[fitted]
        domain_mask, mask = (None, None) if mask is None else (mask[held_out], mask[fitted])
        train = WindowDataset(data, ranges["train"], self.in_frames, self.train_steps, self.train_stride, mask)
        if self.augment is not None:  # fixed seeds, distinct from the test splits' seeds
            train = AugmentedWindowDataset(train, layout, self.augment, self.augment_copies,
                                           seed=self.transform_seed + 1000)
        self.datasets["train"] = train
        self.datasets["val"] = WindowDataset(data, ranges["val"], self.in_frames, self.rollout_steps, self.eval_stride,
                                             mask)
        test = WindowDataset(data, ranges["test"], self.in_frames, self.rollout_steps, self.eval_stride, mask)
        for offset, name in enumerate(self.test_splits):
            if name == "test_future":  # later times of the training trajectories
                self.datasets[name] = test
            elif name == "test_domain":  # the held-out trajectories, whole time range
                self.datasets[name] = WindowDataset(domain, TimeRange(0, domain.shape[1]), self.in_frames,
                                                    self.rollout_steps, self.eval_stride, domain_mask)
            else:
                self.datasets[name] = TransformedWindowDataset(test, layout, name, seed=self.transform_seed + offset)

    def _validity_mask(self, raw: Tensor) -> Tensor | None:
        """:meth:`load_mask` checked and coarsened like the data (a block is valid only if all its points are)."""
        loaded = self.load_mask()
        if loaded is None:
            return None
        mask = torch.as_tensor(np.asarray(loaded, dtype=bool))
        fine = (raw.shape[0], raw.shape[-2] * self.coarsen, raw.shape[-1] * self.coarsen)
        if tuple(mask.shape) not in (fine, (*fine[:1], raw.shape[1], *fine[1:])):
            raise ValueError(f"validity mask has shape {tuple(mask.shape)}, expected (n_traj, H, W) = {fine} or "
                             f"(n_traj, T, H, W) = {(*fine[:1], raw.shape[1], *fine[1:])}")
        if self.coarsen > 1:
            mask = coarsen_grid(mask.float(), self.coarsen) == 1.0
        return mask

    def _loader(self, dataset: Any, batch_size: int, shuffle: bool = False) -> DataLoader:
        sampler = epoch_sampler(dataset) if shuffle else eval_sampler(dataset, self.trainer)
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                          num_workers=self.num_workers, drop_last=False, persistent_workers=self.num_workers > 0)

    def _check_every_rank_evaluates(self, stage: str, names: Sequence[str]) -> None:
        """One-line ``ValueError`` (raised on every rank alike) when some rank would get no window of ``stage``."""
        kwargs = replicas(self.trainer)
        most = max(len(self.datasets[n]) for n in names)
        if kwargs is not None and most < kwargs["num_replicas"]:
            raise ValueError(f"the {stage} data have {most} window(s) ({', '.join(names)}), fewer than the "
                             f"{kwargs['num_replicas']} DDP processes: use at most {most} device(s), or a smaller "
                             "eval_stride / more data")

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.datasets["train"], self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        self._check_every_rank_evaluates("validation", ["val"])
        return self._loader(self.datasets["val"], self.eval_batch_size)

    def test_dataloader(self) -> list[DataLoader]:
        self._check_every_rank_evaluates("test", self.test_splits)
        return [self._loader(self.datasets[name], self.eval_batch_size) for name in self.test_splits]

    def example(self) -> tuple[Tensor, Tensor]:
        """One validation window (for shape checks and equivariance probes)."""
        self.setup()
        return self.datasets["val"][0]


def compact_mask(valid: np.ndarray) -> np.ndarray:
    """A per-frame validity mask ``(n_traj, T, H, W)`` in the form :meth:`ForecastDataModule.load_mask` returns:
    ``(n_traj, H, W)`` when no trajectory's mask changes between frames (land only), else the per-frame mask."""
    valid = np.asarray(valid, dtype=bool)
    return valid[:, 0].copy() if bool((valid == valid[:, :1]).all()) else valid


def _frame_axes(mask: Tensor) -> Tensor:
    """A ``(n_traj, H, W)`` or ``(n_traj, T, H, W)`` mask shaped to broadcast against ``(n_traj, T, C, H, W)``."""
    return mask[:, None, None] if mask.ndim == 3 else mask[:, :, None]


def coarsen_grid(array: Tensor, factor: int) -> Tensor:
    """Block means of ``factor x factor`` pixels over the last two axes (vector fields stay vector fields)."""
    if factor == 1:
        return array
    *lead, h, w = array.shape
    if h % factor or w % factor:
        raise ValueError(f"coarsen={factor} does not divide the {h}x{w} grid; use a divisor of both sides")
    return array.reshape(*lead, h // factor, factor, w // factor, factor).mean(dim=(-3, -1))
