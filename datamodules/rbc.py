"""Rayleigh–Bénard convection (ICLR 2021 sec. 5.2): velocity on 7 square tiles of a 7:1 convection cell.

Three sources, one benchmark:

* ``generated`` (default): the Dedalus simulation of :mod:`datamodules.rbc_sim` for the chosen preset, generated on
  first use by ``symbench data generate rbc`` and stored under ``<root>/rbc/<preset>-<key>``;
* ``paper``: the original paper's ``(T, 2, H, W)`` velocity tensor (``.pt`` / ``.npy``) if a user has it;
* ``dedalus``: Dedalus' own HDF5 snapshot files from a user's run;
* ``the_well``: The Well's Rayleigh-Benard HDF5 files (``path``: files, a glob or a directory;
  :mod:`datamodules.the_well`), every simulation cut into square tiles averaged to the preset's resolution; the
  file's time step and parameters are in :meth:`~RBCDataModule.describe`.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from datamodules import rbc_io, rbc_sim, the_well
from datamodules.stored import StoredDataModule
from symbench.fields import FieldLayout

Source = Literal["generated", "paper", "dedalus", "the_well"]


class RBCDataModule(StoredDataModule):
    """RBC velocity windows with the ``orig``, ``um``, ``mag``, ``rot`` and ``scale`` test splits of the paper."""

    label, sources, presets, path_hint = ("RBC", ("generated", "paper", "dedalus", "the_well"), rbc_sim.PRESETS,
                                          "the file(s)")

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
        if self.source == "the_well":
            array, layout, facts = the_well.read_well(self.path, self.field_names,
                                                      resolution=rbc_sim.PRESETS[self.preset].resolution)
            self._meta = {"params": {**asdict(facts), "tile_resolution": int(array.shape[-1])}}
            return array, layout
        return rbc_io.read_dedalus_snapshots(self.path)

    def family(self) -> str:
        return "rbc"


def generate_preset(preset: str, root: Path, progress: bool = True) -> Path:
    """Run (or reuse) the Dedalus simulation of ``preset``; returns its data directory."""
    return rbc_sim.generate(rbc_sim.PRESETS[preset], rbc_sim.default_dir(Path(root), preset), progress=progress)
