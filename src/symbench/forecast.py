"""The one LightningModule for autoregressive forecasting, wrapping any registry model.

Training loss (ICLR 2021 sec. 5, D.2): the model is rolled out ``k = train_steps`` steps from the history and the
MSE of every predicted frame is accumulated, ``L = sum_{s=1..k} MSE(x_hat_{t+s}, x_{t+s})``, plus
``alpha * model.regularization_loss()`` when the model has a regulariser (relaxed models).
Evaluation: ``rollout_steps`` autoregressive steps (drop the oldest frame, append the prediction), identical for
every model; RMSE per step and over the horizon and the energy spectrum error, per split; with ``energy_l1`` also the
thermal-energy L1 of the scalar fields (:class:`~symbench.metrics.ThermalEnergyL1`, ICLR 2021 Table 5).

Masked data (ocean land, missing PIV vectors): a batch ``(history, target, mask)`` with ``mask`` True where the data
are defined: ``(B, H, W)`` for every frame of the window (land), or ``(B, T_in + S, H, W)`` per frame (a point may be
missing on some days only). The inputs are 0 wherever their frame is invalid (the datamodule's fill); every predicted
frame is set to 0 where *its* target frame is invalid before it is fed back, so the rollout's inputs are filled like
the data's. The loss is the MSE over the valid (point, frame) pairs of the targets: a point missing in one frame is
left out of that frame's term and counts in the others. RMSE per step and over the horizon pool the squared errors of
the valid pairs only; ESE and thermal energy compare the fields with the invalid pairs at 0 in both prediction and
target (a spectrum needs the whole grid).

DDP exactness: every metric keeps summed states (``dist_reduce_fx="sum"``) that are synced before ``compute``, the
datamodule's evaluation loaders shard the windows without padding (each counted once), and the equivariance probe's
group element of a window depends only on its dataset index, not on the batch or rank that evaluates it. So
``validate`` / ``test`` on N ranks log the single-process values up to float summation order. A rank whose shard of
a split is empty still computes (syncs) that split's metrics, contributing zero sums: whether a split or probe has
results is decided over all ranks, so every rank reaches every reduction.

Precision: equivariance probes run in full float32 (no autocast, no TF32), whatever the Trainer's precision.
"""

from __future__ import annotations

from typing import Any, Sequence

import lightning as L
import torch
from torch import Tensor, nn

from symbench import models, symmetry
from symbench.fields import FieldLayout
from symbench.hardware import full_float32
from symbench.metrics import EnergySpectrumError, EquivarianceError, RolloutRMSE, ThermalEnergyL1, equivariance_pair

# Groups whose one-step equivariance error is measured on the ``orig`` test split (ICLR 2021 sec. 5.1, Table 1).
# "scale": the full space-time scaling of eq. 3 (symmetry.SpaceTimeScaling, lam ~ U(1/5, 2)): the history is resampled
# in time by lam^2 about the predicted frame and every frame scaled in space; the output frame in space only.
EQUIVARIANCE_PROBES = ("um", "mag", "rot", "scale")
PROBE_SEED = 10_000  # seed of the per-window probe elements (one table per group, indexed by the window)


def rollout(model: nn.Module, history: Tensor, steps: int, mask: Tensor | None = None) -> Tensor:
    """Autoregressive rollout: ``(B, T_in, C, H, W)`` -> ``(B, steps, C, H, W)``. With a batch's mask (``(B, H, W)``
    or per frame ``(B, T_in + steps, H, W)``), each predicted frame is zeroed where its target frame is invalid
    before it joins the history."""
    keep = None if mask is None else target_mask(mask, steps)[:, :, None]
    frames = []
    for step in range(steps):
        nxt = model(history)
        if keep is not None:
            nxt = torch.where(keep[:, min(step, keep.shape[1] - 1)], nxt, torch.zeros((), dtype=nxt.dtype,
                                                                                      device=nxt.device))
        frames.append(nxt)
        history = torch.cat([history[:, 1:], nxt.unsqueeze(1)], dim=1)
    return torch.stack(frames, dim=1)


def target_mask(mask: Tensor, steps: int) -> Tensor:
    """The validity of the ``steps`` target frames of a batch's mask: ``(B, 1, H, W)`` for a ``(B, H, W)`` mask (the
    same in every frame), ``(B, steps, H, W)`` for the last ``steps`` frames of a per-frame ``(B, T, H, W)`` mask."""
    return mask[:, None] if mask.ndim == 3 else mask[:, -steps:]


def unpack(batch: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor | None]:
    """``(history, target, mask or None)`` of a ``(history, target)`` or ``(history, target, mask)`` batch."""
    history, target, *rest = batch
    return history, target, (rest[0] if rest else None)


