"""Fixtures shared by several test files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from digit_files import fake_split
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


@pytest.fixture
def fake_root(tmp_path) -> Path:
    """A root whose ``digits/mnist.npz`` holds 300/80/80 fake digits, so no download happens."""
    rng = np.random.default_rng(7)
    arrays = {}
    for offset, (split, n) in enumerate((("train", 300), ("valid", 80), ("test", 80))):
        arrays[f"{split}_x"], arrays[f"{split}_y"] = fake_split(rng, n, offset)
    (tmp_path / "digits").mkdir()
    np.savez(tmp_path / "digits" / "mnist.npz", **arrays)
    return tmp_path
