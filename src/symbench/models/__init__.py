"""Forecasting models and their registry (:func:`available`, :func:`build`)."""

from symbench.models.registry import ModelSpec, available, build, spec

__all__ = ["ModelSpec", "available", "build", "spec"]
