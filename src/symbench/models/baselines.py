"""Trivial forecasters every learned model must beat: zero parameters, nothing to train.

* :class:`Persistence`: ``x_hat_{t+1} = x_t`` (repeat the last frame);
* :class:`LinearExtrapolation`: ``x_hat_{t+1} = x_t + (x_t - x_{t-1}) = 2 x_t - x_{t-1}`` (the last two frames).

On a sequence ``x_t = a + b t`` the linear forecast is exact for every rollout step and persistence's error at step
``s`` is ``s b``. Both are linear in the history with weights summing to 1, so they commute with every group the
benchmarks probe (rotations, scalings, magnitudes, uniform motions ``x + c``), and a field that is 0 in every frame
(land in masked data) stays 0. A preset's hyperparameters for every model (``width``, ...) are accepted and ignored:
these forecasters have none.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from symbench.fields import FieldLayout
from symbench.layers import check_history


class _Baseline(nn.Module):
    """Shared shape check; subclasses set :attr:`min_frames` and implement :meth:`predict`."""

    min_frames = 1

    def __init__(self, in_frames: int, layout: FieldLayout, **_ignored: Any) -> None:
        super().__init__()
        if in_frames < self.min_frames:
            raise ValueError(f"{type(self).__name__} needs a history of at least {self.min_frames} frames, "
                             f"got in_frames={in_frames}")
        self.in_frames, self.channels = in_frames, layout.channels

    def forward(self, history: Tensor) -> Tensor:
        check_history(history, self.in_frames, self.channels, type(self).__name__)
        return self.predict(history)

    def predict(self, history: Tensor) -> Tensor:
        raise NotImplementedError


class Persistence(_Baseline):
    """``(B, T_in, C, H, W) -> x_t``: the last frame of the history."""

    def predict(self, history: Tensor) -> Tensor:
        return history[:, -1].clone()


class LinearExtrapolation(_Baseline):
    """``(B, T_in, C, H, W) -> 2 x_t - x_{t-1}``: a constant rate of change per frame."""

    min_frames = 2

    def predict(self, history: Tensor) -> Tensor:
        return 2 * history[:, -1] - history[:, -2]
