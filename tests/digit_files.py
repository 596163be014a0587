"""Digit files written by the tests: fake digits whose centre pixel encodes label and split, and MNIST IDX files
written independently of the reader."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np


def fake_split(rng: np.random.Generator, n: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """Digit-like images whose centre pixel (14, 14) holds 20 (label + 1) + offset: rotations and mirrors about that
    pixel keep it, so it tells which label and which split an image belongs to after the transforms."""
    y = rng.integers(0, 10, n)
    x = np.zeros((n, 28, 28), np.uint8)
    rr, cc = np.mgrid[:28, :28]
    disk = (rr - 14) ** 2 + (cc - 14) ** 2 <= 64
    x[:, disk] = rng.integers(0, 256, (n, disk.sum()))
    x[:, 14, 14] = 20 * (y + 1) + offset
    return x, y.astype(np.int64)


def write_idx(path: Path, array: np.ndarray, code: int, gz: bool = False) -> Path:
    """An IDX file written independently of the reader: magic 00 00 code ndim, big-endian dims and payload."""
    big = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]
    raw = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += np.ascontiguousarray(array, dtype=big).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def idx_dir(directory: Path, n_train: int, n_train_labels: int | None = None, gz: bool = True, n_test: int = 12) -> Path:
    """A directory of the four MNIST IDX files with random images and labels cycling 0..9."""
    rng = np.random.default_rng(2)
    directory.mkdir()
    sfx = ".gz" if gz else ""
    write_idx(directory / f"train-images-idx3-ubyte{sfx}", rng.integers(0, 256, (n_train, 28, 28)), 0x08, gz)
    write_idx(directory / f"train-labels-idx1-ubyte{sfx}", np.arange(n_train_labels or n_train) % 10, 0x08, gz)
    write_idx(directory / f"t10k-images-idx3-ubyte{sfx}", rng.integers(0, 256, (n_test, 28, 28)), 0x08, gz)
    write_idx(directory / f"t10k-labels-idx1-ubyte{sfx}", np.arange(n_test) % 10, 0x08, gz)
    return directory
