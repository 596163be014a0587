"""Group actions on typed fields: one implementation used by data transforms, augmentation, metrics
and tests.

Functions act on frames ``(..., C, H, W)`` laid out by a :class:`~symbench.fields.FieldLayout` (rows run towards
-y, vectors are (x, y) channel pairs); per-sample parameters have the batch axis 0 of ``x`` as first axis.
Group elements (:mod:`.elements`) wrap them with ``act``, ``inverse`` and composition ``g @ h``.
"""

from symbench.symmetry.elements import (
    D4,
    Composition,
    GroupElement,
    Identity,
    Magnitude,
    Rot90,
    Rotation,
    SpaceTimeScaling,
    SpatialScaling,
    Translation,
    UniformMotion,
    map_params,
)
from symbench.symmetry.planar import reflect, rot90, rotate, translate
from symbench.symmetry.pointwise import magnitude, uniform_motion
from symbench.symmetry.sampling import TRANSFORMS, probe_elements, sample_elements
from symbench.symmetry.scaling import scale, scale_extent, space_time_scale, spatial_scale, time_resample_matrix

__all__ = [
    "D4",
    "TRANSFORMS",
    "Composition",
    "GroupElement",
    "Identity",
    "Magnitude",
    "Rot90",
    "Rotation",
    "SpaceTimeScaling",
    "SpatialScaling",
    "Translation",
    "UniformMotion",
    "magnitude",
    "map_params",
    "reflect",
    "rot90",
    "rotate",
    "probe_elements",
    "sample_elements",
    "scale",
    "scale_extent",
    "space_time_scale",
    "spatial_scale",
    "time_resample_matrix",
    "translate",
    "uniform_motion",
]
