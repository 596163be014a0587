"""The graded smoke sets of every family and kind (datamodules.smoke_strength, tiny preset: 16 x 16, 3 levels of 4
simulations, generated once per kind by the real solver) and the strength-of-breaking study on them."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from datamodules import smoke_strength
from stand_ins import Asymmetric
from symbench import cli
from symbench.results import read_rows
from symbench.stats import estimate
from symbench.studies import one_step, strength

# Level 0 is symmetric up to solver round-off (float64 PhiFlow stored as float32; measured ~7e-10 for rotation and
# ~2e-9 for the periodic translation box, against mean |value| ~0.01). Allowed: 1e-6 absolute.
ROUND_OFF = 1e-6
PAIRS = [(f, k) for f, kinds in smoke_strength.KINDS.items() for k in kinds]


@pytest.fixture(scope="module")
def strength_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("strength")
    for family, kind in PAIRS:
        smoke_strength.generate_preset("tiny", family, kind, root, progress=False)
    return root


def _errors(root: Path, family: str, kind: str) -> list[float]:
    p = smoke_strength.params("tiny", family, kind)
    directory = smoke_strength.default_dir(root, "tiny", p)
    return [smoke_strength.data_equivariance_error(np.array(smoke_strength.load_level(directory, i)[0]), family)
            for i in range(p.levels)]


@pytest.mark.parametrize("family,kind", PAIRS)
def test_exact_symmetry_at_zero_and_data_error_grows_with_strength(strength_root, family, kind):
    errors = _errors(strength_root, family, kind)
    assert errors[0] < ROUND_OFF  # every kind is the same symmetric set at eps = 0
    assert all(a < b for a, b in zip(errors, errors[1:]))
    assert errors[1] > 100 * ROUND_OFF  # a real, not a round-off, difference from level 1 on


def test_lab_frame_breaking_does_not_move_with_the_site():
    """wind: every simulation's force is its own site's buoyancy plus the one vector eps beta W (not turned with the
    site); field: one box per set (periodic x, the wave eps A), no per-site buoyancy factor."""
    p = smoke_strength.params("tiny", "rotation", "wind")
    last = p.levels - 1
    own = smoke_strength.params("tiny", "rotation", "buoyancy").configs(0)  # eps = 0: the sites' own buoyancy
    pushes = {(round(c.force_x - o.force_x, 12), round(c.force_y - o.force_y, 12)) for c, o in zip(p.configs(last), own)}
    assert pushes == {(p.max_eps * p.buoyancy * smoke_strength.WIND[0], 0.0)}
    assert [(c.cx, c.cy) for c in p.configs(last)] == [(c.cx, c.cy) for c in own]
    f = smoke_strength.params("tiny", "translation", "field")
    assert f.forcing(last).wave == pytest.approx(f.max_eps * smoke_strength.WAVE) and f.forcing(last).periodic_x
    assert {c.force_y for c in f.configs(last)} == {f.buoyancy} and f.site_factors(last) == (1.0,) * 4
    b = smoke_strength.params("tiny", "translation", "buoyancy")
    assert [c.force_y for c in b.configs(last)] == pytest.approx([b.buoyancy * (1 + d) for d in smoke_strength.OFFSETS])
    assert b.forcing(last).wave == 0 and [c.cx for c in b.configs(0)] == [2.0, 6.0, 10.0, 14.0]


def test_translation_sites_are_shifts_of_site_zero(strength_root):
    p = smoke_strength.params("tiny", "translation", "buoyancy")
    x = np.array(smoke_strength.load_level(smoke_strength.default_dir(strength_root, "tiny", p), 0)[0])
    scale = np.abs(x[1]).mean()
    assert np.abs(np.roll(x[0], 4, axis=-1) - x[1]).mean() < ROUND_OFF  # site 1 = site 0 shifted 4 cells to +x
    assert np.abs(np.roll(x[0], -4, axis=-1) - x[1]).mean() > 0.1 * scale


def test_study_writes_one_row_per_run_and_resumes_after_a_kill(strength_root, tmp_path, monkeypatch):
    trained = []

    def fake_train(name, train, layout, cfg, bar=None, trainer=None, seed=0, symmetry="rotation"):
        trained.append((symmetry, name, seed))
        if len(trained) == stop_at:
            raise KeyboardInterrupt  # a kill in the middle of the study
        return Asymmetric().eval()

    monkeypatch.setattr(one_step, "train_model", fake_train)
    run = dict(root=strength_root, results=tmp_path, families=["translation"], kinds=["field"], progress=False)
    stop_at = 3
    with pytest.raises(KeyboardInterrupt):
        strength.run_strength("tiny", seeds=[0, 1], **run)
    stop_at = 0
    result = strength.run_strength("tiny", seeds=[0, 1], **run)
    # killed during seed 0 level 1's conv; the rerun trains it again and goes on, never seed 0 level 0 again
    seed0 = ["conv", "rgroup", "conv"] + ["conv", "rgroup", "conv", "rgroup"]
    assert trained == [("translation", m, 0) for m in seed0] + [("translation", m, 1) for m in ("conv", "rgroup") * 3]
    rows = read_rows(tmp_path / "strength" / "runs.csv")
    keys = [(r["dataset"], r["model"], r["seed"], r["metric"]) for r in rows]
    assert len(keys) == len(set(keys)) == 3 * (1 + 4 * 2)  # per level: E_data once, 4 models x 2 seeds
    assert {r["dataset"] for r in rows} == {f"smoke-strength-translation-field-{i}" for i in range(3)}
    assert [s.rmse[2, "conv"].n for s in result.summaries] == [2]
    trained.clear()
    strength.run_strength("tiny", seeds=[0, 1], **run)  # everything done: nothing trains
    assert trained == []
    strength.run_strength("tiny", seeds=[0], epochs=1, **run)  # another configuration: trained again
    assert len(trained) == 3 * 2
    out = tmp_path / "strength"
    md = (out / "strength_tiny.md").read_text()
    assert "## Where does relaxed overtake strict?" in md and "## translation / field" in md
    assert (out / "strength_tiny.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*"))  # no temporary files left behind


def _summary(rgroup: dict[int, list[float]], equiv: list[float]) -> strength.SetSummary:
    """rotation / wind with hand-made RMSEs: equiv the same at every level, rgroup per level, conv worse."""
    data = smoke_strength.params("tiny", "rotation", "wind")
    def run(lv: int, m: str, s: int, metrics: dict[str, float]) -> strength.StrengthRun:
        return strength.StrengthRun(lv, m, s, metrics, family="rotation", kind="wind")

    runs = [run(lv, strength.DATA, 0, {"equiv_error": 0.1 * lv}) for lv in range(3)]
    for lv in range(3):
        for s in range(3):
            runs += [run(lv, "equiv", s, {"rmse": equiv[s]}), run(lv, "conv", s, {"rmse": 9.0 + s}),
                     run(lv, "rgroup", s, {"rmse": rgroup[lv][s]})]
    return strength.summarise(runs, "rotation", "wind", data, ["conv", "equiv", "rgroup"])


def test_report_says_where_relaxed_overtakes_strict_or_nowhere():
    equiv = [1.0, 1.1, 1.2]
    # level 0: higher than equiv; level 1: lower mean but overlapping intervals (a tie); level 2: clearly lower
    s = _summary({0: [2.0, 2.1, 2.2], 1: [0.9, 1.2, 1.0], 2: [0.5, 0.55, 0.6]}, equiv)
    assert s.verdicts("rgroup", "equiv") == {0: "**no** 0/3", 1: "tie 2/3", 2: "yes 3/3"}
    assert s.overtakes("rgroup", "equiv") == 2 and s.overtakes("rgroup", "conv") == 0
    assert s.answers() == [
        "rotation / wind: `rgroup` overtakes `equiv` (strict): from eps = 1 (level 2, E_data 0.2; yes 3/3)",
        "rotation / wind: `rgroup` overtakes `conv` (plain): from eps = 0 (level 0, E_data 0; yes 3/3)"]
    never = _summary({lv: [1.0, 1.15, 1.2] for lv in range(3)}, equiv)  # ties everywhere
    assert never.overtakes("rgroup", "equiv") is None
    assert "`rgroup` overtakes `equiv` (strict): nowhere" in strength.markdown("tiny", [never], strength.StrengthTraining())
    rows = strength.records([s])
    assert len(rows) == 3 * 3 and rows[-1]["model"] == "rgroup" and rows[-1]["seeds"] == "3"
    e = estimate([0.5, 0.55, 0.6])
    assert (float(rows[-1]["rmse_mean"]), float(rows[-1]["rmse_lo"])) == pytest.approx((e.mean, e.lo), rel=1e-5)
    assert math.isclose(float(rows[-1]["eps"]), 1.0) and float(rows[-1]["data_equiv_error"]) == pytest.approx(0.2)


@pytest.mark.parametrize("argv,expected", [
    (["--families", "nope"], "unknown family 'nope'"),
    (["--families", "translation", "--kinds", "wind"], "unknown kind 'wind'"),
    (["--preset", "huge"], "unknown preset 'huge'"),
])
def test_cli_bad_input_is_one_line_and_generates_nothing(tmp_path, capsys, argv, expected):
    base = ["strength", "--preset", "tiny", "--root", str(tmp_path / "data"), "--results", str(tmp_path / "res")]
    assert cli.main(base + argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0]
    assert not (tmp_path / "data").exists() and not (tmp_path / "res").exists()


def test_cli_unwritable_results_is_one_line_before_any_simulation(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    argv = ["strength", "--preset", "tiny", "--root", str(tmp_path / "data"), "--results", str(blocker / "res")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--results" in err[0]
    assert not (tmp_path / "data").exists()
