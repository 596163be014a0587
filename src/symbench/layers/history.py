"""The history tensor shared by every forecaster: validation and frame-major channel stacking (DESIGN §2)."""

from __future__ import annotations

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
