"""Group-equivariant digit classifiers (:mod:`symbench.studies.digits.model`) and the data-scaling benchmark
(:mod:`symbench.studies.digits.run`): invariance on exact grid transformations, parameter matching, the power-law fit, resumable
results, the report's claims and the command line."""

from __future__ import annotations

import math

import pytest
import torch

from datamodules.digits import DigitsSizes
from symbench import cli
from symbench.symmetry import D4
from symbench.provenance import source_revision
from symbench.results import read_rows
from symbench.studies.digits import run as bench
from symbench.studies.digits import model as g

TINY_SIZES = DigitsSizes((32, 64), 32, 32)
TINY_TRAINING = bench.DigitsTraining(width=4, steps=2, lr=1e-3, min_epochs=1, evals=1, scalars=4, kernel=3)


def _model(group: str, fields: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    model = g.GroupCNN(group, fields, scalars=6, kernel=5)
    # Train-mode steps move the batch-norm statistics away from their init, so eval mode tests non-trivial norms.
    model.train()
    with torch.no_grad():
        model(torch.rand(16, 1, 29, 29))
    return model.eval()


def _invariance_errors(model: torch.nn.Module, elements) -> list[float]:
    x = torch.rand(4, 1, 29, 29)
    with torch.no_grad():
        y = model(x)
        scale = y.abs().max().item()
        return [(model(g.grid_transform(x, e)) - y).abs().max().item() / scale for e in elements]


@pytest.mark.parametrize("group", [name for name in g.GROUPS if name != "e"])
def test_group_models_are_invariant_to_their_grid_elements(group):
    errors = _invariance_errors(_model(group), g.GRID_ELEMENTS[group])
    assert max(errors) < 1e-5, errors


@pytest.mark.parametrize("group", ["C4", "C8", "SO2"])
def test_rotation_models_are_not_invariant_to_flips(group):
    """The rotation-only groups must not be accidentally flip-invariant (else D_N and O(2) would add nothing)."""
    assert min(_invariance_errors(_model(group), [D4(0, True), D4(1, True)])) > 1e-3


def test_trivial_group_model_is_not_invariant():
    errors = _invariance_errors(_model("e", fields=8), [D4(1), D4(2), D4(0, True)])
    assert min(errors) > 1e-3, errors


def test_grid_transform_is_the_plain_flip_and_rotation():
    """The shared D4 action on scalar images is bit-identical to the former flip(-1) then torch.rot90."""
    x = torch.rand(3, 2, 29, 29)
    for q in range(-1, 5):
        for f in (False, True):
            expected = torch.rot90(x.flip(-1) if f else x, q, dims=(-2, -1))
            assert torch.equal(g.grid_transform(x, D4(q, f)), expected), (q, f)


def test_grid_transform_group_law():
    """flip then rotate: r^4 = e, s^2 = e and s r s = r^-1 on the grid, composed as D4 elements."""
    x = torch.rand(2, 1, 29, 29)
    s, r = D4(0, True), D4(1)
    assert torch.equal(g.grid_transform(x, D4(4)), x)
    assert torch.equal(g.grid_transform(g.grid_transform(x, s), s), x)
    srs = g.grid_transform(g.grid_transform(g.grid_transform(x, s), r), s)
    assert torch.equal(srs, g.grid_transform(x, D4(3))) and torch.equal(srs, g.grid_transform(x, s @ r @ s))


def test_parameter_count_is_the_quadratic_used_for_matching():
    """matched_fields relies on P(k) being exactly quadratic in the field count: check at k = 5 against a build."""
    p = [g._params_at("D4", k, 32, 5) for k in (1, 2, 3)]
    a = (p[2] - 2 * p[1] + p[0]) / 2
    b = p[1] - p[0] - 3 * a
    c = p[0] - a - b
    assert g.n_params(g.GroupCNN("D4", 5)) == a * 25 + b * 5 + c


def test_matched_fields_pick_the_closest_count():
    target = g.plain_target(12)
    for group in g.GROUPS:
        k = g.matched_fields(group, target)
        gap = abs(g._params_at(group, k, 32, 5) - target)
        assert all(gap <= abs(g._params_at(group, j, 32, 5) - target) for j in (k - 1, k + 1) if j >= 1), group
        assert gap / target < 0.2, (group, k, gap)
    assert g.matched_fields("e", target) == 12


def test_unknown_group_is_one_clear_error():
    with pytest.raises(ValueError, match="unknown group 'C0x'"):
        g.gspace("C0x")


def test_power_law_fit_recovers_slope_and_intercept():
    ns = [250, 500, 1000, 2000]
    slope, intercept, r2 = bench.power_law(ns, [3.0 * n ** -0.45 for n in ns])
    assert slope == pytest.approx(-0.45, abs=1e-10)
    assert intercept == pytest.approx(math.log10(3.0), abs=1e-10)
    assert r2 == pytest.approx(1.0, abs=1e-12)
    _, _, r2_noisy = bench.power_law(ns, [0.1, 0.02, 0.08, 0.01])
    assert r2_noisy < 0.9


def _run(task: str, group: str, n: int, error: float, seed: int = 0) -> bench.DigitsRun:
    return bench.DigitsRun(task, group, n, seed, error, error, 10, 1000, 3, 1.0)


def test_report_states_where_the_matching_group_wins_and_the_slopes():
    ns = (250, 1000)
    runs = [_run("rotated", "e", n, 0.5 * (n / 250) ** -0.5) for n in ns]
    runs += [_run("rotated", "SO2", 250, 0.2), _run("rotated", "SO2", 1000, 0.3)]  # wins at 250 only
    runs += [_run("rotated", "C4", n, 0.25 * (n / 250) ** -0.5, seed=s) for n in ns for s in (0, 1)]
    text = "\n".join(bench.task_report("rotated", runs, 2000))
    assert "SO(2) has the lowest error at 1 of 2 sizes (250)" in text
    assert "| 1000 | 25.00 | **12.50** | 30.00 | C4 |" in text
    assert "| {e} | 1000 | -0.500 | 1.000 |" in text
    assert "| SO(2) | 1000 | 0.292 |" in text


def test_run_digits_trains_appends_resumes_and_reports(fake_root, tmp_path, monkeypatch):
    results = tmp_path / "results"
    runs = bench.run_digits("tiny", fake_root, results, tasks=["flipped"], groups=["e", "D4"],
                            sizes=TINY_SIZES, training=TINY_TRAINING)
    assert sorted((r.group, r.n_train) for r in runs) == [("D4", 32), ("D4", 64), ("e", 32), ("e", 64)]
    stored = bench.read_runs(bench.csv_path(results, "flipped", "tiny"))
    assert [(r.group, r.n_train, r.test_error) for r in stored] == [(r.group, r.n_train, pytest.approx(r.test_error))
                                                                   for r in sorted(runs, key=lambda r: (r.group != "e",
                                                                                                        r.n_train))]
    assert all(0.0 <= r.test_error <= 1.0 and r.best_step in (1, 2) for r in stored)
    # A second call finds every run done and trains nothing; a new group is added without losing the old rows.
    monkeypatch.setattr(bench, "train_one", lambda *a, **k: pytest.fail("retrained a finished run"))
    assert bench.run_digits("tiny", fake_root, results, tasks=["flipped"], groups=["e", "D4"],
                            sizes=TINY_SIZES, training=TINY_TRAINING) == []
    monkeypatch.setattr(bench, "train_one", lambda task, group, n, seed, *a, **k: _run(task, group, n, 0.5))
    bench.run_digits("tiny", fake_root, results, tasks=["flipped"], groups=["O2"], sizes=TINY_SIZES,
                     training=TINY_TRAINING)
    assert len(bench.read_runs(bench.csv_path(results, "flipped", "tiny"))) == 6
    rows = read_rows(results / "digits" / "runs.csv")  # every finished run once, in the runs.csv schema
    assert sorted((r["model"], r["dataset"], r["split"]) for r in rows) == sorted(
        (g, f"mnist-flipped-n{n}", s) for g in ("e", "D4", "O2") for n in (32, 64) for s in ("test", "val"))
    cached = next((fake_root / "digits").glob("flipped-*.npz")).stem.removeprefix("flipped-")
    assert {(r["data_key"], r["code_rev"]) for r in rows} == {(cached, source_revision("symbench.studies.digits.run"))}
    report = (results / "digits" / "digits_tiny.md").read_text()
    assert "## flipped digits" in report and "| O(2) |" in report
    assert (results / "digits" / "digits_tiny.png").stat().st_size > 1000


def test_best_checkpoint_is_tested(fake_root, monkeypatch):
    """The reported test error is that of the lowest-validation checkpoint, not of the last weights: validation
    errors are forced to 0.5, 0.1, 0.9 at steps 2, 4, 6, so the weights tested must be those of step 4."""
    from datamodules.digits import DigitsDataModule

    cfg = bench.DigitsTraining(width=4, steps=6, lr=0.05, min_epochs=1, evals=3, scalars=4, kernel=3)
    data = DigitsDataModule(fake_root, "rotated", 64, TINY_SIZES, batch_size=16)
    forced, seen = iter([0.5, 0.1, 0.9]), {}

    def fake_validation_end(module):
        seen[module.trainer.global_step] = module.net.head.weight.detach().clone()
        module.log("val_error", next(forced))
        module.val_acc.reset()

    def remember_tested(module):
        seen["tested"] = module.net.head.weight.detach().clone()

    monkeypatch.setattr(bench.DigitsClassifier, "on_validation_epoch_end", fake_validation_end)
    monkeypatch.setattr(bench.DigitsClassifier, "on_test_epoch_start", remember_tested, raising=False)
    run = bench.train_one("rotated", "e", 64, 0, data, cfg)
    assert sorted(k for k in seen if k != "tested") == [2, 4, 6]
    assert run.best_step == 4 and run.val_error == pytest.approx(0.1)
    assert torch.equal(seen["tested"], seen[4]) and not torch.equal(seen[4], seen[6])


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert cli.main(["digits", "--preset", "huge", "--results", str(tmp_path)]) == 2
    assert cli.main(["digits", "--report-only", "--preset", "cpu", "--results", str(tmp_path)]) == 2
    assert cli.main(["digits", "--preset", "tiny", "--groups", "C5x", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("symbench: error: ") for line in err)
    assert "unknown preset 'huge'" in err[0] and "no digits results" in err[1] and "C5x" in err[2]


def test_cli_runs_on_a_users_idx_files(tmp_path, capsys):
    """`symbench digits --idx-dir` trains on MNIST-format IDX files (here written by the test) and names its
    outputs after the directory, so they never mix with the MNIST results."""
    from digit_files import idx_dir

    files = idx_dir(tmp_path / "my-digits", n_train=400, n_test=64)
    results = tmp_path / "results"
    args = ["digits", "--preset", "tiny", "--root", str(tmp_path / "data"), "--results", str(results),
            "--idx-dir", str(files), "--tasks", "rotated", "--groups", "e", "--no-progress"]
    assert cli.main(args) == 0
    csv_file = results / "digits" / "digits-my-digits_rotated_tiny.csv"
    assert [r.n_train for r in bench.read_runs(csv_file)] == [64, 128]
    report = (results / "digits" / "digits-my-digits_tiny.md").read_text()
    assert f"IDX files in {files}" in report
    assert not (results / "digits" / "digits_tiny.md").exists()
