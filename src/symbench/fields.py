"""Typed field declarations: the one place that says which channels are scalars and which are vectors.

Conventions, fixed here and nowhere else:

* A frame is a tensor ``(..., C, H, W)``: axis -1 is x, axis -2 is y. Rows run **downwards, i.e. towards -y**
  (row 0 is the top of the domain), the convention of escnn and of image libraries. Data whose arrays are y-up
  (PhiFlow, Dedalus' z axis) are flipped along rows at the data boundary, and their y components keep their
  physical sign (positive = up).
* A vector field in 2D has two consecutive channels ordered (x, y).
* Group actions (:mod:`symbench.symmetry`), equivariant input/output types and the normaliser are all derived
  from a :class:`FieldLayout`, never hard-coded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal

FieldKind = Literal["scalar", "vector"]


@dataclass(frozen=True)
class Field:
    """One physical field, e.g. ``Field("velocity", "vector")`` or ``Field("temperature", "scalar")``."""

    name: str
    kind: FieldKind

    def __post_init__(self) -> None:
        if self.kind not in ("scalar", "vector"):
            raise ValueError(f"field {self.name!r}: kind must be 'scalar' or 'vector', got {self.kind!r}")

    @classmethod
    def parse(cls, spec: str) -> "Field":
        """Parse ``"name:kind"`` (e.g. ``"velocity:vector"``)."""
        name, sep, kind = spec.partition(":")
        if not sep or not name:
            raise ValueError(f"field spec {spec!r} must look like 'name:scalar' or 'name:vector'")
        return cls(name, kind)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return f"{self.name}:{self.kind}"


@dataclass(frozen=True)
class FieldLayout:
    """Ordered fields of a dataset and the channel layout they imply on a ``(..., C, H, W)`` tensor."""

    fields: tuple[Field, ...]
    ndim: int = 2

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate field names in {names}")
        if not self.fields:
            raise ValueError("a FieldLayout needs at least one field")

    @classmethod
    def of(cls, *specs: str | Field, ndim: int = 2) -> "FieldLayout":
        """``FieldLayout.of("velocity:vector", "temperature:scalar")``."""
        return cls(tuple(s if isinstance(s, Field) else Field.parse(s) for s in specs), ndim)

    def width(self, field: Field) -> int:
        """Number of channels of ``field``: 1 for a scalar, ``ndim`` for a vector."""
        return self.ndim if field.kind == "vector" else 1

    @property
    def channels(self) -> int:
        return sum(self.width(f) for f in self.fields)

    def slices(self) -> list[tuple[Field, slice]]:
        """Each field with its channel slice, in order."""
        out, start = [], 0
        for f in self.fields:
            out.append((f, slice(start, start + self.width(f))))
            start += self.width(f)
        return out

    def channel_slice(self, name: str) -> slice:
        for f, s in self.slices():
            if f.name == name:
                return s
        raise KeyError(f"no field {name!r} in layout {self}")

    @property
    def vector_slices(self) -> list[slice]:
        return [s for f, s in self.slices() if f.kind == "vector"]

    @property
    def scalar_channels(self) -> list[int]:
        return [s.start for f, s in self.slices() if f.kind == "scalar"]

    @property
    def n_vectors(self) -> int:
        return sum(f.kind == "vector" for f in self.fields)

    @property
    def n_scalars(self) -> int:
        return sum(f.kind == "scalar" for f in self.fields)

    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def select(self, names: Iterable[str]) -> "FieldLayout":
        by_name = {f.name: f for f in self.fields}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise KeyError(f"fields {missing} not in layout {self} (available: {self.names()})")
        return FieldLayout(tuple(by_name[n] for n in names), self.ndim)

    def __str__(self) -> str:
        return ",".join(str(f) for f in self.fields)


VELOCITY_2D = FieldLayout.of("velocity:vector")
