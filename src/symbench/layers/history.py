"""The history tensor shared by every forecaster: validation and frame-major channel stacking.

Tensor conventions: :mod:`symbench.fields`.
"""

from __future__ import annotations

import torch
from torch import Tensor


def check_history(x: Tensor, in_frames: int, channels: int, model: str, grid_multiple: int = 1) -> None:
    """Raise a one-line ``ValueError`` unless ``x`` is ``(B, in_frames, channels, H, W)`` with H, W multiples of
    ``grid_multiple`` (a network that halves the grid ``n`` times needs ``grid_multiple = 2**n``)."""
    if x.ndim != 5 or x.shape[1] != in_frames or x.shape[2] != channels:
        raise ValueError(
            f"{model} expects a history (B, T_in={in_frames}, C={channels}, H, W), got shape {tuple(x.shape)}"
        )
    height, width = x.shape[-2:]
    if height % grid_multiple or width % grid_multiple:
        raise ValueError(
            f"{model} needs H and W divisible by {grid_multiple} (it halves the grid "
            f"{grid_multiple.bit_length() - 1} times), got H={height}, W={width}"
        )


def stack_frames(x: Tensor) -> Tensor:
    """``(B, T, C, H, W) -> (B, T*C, H, W)``, frame-major: channel ``t*C + c`` is field channel ``c`` of frame ``t``
    (``[u_t0, v_t0, u_t1, v_t1, ...]`` for velocity), the input convention of Wang et al. (ICLR 2021, sec. 5)."""
    return x.flatten(1, 2)


def pad_to_multiple(x: Tensor, multiple: int) -> tuple[Tensor, tuple[slice, slice]]:
    """Zero-pad the grid of ``x (..., H, W)`` symmetrically up to multiples of ``multiple``.

    Returns the padded tensor and the ``(rows, cols)`` slices that crop a same-sized output back to ``H x W``. Zero
    padding matches the 'same' zero padding of the convolutions; with an even amount per axis the padding is centred,
    so a network that is exactly rotation-equivariant on the padded grid stays so on square inputs.
    """
    height, width = x.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    top, left = pad_h // 2, pad_w // 2
    if pad_h or pad_w:
        x = torch.nn.functional.pad(x, (left, pad_w - left, top, pad_h - top))
    return x, (slice(top, top + height), slice(left, left + width))