def step_mse(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """MSE per rollout step ``(S,)`` of ``(B, S, C, H, W)`` tensors; with a batch's mask (``(B, H, W)`` or
    ``(B, T_in + S, H, W)``), over the points valid in each step's target frame (0 for a step without any)."""
    sq = (pred - target).pow(2)
    if mask is None:
        return sq.mean(dim=(0, 2, 3, 4))
    weight = target_mask(mask, sq.shape[1])[:, :, None].to(sq.dtype).expand_as(sq)
    return (sq * weight).sum(dim=(0, 2, 3, 4)) / weight.sum(dim=(0, 2, 3, 4)).clamp_min(1)


def _points(mask: Tensor | None, steps: int) -> Tensor | None:
    """A batch's mask as the ``(B, 1 or S, 1, H, W)`` weight of :class:`RolloutRMSE`."""
    return None if mask is None else target_mask(mask, steps)[:, :, None]


class ForecastModule(L.LightningModule):
    """Wraps ``models.build(model, in_frames=..., layout=..., **model_hparams)``.

    Args:
        model: registry or plug-in name (``symbench.models.available()``) or ``package.module:Factory``.
        model_hparams: keyword arguments of the model (e.g. ``{"width": 32}``).
        fields: the data's field declaration, e.g. ``["velocity:vector"]`` (linked from the datamodule).
        in_frames: history length T_in.
        train_steps: number k of accumulated prediction steps in the loss.
        rollout_steps: evaluation horizon.
        lr, weight_decay: Adam settings (the paper's code used weight decay 4e-4).
        lr_decay: multiplicative learning-rate decay per epoch (StepLR, the paper's 0.95).
        alpha: weight of the model's regularisation term.
        test_splits: names of the test dataloaders, in order (linked from the datamodule).
        energy_l1: also report the thermal-energy L1 of the scalar fields on every test split (heat diffusion).
    """

    def __init__(
        self,
        model: str = "resnet",
        model_hparams: dict[str, Any] | None = None,
        fields: Sequence[str] = ("velocity:vector",),
        in_frames: int = 10,
        train_steps: int = 3,
        rollout_steps: int = 10,
        lr: float = 1e-3,
        weight_decay: float = 4e-4,
        lr_decay: float = 0.95,
        alpha: float = 0.0,
        test_splits: Sequence[str] = ("orig",),
        energy_l1: bool = False,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.layout = FieldLayout.of(*fields)
        self.net = models.build(model, in_frames=in_frames, layout=self.layout, **(model_hparams or {}))
        if alpha > 0 and not hasattr(self.net, "regularization_loss"):
            raise ValueError(f"alpha={alpha} but model {model!r} has no regularization_loss(); set alpha=0")
        self.test_splits = list(test_splits)
        self.val_rmse = RolloutRMSE(rollout_steps)
        self.test_rmse = nn.ModuleList(RolloutRMSE(rollout_steps) for _ in self.test_splits)
        self.test_ese = nn.ModuleList(EnergySpectrumError() for _ in self.test_splits)
        if energy_l1 and not self.layout.n_scalars:
            raise ValueError(f"energy_l1 needs scalar fields; the data has {self.layout}")
        self.test_energy = nn.ModuleList(ThermalEnergyL1(self.layout.scalar_channels) for _ in self.test_splits
                                         if energy_l1)
        self.test_equivariance = nn.ModuleDict({g: EquivarianceError() for g in EQUIVARIANCE_PROBES})

    def forward(self, history: Tensor) -> Tensor:
        return self.net(history)

    def rollout(self, history: Tensor, steps: int | None = None, mask: Tensor | None = None) -> Tensor:
        return rollout(self.net, history, steps or self.hparams.rollout_steps, mask)

    # -- training --------------------------------------------------------------------------------------------------
    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        history, target, mask = unpack(batch)
        pred = rollout(self.net, history, target.shape[1], mask)
        mse = step_mse(pred, target, mask)
        loss = mse.sum()
        self.log("train/mse", mse.mean(), prog_bar=True, batch_size=history.shape[0])
        if self.hparams.alpha > 0:
            reg = self.net.regularization_loss()
            self.log("train/reg", reg, batch_size=history.shape[0])
            loss = loss + self.hparams.alpha * reg
        return loss

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        history, target, mask = unpack(batch)
        self.val_rmse.update(self.rollout(history, target.shape[1], mask), target, _points(mask, target.shape[1]))

    def on_validation_epoch_end(self) -> None:
        result = self.val_rmse.compute()
        self.log("val/rmse", result["horizon"], prog_bar=True, sync_dist=False)
        self.val_rmse.reset()

    # -- testing ---------------------------------------------------------------------------------------------------
    def test_step(self, batch: Sequence[Tensor], batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        """Update the split's metrics; return the predicted rollout (read by callbacks, e.g. PredictionArtifacts;
        zero outside the mask, like the target)."""
        history, target, mask = unpack(batch)
        pred = self.rollout(history, target.shape[1], mask)
        self.test_rmse[dataloader_idx].update(pred, target, _points(mask, target.shape[1]))
        for sl in self.layout.vector_slices:
            self.test_ese[dataloader_idx].update(pred[:, :, sl], target[:, :, sl])
        if self.test_energy:
            self.test_energy[dataloader_idx].update(pred, target)  # zero outside the mask in both
        if self.test_splits[dataloader_idx] == "orig":
            self._probe_equivariance(history, self._probe_batches[batch_idx])
        return pred

    def on_test_epoch_start(self) -> None:
        """Read the dataset indices of the ``orig`` loader's batches (its sampler is deterministic: sequential, or
        the datamodule's unpadded DDP shard) and draw one probe element per ``orig`` window."""
        self._probe_batches: list[list[int]] = []
        self._probe_elements: dict[str, symmetry.GroupElement] = {}
        if "orig" not in self.test_splits:
            return
        loaders = self.trainer.test_dataloaders
        loader = (loaders if isinstance(loaders, (list, tuple)) else [loaders])[self.test_splits.index("orig")]
        self._probe_batches = [list(batch) for batch in loader.batch_sampler]
        for name in self.test_equivariance:
            gen = torch.Generator().manual_seed(PROBE_SEED)
            self._probe_elements[name] = symmetry.probe_elements(name, len(loader.dataset), gen)

    def _probe_equivariance(self, history: Tensor, index: Sequence[int]) -> None:
        """``|f(g x) - g f(x)|`` for group elements drawn like the transformed splits; window ``index[i]`` always
        gets the same element, however the windows are batched or sharded over DDP ranks."""
        if len(index) != history.shape[0]:
            raise RuntimeError(f"batch of {history.shape[0]} windows but the sampler gave {len(index)} indices")
        idx = torch.as_tensor(index)
        with full_float32(history.device.type):
            for name, metric in self.test_equivariance.items():
                g = symmetry.map_params(self._probe_elements[name], lambda t: t[idx].to(history.device))
                metric.update(*equivariance_pair(self.net, history, lambda x: g.act(x, self.layout)))  # noqa: B023

    def on_test_epoch_end(self) -> None:
        self.test_results: dict[str, dict[str, Any]] = {}
        for split, rmse, ese in zip(self.test_splits, self.test_rmse, self.test_ese):
            if not self._updated_on_some_rank(rmse):
                continue
            r = rmse.compute()
            res = {"rmse": r["horizon"].item(), "rmse_step": r["per_step"].tolist()}
            self.log(f"test/{split}/rmse", r["horizon"], add_dataloader_idx=False)
            for step, value in enumerate(r["per_step"], start=1):
                self.log(f"test/{split}/rmse_step{step}", value, add_dataloader_idx=False)
            if self.layout.n_vectors and self._updated_on_some_rank(ese):
                res["ese"] = ese.compute().item()
                self.log(f"test/{split}/ese", res["ese"], add_dataloader_idx=False)
            if self.test_energy:
                energy = self.test_energy[self.test_splits.index(split)]
                res["energy_l1"] = energy.compute().item()
                self.log(f"test/{split}/energy_l1", res["energy_l1"], add_dataloader_idx=False)
                energy.reset()
            if split == "orig":
                for name, metric in self.test_equivariance.items():
                    if self._updated_on_some_rank(metric):
                        ee = metric.compute()
                        res[f"eqerr_{name}"], res[f"eqrel_{name}"] = ee["rmse"].item(), ee["relative"].item()
                        for key in (f"eqerr_{name}", f"eqrel_{name}"):
                            self.log(f"test/orig/{key}", res[key], add_dataloader_idx=False)
                        metric.reset()
            self.test_results[split] = res
            rmse.reset()
            ese.reset()

    def _updated_on_some_rank(self, metric: Any) -> bool:
        """Whether ``metric`` was updated on any DDP rank (the same answer on every rank)."""
        trainer = self._trainer
        if trainer is None or trainer.world_size == 1:
            return bool(metric.update_called)
        return bool(trainer.strategy.reduce_boolean_decision(bool(metric.update_called), all=False))

    # -- optimisation ----------------------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        opt = torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=self.hparams.lr_decay)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.net.parameters())
