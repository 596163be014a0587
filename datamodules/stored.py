"""A data family read either from its generated dataset (:mod:`datamodules.store`) or from a user's own files.

Shared by every family (RBC, smoke, ...): the checks of ``source`` / ``preset`` / ``path``, reading once and
caching, the selection of the requested fields, and the dataset facts for leaderboard rows. A family says what it
is called, which sources it reads, where a preset's generated dataset lives (:attr:`data_dir`) and how to read its
other sources (:meth:`read_source`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Collection, Sequence

import numpy as np

from datamodules import store
from datamodules.base import ForecastDataModule
from symbench.fields import FieldLayout


def select_fields(array: np.ndarray, layout: FieldLayout,
                  names: Sequence[str]) -> tuple[np.ndarray, FieldLayout]:
    """The channels of the fields ``names`` (in that order) of a ``(n_traj, T, C, H, W)`` array, and their layout;
    the array itself (no copy) when that is every field in order."""
    unknown = [n for n in names if n not in layout.names()]
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; the data has {', '.join(layout.names())}")
    channels = np.concatenate([np.arange(layout.channel_slice(n).start, layout.channel_slice(n).stop) for n in names])
    if len(channels) != layout.channels or (channels != np.arange(layout.channels)).any():
        array = array[:, :, channels]
    return array, layout.select(names)


class StoredDataModule(ForecastDataModule):
    """``source="generated"``: the dataset of ``preset`` under ``root``; any other source: ``path``.

    Subclasses set :attr:`label` (for messages), :attr:`sources` (``"generated"`` first), :attr:`presets`,
    :attr:`path_hint` (what ``--data.path`` must point at) and implement :attr:`data_dir`, :meth:`read_source` and
    :meth:`family` (the dataset name in leaderboard rows is ``<family>-<source>``).
    """

    label: str
    sources: tuple[str, ...]
    presets: Collection[str]
    path_hint: str

    def __init__(self, preset: str, root: str, source: str, path: str | None, fields: Sequence[str],
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if source not in self.sources:
            choices = f"{', '.join(self.sources[:-1])} or {self.sources[-1]}"
            raise ValueError(f"unknown {self.label} source {source!r}; choose {choices}")
        if source == "generated" and preset not in self.presets:
            raise ValueError(f"unknown {self.label} preset {preset!r}; available presets: {', '.join(self.presets)}")
        if source != "generated" and path is None:
            raise ValueError(f"source={source!r} needs --data.path pointing at {self.path_hint}")
        self.preset, self.root, self.source, self.path = preset, root, source, path
        self.field_names = list(fields)
        self._cache: tuple[np.ndarray, FieldLayout] | None = None
        self._meta: dict[str, Any] = {}

    @property
    def data_dir(self) -> Path:
        """Where the generated dataset of :attr:`preset` lives under :attr:`root`."""
        raise NotImplementedError

    def read_source(self) -> tuple[np.ndarray, FieldLayout]:
        """Read ``(n_traj, T, C, H, W)`` and its layout from :attr:`path` for a source other than ``generated``."""
        raise NotImplementedError

    def family(self) -> str:
        raise NotImplementedError

    def load(self) -> tuple[np.ndarray, FieldLayout]:
        if self._cache is None:
            if self.source == "generated":
                array, layout, self._meta = store.read_trajectories(self.data_dir)
            else:
                array, layout = self.read_source()
            self._cache = select_fields(array, layout, self.field_names)
        return self._cache

    def describe(self) -> dict[str, Any]:
        self.load()
        key = self._meta.get("key") if self.source == "generated" else store.data_key(self.path)  # type: ignore[arg-type]
        return {"dataset": f"{self.family()}-{self.source}", "data_key": key or "",
                "source_params": self._meta.get("params", {})}
