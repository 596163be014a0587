"""symbench: benchmark suite for symmetry-aware deep dynamics models."""

__version__ = "0.1.0"
