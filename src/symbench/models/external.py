"""Models that live outside symbench: ``package.module:Factory`` references and ``symbench.models`` entry points.

A **reference** ``"pkg.mod:Factory"`` (``"pkg.mod:Outer.Factory"`` for a nested attribute) names a factory with the
registry's contract (:mod:`symbench.models.registry`): ``Factory(in_frames=T_in, layout=FieldLayout, **hparams)``
returns an ``nn.Module`` mapping ``(B, T_in, C, H, W)`` to ``(B, C, H, W)``, optionally with
``regularization_loss()``. Its registry facts are read from the factory's attributes: ``family`` (default
``"external"``), ``benchmarks``, ``symmetries`` (claimed groups, see :mod:`symbench.conformance`) and ``defaults``.

A **plug-in** is an installed distribution declaring, in its metadata,

    [symbench.models]
    c4net = mypkg.plugin:C4NET

one entry per model, where the object is a :class:`~symbench.models.registry.ModelSpec` named like the entry (its
``target`` is imported only when the model is built) or a factory carrying the attributes above.

Versions: a model outside symbench is named ``<name>@<version>`` in run configurations and leaderboard rows, the
version being that of the distribution providing it (``importlib.metadata``; else the top-level package's
``__version__``), so the configuration hash changes when the package does.
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
from dataclasses import dataclass
from typing import Any

from symbench.models.registry import ModelSpec

ENTRY_POINT_GROUP = "symbench.models"
EXTERNAL_FAMILY = "external"  # family of a reference whose factory declares none


class ModelReferenceError(ValueError):
    """A model reference or plug-in that cannot be used; the message names it and the problem (one CLI line, even
    when it wraps the user's own import error)."""


@dataclass(frozen=True)
class External:
    """A model found outside the registry: its spec, where it came from (one phrase) and its package version."""

    spec: ModelSpec
    source: str
    version: str | None


def is_reference(name: str) -> bool:
    """True for ``"package.module:Factory"`` (optionally ``@version``); registry names have no colon."""
    return ":" in name


def split_version(name: str) -> tuple[str, str | None]:
    """``"pkg.mod:F@1.0"`` -> ``("pkg.mod:F", "1.0")``; a name without ``@`` has no version."""
    base, sep, version = name.partition("@")
    return base, (version if sep else None)


def load_object(reference: str) -> Any:
    """The object ``reference`` (``"module:attr.attr"``) names; ``ValueError`` naming the reference otherwise."""
    module_name, _, attr = reference.partition(":")
    if not module_name or not attr:
        raise ModelReferenceError(f"model reference {reference!r}: expected 'package.module:Factory'")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as err:  # any failure while importing the user's module is bad input of this reference
        raise ModelReferenceError(f"model reference {reference!r}: cannot import {module_name!r} "
                         f"({type(err).__name__}: {_first_line(err)})") from err
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModelReferenceError(f"model reference {reference!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def package_version(module_name: str) -> str | None:
    """Version of the installed distribution providing the top-level package of ``module_name`` (one named like
    the package, else any that ships it), else the package's ``__version__``, else ``None``."""
    top = module_name.split(".")[0]
    try:
        return metadata.version(top)
    except metadata.PackageNotFoundError:
        pass
    for dist in metadata.packages_distributions().get(top, []):  # scans every distribution's file list: slower
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    version = getattr(importlib.import_module(top), "__version__", None)
    return str(version) if version is not None else None


def spec_from_factory(name: str, target: str, factory: Any) -> ModelSpec:
    """A registry line read off a factory's attributes (``family``, ``benchmarks``, ``symmetries``, ``defaults``,
    the docstring's first line as description)."""
    if not callable(factory):
        raise ModelReferenceError(f"model {name!r}: {target} is a {type(factory).__name__}, not a factory or a ModelSpec")
    doc = (getattr(factory, "__doc__", None) or "").strip()
    return ModelSpec(name, target, str(getattr(factory, "family", EXTERNAL_FAMILY)), doc.splitlines()[0] if doc else "",
                     dict(getattr(factory, "defaults", {})), symmetries=tuple(getattr(factory, "symmetries", ())),
                     benchmarks=tuple(getattr(factory, "benchmarks", ())))


def reference(name: str) -> External:
    """The model a reference names; a requested ``@version`` must be the installed one."""
    base, wanted = split_version(name)
    factory = load_object(base)
    version = package_version(base.partition(":")[0])
    if wanted is not None and wanted != version:
        raise ModelReferenceError(f"model reference {name!r}: the installed package has version {version or 'unknown'}")
    return External(spec_from_factory(base, base, factory), f"reference {base}", version)


def plugins() -> list[External]:
    """Every model declared in the ``symbench.models`` entry-point group of the installed distributions."""
    found = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else "unknown distribution"
        version = ep.dist.version if ep.dist is not None else None
        where = f"entry point {ep.name} = {ep.value} of {dist} {version or ''}".rstrip()
        try:
            obj = ep.load()
        except Exception as err:  # a broken plug-in is named, not hidden behind a traceback
            raise ModelReferenceError(f"{where}: cannot load ({type(err).__name__}: {_first_line(err)})") from err
        if isinstance(obj, ModelSpec):
            if obj.name != ep.name:
                raise ModelReferenceError(f"{where}: its ModelSpec is named {obj.name!r}; name the entry point the same")
            spec = obj
        else:
            spec = spec_from_factory(ep.name, ep.value, obj)
        found.append(External(spec, where, version))
    return found


def _first_line(err: BaseException) -> str:
    return next((line.strip() for line in str(err).splitlines() if line.strip()), "")
