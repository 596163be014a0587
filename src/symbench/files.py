"""Our own files read and written with errors that name them: YAML configurations, checkpoints, output folders.

Each function raises one ``ValueError`` / ``FileNotFoundError`` / ``PermissionError`` whose message starts with the
path (and, for YAML, the line and column), which the command line prints as its one error line.
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import yaml


def load_yaml(path: str | Path) -> Any:
    """The YAML document at ``path``; a syntax error becomes ``<path>:<line>:<column>: <problem>``."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        raise ValueError(f"{where}: YAML syntax error: {err.problem or err.context}") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint of ours, unpickled with ``weights_only=True`` (our saved hyperparameters and callback
    states are plain types, so nothing else needs unpickling); an empty, truncated or foreign file is one error."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file, not a checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for a bad file
        raise ValueError(f"{path}: truncated, or not a PyTorch checkpoint of symbench ({type(err).__name__} while "
                         f"reading it)") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"{path}: not a Lightning checkpoint (no state_dict)")
    return ckpt


def checkpoint_epoch(path: str | Path) -> int:
    """The epoch number in a checkpoint's file name ``...epoch=<n>...`` (-1 without one); orders ``best-epoch=9``
    before ``best-epoch=10``, which a string sort does not."""
    match = re.search(r"epoch=(\d+)", Path(path).name)
    return int(match.group(1)) if match else -1


def latest_checkpoint(paths: Any) -> Path | None:
    """The checkpoint of the highest epoch among ``paths`` (None when there is none)."""
    paths = list(paths)
    return max(paths, key=lambda p: (checkpoint_epoch(p), str(p))) if paths else None


def check_writable(directory: str | Path, what: str) -> None:
    """Create ``directory`` if needed and check that a file can be written there, before any long work starts;
    ``what`` names the option (e.g. ``--results``) in the error."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".symbench-write-check-", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise PermissionError(f"{directory}: cannot write there ({err.strerror or err}); give {what} a writable "
                              f"directory") from None


class RunLocked(RuntimeError):
    """Another process holds the lock of a run directory."""


@contextmanager
def run_lock(directory: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<directory>/.lock`` (created with the directory) for the block: a second run of
    the same configuration raises :class:`RunLocked` at once instead of training into the same files. The operating
    system drops the lock when its process dies, so a killed run can be resumed right away."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise RunLocked(f"{directory} is in use by {holder}; wait for that run to end (it writes the same "
                            f"rows), then rerun the same command to resume") from None
        try:
            handle.truncate(0)
            handle.write(f"symbench pid {os.getpid()} on {socket.gethostname()}")
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
