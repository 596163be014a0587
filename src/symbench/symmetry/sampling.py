"""Random group elements for the transformed test splits of the ICLR 2021 paper (sec. 5.2 and appendix D.1).

``sample_elements(name, n, generator)`` returns **one** element whose parameters are per-sample tensors of length
``n``, so ``g.act(x, layout)`` transforms a batch of ``n`` samples (or histories ``(n, T, C, H, W)``) at once:

========== ================================= ==================================================================
name       element                           distribution
========== ================================= ==================================================================
``orig``   :class:`Identity`                 --
``um``     :class:`UniformMotion` ``c``       ``c ~ U(-1, 1)^2`` (added to every vector field)
``mag``    :class:`Magnitude` ``a``           ``a ~ U(0, 2)``
``rot``    :class:`Rot90` ``k``               ``k`` uniform in {1, 2, 3} (multiples of pi/2, sec. 5.2; exact)
``rot_any`` :class:`Rotation` ``angle``       ``angle ~ U(0, 2 pi)`` (interpolated)
``scale``  :class:`SpatialScaling` ``lam``    ``lam ~ U(1/5, 2)``
========== ================================= ==================================================================

Appendix D.1 states multiples of pi/12 for ``rot`` where sec. 5.2 states pi/2; ``rot`` follows sec. 5.2 because only
multiples of pi/2 are exact on the grid, and ``rot_any`` covers the continuous case. For ``scale`` the paper's split
is the space-time scaling of whole sequences: a split builder reads ``g.lam[i]`` and calls
:func:`~symbench.symmetry.scaling.scale` on sample ``i`` (the window size depends on ``lam``); ``g.act`` is the
per-frame part only. :func:`probe_elements` gives the same draws as the elements an equivariance probe applies to a
one-step model's history and output, for ``scale`` the full space-time :class:`SpaceTimeScaling` of eq. 3.
"""

from __future__ import annotations

import math

import torch

from symbench.symmetry.elements import (
    GroupElement,
    Identity,
    Magnitude,
    Rot90,
    Rotation,
    SpaceTimeScaling,
    SpatialScaling,
    UniformMotion,
)

TRANSFORMS = ("orig", "um", "mag", "rot", "rot_any", "scale")


def _uniform(low: float, high: float, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    u = torch.rand(shape, generator=generator, dtype=torch.float64, device=generator.device)
    return (low + (high - low) * u).float()


def sample_elements(transform: str, n: int, generator: torch.Generator) -> GroupElement:
    """One element with ``n`` per-sample parameters drawn from the paper's distribution for ``transform``."""
    if transform == "orig":
        return Identity()
    if transform == "um":
        return UniformMotion(_uniform(-1.0, 1.0, (n, 2), generator))
    if transform == "mag":
        return Magnitude(_uniform(0.0, 2.0, (n,), generator))
    if transform == "rot":
        return Rot90(torch.randint(1, 4, (n,), generator=generator, device=generator.device))
    if transform == "rot_any":
        return Rotation(_uniform(0.0, 2 * math.pi, (n,), generator))
    if transform == "scale":
        return SpatialScaling(_uniform(0.2, 2.0, (n,), generator))
    raise ValueError(f"unknown transform {transform!r}; choose one of {', '.join(TRANSFORMS)}")


def probe_elements(transform: str, n: int, generator: torch.Generator) -> GroupElement:
    """The draws of :func:`sample_elements` as the action on a one-step model's history ``(n, T, C, H, W)`` and
    output ``(n, C, H, W)``: for ``scale`` the full ``T_lam w(x, t) = lam w(lam x, lam^2 t)`` (ICLR 2021 eq. 3), time
    resampled about the predicted frame; every other group acts frame by frame."""
    g = sample_elements(transform, n, generator)
    if isinstance(g, SpatialScaling):
        return SpaceTimeScaling(g.lam, g.scalar_power)
    return g
