"""Pointwise symmetries of the values of a field: uniform motion and magnitude (ICLR 2021 sec. 2.4).

Neither moves the grid. Uniform motion ``T_c w(x, t) = w(x, t) + c`` is the value part of a Galilean boost and acts
on vector fields only; magnitude ``T_a w = a w`` multiplies every field.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import Tensor

from symbench.fields import FieldLayout
from symbench.symmetry.batching import Scalar, check_frame, sample_param
from symbench.symmetry.components import shift_vectors

Motion = Union[Sequence[float], Tensor]


def uniform_motion(x: Tensor, layout: FieldLayout, c: Motion) -> Tensor:
    """``w -> w + c`` on every vector field (scalars untouched); ``c = (c_x, c_y)`` in the physical frame (y up).

    ``c`` is a pair, a ``(2,)`` tensor shared by all samples, or a per-sample ``(B, 2)`` tensor.
    """
    check_frame(x, layout)
    ct = torch.as_tensor(c, dtype=x.dtype, device=x.device)
    if ct.ndim not in (1, 2) or ct.shape[-1] != 2:
        raise ValueError(f"uniform motion c must be (c_x, c_y) or a (B, 2) tensor, got shape {tuple(ct.shape)}")
    cx, cy = (sample_param(ct[..., i], x, "c") for i in range(2))
    return shift_vectors(x, layout, cx, cy)


def magnitude(x: Tensor, layout: FieldLayout, a: Scalar) -> Tensor:
    """``w -> a w`` on every field; ``a`` is a number or a per-sample ``(B,)`` tensor."""
    check_frame(x, layout)
    return x * sample_param(a, x, "a")
