"""Leaderboard rows: one CSV row per (model, seed, split, metric, horizon), appended atomically.

Appends take an exclusive lock on ``<file>.lock``, write the old content plus the new rows to a temporary file in
the same directory and rename it over the original: concurrent writers (sweep workers) neither lose nor interleave
rows, and a crash mid-write leaves the previous file intact. An append first checks the file (a missing final
newline is repaired, a row whose columns do not match the header is refused, naming its line) and refuses
non-finite values: a run that diverged is recorded in ``failed_runs.csv`` beside ``runs.csv`` instead.
"""

from __future__ import annotations

import csv
import fcntl
import io
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Sequence

ROW_FIELDS = [
    "benchmark", "dataset", "split", "model", "seed", "preset", "metric", "value", "horizon", "params",
    "train_seconds", "epochs", "best_epoch", "config_hash", "git_sha", "versions", "timestamp", "data_key", "code_rev",
]
# Columns added after rows were first committed: a file with the header before them reads them as empty, and an
# append to it rewrites the file under the new header (its rows keep their values, the new columns empty).
ADDED_FIELDS = ("data_key", "code_rev")
# failed_runs.csv: one row per run that stopped without results (``reason``: e.g. "diverged: train/loss nan").
FAILED_FIELDS = ["benchmark", "dataset", "model", "seed", "preset", "config_hash", "step", "reason", "git_sha",
                 "timestamp"]
FAILED_FILE = "failed_runs.csv"


class RunsFailed(RuntimeError):
    """Raised at the end of a command some of whose runs failed (e.g. diverged); the message names them."""


