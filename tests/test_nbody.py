"""N-body simulator, GNN / EGNN and the GNN-vs-EGNN study (paper section 4.1)."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from datamodules.nbody import PRESETS, NBodyDataModule, initial_state, integrate, pair_forces, with_sizes
from symbench.studies.nbody.model import EGNN, GNN
from symbench.studies.nbody.run import NBodyRegressor, NBodyRow, NBodyTraining, run_nbody

DIMS = (2, 3, 4, 6, 8)


def random_euclidean(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A random orthogonal Q (det -1, i.e. with a reflection) and translation t, float64."""
    q, r = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) > 0:
        q[:, 0] = -q[:, 0]
    return q, torch.randn(n, generator=gen, dtype=torch.float64)


def state(n: int, count: int = 16, seed: int = 0):
    return initial_state(count, n, PRESETS["tiny"], torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("n", DIMS)
def test_simulator_conserves_momentum(n):
    x, v, c = state(n)
    sim = with_sizes("tiny", steps=200)
    assert pair_forces(x, c, sim.strength, sim.max_force).sum(dim=1).abs().max() < 1e-12
    _, v_end = integrate(x, v, c, sim)
    p0, p1 = v.sum(dim=1), v_end.sum(dim=1)
    assert (p1 - p0).abs().max() < 1e-11


def test_simulator_like_charges_repel():
    x = torch.tensor([[[0.0, 0.0], [1.0, 0.0]]], dtype=torch.float64)
    f = pair_forces(x, torch.tensor([[1.0, 1.0]], dtype=torch.float64), 1.0, 100.0)
    assert f[0, 0, 0] < 0 < f[0, 1, 0]
    f = pair_forces(x, torch.tensor([[1.0, -1.0]], dtype=torch.float64), 1.0, 100.0)
    assert f[0, 0, 0] > 0 > f[0, 1, 0]


@pytest.mark.parametrize("n", DIMS)
def test_simulator_is_euclidean_equivariant(n):
    x, v, c = state(n)
    q, t = random_euclidean(n, torch.Generator().manual_seed(n))
    sim = with_sizes("tiny", steps=200)
    x_end, _ = integrate(x, v, c, sim)
    x_end_g, _ = integrate(x @ q.T + t, v @ q.T, c, sim)
    assert torch.allclose(x_end_g, x_end @ q.T + t, atol=1e-9)


@pytest.mark.parametrize("n", DIMS)
def test_egnn_is_equivariant_gnn_is_not(n):
    torch.manual_seed(n)
    x, v, c = state(n, count=8, seed=n)
    q, t = random_euclidean(n, torch.Generator().manual_seed(100 + n))
    egnn, gnn = EGNN(n, hidden=16).double(), GNN(n, hidden=16).double()
    out = egnn(x, v, c)
    assert torch.allclose(egnn(x @ q.T + t, v @ q.T, c), out @ q.T + t, atol=1e-10)
    out = gnn(x, v, c)
    err = (gnn(x @ q.T + t, v @ q.T, c) - (out @ q.T + t)).abs().max()
    assert err > 1e-3


@pytest.mark.parametrize("model", ["GNN", "EGNN"])
def test_one_training_step(model, tmp_path):
    sim = PRESETS["tiny"]
    data = NBodyDataModule(tmp_path, "tiny", 3, batch_size=16, sim=sim)
    data.prepare_data()
    data.setup("fit")
    module = NBodyRegressor(model, 3, hidden=16)
    opt = module.configure_optimizers()
    batch = next(iter(data.train_dataloader()))
    before = {k: p.detach().clone() for k, p in module.named_parameters()}
    loss = module.training_step(batch, 0)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p).all() for p in module.parameters())
    assert any(not torch.equal(before[k], p) for k, p in module.named_parameters())


def test_data_cache_is_reused(tmp_path):
    data = NBodyDataModule(tmp_path, "tiny", 2)
    data.prepare_data()
    files = list((tmp_path / "nbody").glob("tiny-*/n2.npz"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    data.prepare_data()
    assert files[0].stat().st_mtime_ns == stamp
    assert not list(files[0].parent.glob("*.tmp"))


def test_ratio_interval():
    row = NBodyRow(2, {"GNN": [2.0, 4.0, 8.0], "EGNN": [1.0, 1.0, 1.0]}, {})
    mid, lo, hi = row.ratio_interval()
    assert mid == pytest.approx(4.0) and lo < mid < hi
    assert math.isnan(NBodyRow(2, {"GNN": [2.0], "EGNN": [1.0]}, {}).ratio_interval()[1])


def test_run_nbody_tiny_writes_outputs(tmp_path):
    rows = run_nbody("tiny", tmp_path / "data", tmp_path / "results",
                     training=NBodyTraining(epochs=1, seeds=(0, 1), hidden=(("GNN", 16), ("EGNN", 16))))
    out = tmp_path / "results" / "nbody"
    assert [r.n for r in rows] == [2, 3]
    md = (out / "nbody_tiny.md").read_text()
    assert "| 2 |" in md and "| 3 |" in md
    table = list(csv.DictReader((out / "nbody_tiny.csv").open()))
    assert [int(r["n"]) for r in table] == [2, 3]
    assert all(float(r["ratio_gmean"]) > 0 for r in table)
    assert (out / "nbody_tiny.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    runs = list(csv.DictReader((out / "runs.csv").open()))  # the runs.csv schema: one row per (n, model, seed)
    assert sorted((r["dataset"], r["model"], r["seed"]) for r in runs) == sorted(
        (f"nbody-n{n}", m, s) for n in (2, 3) for m in ("GNN", "EGNN") for s in ("0", "1"))
    assert {float(r["value"]) for r in runs if r["dataset"] == "nbody-n2" and r["model"] == "GNN"} == set(rows[0].mse["GNN"])


def test_cli_nbody(tmp_path, capsys):
    """`symbench nbody` runs the tiny preset end to end; an unknown preset is one line and exit status 2."""
    from symbench import cli

    assert cli.main(["nbody", "--preset", "tiny", "--root", str(tmp_path / "data"), "--results",
                     str(tmp_path / "results"), "--seeds", "0", "--no-progress"]) == 0
    assert [int(r["n"]) for r in csv.DictReader((tmp_path / "results" / "nbody" / "nbody_tiny.csv").open())] == [2, 3]
    assert cli.main(["nbody", "--preset", "huge"]) == 2
    assert capsys.readouterr().err.strip() == ("symbench: error: unknown preset 'huge'; choose from cpu, paper, "
                                               "tiny")
