"""Group elements: one class per symmetry family, each acting per frame on ``(..., C, H, W)`` tensors.

``g.act(x, layout)`` applies ``g`` to every frame of ``x`` (a frame, a batch ``(B, C, H, W)`` or a history
``(B, T, C, H, W)``); ``g.inverse()`` is ``g^{-1}``; ``g @ h`` is ``g`` after ``h`` and stays in the family when both
are of the same family (otherwise it is a :class:`Composition`). Parameters are python numbers or per-sample
tensors (first axis = batch axis 0 of ``x``), so one element can carry a whole test split's draws
(see :mod:`symbench.symmetry.sampling`).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Literal, Union

import torch
from torch import Tensor

from symbench.fields import FieldLayout
from symbench.symmetry.planar import reflect, rot90, rotate, translate
from symbench.symmetry.pointwise import Motion, magnitude, uniform_motion
from symbench.symmetry.scaling import space_time_scale, spatial_scale

Param = Union[float, int, Tensor]


class GroupElement(ABC):
    """An element ``g`` of a symmetry group acting on typed fields."""

    @abstractmethod
    def act(self, x: Tensor, layout: FieldLayout) -> Tensor:
        """``g x``, frame by frame."""

    @abstractmethod
    def inverse(self) -> "GroupElement":
        """``g^{-1}``."""

    def compose(self, other: "GroupElement") -> "GroupElement":
        """``self after other``; families override this to stay closed."""
        return Composition(self, other)

    def __matmul__(self, other: "GroupElement") -> "GroupElement":
        if isinstance(other, Identity):
            return self
        return self.compose(other)


@dataclass(frozen=True)
class Identity(GroupElement):
    """The identity of every family."""

    def act(self, x: Tensor, layout: FieldLayout) -> Tensor:
        return x

    def inverse(self) -> "Identity":
        return self

    def compose(self, other: GroupElement) -> GroupElement:
        return other


@dataclass(frozen=True)
class Composition(GroupElement):
    """``outer after inner`` for elements of different families."""

    outer: GroupElement
    inner: GroupElement

    def act(self, x: Tensor, layout: FieldLayout) -> Tensor:
        return self.outer.act(self.inner.act(x, layout), layout)

    def inverse(self) -> "Composition":
        return Composition(self.inner.inverse(), self.outer.inverse())


@dataclass(frozen=True)
class Rot90(GroupElement):
    """Counter-clockwise rotation by ``k * 90`` degrees, the cyclic group C4 (exact on the grid)."""

    k: Param = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "k", self.k % 4)

    @classmethod
    def identity(cls) -> "Rot90":
        return cls(0)

    def act(self, x: Tensor, layout: FieldLayout) -> Tensor:
        return rot90(x, layout, self.k)

    def inverse(self) -> "Rot90":
        return Rot90(-self.k)

    def compose(self, other: GroupElement) -> GroupElement:
        if isinstance(other, Rot90):
            return Rot90(self.k + other.k)
        if isinstance(other, D4):
            return D4(self.k) @ other
        return super().compose(other)


@dataclass(frozen=True)
class D4(GroupElement):
    """Element ``r^k s^m`` of the dihedral group D4: reflect x -> -x if ``reflected`` (``s``), then rotate by
    ``k * 90`` degrees counter-clockwise (``r``). Uses ``s r s = r^{-1}``:
    ``(r^k1 s^m1)(r^k2 s^m2) = r^(k1 + (-1)^m1 k2) s^(m1 + m2)``.
    """

    k: Param = 0
    reflected: Union[bool, Tensor] = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "k", self.k % 4)

    @classmethod
    def identity(cls) -> "D4":
        return cls(0, False)

    @classmethod
    def reflection(cls, axis: Literal["x", "y"]) -> "D4":
        """The mirror ``x -> -x`` (``s``) or ``y -> -y`` (``r^2 s``)."""
        if axis not in ("x", "y"):
            raise ValueError(f"reflection axis must be 'x' or 'y', got {axis!r}")
        return cls(0 if axis == "x" else 2, True)

    def act(self, x: Tensor, layout: FieldLayout) -> Tensor:
        if isinstance(self.reflected, Tensor):
            mask = self.reflected.to(device=x.device, dtype=torch.bool).reshape((-1,) + (1,) * (x.ndim - 1))
            x = torch.where(mask, reflect(x, layout, "x"), x)
        elif self.reflected:
            x = reflect(x, layout, "x")
        return rot90(x, layout, self.k)

    def inverse(self) -> "D4":
        # A reflection r^k s is its own inverse; a rotation r^k inverts to r^-k.
        return D4(_select(self.reflected, self.k, -self.k), self.reflected)

    def compose(self, other: GroupElement) -> GroupElement:
        if isinstance(other, Rot90):
            other = D4(other.k)
        if isinstance(other, D4):
            k = self.k + _select(self.reflected, -other.k, other.k)
            return D4(k, self.reflected ^ other.reflected)
        return super().compose(other)


def _select(cond: Union[bool, Tensor], a: Param, b: Param) -> Param:
    """``a if cond else b``, elementwise when ``cond`` is a tensor."""
    if isinstance(cond, Tensor):
        return torch.where(cond, torch.as_tensor(a), torch.as_tensor(b))
    return a if cond else b


@dataclass(frozen=True)
class Rotation(GroupElement):
    """Counter-clockwise rotation by ``angle`` radians (SO(2)); interpolated unless a multiple of pi/2."""

    angle: Param = 0.0
    mode: Literal["bilinear", "nearest", "bicubic"] = "bilinear"

    @classmethod
    def identity(cls) -> "Rotation":
        return cls(0.0)

    def act(self, x: Tensor, layout: FieldLayout) -> Tensor:
        return rotate(x, layout, self.angle, self.mode)

    def inverse(self) -> "Rotation":
        return Rotation(-self.angle, self.mode)

    def compose(self, other: GroupElement) -> GroupElement:
        if isinstance(other, Rotation) and other.mode == self.mode:
            return Rotation(self.angle + other.angle, self.mode)
        return super().compose(other)


@dataclass(frozen=True)
class Translation(GroupElement):
    """Circular shift by ``(dy, dx)`` pixels in array order (see :func:`~symbench.symmetry.planar.translate`)."""

    dy: int = 0
    dx: int = 0
    periodic: tuple[bool, bool] = (True, True)

    @classmethod
    def identity(cls) -> "Translation":
        return cls(0, 0)

    def act(self, x: Tensor, layout: FieldLayout) -> Tensor:
        return translate(x, layout, (self.dy, self.dx), self.periodic)

    def inverse(self) -> "Translation":
        return Translation(-self.dy, -self.dx, self.periodic)

    def compose(self, other: GroupElement) -> GroupElement:
        if isinstance(other, Translation):
            periodic = (self.periodic[0] and other.periodic[0], self.periodic[1] and other.periodic[1])
            return Translation(self.dy + other.dy, self.dx + other.dx, periodic)
        return super().compose(other)


@dataclass(frozen=True)
class UniformMotion(GroupElement):
    """``w -> w + c`` on vector fields (Galilean shift of the values, ICLR 2021 sec. 2.4); ``c`` is ``(2,)`` or
    per-sample ``(B, 2)``."""

    c: Motion = (0.0, 0.0)

    @classmethod
    def identity(cls) -> "UniformMotion":
        return cls((0.0, 0.0))

    def act(self, x: Tensor, layout: FieldLayout) -> Tensor:
        return uniform_motion(x, layout, self.c)

    def inverse(self) -> "UniformMotion":
        if isinstance(self.c, Tensor):
            return UniformMotion(-self.c)
        return UniformMotion(tuple(-v for v in self.c))

    def compose(self, other: GroupElement) -> GroupElement:
        if isinstance(other, UniformMotion):
            if isinstance(self.c, Tensor) or isinstance(other.c, Tensor):
                return UniformMotion(torch.as_tensor(self.c) + torch.as_tensor(other.c))
            return UniformMotion(tuple(a + b for a, b in zip(self.c, other.c)))
        return super().compose(other)


@dataclass(frozen=True)
class Magnitude(GroupElement):
    """``w -> a w`` on every field; ``a`` is a number or per-sample ``(B,)``."""

    a: Param = 1.0

    @classmethod
    def identity(cls) -> "Magnitude":
        return cls(1.0)

    def act(self, x: Tensor, layout: FieldLayout) -> Tensor:
        return magnitude(x, layout, self.a)

    def inverse(self) -> "Magnitude":
        return Magnitude(1.0 / self.a)

    def compose(self, other: GroupElement) -> GroupElement:
        if isinstance(other, Magnitude):
            return Magnitude(self.a * other.a)
        return super().compose(other)


@dataclass(frozen=True)
class SpatialScaling(GroupElement):
    """Per-frame scaling on the same grid, ``w(x) -> lam w(c + lam (x - c))`` (zeros outside), see
    :func:`~symbench.symmetry.scaling.spatial_scale`. The group laws hold where no sample leaves the grid."""

    lam: Param = 1.0
    scalar_power: float = 0.0

    @classmethod
    def identity(cls) -> "SpatialScaling":
        return cls(1.0)

    def act(self, x: Tensor, layout: FieldLayout) -> Tensor:
        return spatial_scale(x, layout, self.lam, self.scalar_power)

    def inverse(self) -> "SpatialScaling":
        return type(self)(1.0 / self.lam, self.scalar_power)

    def compose(self, other: GroupElement) -> GroupElement:
        if type(other) is type(self) and other.scalar_power == self.scalar_power:
            return type(self)(self.lam * other.lam, self.scalar_power)
        return super().compose(other)


@dataclass(frozen=True)
class SpaceTimeScaling(SpatialScaling):
    """The full scaling of eq. 3, ``w(x, t) -> lam w(c + lam (x - c), lam^2 t)``, on a one-step model's history
    ``(B, T, C, H, W)`` (time resampled about the predicted frame) and, on a frame ``(B, C, H, W)``, its spatial part
    (the predicted frame is the time origin); see :func:`~symbench.symmetry.scaling.space_time_scale`. The group laws
    hold where no sample leaves the grid or the history."""

    def act(self, x: Tensor, layout: FieldLayout) -> Tensor:
        return space_time_scale(x, layout, self.lam, self.scalar_power)


def map_params(g: GroupElement, fn: Callable[[Tensor], Tensor]) -> GroupElement:
    """``g`` with ``fn`` applied to each tensor parameter (e.g. pick sample ``i``: ``lambda t: t[i:i+1]``, or move
    to a device), recursing into compositions."""
    if not dataclasses.is_dataclass(g):
        return g
    changes = {}
    for f in dataclasses.fields(g):
        value = getattr(g, f.name)
        if isinstance(value, Tensor):
            changes[f.name] = fn(value)
        elif isinstance(value, GroupElement):
            changes[f.name] = map_params(value, fn)
    return dataclasses.replace(g, **changes)
