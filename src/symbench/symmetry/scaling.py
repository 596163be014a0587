"""Space-time scaling of flows (ICLR 2021 sec. 2.4 and 3.5): ``T_lam w(x, t) = lam w(lam x, lam^2 t)``.

Navier-Stokes solutions are mapped to solutions by this joint scaling of space, time and magnitude. Space is scaled
about the grid centre ``c = ((W-1)/2, (H-1)/2)`` in pixel units and time is in frame units. Vector fields (velocity)
get the factor ``lam``; scalar fields get ``lam ** scalar_power``, 0 by default, which is right for passive scalars and
for the heat equation, where the paper drops the magnitude scaling (sec. 3.5).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from symbench.fields import FieldLayout
from symbench.symmetry.batching import Scalar, check_frame, sample_param
from symbench.symmetry.components import scale_values

# Source coordinates may overshoot the data by this relative amount (float rounding) and still count as inside.
_TOL = 1e-9


def _needed(extent: float) -> int:
    """Number of samples ``n`` such that indices ``0..n-1`` cover ``[0, extent]``."""
    return math.ceil(extent - _TOL * max(1.0, abs(extent))) + 1


def scale_extent(lam: float, out_steps: int, out_size: tuple[int, int], t0: float = 0.0) -> tuple[int, int, int]:
    """``(frames_needed, height_needed, width_needed)`` of a source sequence for :func:`scale`.

    :func:`scale` reads source times ``t0 + lam^2 t`` for ``t = 0..out_steps-1`` (so frames ``0..frames_needed-1``
    when starting at ``t0``) and a centred window of ``lam (out_size - 1)`` pixels per axis, which fits a grid of at
    least ``height_needed x width_needed`` pixels.
    """
    lam = float(lam)
    if lam <= 0 or out_steps < 1 or min(out_size) < 1:
        raise ValueError(f"need lam > 0, out_steps >= 1 and a non-empty out_size; got {lam}, {out_steps}, {out_size}")
    return (
        _needed(t0 + lam**2 * (out_steps - 1)),
        _needed(lam * (out_size[0] - 1)),
        _needed(lam * (out_size[1] - 1)),
    )


def scale(
    seq: Tensor,
    layout: FieldLayout,
    lam: Scalar,
    out_steps: int,
    out_size: tuple[int, int],
    t0: float = 0.0,
    scalar_power: float = 0.0,
) -> Tensor:
    """Space-time scaling of one sequence ``seq (T, C, H, W)``: ``lam w(c + lam (x - c), t0 + lam^2 t)``.

    Returns ``(out_steps, C, out_size[0], out_size[1])`` at ``t = 0..out_steps-1`` on an ``out_size`` grid centred on
    ``c``, interpolated linearly in time and bilinearly in space (pixel centres aligned), which is exact for fields
    linear in x and t; ``lam = 1`` with an integer ``t0`` and a centred crop on whole pixels is a bit-exact crop.
    Raises ``ValueError`` when the source times or the source window leave ``seq`` (see :func:`scale_extent`).
    Composition: scaling by ``lam1`` then ``lam2`` (with ``t0 = 0``) is scaling by ``lam1 lam2`` up to interpolation
    error.
    """
    check_frame(seq, layout, min_size=2)
    if seq.ndim != 4:
        raise ValueError(f"scale acts on one sequence (T, C, H, W), got shape {tuple(seq.shape)}")
    lam = float(lam)
    if t0 < 0:
        raise ValueError(f"t0 must be >= 0, got {t0}")
    steps, height, width = scale_extent(lam, out_steps, out_size, t0)
    n_t, _, h, w = seq.shape
    if steps > n_t:
        raise ValueError(
            f"scaling by lam={lam:.4g} needs source frames up to t0 + lam^2 (out_steps-1) = "
            f"{t0 + lam**2 * (out_steps - 1):.4g}, but seq has {n_t} frames (0..{n_t - 1}); "
            f"give at least {steps} frames or fewer out_steps (see scale_extent)"
        )
    if height > h or width > w:
        raise ValueError(
            f"scaling by lam={lam:.4g} to {out_size[0]}x{out_size[1]} needs a {height}x{width} source window, but "
            f"seq is {h}x{w}; use a smaller out_size or a larger source grid (see scale_extent)"
        )
    oh, ow = out_size
    if lam == 1.0 and float(t0).is_integer() and (h - oh) % 2 == 0 and (w - ow) % 2 == 0:
        # The identity on whole frames and pixels: a plain crop, bit-exact.
        top, left, start = (h - oh) // 2, (w - ow) // 2, int(t0)
        return seq[start : start + out_steps, :, top : top + oh, left : left + ow].clone()
    # Only the frames and the centred window that are read (equal margins keep the centre in place; at least two
    # pixels per axis keep the grid normalisation defined).
    mh, mw = (h - max(height, 2)) // 2, (w - max(width, 2)) // 2
    seq = seq[:steps, :, mh : h - mh, mw : w - mw]
    n_t, _, h, w = seq.shape
    dev = seq.device
    s = t0 + lam**2 * torch.arange(out_steps, dtype=torch.float64, device=dev)
    i0 = s.floor().long().clamp(0, max(n_t - 2, 0))
    i1 = (i0 + 1).clamp(max=n_t - 1)
    frac = (s - i0).to(seq.dtype).view(-1, 1, 1, 1)
    frames = seq[i0] * (1 - frac) + seq[i1] * frac
    gx = 2 * lam * (torch.arange(ow, dtype=torch.float64, device=dev) - (ow - 1) / 2) / (w - 1)
    gy = 2 * lam * (torch.arange(oh, dtype=torch.float64, device=dev) - (oh - 1) / 2) / (h - 1)
    grid = torch.stack(torch.broadcast_tensors(gx.view(1, ow), gy.view(oh, 1)), dim=-1)[None].to(seq.dtype)
    flat = frames.reshape(1, -1, h, w)
    out = F.grid_sample(flat, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return scale_values(out.view(out_steps, -1, oh, ow), layout, lam, lam**scalar_power)


def spatial_scale(x: Tensor, layout: FieldLayout, lam: Scalar, scalar_power: float = 0.0) -> Tensor:
    """Per-frame part of the scaling, on the same grid: ``w(x) -> lam w(c + lam (x - c))``, zero outside the grid.

    Acts on ``(..., C, H, W)`` frame by frame (no time resampling), with ``lam`` a number or a per-sample ``(B,)``
    tensor; used for scale-equivariance errors of one-step models. Vector fields get ``lam``, scalars
    ``lam ** scalar_power``. Bilinear, pixel centres aligned; exact for linear fields where ``lam <= 1``.
    """
    check_frame(x, layout, min_size=2)
    lam_b = sample_param(lam, x, "lam")
    h, w = x.shape[-2:]
    dev = x.device
    scale_grid = torch.as_tensor(lam, dtype=torch.float64, device=dev).reshape(-1, 1, 1, 1)
    gx = torch.linspace(-1, 1, w, dtype=torch.float64, device=dev).view(1, w)
    gy = torch.linspace(-1, 1, h, dtype=torch.float64, device=dev).view(h, 1)
    grid = (scale_grid * torch.stack(torch.broadcast_tensors(gx, gy), dim=-1)).to(x.dtype)
    flat = x.reshape(grid.shape[0], -1, h, w)
    out = F.grid_sample(flat, grid, mode="bilinear", padding_mode="zeros", align_corners=True).view(x.shape)
    return scale_values(out, layout, lam_b, lam_b**scalar_power)


def time_resample_matrix(frames: int, factor: float) -> Tensor:
    """``(frames, frames)`` float64 matrix ``M`` of the time part of eq. 3 on a one-step model's history.

    The history's frames sit at times ``t = -frames..-1`` (frame units) before the predicted frame at ``t = 0``,
    the time origin of ``T_lam`` (the one origin that keeps a one-step model's output frame in place). Row ``t`` of
    ``M h`` is ``h(factor t)``: linear in time between frames, extrapolated linearly from the last two frames
    between the last frame and the predicted one (``-1 < factor t < 0``, less than a frame), and held at the first
    frame before it (the history has nothing there; holding keeps the magnitudes bounded, as reaches of up to
    ``factor = 9`` histories occur). Rows sum to 1; the identity at ``factor = 1``; exact for fields linear in time
    wherever ``factor t >= -frames``.
    """
    if frames < 1 or factor <= 0:
        raise ValueError(f"need frames >= 1 and factor > 0, got frames={frames}, factor={factor}")
    pos = (factor * torch.arange(-frames, 0, dtype=torch.float64)).clamp(min=-frames) + frames  # 0..frames
    # The interval [lo, lo + 1] whose linear function is read: the last one (frames-2, frames-1) beyond the last frame.
    lo = pos.floor().clamp(0, max(frames - 2, 0))
    frac = pos - lo
    m = torch.zeros(frames, frames, dtype=torch.float64)
    rows = torch.arange(frames)
    m[rows, lo.long()] += 1 - frac
    m[rows, (lo.long() + 1).clamp(max=frames - 1)] += frac
    return m


def space_time_scale(x: Tensor, layout: FieldLayout, lam: Scalar, scalar_power: float = 0.0) -> Tensor:
    """The full action of eq. 3, ``T_lam w(x, t) = lam w(lam x, lam^2 t)``, on a one-step model's input or output.

    A history ``(B, T, C, H, W)`` is resampled in time by ``lam^2`` about the predicted frame
    (:func:`time_resample_matrix`) and then scaled in space as :func:`spatial_scale`; a frame ``(B, C, H, W)`` is the
    predicted frame at the time origin, so only its spatial part acts. ``lam`` is a number or a per-sample ``(B,)``
    tensor. This is the element-wise form of the ``scale`` test split (:func:`scale` on a window, which reads the
    frames between the history and the target from the data where this extrapolates them).
    """
    if x.ndim != 5:
        return spatial_scale(x, layout, lam, scalar_power)
    check_frame(x, layout, min_size=2)
    sample_param(lam, x, "lam")  # one clear error for a per-sample lam that does not match the batch
    frames = x.shape[1]
    lams = torch.as_tensor(lam, dtype=torch.float64).reshape(-1).tolist()
    if min(lams) <= 0:
        raise ValueError(f"scale factors must be > 0, got min {min(lams)}")
    mats = torch.stack([time_resample_matrix(frames, v**2) for v in lams]).to(device=x.device, dtype=x.dtype)
    resampled = torch.einsum("bts,bs...->bt...", mats.expand(x.shape[0], -1, -1), x)
    return spatial_scale(resampled, layout, lam, scalar_power)
