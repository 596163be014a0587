"""Heat-diffusion benchmark (ICLR 2021 appendix C, Table 5): the shallow Equ-CNNs, the thermal-energy metric and a
tiny end-to-end run through `symbench bench heat`."""

from __future__ import annotations

import csv

import pytest
import torch

from symbench import cli, models
from symbench.fields import FieldLayout
from symbench.forecast import ForecastModule
from symbench.metrics import ThermalEnergyL1

HEAT = FieldLayout.of("temperature:scalar")
HEAT_MODELS = ("cnn", "equ_mag_cnn", "equ_rot_cnn", "equ_scale_cnn")


def test_thermal_energy_l1_analytic():
    """|sum(pred) - sum(target)| per sample, step and scalar channel, averaged; vector channels are ignored."""
    layout = FieldLayout.of("velocity:vector", "temperature:scalar")
    target = torch.rand(3, 2, 3, 8, 8)
    pred = target.clone()
    pred[:, :, 2] += torch.tensor([0.5, -0.25]).view(1, 2, 1, 1)  # step 1: +0.5, step 2: -0.25 per pixel
    pred[:, :, :2] += 7.0  # velocity errors must not count
    metric = ThermalEnergyL1(layout.scalar_channels)
    metric.update(pred[:2], target[:2])
    metric.update(pred[2:], target[2:])  # batch boundaries do not matter
    assert metric.compute().item() == pytest.approx((0.5 + 0.25) / 2 * 64)


def test_energy_l1_needs_scalar_fields():
    with pytest.raises(ValueError, match="energy_l1 needs scalar fields"):
        ForecastModule("cnn", {"width": 4, "layers": 2}, fields=("velocity:vector",), in_frames=2, energy_l1=True)


@pytest.mark.parametrize("name", HEAT_MODELS[1:])
def test_heat_equ_cnns_match_the_cnn_budget(name):
    kwargs = {"in_frames": 10, "layout": HEAT, "width": 32, "layers": 4}
    budget = sum(p.numel() for p in models.build("cnn", **kwargs).parameters())
    params = sum(p.numel() for p in models.build(name, **kwargs).parameters())
    assert abs(params - budget) / budget < 0.1, (name, params, budget)


def test_equ_mag_cnn_is_magnitude_equivariant_and_cnn_is_not():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 1, 16, 16)
    a = torch.tensor([0.3, 4.0]).view(2, 1, 1, 1, 1)
    errors = {}
    for name in ("cnn", "equ_mag_cnn"):
        net = models.build(name, in_frames=4, layout=HEAT, width=8, layers=3).eval()
        with torch.no_grad():
            y, ya = net(x), net(a * x)
        errors[name] = ((ya - a[:, 0] * y).abs().max() / (a[:, 0] * y).abs().max()).item()
    assert errors["equ_mag_cnn"] < 1e-5 and errors["cnn"] > 1e-2, errors


def test_bench_heat_tiny_reports_energy_and_table5_layout(tmp_path):
    args = ["--preset", "tiny", "--root", str(tmp_path / "data"), "--results", str(tmp_path / "results")]
    assert cli.main(["bench", "heat", *args, "--runs", str(tmp_path / "runs"), "--no-progress"]) == 0
    rows = list(csv.DictReader((tmp_path / "results" / "heat" / "runs.csv").open()))
    energy = {(r["model"], r["split"]) for r in rows if r["metric"] == "energy_l1"}
    benched = ("persistence", "linear", *HEAT_MODELS)  # the parameter-free baselines come first
    assert energy == {(m, s) for m in benched for s in ("orig", "mag", "rot", "scale")}
    assert all(float(r["value"]) >= 0 for r in rows if r["metric"] == "energy_l1")
    board = (tmp_path / "results" / "heat" / "leaderboard.md").read_text()
    assert "| model | RMSE Orig | RMSE Mag | RMSE Rot | RMSE Scale | Energy L1 Orig |" in board
