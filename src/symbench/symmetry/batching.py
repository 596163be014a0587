"""Input checks and per-sample parameters shared by every group action.

A frame is ``(..., C, H, W)`` (see :mod:`symbench.fields`). A group parameter is either shared by the whole tensor
(a python number or a 0-d tensor) or given per sample: a tensor whose first axis is the batch axis 0 of ``x``.
:func:`sample_param` turns a per-sample ``(B,)`` parameter into a ``(B, 1, ..., 1)`` view that broadcasts over every
other axis of ``x`` (a time axis, channels, pixels).
"""

from __future__ import annotations

from typing import Union

import torch
from torch import Tensor

from symbench.fields import FieldLayout

Scalar = Union[float, int, Tensor]


def check_frame(x: Tensor, layout: FieldLayout, min_size: int = 1) -> None:
    """Raise ``ValueError`` unless ``x`` is a 2D ``(..., C, H, W)`` tensor with ``layout.channels`` channels."""
    if layout.ndim != 2:
        raise ValueError(f"planar group actions need a 2D layout, got ndim={layout.ndim} for layout {layout}")
    if x.ndim < 3:
        raise ValueError(f"expected a (..., C, H, W) tensor, got shape {tuple(x.shape)}")
    if x.shape[-3] != layout.channels:
        raise ValueError(
            f"tensor of shape {tuple(x.shape)} has {x.shape[-3]} channels at axis -3 but layout {layout} "
            f"declares {layout.channels}"
        )
    if min(x.shape[-2:]) < min_size:
        raise ValueError(f"grid {tuple(x.shape[-2:])} is too small: this action needs {min_size}+ pixels per axis")


def is_per_sample(p: object) -> bool:
    """True for a tensor parameter with a batch axis (ndim >= 1)."""
    return isinstance(p, Tensor) and p.ndim >= 1


def sample_param(p: Scalar, x: Tensor, name: str, dtype: torch.dtype | None = None) -> Tensor:
    """``p`` on ``x``'s device as a 0-d tensor (shared) or a ``(B, 1, ..., 1)`` tensor with ``x.ndim`` axes."""
    t = torch.as_tensor(p, device=x.device, dtype=dtype or x.dtype)
    if t.ndim == 0:
        return t
    if t.ndim != 1:
        raise ValueError(f"{name} must be a number or a (B,) tensor, got shape {tuple(t.shape)}")
    if x.ndim < 4 or t.shape[0] != x.shape[0]:
        raise ValueError(
            f"per-sample {name} has {t.shape[0]} entries but x of shape {tuple(x.shape)} needs one per entry of "
            "its batch axis 0 (x must be (B, ..., C, H, W))"
        )
    return t.reshape((-1,) + (1,) * (x.ndim - 1))
