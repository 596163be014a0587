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

from datamodules import rbc_io, rbc_sim
from datamodules.stored import StoredDataModule
from symbench.fields import FieldLayout

Source = Literal["generated", "paper", "dedalus"]


class RBCDataModule(StoredDataModule):
    """RBC velocity windows with the ``orig``, ``um``, ``mag``, ``rot`` and ``scale`` test splits of the paper."""

    label, sources, presets, path_hint = "RBC", ("generated", "paper", "dedalus"), rbc_sim.PRESETS, "the file(s)"

    def __init__(
        self,
        preset: str = "cpu",
        root: str = "data",
        source: Source = "generated",
        path: str | None = None,
        fields: Sequence[str] = ("velocity",),
        test_splits: Sequence[str] = ("orig", "um", "mag", "rot", "scale"),
        **kwargs: Any,
    ):
        super().__init__(preset, root, source, path, fields, test_splits=test_splits, **kwargs)

    @property
    def data_dir(self) -> Path:
        return rbc_sim.default_dir(Path(self.root), self.preset)

    def read_source(self) -> tuple[np.ndarray, FieldLayout]:
        if self.source == "paper":
            return rbc_io.load_paper_tensor(self.path)
        return rbc_io.read_dedalus_snapshots(self.path)

    def family(self) -> str:
        return "rbc"


def generate_preset(preset: str, root: Path, progress: bool = True) -> Path:
    """Run (or reuse) the Dedalus simulation of ``preset``; returns its data directory."""
    return rbc_sim.generate(rbc_sim.PRESETS[preset], rbc_sim.default_dir(Path(root), preset), progress=progress)
