"""On-disk trajectory store shared by every generator and loader.

A dataset directory holds

* ``trajectories.npy`` -- float32 array ``(n_traj, T, C, H, W)`` (read memory-mapped, never loaded whole);
* ``meta.json`` -- ``{"fields": ["velocity:vector", ...], "params": {...}, ...}``: the field declaration and every
  parameter that produced the data (solver, version, seed, grid, ...).

Writes are atomic: everything goes to a temporary sibling directory that is renamed into place at the end, so a
killed writer leaves either the old dataset or nothing, never half a dataset.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from symbench.fields import FieldLayout
from symbench.files import check_writable

ARRAY_FILE = "trajectories.npy"
META_FILE = "meta.json"


class DataNotFoundError(FileNotFoundError):
    """Raised with a one-line message that names the missing path and the command that makes it."""


def exists(directory: str | Path) -> bool:
    d = Path(directory)
    return (d / ARRAY_FILE).is_file() and (d / META_FILE).is_file()


@contextmanager
def atomic_directory(directory: str | Path) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``directory`` only if the block finishes without error."""
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_trajectories(directory: str | Path, array: np.ndarray, layout: FieldLayout, **meta: Any) -> Path:
    """Atomically write ``array`` ``(n_traj, T, C, H, W)`` with its field declaration and ``meta``."""
    array = np.asarray(array, dtype=np.float32)
    if array.ndim != 3 + layout.ndim or array.shape[2] != layout.channels:
        raise ValueError(
            f"trajectories must be (n_traj, T, {layout.channels}, *grid) for fields {layout}, got {array.shape}"
        )
    if not np.isfinite(array).all():
        raise ValueError("trajectories contain NaN or inf; refusing to write them")
    with atomic_directory(directory) as tmp:
        np.save(tmp / ARRAY_FILE, array)
        record = {"fields": [str(f) for f in layout.fields], "shape": list(array.shape), **meta}
        (tmp / META_FILE).write_text(json.dumps(record, indent=2, sort_keys=True, default=str))
    return Path(directory)


def content_key(*parts: Any) -> str:
    """Ten hex digits of the SHA-256 of ``parts`` as sorted JSON: the key of a generated dataset (every parameter,
    solver version and generator revision that change the arrays)."""
    return hashlib.sha256(json.dumps(list(parts), sort_keys=True).encode()).hexdigest()[:10]


def data_key(path: str | Path | Sequence[str | Path]) -> str:
    """The content key of the data at ``path``: the ``key`` of a generated dataset's ``meta.json``, else ten hex
    digits of the SHA-256 over the file (every file under a directory, every file a glob matches) by relative name
    and bytes: the same data give the same key however the path is spelled. Several paths: the key of their keys."""
    if not isinstance(path, (str, Path)):
        return content_key(*[data_key(p) for p in path])
    path = Path(path)
    meta = path / META_FILE
    if meta.is_file() and (key := json.loads(meta.read_text()).get("key")):
        return str(key)
    if path.is_dir():
        files = [(str(f.relative_to(path)), f) for f in sorted(path.rglob("*")) if f.is_file()]
    else:
        files = [(Path(f).name, Path(f)) for f in sorted(glob.glob(str(path)))] or [(path.name, path)]
    digest = hashlib.sha256()
    for name, f in files:
        digest.update(name.encode() + b"\0")
        with f.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):  # noqa: B023 (called in this iteration)
                digest.update(block)
    return digest.hexdigest()[:10]


def generate_once(directory: str | Path, key: str, simulate: Callable[[], Any], **meta: Any) -> Path:
    """The dataset in ``directory`` if it was made with ``key``; otherwise ``simulate()`` (a result with ``array``,
    ``layout`` and ``diagnostics``) written atomically with ``key``, ``meta`` and the diagnostics."""
    directory = Path(directory)
    if exists(directory) and read_meta(directory).get("key") == key:
        return directory
    check_writable(directory.parent, "data directory")  # before simulating, not after
    result = simulate()
    return write_trajectories(directory, result.array, result.layout, key=key, diagnostics=result.diagnostics,
                              **meta)


def read_meta(directory: str | Path) -> dict[str, Any]:
    d = Path(directory)
    if not exists(d):
        raise DataNotFoundError(
            f"no dataset at {d} (expected {ARRAY_FILE} and {META_FILE}); "
            "create it with `symbench data generate <dataset> --preset <preset>`"
        )
    return json.loads((d / META_FILE).read_text())


def read_trajectories(directory: str | Path) -> tuple[np.ndarray, FieldLayout, dict[str, Any]]:
    """Memory-mapped ``(n_traj, T, C, H, W)`` array, its :class:`FieldLayout` and its metadata."""
    meta = read_meta(directory)
    array = np.load(Path(directory) / ARRAY_FILE, mmap_mode="r")
    layout = FieldLayout.of(*meta["fields"], ndim=array.ndim - 3)
    return array, layout, meta
