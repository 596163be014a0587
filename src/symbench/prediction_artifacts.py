"""Prediction artifacts of a test pass: what the leaderboard plots need and ``runs.csv`` does not hold.

:class:`PredictionArtifacts` is a Lightning callback. During ``trainer.test`` it reads the predicted rollout that
``ForecastModule.test_step`` returns and the batch's target, and keeps, per test split, for the first vector field
of the data (the velocity):

* ``<split>.spectrum_pred`` / ``<split>.spectrum_target``, ``(S, K)`` float32: the isotropic (radially binned)
  kinetic-energy spectrum :func:`~symbench.metrics.spectrum.radial_energy_spectrum` of each rollout step, averaged
  over every sample of the split (``S`` rollout steps, ``K`` wavenumber bins ``k = 0 .. K-1`` in cycles per
  ``min(H, W)`` pixels);
* ``<split>.tke_pred`` / ``<split>.tke_target``, ``(K,)`` float32: the turbulence kinetic-energy spectrum that the
  ESE compares (:func:`~symbench.metrics.spectrum.turbulent_energy_spectrum`: fluctuations about the rollout mean,
  averaged over steps), averaged over the split; only when ``S >= 2``;
* ``<split>.n_samples``: the number of samples averaged;
* ``<split>.snapshot_steps`` (int) and ``<split>.snapshot_pred`` / ``<split>.snapshot_target``, ``(n, H, W)``:
  the velocity norm ``sqrt(u^2 + v^2)`` of the split's first sample at the rollout steps 1, 5, 10 that exist
  (``<= S``), as in ICLR 2021 Fig. 8. Stored as uint8 ``q`` with ``norm = q * <split>.snapshot_scale / 255``
  (``snapshot_scale``: the largest norm of the split's snapshots), i.e. to 0.2 % of the maximum, as fine as a
  256-colour map shows and half the size of float16 (~40 KB per file instead of ~60 KB);
  :func:`load_artifacts` returns them as float32 norms.

plus ``splits`` (the split names) and ``meta`` (a JSON string: model, seed, preset, config hash, ... as given, and
the field's name). All values are in the normalised units of the metrics. The file is one compressed ``.npz``
written atomically (temporary file in the same directory, then ``os.replace``), on global rank 0; under DDP the
spectrum sums and sample counts are summed over the ranks first (a rank with no window of a split adds zeros, so
every rank takes part in every reduction), and the snapshot is rank 0's first sample.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from symbench.metrics.spectrum import radial_energy_spectrum, turbulent_energy_spectrum
from symbench.results import atomic_write

SNAPSHOT_STEPS = (1, 5, 10)


def artifact_path(results_dir: str | Path, benchmark: str, preset: str, model: str, seed: int | str) -> Path:
    """``<results>/<benchmark>/predictions/<preset>/<model>-seed<seed>.npz``."""
    return Path(results_dir) / benchmark / "predictions" / preset / f"{model}-seed{seed}.npz"


def save_npz_atomic(path: str | Path, arrays: Mapping[str, Any]) -> Path:
    """``np.savez_compressed`` through :func:`~symbench.results.atomic_write`: a failure leaves no partial file (and
    an existing ``path`` untouched)."""
    return atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def read_meta(path: str | Path) -> dict[str, Any] | None:
    """The ``meta`` of an artifact file, or ``None`` when it is missing or unreadable."""
    try:
        with np.load(path) as f:
            return json.loads(str(f["meta"]))
    except (OSError, KeyError, ValueError):
        return None


def load_artifacts(path: str | Path) -> dict[str, Any]:
    """An artifact file as ``{"meta": dict, "splits": [...], "<split>": {"spectrum_pred": array, ...}}``."""
    with np.load(path) as f:
        out: dict[str, Any] = {"meta": json.loads(str(f["meta"])), "splits": [str(s) for s in f["splits"]]}
        for split in out["splits"]:
            prefix = f"{split}."
            out[split] = {k[len(prefix):]: f[k] for k in f.files if k.startswith(prefix)}
            if "snapshot_scale" in out[split]:
                scale = np.float32(out[split]["snapshot_scale"]) / np.float32(255)
                for key in ("snapshot_pred", "snapshot_target"):
                    out[split][key] = out[split][key].astype(np.float32) * scale
    return out


@dataclass
class _SplitSums:
    spectrum_pred: Tensor
    spectrum_target: Tensor
    tke_pred: Tensor | None
    tke_target: Tensor | None
    n_samples: Tensor


class PredictionArtifacts(Callback):
    """Collect per-split energy spectra and Fig. 8 snapshots during ``trainer.test`` and save them to ``path``.

    Needs the LightningModule's ``test_step`` to return the predicted rollout ``(B, S, C, H, W)`` (the target is the
    second element of the batch), and reads ``pl_module.test_splits`` (names of the test dataloaders, in order) and
    ``pl_module.layout`` (a :class:`~symbench.fields.FieldLayout`). ``meta`` is stored as JSON.
    """

    def __init__(self, path: str | Path, meta: Mapping[str, Any] | None = None,
                 snapshot_steps: Sequence[int] = SNAPSHOT_STEPS) -> None:
        super().__init__()
        self.path = Path(path)
        self.meta = dict(meta or {})
        self.snapshot_steps = tuple(snapshot_steps)
        self.written: Path | None = None

    # -- collection ------------------------------------------------------------------------------------------------
    def on_test_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._splits = list(getattr(pl_module, "test_splits", None) or ["orig"])
        vector = [(f, s) for f, s in pl_module.layout.slices() if f.kind == "vector"]
        self._field, self._slice = (vector[0][0].name, vector[0][1]) if vector else (None, None)
        self._sums: dict[str, _SplitSums] = {}
        self._snapshots: dict[str, dict[str, np.ndarray]] = {}

    def on_test_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                          dataloader_idx: int = 0) -> None:
        if self._slice is None:
            return
        if not isinstance(outputs, Tensor):
            raise TypeError("PredictionArtifacts: test_step must return the predicted rollout (B, S, C, H, W), "
                            f"got {type(outputs).__name__}")
        split = self._splits[dataloader_idx]
        pred = outputs.detach()[:, :, self._slice].double().cpu()
        target = batch[1][:, :, self._slice].double().cpu()
        if pred.shape != target.shape:
            raise ValueError(f"PredictionArtifacts: prediction {tuple(pred.shape)} and target "
                             f"{tuple(target.shape)} differ on split {split!r}")
        self._accumulate(split, pred, target)
        if split not in self._snapshots:  # the split's first batch: its first sample
            self._snapshots[split] = self._snapshot(pred[0], target[0])

    def _accumulate(self, split: str, pred: Tensor, target: Tensor) -> None:
        spec_pred, spec_target = radial_energy_spectrum(pred).sum(0), radial_energy_spectrum(target).sum(0)
        several = pred.shape[1] >= 2
        tke_pred = turbulent_energy_spectrum(pred).sum(0) if several else None
        tke_target = turbulent_energy_spectrum(target).sum(0) if several else None
        n = torch.tensor(float(pred.shape[0]), dtype=torch.float64)
        acc = self._sums.get(split)
        if acc is None:
            self._sums[split] = _SplitSums(spec_pred, spec_target, tke_pred, tke_target, n)
            return
        acc.spectrum_pred += spec_pred
        acc.spectrum_target += spec_target
        if several:
            acc.tke_pred += tke_pred
            acc.tke_target += tke_target
        acc.n_samples += n

    def _snapshot(self, pred: Tensor, target: Tensor) -> dict[str, np.ndarray]:
        """Velocity norm of one sample ``(S, 2, H, W)`` at the snapshot steps that exist."""
        steps = [s for s in self.snapshot_steps if 1 <= s <= pred.shape[0]]
        index = torch.tensor([s - 1 for s in steps], dtype=torch.long)

        def norm(v: Tensor) -> np.ndarray:
            return v[index].square().sum(1).sqrt().numpy()

        pred_norm, target_norm = norm(pred), norm(target)
        scale = max(float(pred_norm.max(initial=0.0)), float(target_norm.max(initial=0.0)))
        scale = scale if np.isfinite(scale) and scale > 0 else 1.0

        def quantised(x: np.ndarray) -> np.ndarray:
            return np.round(np.clip(np.nan_to_num(x / scale), 0.0, 1.0) * 255).astype(np.uint8)

        return {"snapshot_steps": np.array(steps, dtype=np.int16), "snapshot_scale": np.array(scale, np.float32),
                "snapshot_pred": quantised(pred_norm), "snapshot_target": quantised(target_norm)}

    # -- output ----------------------------------------------------------------------------------------------------
    def on_test_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if getattr(trainer, "world_size", 1) > 1:
            self._reduce_over_ranks(trainer, pl_module)
        if not getattr(trainer, "is_global_zero", True):
            return
        self.written = save_npz_atomic(self.path, self.arrays())

    def _reduce_over_ranks(self, trainer: Any, pl_module: Any) -> None:
        if self._slice is None:
            return
        loaders = trainer.test_dataloaders
        loaders = loaders if isinstance(loaders, (list, tuple)) else [loaders]
        for split, loader in zip(self._splits, loaders):
            if len(loader.dataset) == 0:  # empty on every rank
                continue
            if split not in self._sums:  # this rank's shard is empty: zero sums of the split's shapes
                zero = loader.dataset[0][1][None, :, self._slice].double().zero_()  # one zero sample: zero spectra
                self._accumulate(split, zero, zero)
                self._sums[split].n_samples.zero_()
            acc = self._sums[split]
            for name in ("spectrum_pred", "spectrum_target", "tke_pred", "tke_target", "n_samples"):
                value = getattr(acc, name)
                if value is not None:
                    reduced = trainer.strategy.reduce(value.to(pl_module.device), reduce_op="sum")
                    setattr(acc, name, reduced.double().cpu())

    def arrays(self) -> dict[str, np.ndarray]:
        """What is saved: ``meta``, ``splits`` and per split ``<split>.<name>`` (see the module docstring)."""
        meta = {**self.meta, "field": self._field}
        splits = [s for s in self._splits if s in self._sums]
        out: dict[str, np.ndarray] = {"meta": np.array(json.dumps(meta, sort_keys=True)), "splits": np.array(splits)}
        for split in splits:
            acc = self._sums[split]
            n = acc.n_samples.item()
            out[f"{split}.n_samples"] = np.array(int(round(n)), dtype=np.int64)
            out[f"{split}.spectrum_pred"] = (acc.spectrum_pred / n).numpy().astype(np.float32)
            out[f"{split}.spectrum_target"] = (acc.spectrum_target / n).numpy().astype(np.float32)
            if acc.tke_pred is not None:
                out[f"{split}.tke_pred"] = (acc.tke_pred / n).numpy().astype(np.float32)
                out[f"{split}.tke_target"] = (acc.tke_target / n).numpy().astype(np.float32)
            for key, value in self._snapshots.get(split, {}).items():
                out[f"{split}.{key}"] = value
        return out
