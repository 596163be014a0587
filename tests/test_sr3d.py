"""3D super-resolution models (:mod:`symbench.studies.sr3d.model`) and the benchmark (:mod:`symbench.studies.sr3d.run`): exact O_h
equivariance of Trilinear and Equiv, none for Conv, R-Equiv equivariant while its weights are tied and equal to
Equiv when they are equal over the group, R-Equiv's L >= 2 filter banks mixing filters across orientations (one bank
is only a gain per orientation), parameter counts, the analytic periodic interpolation, the relaxed-weight
deviations, and a resumable tiny run end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from datamodules.turb3d import coarsen
from datamodules.turb3d_sim import SHEARED_SUBGROUP
from symbench.cli import main
from symbench.layers.octahedral_conv import OctahedralGroupConv3d, RelaxedOctahedralGroupConv3d
from symbench.models.budget import n_params
from symbench.studies.sr3d.model import KINDS, VELOCITY, SRArch, Trilinear, build_sr, matched_width, periodic_trilinear
from symbench.results import read_rows
from symbench.studies.sr3d.run import csv_path, training_presets, read_runs, run_sr3d, weight_deviations
from symbench.symmetry.octahedral import FULL_OCTAHEDRAL, act_on_fields, act_on_grid, cayley_table, group_elements
from symbench.studies.discovery.run import right_cosets

ARCH = SRArch(fields=1, layers=(1, 1), factor=4)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def model(kind: str, arch: SRArch = ARCH, seed: int = 0) -> torch.nn.Module:
    """A model with a random (non-zero) projection, in float64, so that the learned part is exercised."""
    torch.manual_seed(seed)
    net = build_sr(kind, arch).double()
    if kind != "trilinear":
        torch.nn.init.normal_(net.project.weight, std=0.2)
    return net


def errors(net: torch.nn.Module, x: torch.Tensor) -> list[float]:
    with torch.no_grad():
        y = net(x)
        return [rel(net(act_on_fields(x, VELOCITY, g)), act_on_fields(y, VELOCITY, g)) for g in FULL_OCTAHEDRAL]


@pytest.fixture(scope="module")
def low() -> torch.Tensor:
    return torch.randn(2, 3, 4, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_periodic_trilinear_is_linear_interpolation_between_cell_centres():
    """Fine cell ``i`` sits at coarse coordinate ``c = (i + 1/2) / f - 1/2``; its value is the linear interpolation
    of the two neighbouring coarse cells, wrapping around the periodic box."""
    f, n = 4, 5
    a = np.random.default_rng(0).normal(size=n)
    c = (np.arange(n * f) + 0.5) / f - 0.5
    lo = np.floor(c).astype(int)
    expected = (1 - (c - lo)) * a[lo % n] + (c - lo) * a[(lo + 1) % n]
    x = torch.tensor(a).view(1, 1, 1, 1, n).expand(1, 1, n, n, n)
    out = periodic_trilinear(x, f)
    assert out.shape == (1, 1, n * f, n * f, n * f)
    assert np.allclose(out[0, 0, 3, 7].numpy(), expected, atol=1e-12)
    # block means of the interpolant return a smooth field closely, a constant exactly
    assert torch.allclose(periodic_trilinear(torch.full((1, 2, 3, 3, 3), 2.5), f), torch.full((1, 2, 12, 12, 12), 2.5))


@pytest.mark.parametrize("kind", ["trilinear", "equiv"])
def test_trilinear_and_equiv_are_exactly_oh_equivariant(kind, low):
    assert max(errors(model(kind), low)) < 1e-12


def test_conv_is_not_equivariant(low):
    errs = errors(model("conv"), low)
    assert errs[0] == 0 and min(errs[1:]) > 1e-2


def test_relaxed_is_equivariant_when_tied_and_to_the_coset_subgroup_otherwise(low):
    net = model("r_equiv")
    assert max(errors(net, low)) < 1e-12  # tied at init
    els = group_elements("Oh")
    cosets = right_cosets(els, SHEARED_SUBGROUP)  # w constant on the right cosets H h -> symmetric under exactly H
    with torch.no_grad():
        for layer in net.relaxed_layers():
            values = torch.randn(len(cosets), dtype=torch.float64) + 1
            for value, coset in zip(values, cosets):
                layer.relaxed_weights[:, list(coset)] = value
    errs = errors(net, low)
    inside = {els.index(g) for g in SHEARED_SUBGROUP}
    assert max(errs[i] for i in inside) < 1e-12
    assert min(errs[i] for i in range(len(els)) if i not in inside) > 1e-3
    dev_sym, dev_other = weight_deviations(net, "sheared")
    assert dev_sym < 1e-12 and dev_other > 0.1
    assert math.isnan(weight_deviations(net, "isotropic")[1])  # no element of O_h lies outside the isotropic symmetry
    assert all(math.isnan(v) for v in weight_deviations(model("equiv"), "sheared"))


def test_every_model_starts_as_trilinear(low):
    for kind in KINDS:
        torch.manual_seed(0)
        net = build_sr(kind, ARCH).double()
        assert torch.equal(net(low), Trilinear(4)(low)), kind


@pytest.mark.parametrize("preset", ["tiny", "cpu", "paper"])
def test_parameter_budgets_are_matched(preset):
    """Conv is matched to Equiv; R-Equiv has Equiv's fields, ``L`` kernel banks and ``L |G|`` weights per block."""
    arch = training_presets()[preset].arch
    counts = {k: n_params(build_sr(k, arch)) for k in KINDS}
    assert counts["trilinear"] == 0
    assert abs(counts["conv"] - counts["equiv"]) <= 0.1 * counts["equiv"], counts
    blocks = sum(arch.layers)
    kernels = blocks * arch.fields**2 * 48 * arch.kernel_size**3
    assert counts["r_equiv"] == counts["equiv"] + (arch.banks - 1) * kernels + blocks * arch.banks * 48
    # no other width is closer
    width = matched_width(arch)
    from symbench.studies.sr3d.model import _plain

    gaps = {w: abs(n_params(_plain(arch, w)) - counts["equiv"]) for w in (width - 1, width, width + 1)}
    assert min(gaps, key=gaps.get) == width


