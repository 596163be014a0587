"""Octahedral group O / O_h on 3D fields and the (relaxed) octahedral group convolutions."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from symbench.fields import FieldLayout
from symbench.layers.octahedral_conv import (
    OctahedralGroupConv3d,
    OctahedralGroupPool3d,
    OctahedralLift3d,
    OctahedralProject3d,
    RelaxedOctahedralGroupConv3d,
    parameter_count,
    upsample_conv3d,
    weight_stabilizer,
)
from symbench.symmetry import reflect, rot90
from symbench.symmetry.octahedral import (
    C4_Z,
    C4V,
    D4_Z,
    D4H,
    FULL_OCTAHEDRAL,
    GROUPS,
    MIRROR_X,
    OCTAHEDRAL,
    ROT_X90,
    ROT_Y90,
    ROT_Z90,
    Octahedral,
    act_on_fields,
    act_on_grid,
    act_on_regular,
    cayley_table,
    element_matrices,
    index_of,
    inverse_index,
    subgroup_closure,
)

LAYOUT = FieldLayout.of("pressure:scalar", "velocity:vector", "temperature:scalar", ndim=3)  # 5 channels
MIRROR_Y = Octahedral(((1, 0, 0), (0, -1, 0), (0, 0, 1)))


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------------ group laws


def test_group_orders_determinants_and_order():
    o, oh = element_matrices(OCTAHEDRAL), element_matrices(FULL_OCTAHEDRAL)
    assert o.shape == (24, 3, 3) and oh.shape == (48, 3, 3)
    assert len({g.matrix for g in FULL_OCTAHEDRAL}) == 48
    assert all(g.det == 1 for g in OCTAHEDRAL)
    assert [g.det for g in FULL_OCTAHEDRAL[24:]] == [-1] * 24
    assert torch.equal(o[0], torch.eye(3, dtype=torch.long))
    assert torch.equal(oh[24:], -o)  # documented order: O, then -O in the same order
    # signed permutation matrices: one +-1 per row and column, orthogonal
    assert set(oh.unique().tolist()) == {-1, 0, 1}
    assert torch.equal(oh @ oh.transpose(1, 2), torch.eye(3, dtype=torch.long).expand(48, 3, 3))
    assert torch.equal(oh.abs().sum(1), torch.ones(48, 3, dtype=torch.long))


@pytest.mark.parametrize("name", sorted(GROUPS))
def test_cayley_table_group_laws(name):
    els = GROUPS[name]
    n = len(els)
    table, inv, mats = cayley_table(els), inverse_index(els), element_matrices(els)
    # closure and composition = matrix product (g after h)
    assert table.min() >= 0 and table.max() < n
    assert torch.equal(mats[table], mats[:, None] @ mats[None, :])
    # identity (element 0) and inverses
    assert torch.equal(table[0], torch.arange(n)) and torch.equal(table[:, 0], torch.arange(n))
    assert torch.equal(table[torch.arange(n), inv], torch.zeros(n, dtype=torch.long))
    assert torch.equal(table[inv, torch.arange(n)], torch.zeros(n, dtype=torch.long))
    assert torch.equal(mats[inv], mats.transpose(1, 2))
    # associativity (ab)c = a(bc) for all triples, and every row is a permutation (Latin square)
    a = torch.arange(n)
    assert torch.equal(table[table[:, :, None], a[None, None, :]], table[a[:, None, None], table[None, :, :]])
    assert all(sorted(row.tolist()) == list(range(n)) for row in table)


def test_named_subgroups():
    assert [len(GROUPS[k]) for k in ("C4", "C4v", "D4", "D4h", "O", "Oh")] == [4, 8, 8, 16, 24, 48]
    for sub in (C4_Z, C4V, D4_Z, D4H):
        cayley_table(sub)  # closed, or it raises
        assert sub[0] == Octahedral.identity()
        assert subgroup_closure(sub) == sub
        assert all(g in FULL_OCTAHEDRAL for g in sub)
    ez = torch.tensor([0, 0, 1])
    assert all(torch.equal(g.tensor() @ ez, ez) for g in C4V)  # C4v fixes the z axis pointwise
    assert all(torch.equal((g.tensor() @ ez).abs(), ez) for g in D4H)  # D4h maps z to +-z
    assert set(C4_Z) < set(C4V) < set(D4H) and set(C4_Z) < set(D4_Z) < set(OCTAHEDRAL)
    assert sum(g.det == -1 for g in C4V) == 4  # the four vertical mirrors
    assert set(D4H) == set(C4V) | {Octahedral(tuple(tuple(-v for v in r) for r in g.matrix)) for g in C4V}
    assert subgroup_closure([]) == (Octahedral.identity(),)
    assert subgroup_closure([ROT_Z90, ROT_X90]) == OCTAHEDRAL
    assert subgroup_closure([ROT_Z90, ROT_X90, MIRROR_X]) == FULL_OCTAHEDRAL
    with pytest.raises(ValueError, match="not closed"):
        cayley_table([Octahedral.identity(), ROT_Z90])


# ------------------------------------------------------------------------------------------------ actions


def coordinates(n: int) -> torch.Tensor:
    """``(3, n, n, n)`` float64 physical coordinates (x, y, z) of the voxels (rows towards -y, depth towards +z)."""
    c = torch.arange(n, dtype=torch.float64) - (n - 1) / 2
    z, i, x = torch.meshgrid(c, c, c, indexing="ij")
    return torch.stack([x, -i, z])


def field_of(p: torch.Tensor) -> torch.Tensor:
    """Pressure, velocity and temperature of LAYOUT at the points ``p (3, ...)``."""
    x, y, z = p
    return torch.stack([x + 2 * y + 3 * z**2, x, y**2, z**3, x * y * z + z])


@pytest.mark.parametrize("n", [4, 5])
def test_action_matches_coordinate_definition(n):
    """``act_on_fields`` equals ``f(R^-1 p)`` and ``R v(R^-1 p)`` evaluated on the grid, for all 48 elements."""
    p = coordinates(n)
    f = field_of(p)
    for g in FULL_OCTAHEDRAL:
        r = g.tensor(torch.float64)
        source = torch.einsum("ba,b...->a...", r, p)  # R^-1 p = R^T p
        expected = field_of(source)
        expected[1:4] = torch.einsum("ba,a...->b...", r, expected[1:4])  # R v
        assert torch.equal(act_on_fields(f, LAYOUT, g), expected), g
        # the same through a list of vector start channels instead of a FieldLayout
        assert torch.equal(act_on_fields(f, [1], g), expected)


def test_action_is_a_group_action():
    x = torch.randn(2, 5, 4, 4, 4, generator=gen(1))
    for g in FULL_OCTAHEDRAL:
        assert torch.equal(act_on_fields(act_on_fields(x, LAYOUT, g), LAYOUT, g.inverse()), x)
    assert torch.equal(act_on_fields(x, LAYOUT, Octahedral.identity()), x)
    rng = torch.Generator().manual_seed(2)
    pairs = torch.randint(0, 48, (200, 2), generator=rng).tolist()
    for i, j in pairs:
        g, h = FULL_OCTAHEDRAL[i], FULL_OCTAHEDRAL[j]
        assert torch.equal(act_on_fields(x, LAYOUT, g @ h), act_on_fields(act_on_fields(x, LAYOUT, h), LAYOUT, g))
        assert torch.equal(g.act(x, LAYOUT), act_on_fields(x, LAYOUT, g))
    # non-commutative: the order of composition is visible
    assert not torch.equal(act_on_fields(x, LAYOUT, ROT_Z90 @ ROT_X90), act_on_fields(x, LAYOUT, ROT_X90 @ ROT_Z90))


def test_z_rotation_and_mirrors_agree_with_2d_convention():
    """A turn about +z is the 2D ``rot90`` (counter-clockwise, rows towards -y) on every (y, x) slice, mirrors are
    the 2D ``reflect``; the z component is only moved."""
    layout3 = FieldLayout.of("temperature:scalar", "velocity:vector", ndim=3)
    layout2 = FieldLayout.of("temperature:scalar", "velocity:vector")
    x = torch.randn(2, 4, 6, 6, 6, generator=gen(3))
    x[:, 3] = 0  # zero z component
    as_2d = lambda t: t[:, :3].transpose(1, 2)  # (B, D, 3, H, W): every z slice is a 2D frame  # noqa: E731
    for k in range(4):
        g = Octahedral.identity()
        for _ in range(k):
            g = ROT_Z90 @ g
        y = act_on_fields(x, layout3, g)
        assert torch.equal(as_2d(y), rot90(as_2d(x), layout2, k))
        assert torch.equal(y[:, 3], torch.zeros_like(y[:, 3]))
    assert torch.equal(as_2d(act_on_fields(x, layout3, MIRROR_X)), reflect(as_2d(x), layout2, "x"))
    assert torch.equal(as_2d(act_on_fields(x, layout3, MIRROR_Y)), reflect(as_2d(x), layout2, "y"))
    # with a z component: it co-moves with the slices and keeps its value under a turn about z
    x[:, 3] = torch.randn(2, 6, 6, 6, generator=gen(4))
    assert torch.equal(act_on_fields(x, layout3, ROT_Z90)[:, 3], torch.rot90(x[:, 3], 1, dims=(-2, -1)))
    # turns about x and y carry the x-y plane into z: v_z of the result is +-v_y / +-v_x of the source
    p = coordinates(4)
    e_y = torch.stack([torch.zeros_like(p[0]), torch.ones_like(p[0]), torch.zeros_like(p[0])])[None]
    assert torch.equal(act_on_fields(e_y, [0], ROT_X90)[0, 2], torch.ones_like(p[0]))  # y -> z
    assert torch.equal(act_on_fields(e_y, [0], ROT_Y90), e_y)


def test_act_on_grid_checks():
    with pytest.raises(ValueError, match="different sizes"):
        act_on_grid(torch.zeros(3, 4, 4), ROT_X90)
    assert act_on_grid(torch.zeros(3, 4, 4), ROT_Z90).shape == (3, 4, 4)  # z stays, y and x are equal
    with pytest.raises(ValueError, match="ndim=3"):
        act_on_fields(torch.zeros(2, 4, 4, 4), FieldLayout.of("u:vector"), ROT_Z90)
    with pytest.raises(ValueError, match="channels"):
        act_on_fields(torch.zeros(4, 4, 4, 4), LAYOUT, ROT_Z90)


@pytest.mark.parametrize("group", ["O", "Oh", "C4v"])
def test_regular_action_is_a_group_action(group):
    els = GROUPS[group]
    x = torch.randn(1, 2 * len(els), 4, 4, 4, generator=gen(5))
    assert torch.equal(act_on_regular(x, group, 0), x)
    pairs = torch.randint(0, len(els), (30, 2), generator=gen(6)).tolist()
    for i, j in pairs:
        composed = act_on_regular(x, group, els[i] @ els[j])
        assert torch.equal(composed, act_on_regular(act_on_regular(x, group, j), group, i))
    # pooling over the group gives invariant scalar fields
    pool = OctahedralGroupPool3d(group, "max")
    for g in els:
        assert torch.equal(pool(act_on_regular(x, group, g)), act_on_grid(pool(x), g))


# ------------------------------------------------------------------------------------------------ layers


def equivariance_errors(layer: nn.Module, x: torch.Tensor, act_in, group: str) -> list[float]:
    """Relative ``|layer(T_g x) - T_g layer(x)|`` for every element of ``group`` (output: group features)."""
    with torch.no_grad():
        y = layer(x)
        return [rel(layer(act_in(x, g)), act_on_regular(y, group, i)) for i, g in enumerate(GROUPS[group])]


@pytest.mark.parametrize("group", ["O", "Oh"])
def test_lift_is_equivariant(group):
    torch.manual_seed(0)
    x = torch.randn(2, 5, 7, 7, 7)
    lift = OctahedralLift3d(LAYOUT, 3, 3, group)
    assert lift(x).shape == (2, 3 * len(GROUPS[group]), 7, 7, 7)
    errors = equivariance_errors(lift, x, lambda t, g: act_on_fields(t, LAYOUT, g), group)
    assert max(errors) < 1e-5, max(errors)
    # scalar-only input; and treating the vector as three scalars breaks it (vector components matter)
    scalar = OctahedralLift3d(5, 3, 3, group)
    assert max(equivariance_errors(scalar, x, lambda t, g: act_on_fields(t, [], g), group)) < 1e-5
    wrong = equivariance_errors(scalar, x, lambda t, g: act_on_fields(t, LAYOUT, g), group)
    assert max(wrong) > 0.1
    # a plain convolution is not equivariant (lifted by repeating it over the group, so the test is fair)
    conv = nn.Conv3d(5, 3, 3, padding=1, bias=False)
    plain = lambda t: conv(t).repeat_interleave(len(GROUPS[group]), dim=1)  # noqa: E731
    plain_errors = equivariance_errors(plain, x, lambda t, g: act_on_fields(t, LAYOUT, g), group)
    assert plain_errors[0] == 0 and min(plain_errors[1:]) > 0.1


@pytest.mark.parametrize("group, padding_mode", [("O", "zeros"), ("Oh", "zeros"), ("O", "circular")])
def test_group_conv_is_equivariant(group, padding_mode):
    torch.manual_seed(1)
    n = len(GROUPS[group])
    conv = OctahedralGroupConv3d(2, 3, 3, group, padding_mode=padding_mode, bias=True)
    nn.init.normal_(conv.bias)
    x = torch.randn(2, 2 * n, 6, 6, 6)
    assert conv(x).shape == (2, 3 * n, 6, 6, 6)
    errors = equivariance_errors(conv, x, lambda t, g: act_on_regular(t, group, g), group)
    assert max(errors) < 1e-5, max(errors)
    plain = nn.Conv3d(2 * n, 3 * n, 3, padding=1, bias=False)
    plain_errors = equivariance_errors(plain, x, lambda t, g: act_on_regular(t, group, g), group)
    assert min(plain_errors[1:]) > 0.1


@pytest.mark.parametrize("group, upsample, padding_mode",
                         [("O", False, "zeros"), ("Oh", False, "circular"), ("Oh", True, "circular"),
                          ("O", True, "zeros"), ("C4v", True, "replicate")])
def test_projection_is_equivariant(group, upsample, padding_mode):
    """``G -> Z^3`` back to typed fields (and, with ``upsample``, to a doubled grid): ``project(T_u f) = T_u
    project(f)`` with the vectors' components turned; a projection that treats the vector channels as scalars is
    not equivariant."""
    torch.manual_seed(3)
    n = len(GROUPS[group])
    x = torch.randn(2, 2 * n, 5, 5, 5, dtype=torch.float64)
    proj = OctahedralProject3d(2, LAYOUT, 4 if upsample else 3, group, padding_mode, upsample=upsample).double()
    y = proj(x)
    assert y.shape == (2, 5, *(3 * (10 if upsample else 5,)))
    errors = [rel(proj(act_on_regular(x, group, i)), act_on_fields(y, LAYOUT, g)) for i, g in enumerate(GROUPS[group])]
    assert max(errors) < 1e-12, max(errors)
    wrong = [rel(proj(act_on_regular(x, group, i)), act_on_fields(y, [], g)) for i, g in enumerate(GROUPS[group])]
    assert max(wrong) > 0.1
    assert proj.parameter_count == sum(p.numel() for p in proj.parameters()) == 2 * 5 * (4 if upsample else 3) ** 3


def test_upsample_conv_geometry():
    """Stride 2, kernel 4, padding 1: fine cell ``2 j - 1 + t`` gets tap ``t`` of coarse cell ``j``; circular padding
    makes a coarse shift by one a fine shift by two (exact on the torus), and the grid doubles in every mode."""
    weight = torch.zeros(1, 1, 4, 4, 4, dtype=torch.float64)
    weight[0, 0, 1, 2, 3] = 1.0
    x = torch.zeros(1, 1, 4, 4, 4, dtype=torch.float64)
    x[0, 0, 2, 1, 2] = 1.0
    out = upsample_conv3d(x, weight, "zeros")
    assert out.shape == (1, 1, 8, 8, 8)
    assert torch.nonzero(out[0, 0]).tolist() == [[2 * 2 - 1 + 1, 2 * 1 - 1 + 2, 2 * 2 - 1 + 3]]
    torch.manual_seed(4)
    x, weight = torch.randn(1, 2, 4, 4, 4, dtype=torch.float64), torch.randn(2, 3, 4, 4, 4, dtype=torch.float64)
    periodic = upsample_conv3d(x, weight, "circular")
    assert torch.allclose(upsample_conv3d(x.roll(1, -1), weight, "circular"), periodic.roll(2, -1))
    zeros = upsample_conv3d(x, weight, "zeros")
    assert not torch.allclose(upsample_conv3d(x.roll(1, -1), weight, "zeros"), zeros.roll(2, -1))
    with pytest.raises(ValueError, match="kernel_size=4"):
        OctahedralProject3d(1, 3, 3, upsample=True)


def test_group_conv_is_correlation_with_turned_kernels():
    """Block ``(g, h)`` of the expanded weight is ``psi(g^-1 ., g^-1 h)``, written out element by element."""
    torch.manual_seed(2)
    conv = OctahedralGroupConv3d(2, 2, 3, "O")
    w = conv.expanded().view(2, 24, 2, 24, 3, 3, 3)
    table, inv = cayley_table(OCTAHEDRAL), inverse_index(OCTAHEDRAL)
    for gi, hi in [(0, 0), (5, 7), (13, 2), (23, 23)]:
        source = conv.weight[:, :, table[inv[gi], hi]]  # psi(., g^-1 h)
        assert torch.equal(w[:, gi, :, hi], act_on_grid(source, OCTAHEDRAL[gi]))


def relaxed_layer(group: str, banks: int = 2, seed: int = 0) -> RelaxedOctahedralGroupConv3d:
    torch.manual_seed(seed)
    return RelaxedOctahedralGroupConv3d(2, 2, 3, group, banks=banks).double()


def regular_input(group: str, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 2 * len(GROUPS[group]), 5, 5, 5, generator=gen(seed), dtype=torch.float64)


def relaxed_errors(layer, group: str, x) -> torch.Tensor:
    return torch.tensor(equivariance_errors(layer, x, lambda t, g: act_on_regular(t, group, g), group))


@pytest.mark.parametrize("group", ["O", "Oh"])
def test_relaxed_conv_tied_weights_are_equivariant(group):
    layer, x = relaxed_layer(group, banks=3), regular_input(group)
    n = len(GROUPS[group])
    w = layer.relaxation_weights()
    assert w.shape == (3, n) and (w == w[0, 0]).all() and abs(float(w[0, 0].detach()) - 3**-0.5) < 1e-7
    assert float(layer.regularization_loss().detach()) == 0
    assert relaxed_errors(layer, group, x).max() < 1e-12
    # any h-independent weights: still exactly the strict conv with kernel sum_l w_l psi_l
    with torch.no_grad():
        w.copy_(torch.randn(3, 1, dtype=torch.float64).expand(3, n))
    assert relaxed_errors(layer, group, x).max() < 1e-12
    strict = OctahedralGroupConv3d(2, 2, 3, group).double()
    with torch.no_grad():
        strict.weight.copy_(torch.einsum("l...,l->...", layer.weight, w[:, 0]))
        assert rel(layer(x), strict(x)) < 1e-12
    # weights varying along h break every symmetry but the identity
    with torch.no_grad():
        w.add_(0.3 * torch.randn(3, n, dtype=torch.float64))
    errors = relaxed_errors(layer, group, x)
    assert errors[0] == 0 and errors[1:].min() > 1e-3
    assert float(layer.regularization_loss().detach()) > 0
    assert weight_stabilizer(w, group) == (0,)


def coset_labels(group: str, subgroup, side: str) -> torch.Tensor:
    """Label of every element ``h`` of ``group``: its right coset ``H h`` or left coset ``h H``."""
    els = GROUPS[group]
    table = cayley_table(els)
    sub = torch.tensor([index_of(els, u) for u in subgroup])
    members = table[sub] if side == "right" else table[:, sub].T  # [u, h] -> u h  or  h u
    return members.min(dim=0).values


@pytest.mark.parametrize("group, subgroup", [("Oh", "C4v"), ("Oh", "D4h"), ("O", "C4"), ("O", "D4")])
def test_relaxed_conv_with_right_coset_weights_is_equivariant_to_exactly_the_subgroup(group, subgroup):
    """Statement: ``w_l`` constant on the right cosets ``H h`` (distinct values on distinct cosets) makes the layer
    equivariant to every ``u`` in ``H`` and to no other element of ``G``; constant on the left cosets ``h H`` it
    is equivariant exactly to the normal core of ``H`` (trivial for C4v in Oh and C4 in O, the Klein group
    {e, C2x, C2y, C2z} for D4 in O, its product with {I, -I} for D4h in Oh)."""
    els, sub = GROUPS[group], GROUPS[subgroup]
    in_sub = torch.tensor([g in sub for g in els])
    layer, x = relaxed_layer(group, banks=2, seed=3), regular_input(group, seed=4)
    labels = coset_labels(group, sub, "right")
    assert len(labels.unique()) == len(els) // len(sub)
    with torch.no_grad():
        layer.relaxed_weights.copy_(torch.randn(2, len(els), dtype=torch.float64)[:, labels])
    errors = relaxed_errors(layer, group, x)
    assert errors[in_sub].max() < 1e-12
    assert errors[~in_sub].min() > 1e-3
    assert weight_stabilizer(layer.relaxed_weights, group) == tuple(torch.nonzero(in_sub).view(-1).tolist())
    # the wrong side: only the normal core of H (the u with h^-1 u h in H for all h) survives
    core = torch.tensor([all(h.inverse() @ u @ h in sub for h in els) for u in els])
    assert core.sum() == {"C4v": 1, "C4": 1, "D4h": 8, "D4": 4}[subgroup]  # trivial for C4v and C4
    left = coset_labels(group, sub, "left")
    with torch.no_grad():
        layer.relaxed_weights.copy_(torch.randn(2, len(els), dtype=torch.float64)[:, left])
    errors = relaxed_errors(layer, group, x)
    assert errors[core].max() < 1e-12
    assert errors[~core].min() > 1e-3
    assert (in_sub & ~core).any()  # some elements of H are lost


def test_stack_shapes_gradients_and_invariance():
    torch.manual_seed(5)
    layout = FieldLayout.of("velocity:vector", "density:scalar", ndim=3)
    stack = nn.Sequential(
        OctahedralLift3d(layout, 3, 3, "O", bias=True), nn.ReLU(),
        OctahedralGroupConv3d(3, 4, 3, "O", bias=True), nn.ReLU(),
        RelaxedOctahedralGroupConv3d(4, 2, 3, "O", banks=2), nn.ReLU(),
        OctahedralGroupPool3d("O", "mean"),
    )
    x = torch.randn(2, 4, 6, 6, 6)
    shapes, h = [], x
    for m in stack:
        h = m(h)
        shapes.append(tuple(h.shape))
    assert shapes[::2] == [(2, 72, 6, 6, 6), (2, 96, 6, 6, 6), (2, 48, 6, 6, 6), (2, 2, 6, 6, 6)]
    loss = h.square().mean() + 0.1 * stack[4].regularization_loss()
    loss.backward()
    for name, p in stack.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    # the whole stack maps typed fields to invariant scalars: stack(T_g x) = g . stack(x)
    with torch.no_grad():
        y = stack(x)
        assert max(rel(stack(act_on_fields(x, layout, g)), act_on_grid(y, g)) for g in OCTAHEDRAL) < 1e-5
    assert parameter_count(stack) == sum(p.numel() for p in stack.parameters())


@pytest.mark.parametrize("bias", [False, True])
def test_parameter_count(bias):
    layers = [
        OctahedralLift3d(4, 3, 3, "Oh", bias=bias),
        OctahedralLift3d(LAYOUT, 2, 5, "O", bias=bias),
        OctahedralGroupConv3d(3, 2, 3, "Oh", bias=bias),
        OctahedralGroupConv3d(2, 5, 1, "C4v", bias=bias),
        RelaxedOctahedralGroupConv3d(2, 3, 3, "O", banks=3, bias=bias),
        RelaxedOctahedralGroupConv3d(1, 1, 3, "D4h", banks=1, bias=bias),
    ]
    for layer in layers:
        assert layer.parameter_count == sum(p.numel() for p in layer.parameters()), layer
    assert OctahedralGroupPool3d("Oh").parameter_count == 0
    assert RelaxedOctahedralGroupConv3d.count(2, 3, 3, 24, 3, bias) == 3 * (2 * 3 * 24 * 27 + 24) + 3 * bias


def test_bad_configurations():
    with pytest.raises(ValueError, match="unknown octahedral group"):
        OctahedralGroupConv3d(1, 1, 3, "T")
    with pytest.raises(ValueError, match="odd"):
        OctahedralLift3d(1, 1, 2)
    with pytest.raises(ValueError, match="padding_mode"):
        OctahedralLift3d(1, 1, 3, padding_mode="wrap")
    with pytest.raises(ValueError, match="bank"):
        RelaxedOctahedralGroupConv3d(1, 1, 3, banks=0)
    with pytest.raises(ValueError, match="mode"):
        OctahedralGroupPool3d("O", "sum")  # type: ignore[arg-type]
    # an explicit element list works if closed and starting with the identity
    assert OctahedralGroupConv3d(1, 1, 3, list(C4_Z)).group_order == 4
    with pytest.raises(ValueError, match="not closed"):
        OctahedralGroupConv3d(1, 1, 3, [Octahedral.identity(), ROT_Z90])


def test_element_order_is_documented_order():
    """Rotations in (column permutation, sign pattern) order, det +1 kept."""
    expected = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            m = torch.zeros(3, 3, dtype=torch.long)
            m[list(perm), [0, 1, 2]] = torch.tensor(signs)
            if int(torch.det(m.double()).round()) == 1:
                expected.append(m)
    assert torch.equal(element_matrices(OCTAHEDRAL), torch.stack(expected))
