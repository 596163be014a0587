"""Leaderboard rows: atomic appends that lose nothing under concurrency, and tables generated from them."""

import multiprocessing as mp
import os
import signal
import time
from pathlib import Path

import pytest

from symbench.config import available_benchmarks
from symbench.leaderboard import aggregate, render_csv, render_markdown, write_leaderboard
from symbench.models import available
from symbench.results import ROW_FIELDS, append_rows, read_rows


def row(model="resnet", seed=0, split="orig", metric="rmse", value=1.0, horizon=10, preset="cpu"):
    r = {k: "" for k in ROW_FIELDS}
    r.update(benchmark="rbc", dataset="rbc-generated", split=split, model=model, seed=seed, preset=preset,
             metric=metric, value=value, horizon=horizon, params=100, train_seconds=1.0, epochs=2, best_epoch=1,
             config_hash="abc", git_sha="x", versions="v", timestamp="t")
    return r


def _writer(path, worker, n):
    for i in range(n):
        append_rows(path, [row(model=f"w{worker}", seed=i, value=i)])


def test_concurrent_appends_lose_no_row(tmp_path):
    path = tmp_path / "rbc" / "runs.csv"
    append_rows(path, [row(model="existing")])
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, w, 200)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    rows = read_rows(path)
    assert len(rows) == 1 + 4 * 200  # the 4 x 200
    assert rows[0]["model"] == "existing"  # earlier rows kept
    got = {(r["model"], r["seed"]) for r in rows[1:]}
    assert got == {(f"w{w}", str(i)) for w in range(4) for i in range(200)}
    assert path.read_text().count("benchmark,") == 1  # one header


def _bench_like_writer(path, worker, runs, log):
    """A bench worker: one append of a run's 33 rows (5 splits x (rmse, ese) + per-step) per run, logged after."""
    for run in range(runs):
        append_rows(path, [row(model=f"w{worker}", seed=run, split=f"s{k}") for k in range(33)])
        with open(log, "a") as f:
            f.write(f"{run}\n")


def test_four_writers_one_killed_lose_and_repeat_no_row(tmp_path):
    """Four processes append whole runs to one runs.csv; one is SIGKILLed mid-way: every run of the others is there
    once, the killed one's runs are complete and in order up to the kill, and the file parses."""
    path = tmp_path / "rbc" / "runs.csv"
    ctx = mp.get_context("fork")
    logs = [tmp_path / f"w{w}.log" for w in range(4)]
    procs = [ctx.Process(target=_bench_like_writer, args=(path, w, 40, logs[w])) for w in range(4)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + 60
    while not (logs[0].exists() and len(logs[0].read_text().split()) >= 5) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(procs[0].pid, signal.SIGKILL)
    for p in procs:
        p.join()
    assert procs[0].exitcode == -signal.SIGKILL and [p.exitcode for p in procs[1:]] == [0, 0, 0]
    rows = read_rows(path)  # raises on a glued or short line
    keys = [(r["model"], r["seed"], r["split"]) for r in rows]
    assert len(keys) == len(set(keys)), "a row was appended twice"
    for w in (1, 2, 3):
        assert {k for k in keys if k[0] == f"w{w}"} == {(f"w{w}", str(i), f"s{k}") for i in range(40) for k in range(33)}
    killed = [int(seed) for model, seed, _ in keys if model == "w0"]
    runs = sorted(set(killed))
    assert runs == list(range(len(runs))) and len(killed) == 33 * len(runs)  # whole runs, none skipped
    logged = len(logs[0].read_text().split())
    assert logged <= len(runs) <= logged + 1  # at most the run being logged when the kill came


def test_bad_rows_and_foreign_header_leave_file_untouched(tmp_path):
    path = tmp_path / "runs.csv"
    append_rows(path, [row()])
    before = path.read_text()
    bad = row()
    bad["surprise"] = 1
    with pytest.raises(ValueError, match="unknown fields"):
        append_rows(path, [row(), bad])
    assert path.read_text() == before
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="another header"):
        append_rows(other, [row()])
    assert other.read_text() == "a,b\n1,2\n"


