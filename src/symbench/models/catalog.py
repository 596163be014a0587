"""Every model symbench can build, under one namespace: the registry, installed plug-ins and references.

``available``, ``spec`` and ``build`` behave like the registry's (:mod:`symbench.models.registry`) and add the
models of :mod:`symbench.models.external`. A name is a registry or plug-in name, or a ``package.module:Factory``
reference; either may carry ``@version`` (what :func:`canonical` returns for a model outside symbench), which must
be the installed version. Two models of the same name are an error naming both sources.

A model from outside symbench is checked where it is built: its factory must accept ``(in_frames, layout,
**hparams)`` and return an ``nn.Module``, and every forward pass must map ``(B, T_in, C, H, W)`` to ``(B, C, H, W)``
(a forward hook; hooks are not part of the state dict). Each failure is one ``ValueError`` line naming the model.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from torch import Tensor, nn

from symbench.fields import FieldLayout
from symbench.models import external, registry
from symbench.models.external import External
from symbench.models.registry import ModelSpec

BUILTIN = "symbench"  # the source of the registry's own models


def _table() -> dict[str, External]:
    """Registry and plug-in models by name; a name declared twice is a one-line error naming both sources."""
    table = {name: External(registry.spec(name), BUILTIN, None) for name in registry.available()}
    for found in external.plugins():
        name = found.spec.name
        if name in table:
            raise ValueError(f"model name {name!r} is declared twice: by {table[name].source} and by {found.source}")
        table[name] = found
    return table


def available() -> list[str]:
    """Registry and plug-in model names (registry order first)."""
    return list(_table())


def declared(benchmark: str) -> list[str]:
    """The installed plug-ins that declare ``benchmark`` (``ModelSpec.benchmarks``): ``symbench bench`` runs them
    after the models its ``benchmark.yaml`` lists (:func:`symbench.config.benchmark_models`)."""
    return [n for n, m in _table().items() if benchmark in m.spec.benchmarks]


def lookup(name: str) -> External:
    """The model ``name`` names, with its source and version."""
    base, wanted = external.split_version(name)
    if external.is_reference(base):
        return external.reference(name)
    table = _table()
    if base not in table:
        raise KeyError(f"unknown model {base!r}; available models: {', '.join(table)} "
                       f"(or a 'package.module:Factory' reference)")
    found = table[base]
    if wanted is not None and wanted != found.version:
        raise ValueError(f"model {name!r}: {found.source} has version {found.version or 'none'}")
    return found


def spec(name: str) -> ModelSpec:
    return lookup(name).spec


def canonical(name: str) -> str:
    """The name runs and rows use: ``name`` itself for a registry model, ``<name>@<version>`` for one from outside
    symbench whose package has a version (so that the configuration hash covers the package's version)."""
    found = lookup(name)
    base = external.split_version(name)[0]
    return f"{base}@{found.version}" if found.source != BUILTIN and found.version else base


def source(name: str) -> str:
    """Where model ``name`` comes from: ``symbench``, ``reference ...`` or ``entry point ... of <dist> <version>``."""
    return lookup(name).source


def build(name: str, *, in_frames: int, layout: FieldLayout, **hparams: Any) -> nn.Module:
    """Instantiate model ``name`` for a history of ``in_frames`` frames of the fields in ``layout``."""
    found = lookup(name)
    kwargs = {**found.spec.defaults, **hparams}
    if found.source == BUILTIN:
        return found.spec.factory()(in_frames=in_frames, layout=layout, **kwargs)
    factory = external.load_object(found.spec.target)
    _check_signature(name, factory, kwargs)
    net = factory(in_frames=in_frames, layout=layout, **kwargs)
    if not isinstance(net, nn.Module):
        raise ValueError(f"model {name!r}: the factory returned a {type(net).__name__}, not a torch.nn.Module")
    net.register_forward_hook(_shape_check(name))
    return net


def _check_signature(name: str, factory: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # no introspectable signature (a C callable): the call itself will tell
        return
    try:
        signature.bind(in_frames=0, layout=None, **kwargs)
    except TypeError as err:
        args = ", ".join(["in_frames", "layout", *kwargs])
        raise ValueError(f"model {name!r}: factory{signature} cannot be called with ({args}): {err}") from None


def _shape_check(name: str) -> Callable[[nn.Module, tuple[Any, ...], Any], None]:
    """A forward hook: the output of a history ``(B, T, C, H, W)`` must be one frame ``(B, C, H, W)``."""

    def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if not args or not isinstance(args[0], Tensor):
            return
        history = args[0]
        expected = (history.shape[0], *history.shape[2:])
        shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
        if shape != expected:
            raise ValueError(f"model {name!r}: output {shape} for a history {tuple(history.shape)}; "
                             f"expected the next frame {expected}")

    return hook
