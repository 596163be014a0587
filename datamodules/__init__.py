"""Data families: one LightningDataModule per family plus its generator. The dataset registry lives here.

Adding a data family is one module plus one line in :data:`DATASETS`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


@dataclass(frozen=True)
class DatasetEntry:
    datamodule: str  # "module:Class" of the LightningDataModule
    generator: str  # "module:function" called as f(preset, root, progress) -> data directory
    presets: str  # "module:attribute" of the preset table of the generator

    @staticmethod
    def _load(target: str) -> Any:
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)

    def datamodule_class(self) -> type:
        return self._load(self.datamodule)

    def generate_fn(self) -> Callable[..., Path]:
        return self._load(self.generator)

    def preset_names(self) -> list[str]:
        return list(self._load(self.presets))


DATASETS: dict[str, DatasetEntry] = {
    "rbc": DatasetEntry("datamodules.rbc:RBCDataModule", "datamodules.rbc:generate_preset", "datamodules.rbc_sim:PRESETS"),
    **{f"smoke-{s}": DatasetEntry("datamodules.smoke:SmokeDataModule", f"datamodules.smoke:generate_{s}",
                                  "datamodules.smoke_sim:PRESETS") for s in ("translation", "rotation", "scaling")},
    "heat": DatasetEntry("datamodules.heat:HeatDataModule", "datamodules.heat:generate_preset",
                         "datamodules.heat_sim:PRESETS"),
    "jetflow": DatasetEntry("datamodules.jetflow:JetFlowDataModule", "datamodules.jetflow:generate_preset",
                            "datamodules.jetflow_sim:PRESETS"),
    "ocean": DatasetEntry("datamodules.ocean:OceanDataModule", "datamodules.ocean:generate_preset",
                          "datamodules.ocean:PRESETS"),
    **{f"turb3d-{flow}": DatasetEntry("datamodules.turb3d:Turb3DSRDataModule", f"datamodules.turb3d:generate_{flow}",
                                      "datamodules.turb3d_sim:PRESETS") for flow in ("isotropic", "sheared")},
}


def entry(name: str) -> DatasetEntry:
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; available datasets: {', '.join(DATASETS)}")
    return DATASETS[name]


def generate(name: str, preset: str, root: str | Path = "data", progress: bool = True) -> Path:
    """Generate (or reuse) dataset ``name`` at ``preset`` under ``root``; returns its directory."""
    e = entry(name)
    if preset not in e.preset_names():
        raise KeyError(f"unknown preset {preset!r} for dataset {name!r}; available presets: {', '.join(e.preset_names())}")
    return e.generate_fn()(preset, Path(root), progress)
