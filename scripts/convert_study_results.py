"""One-off: convert the studies' committed results (their own CSV / report formats) into ``<results>/<study>/runs.csv``
rows of the leaderboard schema, through each study's ``study_rows`` and :func:`symbench.studies.common.append_study_rows`.

    python scripts/convert_study_results.py [--results results] [--preset cpu]

The study's own files are read, never changed, so its ``.md`` reports regenerate as before. Provenance: ``git_sha``
and ``timestamp`` of the commit that last changed the converted file, ``versions`` ``unknown (converted)`` (the
original runs did not record them), ``data_key`` and ``code_rev`` empty (nor these: today's data key and source
revision need not be theirs); ``config_hash`` from the preset's current sizes. An existing ``runs.csv`` is left
alone: the conversion runs once per study (nothing left to convert: one line, exit status 2). The levels study is no
longer converted: it writes its own ``runs.csv`` rows per (level, model, seed) (the committed ``results/levels/runs.csv``
is this script's conversion of the one-seed table, until the study is rerun).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

Provenance = Callable[[Path], dict[str, str]]


def git_provenance(path: Path) -> dict[str, str]:
    """``git_sha`` (12 digits) and ISO ``timestamp`` of the last commit that changed ``path``."""
    out = subprocess.run(["git", "log", "-1", "--format=%H %cI", "--", path.name], cwd=path.parent,
                         capture_output=True, text=True, check=True).stdout.split()
    sha, stamp = out if len(out) == 2 else ("unknown", "unknown")
    return {"git_sha": sha[:12], "timestamp": stamp, "versions": "unknown (converted)"}


def study_sources(results: Path, preset: str) -> dict[str, tuple[Path, Callable[[], list[dict[str, Any]]]]]:
    """study -> (the committed file its provenance comes from, a function returning its rows)."""
    from datamodules.digits import PRESETS as DIGITS_SIZES
    from datamodules.nbody import PRESETS as NBODY_SIMS
    from symbench.studies.digits import run as digits
    from symbench.studies.discovery import run as discovery
    from symbench.studies.nbody import run as nbody
    from symbench.studies.sr3d import run as sr3d

    def digits_rows() -> list[dict[str, Any]]:
        runs = [r for task in digits.TASKS for r in digits.read_runs(digits.csv_path(results, task, preset))]
        return digits.study_rows(runs, preset, DIGITS_SIZES[preset], digits.training_presets()[preset])

    nb = nbody.training_presets()[preset]
    found = discovery.presets()[preset]
    tables = [results / discovery.STUDY / f"{g}.md" for g in found.subgroups]
    return {
        "nbody": (results / "nbody" / f"nbody_{preset}.md", lambda: nbody.study_rows(
            nbody.read_report_rows(results / "nbody" / f"nbody_{preset}.md",
                                   results / "nbody" / f"nbody_{preset}.csv"),
            nb.seeds, preset, NBODY_SIMS[preset], nb)),
        "digits": (digits.csv_path(results, "rotated", preset), digits_rows),
        "sr3d": (sr3d.csv_path(results, preset), lambda: sr3d.study_rows(
            sr3d.read_runs(sr3d.csv_path(results, preset)), preset, sr3d.training_presets()[preset])),
        discovery.STUDY: (tables[0], lambda: discovery.study_rows(
            [discovery.read_table(t, found) for t in tables if t.is_file()], preset, found)),
    }


def convert(results: str | Path = "results", preset: str = "cpu",
            provenance: Provenance = git_provenance) -> list[Path]:
    """Write ``<results>/<study>/runs.csv`` for every study whose committed results exist; returns the files."""
    from symbench.studies.common import append_study_rows

    results = Path(results)
    sources = {s: v for s, v in study_sources(results, preset).items() if v[0].is_file()}
    existing = [results / s / "runs.csv" for s in sources if (results / s / "runs.csv").exists()]
    if existing and len(existing) == len(sources):
        raise FileExistsError(f"{existing[0]} exists; the conversion runs once (move it aside to redo it)")
    sources = {s: v for s, v in sources.items() if not (results / s / "runs.csv").exists()}
    unrecorded = {"data_key": "", "code_rev": ""}
    return [append_study_rows(results, study, [{**r, **unrecorded} for r in rows()], provenance(source))
            for study, (source, rows) in sources.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results")
    parser.add_argument("--preset", default="cpu")
    args = parser.parse_args(argv)
    try:
        paths = convert(args.results, args.preset)
    except (FileExistsError, ValueError) as err:
        print(f"convert_study_results: error: {err}", file=sys.stderr)
        return 2
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
