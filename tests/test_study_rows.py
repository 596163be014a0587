"""Studies write runs.csv rows through one function (studies.common.append_study_rows); the one-off conversion of the
committed study results (scripts/convert_study_results.py) is checked on a tiny copy and reproduces the committed
runs.csv files exactly, leaving the studies' own files (and so their .md reports) untouched."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from scripts.convert_study_results import convert, study_sources
from symbench.provenance import source_revision
from symbench.results import ROW_FIELDS, read_rows
from symbench.studies.common import append_study_rows, study_config_hash
from symbench.studies.sr3d.run import training_presets as sr3d_presets

RESULTS = Path(__file__).resolve().parents[1] / "results"
ROW = {"dataset": "d", "model": "m", "seed": 0, "preset": "tiny", "split": "test", "metric": "mse", "value": 0.5,
       "params": 3, "config_hash": "abc"}
PROV = {"git_sha": "0123456789ab", "versions": "v", "timestamp": "t"}


def test_append_study_rows_completes_the_schema(tmp_path) -> None:
    path = append_study_rows(tmp_path, "nbody", [ROW, {**ROW, "seed": 1, "horizon": 4}])
    assert path == tmp_path / "nbody" / "runs.csv"
    assert path.read_text().splitlines()[0].split(",") == ROW_FIELDS
    first, second = read_rows(path)
    assert first["benchmark"] == "nbody" and first["horizon"] == "" and second["horizon"] == "4"
    assert len(first["git_sha"]) >= 7 and first["timestamp"][:2] == "20"  # provenance filled in now
    with pytest.raises(ValueError, match="outside runs.csv's: n_train"):
        append_study_rows(tmp_path, "nbody", [{**ROW, "n_train": 5}])
    assert len(read_rows(path)) == 2  # nothing half-written


def _tiny_copy(tmp_path: Path) -> Path:
    """The committed cpu study results, each CSV cut to its header and first data lines."""
    out = tmp_path / "results"
    for name in ("nbody/nbody_cpu.md", "nbody/nbody_cpu.csv", "sr3d/sr3d_cpu.csv",
                 "digits/digits_rotated_cpu.csv", "digits/digits_flipped_cpu.csv"):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        text = (RESULTS / name).read_text()
        (out / name).write_text(text if name.endswith(".md") or "nbody" in name else
                                "".join(text.splitlines(keepends=True)[:3]))
    return out


def test_convert_a_tiny_example(tmp_path) -> None:
    results = _tiny_copy(tmp_path)
    before = {p: p.read_bytes() for p in results.rglob("*") if p.is_file()}
    paths = convert(results, "cpu", lambda source: PROV)
    assert sorted(p.parent.name for p in paths) == ["digits", "nbody", "sr3d"]
    assert all(p.read_bytes() == data for p, data in before.items())  # the studies' own files stay as they were
    digits = read_rows(results / "digits" / "runs.csv")
    assert len(digits) == 2 * 4  # two runs per task, a test and a val row each
    assert digits[0] | PROV == digits[0] and digits[0]["dataset"] == "mnist-rotated-n250"
    assert [(r["split"], r["value"]) for r in digits[:2]] == [("test", "0.5345"), ("val", "0.55")]
    nbody = read_rows(results / "nbody" / "runs.csv")
    assert len(nbody) == 5 * 2 * 3 and nbody[0]["value"] == "0.02978" and nbody[0]["params"] == "133498"
    sr3d = read_rows(results / "sr3d" / "runs.csv")  # trilinear and conv: no weight deviations (NaN) -> no rows
    assert sorted({r["metric"] for r in sr3d}) == ["equiv_error", "mae"] and len(sr3d) == 2 * 3
    with pytest.raises(FileExistsError, match="runs once"):
        convert(results, "cpu", lambda source: PROV)


def test_committed_nbody_rows_are_the_committed_report() -> None:
    """nbody was rerun after the conversion (the EGNN's unread last-layer update removed): its runs.csv holds the
    rerun's own rows, from a clean tree, and the report shows the same numbers (4 significant digits)."""
    from symbench.studies.nbody.run import read_report_rows

    rows = read_rows(RESULTS / "nbody" / "runs.csv")
    assert rows and all(r["data_key"] and r["code_rev"] and not r["git_sha"].endswith("-dirty") for r in rows)
    report = read_report_rows(RESULTS / "nbody" / "nbody_cpu.md", RESULTS / "nbody" / "nbody_cpu.csv")
    expected = {(f"nbody-n{r.n}", model, seed): value for r in report for model in ("GNN", "EGNN")
                for seed, value in enumerate(r.mse[model])}
    assert {(r["dataset"], r["model"], int(r["seed"])): float(f"{float(r['value']):.4g}") for r in rows} == expected
    assert {r["params"] for r in rows if r["model"] == "EGNN"} == {str(report[0].params["EGNN"])}


# levels writes its own rows per (level, model, seed) since it has seeds; its committed runs.csv (the conversion of
# the one-seed table) is read back in tests/test_levels.py until the study is rerun.
@pytest.mark.parametrize("study", ["digits", "symmetry_discovery"])
def test_committed_runs_are_the_conversion_of_the_committed_results(tmp_path, study: str) -> None:
    committed = RESULTS / study / "runs.csv"
    first = read_rows(committed)[0]
    results = tmp_path / "results"
    shutil.copytree(RESULTS / study, results / study, ignore=shutil.ignore_patterns("runs.csv*", "*.png"))
    convert(results, "cpu", lambda source: {k: first[k] for k in PROV})
    assert (results / study / "runs.csv").read_text() == committed.read_text()


def test_committed_sr3d_rows_are_the_runs_of_its_table() -> None:
    """sr3d writes its own rows as it runs (3 seeds, L = 2 filter banks): one MAE row per run of sr3d_cpu.csv with
    its value, and the configuration hash of today's cpu preset."""
    from symbench.studies.sr3d.run import csv_path, read_runs

    rows = read_rows(RESULTS / "sr3d" / "runs.csv")
    runs = read_runs(csv_path(RESULTS, "cpu"))
    mae = {(r["dataset"].removeprefix("turb3d-"), r["model"], int(r["seed"])): float(r["value"])
           for r in rows if r["metric"] == "mae" and r["split"] == "test"}
    assert mae == {r.key: pytest.approx(r.test_mae, rel=1e-5) for r in runs} and len(runs) == 2 * 4 * 3
    assert {r["config_hash"] for r in rows} == {study_config_hash(sr3d_presets()["cpu"])}
    assert not any(r["git_sha"].endswith("-dirty") for r in rows)


def test_study_rows_carry_the_data_key_and_the_code_revision(tmp_path) -> None:
    """As bench rows do: ``data_key`` names the data (the generated set's key), ``code_rev`` the source of the study
    and, for levels, of each registry model's module."""
    from datamodules import smoke_levels, turb3d_sim
    from datamodules.nbody import PRESETS as NBODY_SIMS
    from symbench.studies import levels as levels_study

    sources = study_sources(_tiny_copy(tmp_path), "cpu")
    nbody, sr3d = (sources[s][1]() for s in ("nbody", "sr3d"))
    assert {(r["data_key"], r["code_rev"]) for r in nbody} == {
        (NBODY_SIMS["cpu"].digest(), source_revision("symbench.studies.nbody.run"))}
    assert sr3d and all(r["data_key"] == turb3d_sim.preset_params("cpu", r["dataset"].removeprefix("turb3d-")).key()
                        for r in sr3d)
    assert {r["code_rev"] for r in sr3d} == {source_revision("symbench.studies.sr3d.run")}
    runs = [levels_study.LevelRun(0, m, 1, {"equiv_error": 0.5}) for m in ("data", "conv", "equiv", "persistence")]
    levels = levels_study.study_rows(runs, "cpu", "abc", smoke_levels.preset("cpu"))
    assert {r["data_key"] for r in levels} == {smoke_levels.preset("cpu").key()}
    revision = {r["model"]: r["code_rev"] for r in levels}
    assert revision["data"] == source_revision("symbench.studies.levels")
    assert revision["equiv"] == source_revision("symbench.studies.levels", "symbench.models.equiv") != revision["conv"]
    assert revision["persistence"] == source_revision("symbench.studies.levels", "symbench.models.baselines")
    assert {(r["seed"], r["config_hash"]) for r in levels} == {(1, "abc")}
