"""Optional extras: the simulators that only data generation needs, and the one-line error when one is missing.

The core install trains, tests and ranks every model, on generated data or on a user's files. Generating data needs
a simulator, installed with an extra:

* ``symbench[rbc]``: Dedalus (Rayleigh–Bénard convection),
* ``symbench[smoke]``: PhiFlow (smoke plumes, levels of equivariance, the jet flow; PhiFlow scene files),
* ``symbench[turb3d]``: fluidsim, fluidfft and pyfftw (3D turbulence).

Every import of those packages goes through :func:`require` and every version lookup through :func:`version`, so a
missing extra raises :class:`MissingExtra`, whose message is one line naming the ``pip install`` to run; the command
line prints it as ``symbench: error: ...``.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from types import ModuleType

EXTRAS: dict[str, tuple[str, ...]] = {
    "rbc": ("dedalus",),
    "smoke": ("phiflow",),
    "turb3d": ("fluidsim", "fluidfft", "pyfftw"),
}


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message says which extra installs it."""


def _message(what: str, extra: str) -> str:
    return f"{what} is not installed; it comes with the {extra!r} extra: pip install 'symbench[{extra}]'"


def _check(extra: str) -> None:
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; extras: {', '.join(EXTRAS)}")


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` (e.g. ``"dedalus.public"``) or raise :class:`MissingExtra` naming ``extra``."""
    _check(extra)
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        what = repr(module) if err.name in (None, module) else f"{err.name!r} (needed by {module!r})"
        raise MissingExtra(_message(what, extra)) from err


def version(distribution: str, extra: str) -> str:
    """The installed version of ``distribution`` (e.g. ``"phiflow"``) or :class:`MissingExtra` naming ``extra``."""
    _check(extra)
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError as err:
        raise MissingExtra(_message(repr(distribution), extra)) from err
