"""Channel-wise parts of the group actions, derived from a :class:`~symbench.fields.FieldLayout`.

Every vector field occupies two consecutive channels ``(x, y)`` (``layout.vector_slices``); all other channels are
scalars. These helpers transform the *values* of the fields; the spatial part of an action lives elsewhere.
"""

from __future__ import annotations

import torch
from torch import Tensor

from symbench.fields import FieldLayout
from symbench.symmetry.batching import Scalar


def component_masks(layout: FieldLayout, device: torch.device) -> tuple[Tensor, Tensor]:
    """Boolean ``(C, 1, 1)`` masks of the x components and of the y components of all vector fields."""
    is_x = torch.zeros(layout.channels, dtype=torch.bool, device=device)
    is_y = torch.zeros_like(is_x)
    for s in layout.vector_slices:
        is_x[s.start], is_y[s.start + 1] = True, True
    return is_x[:, None, None], is_y[:, None, None]


def partner_channels(layout: FieldLayout, device: torch.device) -> Tensor:
    """Channel permutation that swaps the x and y components of every vector field and fixes the scalars."""
    perm = list(range(layout.channels))
    for s in layout.vector_slices:
        perm[s.start], perm[s.start + 1] = s.start + 1, s.start
    return torch.tensor(perm, dtype=torch.long, device=device)


def _per_channel(x: Tensor, is_x: Tensor, is_y: Tensor, on_x: Scalar, on_y: Scalar, other: float) -> Tensor:
    """Coefficient broadcastable to ``x``: ``on_x`` on x components, ``on_y`` on y components, ``other`` elsewhere."""
    on_x, on_y = (torch.as_tensor(v, dtype=x.dtype, device=x.device) for v in (on_x, on_y))
    return torch.where(is_x, on_x, torch.where(is_y, on_y, torch.as_tensor(other, dtype=x.dtype, device=x.device)))


def linear_on_vectors(x: Tensor, layout: FieldLayout, m00: Scalar, m01: Scalar, m10: Scalar, m11: Scalar) -> Tensor:
    """Every vector field ``w = (u, v)`` -> ``M w`` with ``M = [[m00, m01], [m10, m11]]``; scalars are untouched.

    The entries are numbers or per-sample tensors that broadcast against ``x`` (see ``batching.sample_param``).
    Computed as ``diag * x + off * partner(x)`` with ``partner`` swapping each vector's components, in one pass.
    """
    if layout.n_vectors == 0:
        return x
    is_x, is_y = component_masks(layout, x.device)
    diag = _per_channel(x, is_x, is_y, m00, m11, 1.0)
    off = _per_channel(x, is_x, is_y, m01, m10, 0.0)
    shared = not any(isinstance(m, Tensor) for m in (m00, m01, m10, m11))
    # Signed permutations (rot90, reflections) need one product, not two.
    if shared and m01 == 0 and m10 == 0:
        return diag * x
    partner = x.index_select(-3, partner_channels(layout, x.device))
    if shared and m00 == 0 and m11 == 0:
        return torch.where(is_x | is_y, off * partner, x)
    return torch.addcmul(diag * x, off, partner)


def shift_vectors(x: Tensor, layout: FieldLayout, cx: Scalar, cy: Scalar) -> Tensor:
    """Every vector field ``w`` -> ``w + (cx, cy)``; scalars are untouched."""
    is_x, is_y = component_masks(layout, x.device)
    return x + _per_channel(x, is_x, is_y, cx, cy, 0.0)


def scale_values(x: Tensor, layout: FieldLayout, vector_factor: Scalar, scalar_factor: Scalar) -> Tensor:
    """Multiply vector channels by ``vector_factor`` and scalar channels by ``scalar_factor``."""
    is_x, is_y = component_masks(layout, x.device)
    sf = torch.as_tensor(scalar_factor, dtype=x.dtype, device=x.device)
    return x * torch.where(is_x | is_y, torch.as_tensor(vector_factor, dtype=x.dtype, device=x.device), sf)
