"""The octahedral group acting on 3D fields: the 24 rotations ``O`` and the 48 isometries ``O_h`` of
the cube, exact on the grid (index permutations and sign flips only).

Axes and signs (the 3D extension of :mod:`symbench.fields`):

* A 3D frame is ``(..., C, D, H, W)``: axis -1 is x, axis -2 is y, axis -3 is z.
* Rows (axis -2) run **towards -y**, as in 2D, so every ``(H, W)`` slice is a 2D frame in the convention of
  :func:`symbench.symmetry.rot90`. The depth index (axis -3) runs **towards +z**. The physical frame
  ``(x, y, z)`` is right-handed: ``z = x cross y`` points out of the ``(x, y)`` picture, towards the viewer, so
  the counter-clockwise quarter turn about ``+z`` is the 2D ``rot90`` applied to every ``(y, x)`` slice.
* Coordinates of voxel ``(k, i, j)`` relative to the grid centre:
  ``x = j - (W-1)/2``, ``y = (H-1)/2 - i``, ``z = k - (D-1)/2``.
* A vector field has ``ndim = 3`` consecutive channels ``(x, y, z)`` (``FieldLayout.of("u:vector", ndim=3)``,
  whose ``vector_slices`` are the 3-channel slices); all other channels are scalars.

A group element is a signed permutation matrix ``R`` (integer entries in {-1, 0, 1}) acting on column vectors
``(x, y, z)``. It acts on fields by ``(T_R f)(p) = f(R^-1 p)`` for scalars and ``(T_R v)(p) = R v(R^-1 p)`` for
vectors, rotating about the grid centre; ``T_{R1 R2} = T_{R1} T_{R2}`` (``R1 @ R2`` is ``R1`` after ``R2``).
Permuting two axes needs them to have the same size (any element on a cube; only the elements that keep z fixed
on a ``D x N x N`` box, etc.).

Element order (fixed; indices into these tuples are used by the Cayley table and the group convolutions):

* :data:`OCTAHEDRAL` (24 rotations, det +1): all matrices ``R`` with ``R e_a = s_a e_{p(a)}`` for the
  permutations ``p`` of (x, y, z) in ``itertools.permutations`` order (identity first) and sign patterns ``s`` in
  ``itertools.product((1, -1), repeat=3)`` order (all + first), kept when ``det R = +1``. Index 0 is the identity.
* :data:`FULL_OCTAHEDRAL` (48): the 24 rotations, then their negatives: element ``24 + i`` is ``-OCTAHEDRAL[i]``
  (the point inversion times rotation ``i``), so ``O_h = O x {I, -I}``.
* Subgroups (:func:`subgroup_closure`) list their elements in the order of :data:`FULL_OCTAHEDRAL`.

Named subgroups (z is the distinguished axis, e.g. of a cubic -> tetragonal distortion along z):
:data:`C4_Z` (4: quarter turns about z), :data:`D4_Z` (8: C4 about z and the half turns about x, y and the
diagonals, the rotation part of the tetragonal group), :data:`C4V` (8: C4 about z and the four vertical mirrors
``x -> -x``, ``y -> -y``, ``x <-> y``, ``x <-> -y``; point group ``4mm`` of ``P4mm``), :data:`D4H` (16:
``C4V x {I, -I}``, point group ``4/mmm``).
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import Iterable, Sequence, Union

import torch
from torch import Tensor

from symbench.fields import FieldLayout
from symbench.symmetry.elements import GroupElement

Matrix = tuple[tuple[int, int, int], tuple[int, int, int], tuple[int, int, int]]

# Tensor axis of each physical axis (x, y, z) and whether the index runs along (+1) or against (-1) it.
_AXIS = (-1, -2, -3)
_ORIENTATION = (1, -1, 1)


def _matmul(a: Matrix, b: Matrix) -> Matrix:
    return tuple(tuple(sum(a[i][k] * b[k][j] for k in range(3)) for j in range(3)) for i in range(3))  # type: ignore


def _transpose(a: Matrix) -> Matrix:
    return tuple(tuple(a[j][i] for j in range(3)) for i in range(3))  # type: ignore


def _det(a: Matrix) -> int:
    return (a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1])
            - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
            + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]))


def _check_matrix(m: Matrix) -> Matrix:
    m = tuple(tuple(int(v) for v in row) for row in m)  # type: ignore[assignment]
    if len(m) != 3 or any(len(row) != 3 for row in m):
        raise ValueError(f"an octahedral element is a 3x3 matrix, got {m}")
    if any(v not in (-1, 0, 1) for row in m for v in row) or _matmul(m, _transpose(m)) != _IDENTITY:
        raise ValueError(f"{m} is not a signed permutation matrix (an element of O_h)")
    return m


_IDENTITY: Matrix = ((1, 0, 0), (0, 1, 0), (0, 0, 1))


@dataclass(frozen=True)
class Octahedral(GroupElement):
    """An element of ``O_h``: the signed permutation matrix ``matrix`` acting on ``(x, y, z)`` column vectors.

    ``act(x, layout)`` is :func:`act_on_fields`; ``g @ h`` is the matrix product (``g`` after ``h``)."""

    matrix: Matrix = _IDENTITY

    def __post_init__(self) -> None:
        object.__setattr__(self, "matrix", _check_matrix(self.matrix))

    @classmethod
    def identity(cls) -> "Octahedral":
        return cls(_IDENTITY)

    @property
    def det(self) -> int:
        return _det(self.matrix)

    def tensor(self, dtype: torch.dtype = torch.long) -> Tensor:
        return torch.tensor(self.matrix, dtype=dtype)

    def act(self, x: Tensor, layout: FieldLayout | Sequence[int]) -> Tensor:
        return act_on_fields(x, layout, self)

    def inverse(self) -> "Octahedral":
        return Octahedral(_transpose(self.matrix))

    def compose(self, other: GroupElement) -> GroupElement:
        if isinstance(other, Octahedral):
            return Octahedral(_matmul(self.matrix, other.matrix))
        return super().compose(other)

    def __repr__(self) -> str:
        return f"Octahedral({self.matrix})"


Element = Union[Octahedral, Matrix, Tensor]


def as_element(g: Element) -> Octahedral:
    """An :class:`Octahedral` from an element, a nested tuple or a ``(3, 3)`` tensor."""
    if isinstance(g, Octahedral):
        return g
    if isinstance(g, Tensor):
        return Octahedral(tuple(tuple(int(v) for v in row) for row in g.tolist()))  # type: ignore[arg-type]
    return Octahedral(g)


def _rotations() -> tuple[Octahedral, ...]:
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            m = [[0] * 3 for _ in range(3)]
            for a in range(3):
                m[perm[a]][a] = signs[a]  # R e_a = s_a e_{p(a)}
            mat = tuple(tuple(row) for row in m)
            if _det(mat) == 1:  # type: ignore[arg-type]
                out.append(Octahedral(mat))  # type: ignore[arg-type]
    return tuple(out)


OCTAHEDRAL: tuple[Octahedral, ...] = _rotations()
"""The 24 rotations of the cube, identity first (order in the module docstring)."""

FULL_OCTAHEDRAL: tuple[Octahedral, ...] = OCTAHEDRAL + tuple(
    Octahedral(tuple(tuple(-v for v in row) for row in g.matrix)) for g in OCTAHEDRAL  # type: ignore[misc]
)
"""The 48 isometries of the cube: :data:`OCTAHEDRAL`, then ``-R`` for each of them in the same order."""

_POSITION = {g.matrix: i for i, g in enumerate(FULL_OCTAHEDRAL)}


def element_matrices(elements: Sequence[Element]) -> Tensor:
    """``(n, 3, 3)`` int64 matrices of ``elements``."""
    return torch.stack([as_element(g).tensor() for g in elements])


def index_of(elements: Sequence[Element], g: Element) -> int:
    """Position of ``g`` in ``elements`` (``ValueError`` if absent)."""
    mats = [as_element(e).matrix for e in elements]
    m = as_element(g).matrix
    if m not in mats:
        raise ValueError(f"{m} is not among the {len(mats)} given elements")
    return mats.index(m)


def cayley_table(elements: Sequence[Element]) -> Tensor:
    """``(n, n)`` int64 table ``T`` with ``elements[T[i, j]] = elements[i] @ elements[j]`` (``i`` after ``j``);
    ``ValueError`` if ``elements`` is not closed under composition."""
    return _cayley(tuple(as_element(g).matrix for g in elements)).clone()


@functools.lru_cache(maxsize=64)
def _cayley(matrices: tuple[Matrix, ...]) -> Tensor:
    els = [Octahedral(m) for m in matrices]
    pos = {g.matrix: i for i, g in enumerate(els)}
    if len(pos) != len(els):
        raise ValueError("duplicate elements")
    table = torch.empty(len(els), len(els), dtype=torch.long)
    for i, a in enumerate(els):
        for j, b in enumerate(els):
            prod = _matmul(a.matrix, b.matrix)
            if prod not in pos:
                raise ValueError(f"the {len(els)} elements are not closed: {a.matrix} @ {b.matrix} = {prod}")
            table[i, j] = pos[prod]
    return table


def inverse_index(elements: Sequence[Element]) -> Tensor:
    """``(n,)`` int64 ``inv`` with ``elements[inv[i]] = elements[i]^-1`` (the transpose)."""
    return torch.tensor([index_of(elements, as_element(g).inverse()) for g in elements], dtype=torch.long)


def subgroup_closure(generators: Iterable[Element]) -> tuple[Octahedral, ...]:
    """The subgroup of ``O_h`` generated by ``generators``, in the order of :data:`FULL_OCTAHEDRAL` (identity
    first; no generators gives the trivial group)."""
    gens = [as_element(g).matrix for g in generators]
    found = {_IDENTITY}
    frontier = [_IDENTITY]
    while frontier:
        new = []
        for a in frontier:
            for b in gens:
                c = _matmul(a, b)
                if c not in found:
                    found.add(c)
                    new.append(c)
        frontier = new
    return tuple(FULL_OCTAHEDRAL[i] for i in sorted(_POSITION[m] for m in found))


ROT_Z90 = Octahedral(((0, -1, 0), (1, 0, 0), (0, 0, 1)))
"""Counter-clockwise quarter turn about +z: ``x -> y``, ``y -> -x`` (2D ``rot90(k=1)`` on every slice)."""
ROT_X90 = Octahedral(((1, 0, 0), (0, 0, -1), (0, 1, 0)))
"""Quarter turn about +x: ``y -> z``, ``z -> -y``."""
ROT_Y90 = Octahedral(((0, 0, 1), (0, 1, 0), (-1, 0, 0)))
"""Quarter turn about +y: ``z -> x``, ``x -> -z``."""
MIRROR_X = Octahedral(((-1, 0, 0), (0, 1, 0), (0, 0, 1)))
"""``x -> -x`` (2D ``reflect(axis="x")`` on every slice)."""
MIRROR_Z = Octahedral(((1, 0, 0), (0, 1, 0), (0, 0, -1)))
"""``z -> -z``."""
INVERSION = Octahedral(((-1, 0, 0), (0, -1, 0), (0, 0, -1)))
"""``p -> -p``."""

C4_Z = subgroup_closure([ROT_Z90])
D4_Z = subgroup_closure([ROT_Z90, ROT_X90 @ ROT_X90])
C4V = subgroup_closure([ROT_Z90, MIRROR_X])
D4H = subgroup_closure([ROT_Z90, MIRROR_X, INVERSION])

GROUPS: dict[str, tuple[Octahedral, ...]] = {
    "O": OCTAHEDRAL, "Oh": FULL_OCTAHEDRAL, "D4h": D4H, "C4v": C4V, "D4": D4_Z, "C4": C4_Z,
    "trivial": (Octahedral.identity(),),
}
"""Named groups for the layers: ``O``, ``Oh`` and the z-axis subgroups (all closed, identity first)."""


def group_elements(group: str | Sequence[Element]) -> tuple[Octahedral, ...]:
    """Elements of a named group (:data:`GROUPS`) or of an explicit closed list (checked)."""
    if isinstance(group, str):
        if group not in GROUPS:
            raise ValueError(f"unknown octahedral group {group!r}; choose one of {sorted(GROUPS)}")
        return GROUPS[group]
    els = tuple(as_element(g) for g in group)
    cayley_table(els)  # raises unless closed
    if not els or els[0].matrix != _IDENTITY:
        raise ValueError("an element list must start with the identity")
    return els


# --------------------------------------------------------------------------------------------------- actions


def indices_in(group: Sequence[Element], elements: Sequence[Element]) -> tuple[int, ...]:
    """Sorted positions in ``group`` of ``elements`` (all must be members)."""
    pos = {as_element(g).matrix: i for i, g in enumerate(group)}
    return tuple(sorted(pos[as_element(g).matrix] for g in elements))


def element_deviations(weights: Tensor, group: str | Sequence[Element] = "Oh") -> Tensor:
    """How far each ``u`` of ``group`` moves relaxed weights ``w (L, |G|)`` over the group (several layers:
    concatenate along ``L``): ``(|G|,)``, ``max_{l,h} |w_l(u h) - w_l(h)|`` (float64; zero for the identity)."""
    els = group_elements(group)
    w = weights.detach().to(torch.float64).cpu().reshape(-1, len(els))
    moved = w[:, cayley_table(els)]  # (L, u, h): w_l(u h)
    return (moved - w[:, None, :]).abs().amax(dim=(0, 2))


def _spatial_plan(m: Matrix) -> tuple[list[int], list[int]]:
    """Tensor axes (of the last three, as negative numbers) to flip and the ``permute`` order of the last three
    axes that realise ``f'(p) = f(R^-1 p)``."""
    # R e_a = s_a e_{p(a)}: column a has its entry in row p(a).
    p = [next(r for r in range(3) if m[r][a]) for a in range(3)]
    s = [m[p[a]][a] for a in range(3)]
    # Source coordinate q = R^T p': q_a = s_a p'_{p(a)}. In centred indices of input axis a (c = o_a q_a):
    # c_a = s_a o_a o_{p(a)} c'_{p(a)}: flip input axis a if that sign is -1, then output axis p(a) is input axis a.
    flips = [_AXIS[a] for a in range(3) if s[a] * _ORIENTATION[a] * _ORIENTATION[p[a]] < 0]
    order = [0, 0, 0]  # order[i]: which of the last three input axes (0 = z, 1 = y, 2 = x) becomes output axis i
    for a in range(3):
        order[3 + _AXIS[p[a]]] = 3 + _AXIS[a]
    return flips, order


