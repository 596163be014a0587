"""Sliding windows over trajectory sets, time-based splits, and the field-aware normaliser.

A trajectory set is ``(n_traj, T, C, H, W)``. Each split owns a contiguous time range of every trajectory and a
window never leaves its range, so no sample mixes frames of two splits (the ICLR 2021 code let the last training
windows overlap the first validation frames; here the ranges are disjoint and windows stay inside them).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import Dataset

from symbench.fields import FieldLayout


@dataclass(frozen=True)
class TimeRange:
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start


def time_split(n_frames: int, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> dict[str, TimeRange]:
    """Disjoint, consecutive ``train`` / ``val`` / ``test`` time ranges (the paper's 60/20/20 split in time)."""
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) <= 0:
        raise ValueError(f"split fractions must be positive and sum to 1, got {fractions}")
    a = round(n_frames * fractions[0])
    b = a + round(n_frames * fractions[1])
    return {"train": TimeRange(0, a), "val": TimeRange(a, b), "test": TimeRange(b, n_frames)}


class WindowDataset(Dataset):
    """All windows of ``in_frames + out_frames`` consecutive frames inside one time range of every trajectory.

    Item ``i`` is ``(history (T_in, C, H, W), target (S, C, H, W))``. ``stride`` subsamples window start times.
    With a validity ``mask`` (bool: True where the data are defined, e.g. ocean and not land) the item is
    ``(history, target, mask)``: for a static mask ``(n_traj, H, W)`` the trajectory's ``(H, W)`` mask, the same for
    all its frames; for a per-frame mask ``(n_traj, T, H, W)`` the window's own frames ``(T_in + S, H, W)``.
    """

    def __init__(self, data: Tensor, time_range: TimeRange, in_frames: int, out_frames: int, stride: int = 1,
                 mask: Tensor | None = None):
        length = in_frames + out_frames
        if length > len(time_range):
            raise ValueError(
                f"history + horizon = {in_frames} + {out_frames} = {length} frames does not fit in a split of "
                f"{len(time_range)} frames (frames {time_range.start}..{time_range.stop - 1}); "
                "use a shorter history/horizon or longer trajectories"
            )
        static, per_frame = (data.shape[0], *data.shape[-2:]), (*data.shape[:2], *data.shape[-2:])
        if mask is not None and (mask.dtype != torch.bool or tuple(mask.shape) not in (static, per_frame)):
            raise ValueError(f"mask must be a bool tensor (n_traj, H, W) = {static} or (n_traj, T, H, W) = "
                             f"{per_frame}, got {mask.dtype} {tuple(mask.shape)}")
        self.data, self.range, self.in_frames, self.out_frames = data, time_range, in_frames, out_frames
        self.mask = mask
        self.starts = list(range(time_range.start, time_range.stop - length + 1, max(1, stride)))

    def __len__(self) -> int:
        return self.data.shape[0] * len(self.starts)

    def locate(self, index: int) -> tuple[int, int]:
        """(trajectory, first frame) of window ``index``."""
        traj, k = divmod(index, len(self.starts))
        return traj, self.starts[k]

    def __getitem__(self, index: int) -> tuple[Tensor, ...]:
        traj, t0 = self.locate(index)
        window = self.data[traj, t0 : t0 + self.in_frames + self.out_frames]
        if self.mask is None:
            return window[: self.in_frames], window[self.in_frames :]
        return window[: self.in_frames], window[self.in_frames :], self.frame_mask(traj, t0, len(window))

    def frame_mask(self, traj: int, start: int, frames: int) -> Tensor:
        """The mask of trajectory ``traj`` over frames ``start .. start + frames - 1``: ``(H, W)`` for a static mask,
        else ``(frames, H, W)``."""
        assert self.mask is not None
        return self.mask[traj] if self.mask.ndim == 3 else self.mask[traj, start : start + frames]


class FieldNormalizer:
    """Normalisation that commutes with the symmetries under test (:mod:`symbench.fields`).

    Every vector field ``v`` is divided by one scale ``s = sqrt(mean |v|^2)`` (no shift, no per-component statistics),
    so rotations, reflections and magnitude scalings commute with it exactly, and a uniform motion ``v + c`` maps to
    ``v/s + c/s``: still a uniform motion, which the normaliser cannot undo. Scalars are standardised (mean, std).
    Statistics come from the training range only.
    """

    def __init__(self, layout: FieldLayout, scale: Tensor, shift: Tensor):
        self.layout, self.scale, self.shift = layout, scale, shift

    @classmethod
    def fit(cls, layout: FieldLayout, frames: Tensor, mask: Tensor | None = None) -> "FieldNormalizer":
        """Fit on ``frames`` ``(..., C, H, W)`` (the training range); with a bool ``mask`` broadcastable to
        ``(..., 1, H, W)``, on the valid points only."""
        scale = torch.ones(layout.channels, dtype=torch.float64)
        shift = torch.zeros(layout.channels, dtype=torch.float64)
        x = frames.double().movedim(-3, 0).flatten(1)  # (C, N)
        if mask is not None:
            keep = torch.broadcast_to(mask, frames[..., :1, :, :].shape).movedim(-3, 0).flatten(1)[0]
            if not keep.any():
                raise ValueError("the validity mask leaves no valid training point to fit the normaliser on")
            x = x[:, keep]
        for field, sl in layout.slices():
            if field.kind == "vector":
                scale[sl] = x[sl].pow(2).sum(0).mean().sqrt().clamp_min(1e-12)
            else:
                shift[sl] = x[sl].mean()
                scale[sl] = x[sl].std().clamp_min(1e-12)
        return cls(layout, scale.float(), shift.float())

    def _view(self, t: Tensor, x: Tensor) -> Tensor:
        return t.to(x.device, x.dtype).view(-1, *([1] * self.layout.ndim))

    def normalize(self, x: Tensor) -> Tensor:
        return (x - self._view(self.shift, x)) / self._view(self.scale, x)

    def denormalize(self, x: Tensor) -> Tensor:
        return x * self._view(self.scale, x) + self._view(self.shift, x)

    def state_dict(self) -> dict[str, list[float]]:
        return {"scale": self.scale.tolist(), "shift": self.shift.tolist()}
