"""Transformed test splits of the ICLR 2021 paper (sec. 5.2, D.1), built from the ``orig`` test windows.

Each window ``i`` of the test split gets its own group element, drawn once from a generator seeded by the split's
seed (so the split is identical on every run and every DDP rank), and the *same* element is applied to its history
and its target, so the transformed window is an exact sample of the transformed dynamics:

* ``um``: ``w -> w + c``, ``c ~ U(-1, 1)^2`` (in normalised units: the normaliser has no shift, so this stays a
  uniform motion of the physical field by ``c * scale``);
* ``mag``: ``w -> a w``, ``a ~ U(0, 2)``;
* ``rot``: exact rotation by ``k * 90`` degrees, ``k`` uniform in {1, 2, 3} (grid and vector components);
  ``rot_any``: any angle, interpolated (zero outside the rotated square);
* ``scale``: ``w(x, t) -> lam w(c + lam (x - c), lam^2 t)`` with ``lam ~ U(1/5, 2)``, resampled from a source
  window of ``lam^2`` times as many frames; the output grid is the central ``scale_size`` square (half the tile by
  default) so that ``lam = 2`` still only reads data inside the tile.

The group actions and the parameter distributions come from :mod:`symbench.symmetry`, the one place they are written.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset

from datamodules.windows import WindowDataset
from symbench import symmetry
from symbench.fields import FieldLayout



_MASK_LAYOUT = FieldLayout.of("valid:scalar", "reference:scalar")


class TransformedWindowDataset(Dataset):
    """``orig`` windows (``transform="orig"``) or their transformed copies; items are ``(history, target)``."""

    def __init__(self, windows: WindowDataset, layout: FieldLayout, transform: str, seed: int,
                 scale_size: tuple[int, int] | None = None):
        if transform not in symmetry.TRANSFORMS:
            raise ValueError(f"unknown test split {transform!r}; choose one of {', '.join(symmetry.TRANSFORMS)}")
        self.windows, self.layout, self.transform = windows, layout, transform
        self.element = symmetry.sample_elements(transform, len(windows), torch.Generator().manual_seed(seed))
        h, w = windows.data.shape[-2:]
        self.scale_size = scale_size or (h // 2, w // 2)
        if transform == "scale":
            self._check_scale_fits()

    def __len__(self) -> int:
        return len(self.windows)

    def _check_scale_fits(self) -> None:
        length = self.windows.in_frames + self.windows.out_frames
        lam = float(self.element.lam.max())
        frames, height, width = symmetry.scale_extent(lam, length, self.scale_size)
        grid = tuple(self.windows.data.shape[-2:])
        if frames > len(self.windows.range) or height > grid[0] or width > grid[1]:
            raise ValueError(
                f"the scale split needs {frames} frames of {height}x{width} for lam={lam:.2f} "
                f"but the test range has {len(self.windows.range)} frames of {grid[0]}x{grid[1]}; "
                "use longer trajectories or a shorter history/horizon"
            )

    def element_of(self, index: int) -> symmetry.GroupElement:
        """The group element applied to window ``index`` (its parameters sliced to a batch of one)."""
        return symmetry.map_params(self.element, lambda t: t[index : index + 1])

    def __getitem__(self, index: int) -> tuple[Tensor, ...]:
        if self.transform == "scale":
            window = self._scaled_window(index)
        else:
            history, target = self.windows[index][:2]
            window = torch.cat([history, target])
            window = self.element_of(index).act(window[None], self.layout)[0]
        n = self.windows.in_frames
        if self.windows.mask is None:
            return window[:n], window[n:]
        return window[:n], window[n:], self.moved_mask(index)

    def moved_mask(self, index: int) -> Tensor:
        """The validity mask of window ``index`` moved with its element: a point is valid where the moved mask
        equals the moved all-valid field (for ``rot_any`` and ``scale``, whose interpolation reads neighbours in
        space and, for ``scale``, in time, only points whose every source point is valid; outside the rotated square
        nothing is). ``(H, W)`` for a static mask, ``(T_in + S, H, W)`` for a per-frame one."""
        traj, t0 = self.windows.locate(index)
        static = self.windows.mask.ndim == 3
        if self.transform == "scale":  # two scalar "fields" resampled like the data (no magnitude factor)
            lam, length, frames = self._scale_plan(index)
            mask = self.windows.frame_mask(traj, self._scale_start(t0, frames), frames)
            fields = torch.stack([mask, torch.ones_like(mask)], dim=-3).float()
            moved = symmetry.scale(fields.expand(frames, -1, -1, -1), _MASK_LAYOUT, lam, length, self.scale_size)
        else:
            mask = self.windows.frame_mask(traj, t0, self.windows.in_frames + self.windows.out_frames)
            fields = torch.stack([mask, torch.ones_like(mask)], dim=-3).float()
            moved = self.element_of(index).act(fields.expand(1, 1, -1, -1, -1) if static else fields[None],
                                               _MASK_LAYOUT)[0]
        valid = (moved[:, 1] > 0) & (moved[:, 0] >= moved[:, 1] * (1 - 1e-6))
        return valid[0] if static else valid

    def _scale_plan(self, index: int) -> tuple[float, int, int]:
        """``(lam, window length, source frames)`` of window ``index`` of the scale split."""
        lam = float(self.element.lam[index])
        length = self.windows.in_frames + self.windows.out_frames
        return lam, length, symmetry.scale_extent(lam, length, self.scale_size)[0]

    def _scale_start(self, t0: int, frames: int) -> int:
        """First source frame of a scaled window starting at ``t0``: slid back so that the longer source window
        stays in the split."""
        return min(t0, self.windows.range.stop - frames)

    def _scaled_window(self, index: int) -> Tensor:
        lam, length, frames = self._scale_plan(index)
        traj, t0 = self.windows.locate(index)
        t0 = self._scale_start(t0, frames)
        source = self.windows.data[traj, t0 : t0 + frames]
        return symmetry.scale(source, self.layout, lam, length, self.scale_size)
