"""Symmetry discovery: a relaxed octahedral model trained on data with a known symmetry subgroup H of O_h keeps
its relaxed weights tied exactly on H (:mod:`symbench.studies.discovery.run`)."""

from __future__ import annotations

import pytest
import torch

from symbench.symmetry.octahedral import (
    FULL_OCTAHEDRAL,
    GROUPS,
    INVERSION,
    MIRROR_X,
    ROT_Z90,
    act_on_grid,
    cayley_table,
    indices_in,
)
from symbench.studies.discovery.model import DiscoveryModel
from symbench.studies.discovery.run import (
    element_label,
    is_closed,
    matrix_set,
    recover_subgroup,
    right_cosets,
    run_discovery,
)
from symbench.studies.discovery.task import SyntheticTask, make_dataset, periodic_conv, smooth_fields

OH = GROUPS["Oh"]


def membership(subgroup: str) -> torch.Tensor:
    sub = matrix_set(GROUPS[subgroup])
    return torch.tensor([g.matrix in sub for g in OH])


def coset_constant(subgroup: str, side: str, seed: int, banks: int = 2) -> torch.Tensor:
    """Random ``w (banks, 48)`` constant on the right cosets ``H h`` or the left cosets ``h H``."""
    table = cayley_table(OH)
    sub = torch.tensor(indices_in(OH, GROUPS[subgroup]))
    members = table[sub] if side == "right" else table[:, sub].T  # [u, h] -> u h  or  h u
    labels = members.min(dim=0).values
    g = torch.Generator().manual_seed(seed)
    return torch.randn(banks, len(OH), generator=g, dtype=torch.float64)[:, labels]


@pytest.mark.parametrize("subgroup", ["C4v", "D4h", "C4", "D4"])
def test_task_is_equivariant_to_exactly_its_subgroup(subgroup):
    task = SyntheticTask.random(subgroup, kernel_size=5, seed=1)
    x = smooth_fields(2, 6, torch.Generator().manual_seed(2), dtype=torch.float64)
    errors = task.equivariance_errors(x)
    inside = membership(subgroup)
    assert errors[inside].max() < 1e-6
    assert errors[~inside].min() > 1e-2
    # the literal H-average equals one convolution with the H-averaged kernel
    assert torch.allclose(task(x), periodic_conv(x, task.averaged_kernel()), atol=1e-12)
    tanh = SyntheticTask(task.subgroup, task.kernel, "tanh").equivariance_errors(x)
    assert tanh[inside].max() < 1e-6 and tanh[~inside].min() > 1e-2


def test_a_3x3x3_kernel_cannot_tell_c4_from_c4v():
    """The C4 orbits of the 27 taps of a 3^3 kernel are its C4v orbits: the C4-average is mirror symmetric too,
    hence the default target kernel of size 5."""
    task = SyntheticTask.random("C4", kernel_size=3, seed=1)
    errors = task.equivariance_errors(smooth_fields(1, 6, torch.Generator().manual_seed(2), dtype=torch.float64))
    assert errors[membership("C4v")].max() < 1e-6
    assert errors[~membership("C4v")].min() > 1e-2


def test_dataset_is_closed_under_oh_and_model_is_oh_equivariant_at_init():
    task = SyntheticTask.random("C4v", seed=0)
    x, y = make_dataset(task, fields=1, size=6, seed=3, dtype=torch.float64)
    assert x.shape == y.shape == (1, 48, 1, 6, 6, 6)
    torch.manual_seed(0)
    model = DiscoveryModel(group="Oh").double()
    assert recover_subgroup(model.relaxation_weights()).order == 48  # tied at init
    with torch.no_grad():
        out = model(x[0])
        for i in (1, 7, 30, 47):  # x[0, i] = T_g x[0, 0]
            assert torch.allclose(out[i], act_on_grid(out[0], OH[i]), atol=1e-10)
            assert torch.allclose(x[0, i], act_on_grid(x[0, 0], OH[i]))


@pytest.mark.parametrize("subgroup", ["C4v", "D4h", "C4", "D4", "O"])
def test_recover_subgroup_from_right_coset_weights_returns_the_subgroup(subgroup):
    rec = recover_subgroup(coset_constant(subgroup, "right", seed=5))
    assert rec.is_subgroup and rec.equals(subgroup)
    assert rec.inside_max < 1e-12 and rec.outside_min > 0.1
    assert matrix_set(rec.elements) == matrix_set(GROUPS[subgroup])


@pytest.mark.parametrize("subgroup, core_order", [("C4v", 1), ("D4h", 8), ("D4", 4)])
def test_recover_subgroup_from_left_coset_weights_returns_the_normal_core(subgroup, core_order):
    """The wrong side (as in tests/test_octahedral.py): constant on ``h H`` keeps only the normal core of H."""
    sub = matrix_set(GROUPS[subgroup])
    core = {u.matrix for u in OH if all((h.inverse() @ u @ h).matrix in sub for h in OH)}
    assert len(core) == core_order
    rec = recover_subgroup(coset_constant(subgroup, "left", seed=6))
    assert rec.is_subgroup and matrix_set(rec.elements) == core


