"""Fixtures shared by several test files."""

from __future__ import annotations

from pathlib import Path

import pytest

from symbench import cli


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """Tiny RBC data generated once per test session by the real solver (Dedalus, ~15 s)."""
    root = tmp_path_factory.mktemp("data")
    assert cli.main(["data", "generate", "rbc", "--preset", "tiny", "--root", str(root), "--no-progress"]) == 0
    return root


@pytest.fixture(scope="session")
def smoke_root(tmp_path_factory) -> Path:
    """The tiny smoke-rotation family, generated once per test session by the real solver (PhiFlow, ~10 s)."""
    root = tmp_path_factory.mktemp("smoke")
    assert cli.main(["data", "generate", "smoke-rotation", "--preset", "tiny", "--root", str(root),
                     "--no-progress"]) == 0
    return root
