"""Provenance of a row: git describe with the dirty flag, the code revision of the model and data module (in the
configuration hash), the data's content key, old runs.csv headers, one code revision per model in the leaderboard
and `bench --rerun-stale`'s choice of runs."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from datamodules import store
from symbench import provenance
from symbench.bench import is_stale
from symbench.config import resolve
from symbench.leaderboard import current_rows, render_markdown
from symbench.results import ROW_FIELDS, append_rows, read_rows


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                   capture_output=True)


def test_git_describe_marks_a_dirty_tree(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "a.py")
    _git(tmp_path, "commit", "-qm", "one")
    clean = provenance.git_describe(tmp_path)
    assert clean != "unknown" and not clean.endswith("-dirty")
    (tmp_path / "a.py").write_text("x = 2\n")
    assert provenance.git_describe(tmp_path) == clean + "-dirty"
    assert provenance.git_describe(tmp_path / "..") in ("unknown", provenance.git_describe(tmp_path / ".."))


@pytest.fixture
def source_copy(tmp_path, monkeypatch):
    """A copy of the two packages that :func:`provenance.code_revision` reads, in place of the real ones."""
    root = tmp_path / "repo"
    shutil.copytree(provenance.PACKAGES["symbench"], root / "src" / "symbench")
    shutil.copytree(provenance.PACKAGES["datamodules"], root / "datamodules")
    monkeypatch.setattr(provenance, "REPO_ROOT", root)
    monkeypatch.setattr(provenance, "PACKAGES", {"symbench": root / "src" / "symbench",
                                                 "datamodules": root / "datamodules"})
    provenance.code_revision.cache_clear()
    provenance.source_revision.cache_clear()
    yield root
    provenance.code_revision.cache_clear()
    provenance.source_revision.cache_clear()


def test_the_code_revision_follows_the_model_and_data_module_sources_and_enters_the_config_hash(source_copy):
    unet, resnet = provenance.code_revision("unet", "rbc"), provenance.code_revision("resnet", "rbc")
    cfg_hash = resolve("rbc", "tiny", "unet", 0).config_hash()
    assert unet != resnet
    with open(source_copy / "src" / "symbench" / "leaderboard.py", "a") as f:  # not imported by either: no change
        f.write("# edit\n")
    provenance.code_revision.cache_clear()
    assert provenance.code_revision("unet", "rbc") == unet
    for edited in ("src/symbench/layers/conv.py", "datamodules/windows.py"):  # imported by the U-net / the data
        with open(source_copy / edited, "a") as f:
            f.write("# edit\n")
        provenance.code_revision.cache_clear()
        assert provenance.code_revision("unet", "rbc") != unet, edited
        unet = provenance.code_revision("unet", "rbc")
    assert resolve("rbc", "tiny", "unet", 0).config_hash() != cfg_hash


def test_a_studys_source_revision_follows_its_own_modules(source_copy):
    """Study rows' ``code_rev``: the study's module and what it imports (its network), nothing else; the bench's
    ``code_revision`` is the same rule for a model's module and a datamodule."""
    nbody = provenance.source_revision("symbench.studies.nbody.run")
    assert provenance.code_revision("unet", "rbc") == provenance.source_revision("symbench.models.unet",
                                                                                 "datamodules.rbc")
    for edited, changes in (("src/symbench/studies/digits/model.py", False),
                            ("src/symbench/studies/nbody/model.py", True)):
        with open(source_copy / edited, "a") as f:
            f.write("# edit\n")
        provenance.source_revision.cache_clear()
        assert (provenance.source_revision("symbench.studies.nbody.run") != nbody) == changes, edited


def test_the_data_key_is_the_generator_key_or_a_content_hash_however_the_path_is_spelled(tmp_path, monkeypatch):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "a.npy").write_bytes(b"123")
    key = store.data_key(user)
    assert store.data_key(f"{user}/*.npy") == key  # a glob over the same files
    (tmp_path / "x").mkdir()
    monkeypatch.chdir(tmp_path)
    assert store.data_key("mine") == store.data_key("./mine/") == store.data_key(tmp_path / "x" / ".." / "mine") == key
    (user / "a.npy").write_bytes(b"124")
    assert store.data_key(user) != key
    (user / store.META_FILE).write_text(json.dumps({"key": "abc123"}))
    assert store.data_key(user) == "abc123"  # a generated dataset: the key its generator wrote


OLD_FIELDS = [f for f in ROW_FIELDS if f not in ("data_key", "code_rev")]


def _values(tag: str, fields: list[str]) -> dict[str, str]:
    return {k: "0.5" if k == "value" else f"{tag}-{k}" for k in fields}


def test_an_old_header_reads_the_new_columns_as_empty_and_an_append_keeps_its_rows(tmp_path):
    path = tmp_path / "runs.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=OLD_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerow(_values("old", OLD_FIELDS))
    old = read_rows(path)
    assert old[0]["data_key"] == old[0]["code_rev"] == "" and old[0]["model"] == "old-model"
    append_rows(path, [_values("new", ROW_FIELDS)])
    rows = read_rows(path)
    assert path.read_text().splitlines()[0] == ",".join(ROW_FIELDS)
    assert rows[0] == {**_values("old", OLD_FIELDS), "data_key": "", "code_rev": ""}
    assert rows[1] == _values("new", ROW_FIELDS)
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="another header"):
        append_rows(path, [_values("x", ROW_FIELDS)])


def _row(model: str, seed: int, value: float, rev: str, config: str = "c0") -> dict[str, str]:
    return {"benchmark": "rbc", "preset": "cpu", "model": model, "split": "orig", "metric": "rmse", "horizon": "10",
            "seed": str(seed), "value": repr(value), "params": "1", "train_seconds": "1", "epochs": "5",
            "best_epoch": "2", "code_rev": rev, "config_hash": config}


def test_each_model_s_table_comes_from_its_newest_code_revision():
    rows = [_row("unet", 0, 1.0, "aaa"), _row("unet", 1, 3.0, "aaa"), _row("resnet", 0, 7.0, ""),
            _row("unet", 0, 2.0, "bbb")]
    kept, revisions = current_rows(rows)
    assert [r["value"] for r in kept if r["model"] == "unet"] == ["2.0"]
    assert revisions == {("cpu", "unet"): ("bbb", 2), ("cpu", "resnet"): ("", 0)}
    md = render_markdown("rbc", rows)
    assert "| unet | 1 | 5 | 2 | 1 | bbb (2 older rows left out) |" in md and "| resnet | 1 | 5 | 2 | 1 | — |" in md
    assert "| unet | **2.000** |" in md  # seed 1 of the older revision is not averaged in


def test_rerun_stale_picks_the_runs_whose_rows_all_have_another_configuration_hash():
    cfg = resolve("rbc", "tiny", "unet", 0)
    now = cfg.config_hash()
    assert is_stale(cfg, [_row("unet", 0, 1.0, "", config="old") | {"preset": "tiny"}])
    assert not is_stale(cfg, [_row("unet", 0, 1.0, "", config="old") | {"preset": "tiny"},
                              _row("unet", 0, 1.0, "", config=now) | {"preset": "tiny"}])
    assert not is_stale(cfg, [])  # never run: nothing stale
    assert not is_stale(cfg, [_row("unet", 1, 1.0, "", config="old") | {"preset": "tiny"}])  # another seed