def test_recover_subgroup_from_random_or_tied_weights():
    w = torch.randn(3, 48, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    rec = recover_subgroup(w)
    assert rec.indices == (0,) and rec.is_subgroup and rec.equals("trivial")
    assert rec.outside_min > 0.1
    tied = torch.full((2, 48), 0.7) + 1e-7 * torch.randn(2, 48)  # tied up to round-off: all of Oh
    assert recover_subgroup(tied).equals("Oh")
    assert recover_subgroup(torch.full((2, 48), 0.7)).equals("Oh")


def test_helpers():
    assert element_label(FULL_OCTAHEDRAL[0]) == "xyz"
    assert element_label(ROT_Z90) == "-yxz"
    assert element_label(INVERSION) == "-x-y-z"
    assert element_label(MIRROR_X) == "-xyz"
    assert len({element_label(g) for g in OH}) == 48
    cosets = right_cosets(OH, GROUPS["C4v"])
    assert len(cosets) == 6 and sorted(i for c in cosets for i in c) == list(range(48))
    assert is_closed(OH, indices_in(OH, GROUPS["D4h"]))
    assert not is_closed(OH, indices_in(OH, [FULL_OCTAHEDRAL[0], ROT_Z90]))


def test_training_on_c4v_data_recovers_c4v_and_writes_plot_and_table(tmp_path):
    result = run_discovery("C4v", steps=150, seed=0, out_dir=tmp_path)
    rec = result.recovered
    assert result.equal and rec.is_subgroup and rec.order == 8
    assert matrix_set(rec.elements) == matrix_set(GROUPS["C4v"])
    assert rec.inside_max < 1e-3 and rec.outside_min > 0.1  # a clear cut
    assert result.log.final_loss < 0.5 * result.log.initial_loss
    # the plot and the table, written atomically (no temporary files left)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["C4v.md", "C4v_weights.png"]
    assert result.plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and result.plot_path.stat().st_size > 5000
    table = result.table_path.read_text()
    assert "| C4v | 8 | 8 | yes | yes |" in table
    assert table.count("\n| ") >= 2 + 48


def test_training_on_fully_symmetric_data_keeps_the_weights_tied():
    """Control: the Oh-average of the convolution is Oh-equivariant; the weights move together."""
    result = run_discovery("Oh", steps=80, seed=0)
    assert result.equal and result.recovered.order == 48
    w = result.weights
    assert (w - w.mean(dim=1, keepdim=True)).abs().max() < 1e-4 * w.abs().max()
    assert result.recovered.inside_max < 1e-3  # far below tol = 0.01 (in units of 1% of |w|)


@pytest.mark.slow
@pytest.mark.parametrize("subgroup", ["D4h", "C4"])
def test_training_recovers_other_subgroups(subgroup):
    result = run_discovery(subgroup, steps=200, seed=0)
    assert result.equal and result.recovered.is_subgroup
    assert result.recovered.gap > 100


def test_cli_discover_rejects_unknown_subgroup(capsys):
    from symbench import cli

    assert cli.main(["discover", "--subgroups", "X9"]) == 2
    assert capsys.readouterr().err.strip().startswith("symbench: error: unknown subgroup(s) ['X9']")


def test_the_lightning_fit_is_the_plain_adam_loop_on_one_orbit_per_step():
    """DiscoveryModule through the studies' Trainer takes the steps of the former hand-written loop: Adam on the
    normalised MSE plus alpha times the penalty, orbit t mod F at step t: the same weights."""
    from symbench.studies.common import fit_test_best
    from symbench.studies.discovery.task import DiscoveryModule, OrbitData

    task = SyntheticTask.random("C4v", seed=0)
    x, y = make_dataset(task, fields=2, size=4, seed=1)
    torch.manual_seed(0)
    reference = DiscoveryModel(channels=1, banks=2)
    module = DiscoveryModule(DiscoveryModel(channels=1, banks=2), lr=1e-2, alpha=1e-3)
    module.net.load_state_dict(reference.state_dict())
    opt = torch.optim.Adam(reference.parameters(), lr=1e-2)
    for step in range(3):
        fit = (reference(x[step % 2]) - y[step % 2]).pow(2).sum() / y[step % 2].pow(2).sum()
        opt.zero_grad()
        (fit + 1e-3 * reference.regularization_loss()).backward()
        opt.step()
    result = fit_test_best(module, OrbitData((x, y), make_dataset(task, 1, 4, seed=2)), 3, 1, "val_fit")
    assert len(module.losses) == 3 and result.best_step == 3 and result.test["test_fit"] > 0
    for a, b in zip(module.net.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_cli_discover_writes_runs_csv_rows(tmp_path):
    from symbench import cli
    from symbench.provenance import source_revision
    from symbench.results import read_rows

    assert cli.main(["discover", "--preset", "tiny", "--results", str(tmp_path), "--accelerator", "cpu"]) == 0
    rows = read_rows(tmp_path / "symmetry_discovery" / "runs.csv")
    assert {(r["split"], r["metric"]) for r in rows} >= {("test", "recovered_order"), ("test", "fit"), ("train", "fit")}
    assert {(r["benchmark"], r["dataset"], r["preset"], r["code_rev"]) for r in rows} == {
        ("symmetry_discovery", "discovery-C4v", "tiny", source_revision("symbench.studies.discovery.run"))}
    assert all(r["data_key"] and r["config_hash"] and int(r["params"]) > 0 for r in rows)
    assert (tmp_path / "symmetry_discovery" / "C4v.md").is_file()
