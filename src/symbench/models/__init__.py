"""Forecasting models: the registry, installed plug-ins and ``package.module:Factory`` references, under one
namespace (:func:`available`, :func:`spec`, :func:`build`; :mod:`symbench.models.catalog`)."""

from symbench.models.catalog import available, build, canonical, declared, lookup, source, spec
from symbench.models.registry import ModelSpec

__all__ = ["ModelSpec", "available", "build", "canonical", "declared", "lookup", "source", "spec"]
