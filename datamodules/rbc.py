"""Rayleigh–Bénard convection (ICLR 2021 sec. 5.2): velocity on 7 square tiles of a 7:1 convection cell.

Three sources, one benchmark:

* ``generated`` (default): the Dedalus simulation of :mod:`datamodules.rbc_sim` for the chosen preset, generated on
  first use by ``symbench data generate rbc`` and stored under ``<root>/rbc/<preset>-<key>``;
* ``paper``: the original paper's ``(T, 2, H, W)`` velocity tensor (``.pt`` / ``.npy``) if a user has it;
* ``dedalus``: Dedalus' own HDF5 snapshot files from a user's run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from datamodules import rbc_io, rbc_sim, store
from datamodules.base import ForecastDataModule, select_fields
from symbench.fields import FieldLayout

Source = Literal["generated", "paper", "dedalus"]


class RBCDataModule(ForecastDataModule):
    """RBC velocity windows with the ``orig``, ``um``, ``mag``, ``rot`` and ``scale`` test splits of the paper."""

    def __init__(
        self,
        preset: str = "cpu",
        root: str = "data",
        source: Source = "generated",
        path: str | None = None,
        fields: Sequence[str] = ("velocity",),
        **kwargs: Any,
    ):
        kwargs.setdefault("test_splits", ("orig", "um", "mag", "rot", "scale"))
        super().__init__(**kwargs)
        if source not in ("generated", "paper", "dedalus"):
            raise ValueError(f"unknown RBC source {source!r}; choose generated, paper or dedalus")
        if source == "generated" and preset not in rbc_sim.PRESETS:
            raise ValueError(f"unknown RBC preset {preset!r}; available presets: {', '.join(rbc_sim.PRESETS)}")
        if source != "generated" and path is None:
            raise ValueError(f"source={source!r} needs --data.path pointing at the file(s)")
        self.preset, self.root, self.source, self.path = preset, root, source, path
        self.field_names = list(fields)
        self._cache: tuple[np.ndarray, FieldLayout] | None = None
        self._meta: dict[str, Any] = {}

    @property
    def data_dir(self) -> Path:
        return rbc_sim.default_dir(Path(self.root), self.preset)

    def load(self) -> tuple[np.ndarray, FieldLayout]:
        if self._cache is None:
            if self.source == "generated":
                array, layout, self._meta = store.read_trajectories(self.data_dir)
            elif self.source == "paper":
                array, layout = rbc_io.load_paper_tensor(self.path)
            else:
                array, layout = rbc_io.read_dedalus_snapshots(self.path)
            self._cache = select_fields(array, layout, self.field_names)
        return self._cache

    def describe(self) -> dict[str, Any]:
        self.load()
        params = self._meta.get("params", {})
        return {"dataset": f"rbc-{self.source}", "source_params": params}


def generate_preset(preset: str, root: Path, progress: bool = True) -> Path:
    """Run (or reuse) the Dedalus simulation of ``preset``; returns its data directory."""
    return rbc_sim.generate(rbc_sim.PRESETS[preset], rbc_sim.default_dir(Path(root), preset), progress=progress)
