"""Heat diffusion (ICLR 2021 appendix C): scalar temperature fields with the ``mag``, ``rot`` and ``scale`` test sets.

Two sources, one benchmark:

* ``generated`` (default): the finite-difference simulation of :mod:`datamodules.heat_sim` for the chosen preset,
  generated on first use by ``symbench data generate heat`` and stored under ``<root>/heat/<preset>-<key>``;
* ``numpy``: a user's temperature array in a ``.npy`` file, or a ``.npz`` holding one array (or one named
  ``temperature``), shaped ``(T, H, W)`` (one trajectory) or ``(n_traj, T, H, W)``.

The heat equation's symmetries (appendix B.6) cover all three transformed test sets: linearity (``mag``: the
normaliser standardises the scalar, so ``a`` multiplies the deviation from the training mean, which by linearity
and constant solutions is again a heat solution), rotations (``rot``) and ``H(x, t) -> H(lam x, lam^2 t)``
without a magnitude factor (``scale``, scalar power 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from datamodules import heat_sim
from datamodules.stored import StoredDataModule
from symbench.fields import FieldLayout

Source = Literal["generated", "numpy"]


def load_temperature_array(path: str | Path) -> tuple[np.ndarray, FieldLayout]:
    """``(n_traj, T, 1, H, W)`` float32 and the ``temperature:scalar`` layout from a ``.npy`` / ``.npz`` file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"heat temperature file {path} does not exist")
    if path.suffix == ".npy":
        array = np.load(path, allow_pickle=False)
    elif path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            if "temperature" in names:
                names = ["temperature"]
            if len(names) != 1:
                raise ValueError(f"{path} holds arrays {', '.join(archive.files) or 'none'}; expected one array "
                                 "or one named 'temperature'")
            array = archive[names[0]]
    else:
        raise ValueError(f"expected .npy or .npz for {path}, got {path.suffix or 'no suffix'!r}")
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or min(array.shape[-2:]) < 2 or array.shape[1] < 2:
        raise ValueError(f"expected a temperature array (T, H, W) or (n_traj, T, H, W) with T >= 2 and H, W >= 2 "
                         f"in {path}, got shape {tuple(np.shape(array))}")
    if not np.issubdtype(array.dtype, np.number) or not np.isfinite(array).all():
        raise ValueError(f"the temperature array in {path} must be numeric and finite (no NaN or inf)")
    return np.ascontiguousarray(array[:, :, None], dtype=np.float32), heat_sim.LAYOUT


class HeatDataModule(StoredDataModule):
    """Temperature windows with the ``orig``, ``mag``, ``rot`` and ``scale`` test splits of the paper (Table 5)."""

    label, sources, presets = "heat", ("generated", "numpy"), heat_sim.PRESETS
    path_hint = "a .npy/.npz temperature array (T, H, W) or (n_traj, T, H, W)"

    def __init__(
        self,
        preset: str = "cpu",
        root: str = "data",
        source: Source = "generated",
        path: str | None = None,
        fields: Sequence[str] = ("temperature",),
        test_splits: Sequence[str] = ("orig", "mag", "rot", "scale"),
        **kwargs: Any,
    ):
        super().__init__(preset, root, source, path, fields, test_splits=test_splits, **kwargs)

    @property
    def data_dir(self) -> Path:
        return heat_sim.default_dir(Path(self.root), self.preset)

    def read_source(self) -> tuple[np.ndarray, FieldLayout]:
        return load_temperature_array(self.path)

    def family(self) -> str:
        return "heat"


def generate_preset(preset: str, root: Path, progress: bool = True) -> Path:
    """Run (or reuse) the finite-difference simulation of ``preset``; returns its data directory."""
    return heat_sim.generate(heat_sim.PRESETS[preset], heat_sim.default_dir(Path(root), preset), progress=progress)
