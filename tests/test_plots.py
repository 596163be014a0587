"""Prediction artifacts (spectra, Fig. 8 snapshots) collected during `trainer.test`, and the leaderboard plots."""

from __future__ import annotations

import json
import math

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from symbench import cli
from symbench.fields import FieldLayout
from symbench.plots import write_plots
from symbench.prediction_artifacts import (PredictionArtifacts, artifact_path, load_artifacts, read_meta,
                                           save_npz_atomic)
from symbench.results import ROW_FIELDS, append_rows

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Replay(L.LightningModule):
    """Returns a fixed prediction for each test window (the batch carries the window index)."""

    def __init__(self, preds: list[torch.Tensor], splits: list[str], fields=("velocity:vector",)):
        super().__init__()
        self.preds, self.test_splits, self.layout = preds, splits, FieldLayout.of(*fields)

    def test_step(self, batch, batch_idx, dataloader_idx=0):
        return self.preds[dataloader_idx][batch[2]]


def run_test(tmp_path, targets, preds, splits, batch_size=3, meta=None, fields=("velocity:vector",)):
    """`trainer.test` of :class:`Replay` on ``targets`` with the callback; returns the loaded artifact file."""
    loaders = [DataLoader(TensorDataset(t[:, :1], t, torch.arange(len(t))), batch_size=batch_size) for t in targets]
    path = tmp_path / "art.npz"
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[PredictionArtifacts(path, meta or {"model": "replay", "seed": 0})])
    trainer.test(Replay(preds, splits, fields), dataloaders=loaders, verbose=False)
    return load_artifacts(path)


def mode(n: int, kx: int, ky: int, component: int, amplitudes: torch.Tensor, steps: int, signs=None) -> torch.Tensor:
    """``(B, steps, 2, n, n)`` with ``amplitude_b * sign_t * cos(2 pi (kx x + ky y) / n)`` in one component."""
    y, x = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    wave = torch.cos(2 * math.pi * (kx * x + ky * y) / n)
    signs = torch.ones(steps) if signs is None else torch.as_tensor(signs, dtype=torch.float32)
    out = torch.zeros(len(amplitudes), steps, 2, n, n)
    out[:, :, component] = amplitudes[:, None, None, None] * signs[None, :, None, None] * wave
    return out