def test_aggregate_mean_std_over_seeds_and_table_layout(tmp_path):
    rows = [row(seed=s, value=v) for s, v in [(0, 1.0), (1, 2.0), (2, 3.0)]]
    rows += [row(split="rot", seed=s, value=v) for s, v in [(0, 4.0), (1, 6.0)]]
    rows += [row(metric="ese", seed=0, value=0.5), row(model="unet", seed=0, value=0.25)]
    path = tmp_path / "rbc" / "runs.csv"
    append_rows(path, rows)
    cells = aggregate(read_rows(path))
    c = cells[("cpu", "resnet", "orig", "rmse", "10")]
    assert (c.mean, c.std, c.n) == (2.0, 1.0, 3)
    assert cells[("cpu", "resnet", "rot", "rmse", "10")].std == pytest.approx(2 ** 0.5)
    md = render_markdown("rbc", read_rows(path), model_order=["unet", "resnet"])
    header = next(line for line in md.splitlines() if line.startswith("| model"))
    assert header.split(" | ")[1:4] == ["RMSE Orig", "RMSE Rot", "ESE Orig"]
    lines = md.splitlines()
    assert lines.index(next(x for x in lines if x.startswith("| unet"))) < lines.index(
        next(x for x in lines if x.startswith("| resnet")))
    assert "2.000 ± 1.000" in md and "5.000 ± 1.414" in md
    written = write_leaderboard("rbc", tmp_path)
    assert all(p.exists() for p in written)
    assert "resnet,orig,rmse,10,2,1,3" in written[1].read_text()


# The leaderboard benchmarks' rows; a study's runs.csv (results/nbody/, ...) has no committed leaderboard tables.
COMMITTED = sorted(p for p in (Path(__file__).resolve().parents[1] / "results").glob("*/runs.csv")
                   if p.parent.name in available_benchmarks())


@pytest.mark.parametrize("runs_csv", COMMITTED, ids=[p.parent.name for p in COMMITTED])
def test_committed_tables_are_what_symbench_leaderboard_regenerates(runs_csv):
    """`results/<benchmark>/leaderboard.{md,csv}` are generated, never edited by hand."""
    rows = read_rows(runs_csv)
    assert (runs_csv.parent / "leaderboard.md").read_text() == render_markdown(runs_csv.parent.name, rows,
                                                                               model_order=available())
    assert (runs_csv.parent / "leaderboard.csv").read_text() == render_csv(rows)


def test_best_mean_per_column_is_bold():
    rows = [row(model="a", value=0.2), row(model="b", value=0.1), row(model="a", split="rot", value=0.3),
            row(model="b", split="rot", value=0.4)]
    md = render_markdown("rbc", [{k: str(v) for k, v in r.items()} for r in rows])  # as read back from the CSV
    assert "| a | 0.200 | **0.300** |" in md and "| b | **0.100** | 0.400 |" in md


def test_paper_layout_lists_every_paper_column_and_marks_missing_models():
    """jetflow's leaderboard carries ICML 2022 Table 2's layout: its eleven columns in the paper's order, a model
    without rows shown as missing (not dropped), and the paper's numbers below."""
    rows = [row(model=m, split=s, value=v, horizon=20) for m, s, v in
            [("conv", "test_future", 0.3), ("equiv", "test_future", 0.2), ("conv", "test_domain", 0.4),
             ("equiv", "test_domain", 0.5)]]
    md = render_markdown("jetflow", [{k: str(v) for k, v in r.items()} for r in rows])
    lines = md.splitlines()
    header = next(x for x in lines if x.startswith("| split | Conv"))
    assert header.split(" | ")[1:5] == ["Conv", "Lift", "RGroup", "E2CNN"] and header.count(" | ") == 11
    future_line = next(x for x in lines if x.startswith("| Future |"))
    future = future_line.split(" | ")
    assert future[1] == "0.300" and future[2] == "missing" and future[4] == "**0.200**"
    assert future_line.count("missing") == 9
    assert next(x for x in lines if x.startswith("| paper Future |")).split(" | ")[1] == "0.22"
    assert "| split |" not in render_markdown("rbc", [{k: str(v) for k, v in r.items()} for r in rows])