def paired(arch: SRArch, seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Equiv (random projection, float64) and an R-Equiv of the same ``arch`` sharing its lift, projection and
    biases; the relaxed blocks' kernels and weights are left to the caller."""
    equiv = model("equiv", arch, seed)
    relaxed = model("r_equiv", arch, seed + 1)
    relaxed.lift.load_state_dict(equiv.lift.state_dict())
    relaxed.project.load_state_dict(equiv.project.state_dict())
    return equiv, relaxed


def block_pairs(equiv: torch.nn.Module, relaxed: torch.nn.Module) -> list[tuple[torch.nn.Module, torch.nn.Module]]:
    return [(s, r) for strict, loose in zip(equiv.levels, relaxed.levels) for s, r in zip(strict, loose)]


@pytest.mark.parametrize("preset", ["tiny", "cpu"])
def test_r_equiv_with_bank_weights_equal_over_the_group_is_equiv_exactly(preset, low):
    """``w_l(h) = a_l`` for every ``h``: each relaxed block is the strict block with kernel ``sum_l a_l psi_l``. With
    random banks and ``a_l`` whose combination is Equiv's kernel, and with every bank equal to Equiv's kernel and
    ``a_l = 1 / L``, R-Equiv computes Equiv's output to round-off."""
    arch = training_presets()[preset].arch
    equiv, relaxed = paired(arch)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for strict, loose in block_pairs(equiv, relaxed):
            a = torch.rand(arch.banks, generator=gen, dtype=torch.float64) + 0.5
            loose.relaxed_weights.copy_(a[:, None].expand(-1, loose.group_order))
            rest = torch.einsum("l...,l->...", loose.weight[:-1], a[:-1])
            loose.weight[-1] = (strict.weight - rest) / a[-1]
            loose.bias.copy_(strict.bias)
    with torch.no_grad():
        assert rel(relaxed(low), equiv(low)) < 1e-12
    with torch.no_grad():
        for strict, loose in block_pairs(equiv, relaxed):
            loose.weight.copy_(strict.weight.expand_as(loose.weight))
            loose.relaxed_weights.fill_(1 / arch.banks)
        assert rel(relaxed(low), equiv(low)) < 1e-12


def orientation_filters(layer: torch.nn.Module) -> torch.Tensor:
    """``(|G|_k, |G|_g, C_out C_in k^3)``: the relaxed block's kernel ``Psi(g, g k)`` brought back to the frame of the
    identity (``T_g^-1`` on the spatial taps), i.e. ``sum_l w_l(g k) psi_l(k)``: for each ``k``, the filters that the
    ``|G|`` output orientations apply. With ``L = 1`` they are ``w(g k) psi(k)``, one filter up to a gain (rank 1)."""
    els = layer.elements
    n, c_out, c_in, k = len(els), layer.out_channels, layer.in_channels, layer.kernel_size
    blocks = layer.expanded().detach().view(c_out, n, c_in, n, k, k, k)
    table = cayley_table(els)
    rows = [torch.stack([act_on_grid(blocks[:, g, :, table[g, j]], els[g].inverse()).reshape(-1)
                         for g in range(n)]) for j in range(n)]
    return torch.stack(rows)


@pytest.mark.parametrize("preset", ["tiny", "cpu", "paper"])
def test_preset_r_equiv_mixes_filters_across_orientations_not_only_gains(preset, low):
    """Every preset has ``L >= 2`` filter banks, and with weights ``w_l(h)`` varying over ``h`` each relaxed block's
    output orientations apply filters that span ``L`` dimensions for every ``k`` (with ``L = 1`` they are one
    filter times a gain per orientation, rank 1 to round-off, which made the former single-bank R-Equiv a gain on
    Equiv); the tiny network is then clearly not equivariant."""
    arch = training_presets()[preset].arch
    assert arch.banks >= 2, arch
    torch.manual_seed(1)
    net = build_sr("r_equiv", arch).double()
    torch.nn.init.normal_(net.project.weight, std=0.2)
    with torch.no_grad():
        for layer in net.relaxed_layers():
            layer.relaxed_weights.normal_(1.0, 0.5)
    layer = net.relaxed_layers()[0]
    singular = torch.linalg.svdvals(orientation_filters(layer))  # (|G|_k, min(|G|, C_out C_in k^3))
    assert (singular[:, 1] / singular[:, 0]).min() > 0.05, (singular[:, 1] / singular[:, 0]).min()
    assert (singular[:, arch.banks:] < 1e-12 * singular[:, :1]).all()  # and no more than L: sum of L banks
    if preset == "tiny":
        errs = errors(net, low)
        assert errs[0] == 0 and min(errs[1:]) > 1e-3


def test_single_bank_relaxed_block_is_a_gain_per_orientation_on_a_strict_block():
    """``L = 1``: ``[f * Psi](g) = sum_h w(h) f(h) psi(g^-1 h)``, the strict group convolution of the input scaled
    by ``w(h)`` on orientation ``h`` (the reason a single bank leaves R-Equiv close to Equiv)."""
    torch.manual_seed(2)
    layer = RelaxedOctahedralGroupConv3d(2, 2, 3, "Oh", banks=1).double()
    strict = OctahedralGroupConv3d(2, 2, 3, "Oh").double()
    with torch.no_grad():
        layer.relaxed_weights.normal_(1.0, 0.5)
        strict.weight.copy_(layer.weight[0])
    x = torch.randn(1, 2 * 48, 4, 4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    with torch.no_grad():
        gained = (x.view(1, 2, 48, 4, 4, 4) * layer.relaxed_weights[0].view(1, 1, 48, 1, 1, 1)).view_as(x)
        assert rel(layer(x), strict(gained)) < 1e-12
    assert (torch.linalg.svdvals(orientation_filters(layer))[:, 1:2] < 1e-12 * 48).all()


def test_bad_architecture():
    with pytest.raises(ValueError, match="divisible by 8"):
        SRArch(layers=(1, 1, 1), factor=4)
    with pytest.raises(ValueError, match="unknown super-resolution model"):
        build_sr("unet", ARCH)


def test_sr_learns_on_coarsened_fields():
    """A few Adam steps of each learned model lower the L1 error on block-mean inputs (it is a real task)."""
    torch.manual_seed(0)
    high = torch.randn(2, 3, 16, 16, 16)
    high = periodic_trilinear(coarsen(high, 2), 2) + 0.1 * high  # smooth-ish fields with a little detail
    lowres = coarsen(high, 4)
    for kind in ("conv", "equiv", "r_equiv"):
        net = build_sr(kind, SRArch(fields=1, layers=(1,)))
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        start = float((net(lowres) - high).abs().mean())
        for _ in range(15):
            loss = (net(lowres) - high).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert float((net(lowres) - high).abs().mean()) < start, kind


def test_tiny_benchmark_end_to_end_resumes(tmp_path, capsys):
    """Every model runs at the tiny preset on freshly generated data (both flows); a second call trains nothing and
    keeps every row; the report has the slides' table."""
    root, results = tmp_path / "data", tmp_path / "results"
    finished = run_sr3d("tiny", root, results, flows=("sheared",), kinds=KINDS)
    assert [r.model for r in finished] == list(KINDS)
    runs = read_runs(csv_path(results, "tiny"))
    assert len(runs) == 4 and all(np.isfinite(r.test_mae) and r.test_mae > 0 for r in runs)
    by = {r.model: r for r in runs}
    assert by["trilinear"].params == 0 and by["trilinear"].equiv_error < 1e-5 and by["equiv"].equiv_error < 1e-5
    assert by["conv"].equiv_error > 1e-3 and by["conv"].best_step > 0
    assert not math.isnan(by["r_equiv"].dev_other)
    assert run_sr3d("tiny", root, results, flows=("sheared",)) == []  # resumed: nothing left to do
    assert len(read_runs(csv_path(results, "tiny"))) == 4
    mae = [r for r in read_rows(results / "sr3d" / "runs.csv") if r["metric"] == "mae" and r["split"] == "test"]
    assert [(r["model"], float(r["value"])) for r in mae] == [(r.model, pytest.approx(r.test_mae)) for r in finished]
    report = csv_path(results, "tiny").with_suffix(".md").read_text()
    assert "| Model | Trilinear (sheared) | Conv (sheared) | Equiv (sheared) | R-Equiv (sheared) |" in report
    assert main(["sr3d", "--preset", "tiny", "--results", str(results), "--report-only"]) == 0


def test_cli_bad_input(tmp_path, capsys):
    assert main(["sr3d", "--preset", "huge", "--results", str(tmp_path)]) == 2
    assert "unknown preset 'huge'" in capsys.readouterr().err
    assert main(["sr3d", "--preset", "tiny", "--flows", "channel", "--root", str(tmp_path),
                 "--results", str(tmp_path)]) == 2
    assert "unknown flow or model ['channel']" in capsys.readouterr().err
    assert main(["sr3d", "--preset", "tiny", "--results", str(tmp_path), "--report-only"]) == 2
    assert "no sr3d results" in capsys.readouterr().err


def test_report_counts_seeds_per_ordering_step_with_intervals(tmp_path):
    """The report's ordering table: per step of the slides' ordering, 'yes k/n' by seed, a tie where the 95 %
    intervals overlap; the MAE cells carry their interval."""
    from symbench.studies.sr3d.run import SRRun, csv_path, write_report, write_runs

    mae = {"trilinear": [0.6, 0.6, 0.6], "conv": [0.30, 0.31, 0.29], "equiv": [0.25, 0.33, 0.26],
           "r_equiv": [0.20, 0.21, 0.19]}
    runs = [SRRun("sheared", k, seed, v, v, 10, 1, 0.0, math.nan, math.nan, 1.0)
            for k, values in mae.items() for seed, v in enumerate(values)]
    write_runs(csv_path(tmp_path, "tiny"), runs)
    md = write_report("tiny", tmp_path).read_text()
    # Conv < Trilinear in every seed; Equiv < Conv in 2 seeds, R-Equiv < Equiv in 3, but Equiv's interval is wide: ties
    assert "| sheared | yes 3/3 | tie 2/3 | tie 3/3 |" in md
    assert "| sheared | Conv | 1 | 0.3 ± 0.01 [0.2752, 0.3248] |" in md
