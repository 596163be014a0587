"""Which frames and cells of a masked map series are usable, and why a map yields too few tiles.

With a validity mask ``valid (T, H, W)`` (True = a finite, unfilled value):

* a frame with no valid cell (a missing day: all fill) is dropped, unless no frame has one (all land), (:attr:`Validity.keep` False) and named in a warning;
* a cell is **land** only where it is invalid in every kept frame (``sea = valid.any(0)``): one missing day does not
  turn the whole map into land;
* the loss and the metrics use the kept frames' own validity ``frames = valid[keep]``: a point invalid in some frame
  is left out of that frame only (the models see zeros there, like on land) and counts in the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Validity:
    keep: np.ndarray  # (T,) bool: frames with at least one valid cell
    sea: np.ndarray  # (H, W) bool: valid in some kept frame (not land)
    frames: np.ndarray  # (T_kept, H, W) bool: the validity of each kept frame
    dropped: tuple[str, ...]  # labels of the dropped frames


def validity(mask: np.ndarray, n_frames: int, times: np.ndarray | None = None) -> Validity:
    """:class:`Validity` of a ``(H, W)`` (the same in every frame) or ``(T, H, W)`` mask; frames are labelled by
    ``times`` (dates to the day) when given, else by their index."""
    valid = np.broadcast_to(np.asarray(mask, dtype=bool), (n_frames, *np.shape(mask)[-2:]))
    keep = valid.any(axis=(1, 2))
    labels = [str(t)[:10] for t in times] if times is not None and len(times) == n_frames else list(map(str,
                                                                                                    range(n_frames)))
    if not keep.any():  # nothing valid anywhere: all land, no frame to blame
        return Validity(~keep, np.zeros(valid.shape[1:], bool), np.zeros(valid.shape, bool), ())
    kept = valid[keep]
    return Validity(keep, kept.any(axis=0), kept, tuple(lab for lab, k in zip(labels, keep) if not k))


def mask_fractions(mask: np.ndarray) -> dict[str, float]:
    """Facts of the tiles' mask ``(n, s, s)`` or per frame ``(n, T, s, s)``: ``land_fraction``, the share of points
    invalid in every frame, and for a per-frame mask ``gap_fraction``, the share of the other points' (point, frame)
    pairs that are invalid."""
    if mask.ndim == 3:
        return {"land_fraction": float(1 - mask.mean())}
    sea = mask.any(axis=1)
    return {"land_fraction": float(1 - sea.mean()),
            "gap_fraction": float(1 - mask.sum() / max(1, sea.sum() * mask.shape[1]))}


def why_no_tiles(sea: np.ndarray, size: int, stride: int, max_land_fraction: float, dropped: int,
                 kept_tiles: int) -> str:
    """The numbers behind too few tiles (in a box at least one tile wide): the tile positions that pass the land
    test, the land fraction, the missing frames."""
    h, w = sea.shape
    positions = ((h - size) // stride + 1) * ((w - size) // stride + 1)
    text = (f"{kept_tiles} of the {positions} tile positions in the {h}x{w} box have at most {max_land_fraction:.0%} "
            f"land; land (invalid in every frame) covers {1 - sea.mean():.0%} of the box")
    return text + (f"; {dropped} all-missing frame(s) were dropped" if dropped else "")