class Diverged(RunsFailed):
    """A run whose ``what`` (``train/loss`` or a validation metric) became ``value`` (nan/inf) at optimiser step
    ``step`` (raised by :class:`symbench.divergence.StopOnDivergence`)."""

    def __init__(self, what: str, value: float, step: int) -> None:
        super().__init__(f"diverged: {what} = {value} at step {step}")
        self.what, self.value, self.step = what, value, step


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary file next to ``path`` for a writer that needs a file name (e.g. NetCDF); renamed over ``path``
    when the block ends: a failure leaves no partial or temporary file and an existing ``path`` untouched. The file
    gets mode 0644 (``mkstemp`` creates 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, write: Callable[[BinaryIO], Any]) -> Path:
    """Call ``write`` on a temporary file next to ``path`` (flushed to disk), then rename it over ``path``
    (:func:`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` through :func:`atomic_write`."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def append_rows(path: str | Path, rows: Iterable[dict[str, Any]], fields: Sequence[str] = ROW_FIELDS) -> int:
    """Append ``rows`` to the CSV at ``path`` (created with a header if missing). Returns the number appended.
    ``fields``: the columns, the leaderboard's by default (a study such as the alpha sweep adds its own). Rows with
    other keys or a non-finite ``value``, and a file with another header or a malformed row, raise ``ValueError``
    and leave the file untouched."""
    path = Path(path)
    rows = list(rows)
    fields = list(fields)
    for row in rows:
        extra = set(row) - set(fields)
        missing = set(fields) - set(row)
        if extra or missing:
            raise ValueError(f"leaderboard row has unknown fields {sorted(extra)} / lacks {sorted(missing)}")
        if "value" in row and not _finite(row["value"]):
            raise ValueError(f"{path}: refusing to append the non-finite value {row['value']} "
                             f"({', '.join(f'{k}={row[k]}' for k in ('model', 'seed', 'split', 'metric') if k in row)})")
    with _locked(path):
        old = path.read_text() if path.exists() else ""
        _parse(path, old)  # a malformed row -> one line naming it
        if old and old.splitlines()[0].split(",") != fields:
            old = _upgraded(path, old, fields)
        if old and not old.endswith("\n"):  # a hand edit without a final newline: do not glue the next row onto it
            old += "\n"
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        if not old:
            writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(path, old + buf.getvalue())
    return len(rows)


def _older_header(header: Sequence[str], fields: Sequence[str]) -> bool:
    """True when ``header`` is ``fields`` without some of :data:`ADDED_FIELDS` (a file written before them)."""
    return list(header) == [f for f in fields if f in header] and set(fields) - set(header) <= set(ADDED_FIELDS)


def _upgraded(path: Path, old: str, fields: Sequence[str]) -> str:
    """The content of ``path`` under the header ``fields`` (missing added columns empty); refuses any other header."""
    reader = csv.DictReader(io.StringIO(old))
    if not _older_header(reader.fieldnames or [], fields):
        raise ValueError(f"{path} has another header than {list(fields)}; move it aside before appending")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(reader)
    return buf.getvalue()


def _with_added(row: dict[str, str]) -> dict[str, str]:
    """A leaderboard row (a study's too, with more columns) written before :data:`ADDED_FIELDS`: them as empty."""
    if set(ROW_FIELDS) - set(ADDED_FIELDS) <= set(row) and not set(ADDED_FIELDS) <= set(row):
        return {**row, **{k: "" for k in ADDED_FIELDS if k not in row}}
    return row


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _parse(path: Path, text: str) -> tuple[list[dict[str, str]], list[int]]:
    """The rows of CSV ``text`` (read from ``path``) whose ``value`` is finite, and the line numbers of the rows
    whose value is not (old files of diverged runs). A row with another number of columns than the header raises
    ``ValueError`` naming ``path`` and its line."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    rows, skipped = [], []
    if header is None:
        return rows, skipped
    for values in reader:
        if not values:
            continue
        if len(values) != len(header):
            raise ValueError(f"{path}:{reader.line_num}: {len(values)} columns where the header has {len(header)}; "
                             f"fix or delete that line")
        row = dict(zip(header, values))
        if "value" in row and not _finite(row["value"]):
            skipped.append(reader.line_num)
            continue
        rows.append(row)
    return rows, skipped


def read_rows(path: str | Path) -> list[dict[str, str]]:
    """The rows of the CSV at ``path``, without those whose ``value`` is not a finite number (see
    :func:`nonfinite_lines`); a malformed row raises ``ValueError`` naming the file and line. Leaderboard rows
    written before :data:`ADDED_FIELDS` read them as empty."""
    return [_with_added(r) for r in _read(path)[0]]


def nonfinite_lines(path: str | Path) -> list[int]:
    """Line numbers of the rows of ``path`` whose ``value`` is not finite (written before divergence was caught);
    :func:`read_rows` leaves them out."""
    return _read(path)[1]


def _read(path: str | Path) -> tuple[list[dict[str, str]], list[int]]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no leaderboard rows at {path}; run `symbench bench <benchmark>` first")
    with open(path, newline="") as f:
        return _parse(path, f.read())


def write_records(path: str | Path, records: Sequence[Any]) -> None:
    """Rewrite the CSV at ``path`` with one row per dataclass record (floats to 6 significant digits), atomically:
    a stop mid-write leaves the previous file. Studies that resume (digits, 3D super-resolution) keep their runs
    this way."""
    import dataclasses

    if not records:
        raise ValueError(f"no records to write to {path}")
    names = [f.name for f in dataclasses.fields(records[0])]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v)
                         for k, v in dataclasses.asdict(record).items()})
    atomic_write_text(Path(path), buffer.getvalue())


def read_records(path: str | Path, record_type: type) -> list[Any]:
    """The rows of a :func:`write_records` CSV as ``record_type`` dataclasses, each column converted to its field's
    type (``int``, ``float`` or ``str``); ``[]`` if the file does not exist."""
    import dataclasses
    import typing

    path = Path(path)
    if not path.exists():
        return []
    types = typing.get_type_hints(record_type)
    names = [f.name for f in dataclasses.fields(record_type)]
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows and set(rows[0]) != set(names):
        raise ValueError(f"{path} has columns {sorted(rows[0])}, expected {names}; move it aside")
    return [record_type(**{n: types[n](row[n]) for n in names}) for row in rows]
