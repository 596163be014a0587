"""What identifies a result row: the repository revision (``git describe --always --dirty``) and the code revision
of the model and data module that produced it.

:func:`code_revision` is twelve hex digits of the SHA-256 over the source files of the model's module and of the
datamodule's module together with every ``symbench`` / ``datamodules`` module they import, transitively (read with
``ast``; a ``from package import name`` counts the package's ``__init__`` only when ``name`` is not a submodule). Each
file enters as its path relative to the repository and its bytes, so the revision changes exactly when that code
does, wherever the repository lives. It is part of the configuration hash (:meth:`symbench.config.RunConfig.
config_hash`); ``symbench bench --rerun-stale`` retrains the runs whose rows carry another one.
"""

from __future__ import annotations

import ast
import hashlib
import subprocess
from functools import lru_cache
from pathlib import Path

import datamodules
from symbench import models

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"symbench": REPO_ROOT / "src" / "symbench", "datamodules": REPO_ROOT / "datamodules"}


def git_describe(root: str | Path | None = None) -> str:
    """``git describe --always --dirty`` of the repository at ``root`` (default: this one): the commit, with
    ``-dirty`` when tracked files differ from it; ``unknown`` outside a git checkout."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"], cwd=root or REPO_ROOT,
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def module_file(name: str) -> Path | None:
    """The source file of module ``name`` of :data:`PACKAGES` (``None`` for any other module)."""
    head, *rest = name.split(".")
    if head not in PACKAGES:
        return None
    base = PACKAGES[head].joinpath(*rest)
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if rest and path.is_file() or not rest and path.name == "__init__.py" and path.is_file():
            return path
    return None


def _imports(path: Path) -> set[str]:
    """The modules of :data:`PACKAGES` that ``path`` imports, lazily imported ones included."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if module_file(sub) else node.module)
    return {m for m in out if m.split(".")[0] in PACKAGES}


def source_closure(*names: str) -> list[Path]:
    """The source files of modules ``names`` and of everything of :data:`PACKAGES` they import, sorted."""
    seen: set[Path] = set()
    todo = [p for p in (module_file(n) for n in names) if p is not None]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo += [p for p in (module_file(m) for m in _imports(path)) if p is not None and p not in seen]
    return sorted(seen)


def _revision(names: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for path in source_closure(*names):
        digest.update(str(path.relative_to(REPO_ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


@lru_cache(maxsize=None)
def source_revision(*names: str) -> str:
    """Twelve hex digits identifying the source of modules ``names`` and everything of :data:`PACKAGES` they import
    (:func:`source_closure`; module docstring): the ``code_rev`` of a study's rows, whose networks and data live in
    the study's own modules."""
    return _revision(names)


@lru_cache(maxsize=None)
def code_revision(model: str, dataset: str) -> str:
    """Twelve hex digits identifying the source of ``model``'s module and ``dataset``'s datamodule (module docstring)."""
    return _revision((models.spec(model).target.partition(":")[0],
                      datamodules.entry(dataset).datamodule.partition(":")[0]))