def act_on_grid(x: Tensor, g: Element) -> Tensor:
    """``f(p) -> f(R^-1 p)`` on the last three axes ``(D, H, W) = (z, y, x)`` of ``x``: one ``flip`` (a copy, only if
    some axis is reversed) and one ``permute`` (a view). Permuted axes must have equal sizes."""
    if x.ndim < 3:
        raise ValueError(f"expected a (..., D, H, W) tensor, got shape {tuple(x.shape)}")
    flips, order = _spatial_plan(as_element(g).matrix)
    lead = x.ndim - 3
    if [x.shape[lead + i] for i in order] != list(x.shape[-3:]):
        raise ValueError(f"element {as_element(g).matrix} swaps axes of different sizes in grid {tuple(x.shape[-3:])}")
    if flips:
        x = x.flip(flips)
    if order != [0, 1, 2]:
        x = x.permute(*range(lead), *(lead + i for i in order))
    return x


def _vector_slices(layout: FieldLayout | Sequence[int], channels: int) -> list[int]:
    """First channel of every vector field: from a 3D :class:`FieldLayout` or a list of start channels."""
    if isinstance(layout, FieldLayout):
        if layout.ndim != 3:
            raise ValueError(f"octahedral actions need a 3D layout (ndim=3), got ndim={layout.ndim} for {layout}")
        if layout.channels != channels:
            raise ValueError(f"tensor has {channels} channels at axis -4 but layout {layout} declares "
                             f"{layout.channels}")
        return [s.start for s in layout.vector_slices]
    starts = [int(s) for s in layout]
    if any(s < 0 or s + 3 > channels for s in starts) or len(set(starts)) != len(starts):
        raise ValueError(f"vector start channels {starts} do not fit {channels} channels")
    return starts


