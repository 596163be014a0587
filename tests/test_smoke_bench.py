"""End to end on PhiFlow data: `symbench bench smoke-rotation --preset tiny` for every smoke model, the regulariser
added linearly by the Lightning module, and the ICML 2022 Table 1 layout generated from the rows."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from symbench import cli, models
from symbench.config import benchmark_models, resolve
from symbench.forecast import ForecastModule
from symbench.leaderboard import paper_values, render_table1
from symbench.models.mlp import mlp_parameters
from symbench.results import read_rows

ROOT = Path(__file__).resolve().parents[1]
SMOKE_MODELS = benchmark_models("smoke-rotation")


@pytest.fixture(scope="session")
def smoke_bench(smoke_root, tmp_path_factory):
    """Every smoke model trained one epoch and tested on both splits at the tiny preset."""
    out = tmp_path_factory.mktemp("smoke-bench")
    args = ["bench", "smoke-rotation", "--preset", "tiny", "--root", str(smoke_root), "--results",
            str(out / "results"), "--runs", str(out / "runs"), "--no-progress"]
    assert cli.main(args) == 0
    assert cli.main(["leaderboard", "--benchmark", "smoke-rotation", "--results", str(out / "results")]) == 0
    return out


def test_every_smoke_model_is_benchmarked_on_both_splits(smoke_bench):
    rows = read_rows(smoke_bench / "results" / "smoke-rotation" / "runs.csv")
    assert {"mlp", "conv", "equiv", "rpp", "combo", "clcnn", "lift", "rgroup"} <= set(SMOKE_MODELS)
    for model in SMOKE_MODELS:
        mine = [r for r in rows if r["model"] == model and r["metric"] == "rmse"]
        assert {r["split"] for r in mine} == {"test_future", "test_domain"}, model
        assert all(math.isfinite(float(r["value"])) and r["horizon"] == "4" for r in mine)
    params = {r["model"]: int(r["params"]) for r in rows}
    conv = params["conv"]
    mlp = resolve("smoke-rotation", "tiny", "mlp", 0, use_best=False)
    frames, grid, hp = mlp.data["in_frames"], mlp.model_hparams["grid_size"], mlp.model_hparams
    assert params.pop("mlp") == mlp_parameters(frames * 2 * grid**2, 2 * grid**2,  # its own width (velocity fields)
                                               (hp["hidden_width"],) * (hp["layers"] - 1))
    for model, n in params.items():  # matched parameter budgets (within 10 %) at the preset's width
        if model == "clcnn":  # a kernel per pixel: ConvNet's count times the pixels (symbench.models.budget)
            assert n > 100 * conv, (model, n, conv)
            continue
        assert n == 0 if models.spec(model).family == "baseline" else abs(n - conv) <= 0.1 * conv, (model, n, conv)
    table = (smoke_bench / "results" / "smoke" / "table1_tiny.md").read_text()
    assert "| rotation | Future |" in table and "| rotation | Domain |" in table and "rgroup" in table


def test_table1_layout_means_and_stds_over_seeds():
    rows = {"rotation": [], "translation": [], "scaling": []}
    for seed, value in [("0", 1.0), ("1", 3.0)]:
        for model, offset in [("conv", 0.0), ("rgroup", -0.5)]:
            rows["rotation"].append({"preset": "cpu", "model": model, "split": "test_domain", "metric": "rmse",
                                     "horizon": "20", "seed": seed, "value": str(value + offset)})
    md = render_table1(rows, "cpu")
    line = next(l for l in md.splitlines() if l.startswith("| rotation | Domain |"))
    # mean of (1, 3) = 2, sample std = sqrt(2); rgroup is 0.5 lower and bold
    # 95 % interval: t_{0.975, 1} = 12.706 times std / sqrt(2)
    assert line == "| rotation | Domain | 2.000 ± 1.414 [-10.706, 14.706] | **1.500 ± 1.414 [-11.206, 14.206]** |"
    assert "| rotation | Future |  |  |" in md
    assert md.count("| scaling |") == 2 + 2  # ours (empty) and the paper's
    assert paper_values("smoke-rotation")["rmse"]["test_domain"]["rsteer"] == 0.67  # RSteer, the paper's best
    assert "| scaling | Domain | 1.81 | 0.95 | 0.87 | 0.86 | 0.85 | 0.83 | 0.77 | 0.86 | 0.73 |" in md  # rsteer_scale
    assert "| translation | Future | 1.56 | 0.94 | — | 0.92 | 1.02 | 0.92 | 0.87 | 0.71 | — |" in md
    # the seeds are counted per family over the trained models (baselines are deterministic and not counted)
    assert "(rotation 2; translation –; scaling –;" in md
    rows["scaling"] = [{**r, "seed": "0"} for r in rows["rotation"]] + [
        {**rows["rotation"][0], "model": "persistence", "seed": s} for s in ("0", "1", "2", "3")] + [
        {**rows["rotation"][1], "seed": s} for s in ("1", "2")]
    assert "scaling 1-3;" in render_table1(rows, "cpu")  # conv one seed, rgroup three


class _Penalised(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(2.0))

    def forward(self, x):
        return x[:, -1] * self.w

    def regularization_loss(self):
        return self.w.abs()


def test_regulariser_enters_the_loss_linearly_with_alpha(monkeypatch):
    """alpha * R, not (alpha * R)^2 (Rose-STL-Lab/Approximately-Equivariant-Nets squared it), and not silently
    skipped."""
    monkeypatch.setattr(models, "build", lambda *a, **k: _Penalised())
    x = torch.zeros(2, 3, 2, 4, 4)
    batch = (x, torch.zeros(2, 1, 2, 4, 4))
    losses = {}
    for alpha in (0.0, 0.25):  # alpha * |w| = 0.5, (alpha * |w|)^2 = 0.25: the two wirings differ
        module = ForecastModule(model="conv", in_frames=3, train_steps=1, alpha=alpha)
        module.log = lambda *a, **k: None
        losses[alpha] = module.training_step(batch, 0).item()
    assert losses[0.25] - losses[0.0] == pytest.approx(0.25 * 2.0)


def test_every_smoke_model_has_one_search_space_with_the_icml_ranges():
    from symbench.sweep.space import load_space

    files = sorted((ROOT / "sweeps").glob("*/*.yaml"))
    for bench in ("smoke-translation", "smoke-rotation", "smoke-scaling"):
        for model in (m for m in benchmark_models(bench) if models.spec(m).family != "baseline"):  # nothing to tune
            covering = [f for f in files if _names(f, bench) and load_space(bench, model, f).covers(model)]
            assert len(covering) == 1, (bench, model, covering)
            space = load_space(bench, model, preset="cpu")
            assert space.ranges["model.lr"] == {"low": 1e-5, "high": 1e-2, "log": True}  # ICML 2022 Table 3
            assert space.ranges["data.train_steps"] == {"low": 3, "high": 6}
            assert max(space.grid["model.model_hparams.width"]) <= 64  # narrowed for the 32x32 cpu grid
    assert load_space("smoke-rotation", "rgroup").ranges["model.model_hparams.banks"] == {"low": 1, "high": 4}
    assert load_space("smoke-rotation", "rgroup").ranges["model.alpha"] == [0.0, 1e-2, 1e-4, 1e-6]


def _names(file, bench) -> bool:
    import yaml

    named = yaml.safe_load(file.read_text())["benchmark"]
    return bench in (named if isinstance(named, list) else [named])


def test_smoke_models_share_one_plot_family_with_distinct_colours():
    from symbench.plots import _families, model_style

    groups = _families(["resnet", "equ_rot_resnet", "conv", "rgroup"])
    assert groups == {"resnet": ["resnet", "equ_rot_resnet"], "all": ["conv", "rgroup"]}
    assert model_style("conv")["color"] != model_style("rgroup")["color"]


def test_scale_steerable_models_run_the_scaling_benchmark_and_fill_table1s_rsteer_column(tmp_path):
    """sesn / rsteer_scale / rsteer_ts end to end on the tiny scaling family; the scaling RSteer of Table 1 is
    rsteer_scale, shown in the `rsteer` column."""
    out = tmp_path
    names = ["conv", "sesn", "rsteer_scale", "rsteer_ts"]
    args = ["bench", "smoke-scaling", "--preset", "tiny", "--root", str(out / "data"), "--results",
            str(out / "results"), "--runs", str(out / "runs"), "--no-progress", "--models", *names]
    assert cli.main(args) == 0
    rows = read_rows(out / "results" / "smoke-scaling" / "runs.csv")
    params = {r["model"]: int(r["params"]) for r in rows}
    assert set(params) == set(names)
    assert all(abs(n - params["conv"]) <= 0.1 * params["conv"] for n in params.values()), params
    rmse = {(r["model"], r["split"]): float(r["value"]) for r in rows if r["metric"] == "rmse"}
    assert len(rmse) == 8 and all(math.isfinite(v) for v in rmse.values())
    md = render_table1({"scaling": rows}, "tiny")
    header = next(l for l in md.splitlines() if l.startswith("| symmetry | split |"))
    columns = [c.strip() for c in header.strip("|").split("|")][2:]
    assert columns == ["conv", "rsteer", "sesn", "rsteer_ts"]
    line = next(l for l in md.splitlines() if l.startswith("| scaling | Future |"))
    cells = [c.strip().strip("*") for c in line.strip("|").split("|")][2:]
    assert cells[1].startswith(f"{rmse[('rsteer_scale', 'test_future')]:.3f}")


def test_committed_table1_is_what_the_rows_and_the_papers_numbers_regenerate(tmp_path):
    """results/smoke/table1_cpu.md: our rows from results/smoke-*/runs.csv, the paper's from the benchmark.yaml files."""
    import shutil

    from symbench.leaderboard import write_family_tables

    results = Path(__file__).resolve().parents[1] / "results"
    for bench in ("smoke-translation", "smoke-rotation", "smoke-scaling"):
        (tmp_path / bench).mkdir()
        shutil.copy(results / bench / "runs.csv", tmp_path / bench / "runs.csv")
    write_family_tables(tmp_path)
    assert (tmp_path / "smoke" / "table1_cpu.md").read_text() == (results / "smoke" / "table1_cpu.md").read_text()