def numpy_spectrum(vel: np.ndarray) -> np.ndarray:
    """Independent isotropic spectrum of square ``(..., 2, n, n)`` fields: 0.5 |FFT/n^2|^2 summed over the
    components and over the modes with round(|m|) = k, k = 0 .. n // 2 (corners beyond the circle dropped)."""
    n = vel.shape[-1]
    power = 0.5 * (np.abs(np.fft.fft2(vel) / n**2) ** 2).sum(-3)
    m = np.fft.fftfreq(n, d=1.0 / n)
    k = np.floor(np.sqrt(m[:, None] ** 2 + m[None, :] ** 2) + 0.5).astype(int)
    out = np.zeros(power.shape[:-2] + (n // 2 + 1,))
    for b in range(n // 2 + 1):
        out[..., b] = power[..., k == b].sum(-1)
    return out


def test_single_fourier_modes_put_their_energy_at_their_wavenumbers(tmp_path):
    n, steps = 16, 4
    a = torch.tensor([1.0, 2.0, 0.5, 1.5, 3.0])  # 5 samples, batches of 3: the mean runs over batches
    b = torch.tensor([0.5, 1.0, 1.0, 2.0, 1.0])
    signs = [1, -1, 1, -1]  # the rollout mean is zero: the fluctuation is the field itself
    target = mode(n, 3, 0, 0, a, steps, signs)  # u = a cos(2 pi 3 x / n): E(3) = a^2 / 4
    pred = mode(n, 0, 5, 1, b, steps, signs)  # v = b cos(2 pi 5 y / n): E(5) = b^2 / 4
    art = run_test(tmp_path, [target, pred], [pred, target], ["orig", "rot"])
    assert art["splits"] == ["orig", "rot"] and art["meta"] == {"model": "replay", "seed": 0, "field": "velocity"}
    orig = art["orig"]
    assert int(orig["n_samples"]) == 5
    expected_target = np.zeros((steps, n // 2 + 1))
    expected_target[:, 3] = (a**2).mean().item() / 4
    expected_pred = np.zeros((steps, n // 2 + 1))
    expected_pred[:, 5] = (b**2).mean().item() / 4
    np.testing.assert_allclose(orig["spectrum_target"], expected_target, atol=1e-7)
    np.testing.assert_allclose(orig["spectrum_pred"], expected_pred, atol=1e-7)
    np.testing.assert_allclose(orig["tke_target"], expected_target[0], atol=1e-7)
    np.testing.assert_allclose(orig["tke_pred"], expected_pred[0], atol=1e-7)
    # each split keeps its own data: rot has prediction and target swapped
    np.testing.assert_allclose(art["rot"]["spectrum_target"], expected_pred, atol=1e-7)
    np.testing.assert_allclose(art["rot"]["spectrum_pred"], expected_target, atol=1e-7)


def test_spectra_of_random_fields_equal_an_independent_computation(tmp_path):
    gen = torch.Generator().manual_seed(0)
    target = torch.randn(7, 3, 2, 12, 12, generator=gen)
    pred = 0.5 * target + 0.3 * torch.randn(7, 3, 2, 12, 12, generator=gen)
    art = run_test(tmp_path, [target], [pred], ["orig"])["orig"]
    np.testing.assert_allclose(art["spectrum_target"], numpy_spectrum(target.double().numpy()).mean(0), rtol=1e-5)
    np.testing.assert_allclose(art["spectrum_pred"], numpy_spectrum(pred.double().numpy()).mean(0), rtol=1e-5)
    fluct = pred.double().numpy() - pred.double().numpy().mean(1, keepdims=True)
    np.testing.assert_allclose(art["tke_pred"], numpy_spectrum(fluct).mean((0, 1)), rtol=1e-5)
    assert art["spectrum_pred"].dtype == np.float32


def test_snapshots_are_the_velocity_norm_of_the_first_sample_at_steps_1_5_10(tmp_path):
    gen = torch.Generator().manual_seed(1)
    # velocity and a scalar: the norm is taken over the velocity's two channels only
    target = torch.randn(4, 10, 3, 8, 8, generator=gen)
    pred = torch.randn(4, 10, 3, 8, 8, generator=gen)
    short = torch.randn(4, 3, 3, 8, 8, generator=gen)  # horizon 3: only step 1 exists
    art = run_test(tmp_path, [target, short], [pred, short + 1], ["orig", "mag"],
                   fields=("velocity:vector", "temperature:scalar"))
    orig = art["orig"]
    assert orig["snapshot_steps"].tolist() == [1, 5, 10] and orig["snapshot_target"].shape == (3, 8, 8)
    norm = lambda v: np.sqrt(v[0, [0, 4, 9], 0] ** 2 + v[0, [0, 4, 9], 1] ** 2)  # noqa: E731
    expected_target, expected_pred = norm(target.numpy()), norm(pred.numpy())
    # stored as uint8 of the split's largest norm: exact to half a quantisation step
    scale = max(expected_target.max(), expected_pred.max())
    assert float(orig["snapshot_scale"]) == pytest.approx(scale, rel=1e-6)
    np.testing.assert_allclose(orig["snapshot_target"], expected_target, rtol=0, atol=scale / 510 * 1.001)
    np.testing.assert_allclose(orig["snapshot_pred"], expected_pred, rtol=0, atol=scale / 510 * 1.001)
    assert art["mag"]["snapshot_steps"].tolist() == [1]
    expected = np.sqrt(short[0, 0, 0].numpy() ** 2 + short[0, 0, 1].numpy() ** 2)
    scale = float(art["mag"]["snapshot_scale"])
    np.testing.assert_allclose(art["mag"]["snapshot_target"][0], expected, rtol=0, atol=scale / 510 * 1.001)


def test_npz_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "p" / "m-seed0.npz"
    save_npz_atomic(path, {"meta": np.array(json.dumps({"config_hash": "a"})), "x": np.ones(3)})
    before = path.read_bytes()

    def broken(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", broken)
    with pytest.raises(OSError, match="disk full"):
        save_npz_atomic(path, {"x": np.zeros(3)})
    with pytest.raises(OSError, match="disk full"):
        save_npz_atomic(tmp_path / "p" / "new.npz", {"x": np.zeros(3)})
    assert path.read_bytes() == before and read_meta(path) == {"config_hash": "a"}
    assert sorted(p.name for p in path.parent.iterdir()) == ["m-seed0.npz"]  # no partial or temporary file


# -- plots ---------------------------------------------------------------------------------------------------------
MODELS = ["unet", "augm_rot_unet", "equ_rot_unet", "resnet"]
SPLITS = ["orig", "rot"]


def _row(model, seed, split, metric, value, horizon, config_hash="h", preset="cpu"):
    r = {k: "x" for k in ROW_FIELDS}
    r.update(benchmark="rbc", model=model, seed=seed, split=split, metric=metric, value=value, horizon=horizon,
             preset=preset, config_hash=f"{config_hash}-{model}", params=10, train_seconds=1.0, epochs=2,
             best_epoch=1)
    return r


def _synthetic_results(root, with_artifacts=True):
    rows = []
    for i, model in enumerate(MODELS):
        for seed in (0, 1):
            for split in SPLITS:
                rows.append(_row(model, seed, split, "rmse", 0.1 * (i + 1) + 0.01 * seed, 10))
                rows += [_row(model, seed, split, "rmse_step", 0.01 * (i + 1) * step + 0.002 * seed, step)
                         for step in range(1, 11)]
    append_rows(root / "rbc" / "runs.csv", rows)
    if not with_artifacts:
        return
    gen = np.random.default_rng(0)
    for model in MODELS[:3]:
        for seed in (0, 1):
            arrays = {"meta": np.array(json.dumps({"model": model, "seed": seed, "config_hash": f"h-{model}"})),
                      "splits": np.array(SPLITS)}
            k = np.arange(17, dtype=np.float32)
            for split in SPLITS:
                spec = np.tile((k + 1.0) ** -3, (10, 1)).astype(np.float32)
                arrays.update({f"{split}.spectrum_target": spec, f"{split}.spectrum_pred": spec * 0.8,
                               f"{split}.tke_target": spec[0] * 0.1, f"{split}.tke_pred": spec[0] * 0.05,
                               f"{split}.n_samples": np.array(5), f"{split}.snapshot_steps": np.array([1, 5, 10]),
                               f"{split}.snapshot_scale": np.array(2.0, np.float32),
                               f"{split}.snapshot_target": gen.integers(0, 256, (3, 32, 32), dtype=np.uint8),
                               f"{split}.snapshot_pred": gen.integers(0, 256, (3, 32, 32), dtype=np.uint8)})
            save_npz_atomic(artifact_path(root, "rbc", "cpu", model, seed), arrays)
    # an artifact of an older configuration is left out, with a note
    save_npz_atomic(artifact_path(root, "rbc", "cpu", "resnet", 0),
                    {"meta": np.array(json.dumps({"model": "resnet", "seed": 0, "config_hash": "old"})),
                     "splits": np.array([], dtype="<U1")})


def _assert_png(path):
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200 and image.std() > 0.01


def test_plots_are_valid_deterministic_pngs(tmp_path):
    _synthetic_results(tmp_path)
    written, notes = write_plots("rbc", tmp_path, model_order=MODELS)
    out = tmp_path / "rbc" / "plots" / "cpu"
    assert written == [out / "rmse_per_step.png", out / "spectra.png", out / "spectra_tke.png",
                       out / "snapshots_unet.png"]
    for path in written:
        _assert_png(path)
    assert len(notes) == 1 and "resnet-seed0.npz" in notes[0] and "configuration" in notes[0]
    first = [p.read_bytes() for p in written]
    assert [p.read_bytes() for p in write_plots("rbc", tmp_path, model_order=MODELS)[0]] == first
    assert not list(out.glob(".*"))  # no temporary files left


def test_symbench_leaderboard_writes_tables_and_plots_and_notes_what_it_skips(tmp_path, capsys):
    _synthetic_results(tmp_path / "a")
    assert cli.main(["leaderboard", "--results", str(tmp_path / "a")]) == 0
    lines = capsys.readouterr().out.splitlines()
    wrote = [line.removeprefix("wrote ") for line in lines if line.startswith("wrote ")]
    names = [p.rsplit("/", 1)[-1] for p in wrote]
    assert names == ["leaderboard.md", "leaderboard.csv", "rmse_per_step.png", "spectra.png", "spectra_tke.png",
                     "snapshots_unet.png"]
    for path in wrote[2:]:
        _assert_png(tmp_path / "a" / "rbc" / "plots" / "cpu" / path.rsplit("/", 1)[-1])
    # no artifacts: the RMSE curves only, and one line saying why the rest is missing
    _synthetic_results(tmp_path / "b", with_artifacts=False)
    assert cli.main(["leaderboard", "--results", str(tmp_path / "b")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.rsplit("/", 1)[-1] for line in lines if line.startswith("wrote ")] == [
        "leaderboard.md", "leaderboard.csv", "rmse_per_step.png"]
    skipped = [line for line in lines if line.startswith("skipped")]
    assert len(skipped) == 1 and "no prediction artifacts" in skipped[0]