def channel_action(layout: FieldLayout | Sequence[int], channels: int, g: Element) -> tuple[Tensor, Tensor]:
    """``(perm, sign)``, both ``(C,)``: output channel ``c`` of ``T_R`` is ``sign[c] * input[perm[c]]`` (``R v``
    for each vector's ``(x, y, z)`` channels, identity on scalars)."""
    m = as_element(g).matrix
    perm, sign = list(range(channels)), [1] * channels
    for start in _vector_slices(layout, channels):
        for a in range(3):
            b = next(r for r in range(3) if m[r][a])  # (R v)_b = m[b][a] v_a
            perm[start + b], sign[start + b] = start + a, m[b][a]
    return torch.tensor(perm, dtype=torch.long), torch.tensor(sign, dtype=torch.long)


def act_on_fields(x: Tensor, layout: FieldLayout | Sequence[int], g: Element) -> Tensor:
    """``T_R`` on typed 3D fields ``(..., C, D, H, W)``: every channel is moved by :func:`act_on_grid`, and every
    vector field's ``(x, y, z)`` channels are replaced by ``R v``. ``layout`` is a :class:`FieldLayout` with
    ``ndim=3`` or a list of the first channels of the vector fields (a ``[]`` means all scalars)."""
    if x.ndim < 4:
        raise ValueError(f"expected a (..., C, D, H, W) tensor, got shape {tuple(x.shape)}")
    perm, sign = channel_action(layout, x.shape[-4], g)
    out = act_on_grid(x, g)
    if not torch.equal(perm, torch.arange(len(perm))):
        out = out.index_select(-4, perm.to(x.device))
    if (sign < 0).any():
        out = out * sign.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)
    return out


def act_on_regular(x: Tensor, group: str | Sequence[Element], g: Element | int) -> Tensor:
    """Left regular action on group features ``(..., C * |G|, D, H, W)`` (channel-major: channel
    ``c * |G| + i`` is field ``c`` at ``elements[i]``): ``f'(p, h) = f(g^-1 p, g^-1 h)``. ``g`` is an element
    of the group or its index."""
    els = group_elements(group)
    i = g if isinstance(g, int) else index_of(els, g)
    n = len(els)
    if x.ndim < 4 or x.shape[-4] % n:
        raise ValueError(f"expected (..., C * {n}, D, H, W) group features, got shape {tuple(x.shape)}")
    table, inv = cayley_table(els), inverse_index(els)
    source = table[inv[i]]  # index of g^-1 h for every h
    y = act_on_grid(x, els[i])
    fields = y.reshape(*y.shape[:-4], -1, n, *y.shape[-3:])
    return fields.index_select(-4, source.to(x.device)).reshape(y.shape)
