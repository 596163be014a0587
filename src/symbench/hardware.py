"""Where a run trains: the Trainer's device options resolved to what they mean, the float32 precision, the rank.

Batch semantics: a preset's ``batch_size`` is the **global** batch. Under DDP each of the ``world_size =
devices * num_nodes`` processes loads ``batch_size / world_size`` windows (an error when it does not divide), and
the gradients are averaged over the processes, so one optimiser step sees the same number of windows, an epoch has
the same number of steps and the learning rate and its schedule stay those of one device; on GPUs batch-norm
statistics are synced over the processes. Evaluation batches are divided too (rounded up); they change no metric.

A configuration's hash holds the resolved device options (never the literal ``auto``), but only those that differ
from one CPU process in float32 without TF32, so hashes of single-CPU runs are those of earlier versions.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch

DEVICE_KEYS = ("accelerator", "devices", "num_nodes", "strategy", "precision")
DEFAULTS: dict[str, Any] = {"accelerator": "auto", "devices": 1, "num_nodes": 1, "strategy": "auto",
                            "precision": "32-true"}
PRECISIONS = {"32": "32-true", "16": "16-mixed", "bf16": "bf16-mixed", "64": "64-true"}


@dataclass(frozen=True)
class Hardware:
    """Resolved device options of one run (``accelerator`` is ``cpu``, ``cuda`` or ``mps``; ``devices`` counts the
    processes per node; ``strategy`` is ``single`` for one process); ``tf32``: TF32 matrix products and convolutions
    allowed on CUDA."""

    accelerator: str = "cpu"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "single"
    precision: str = "32-true"
    tf32: bool = False

    @property
    def world_size(self) -> int:
        return self.devices * self.num_nodes

    def hashed(self) -> dict[str, Any]:
        """The fields that differ from one CPU process in float32 (what a configuration hash adds)."""
        default = Hardware()
        out = {k: v for k, v in self.__dict__.items() if v != getattr(default, k)}
        if self.world_size == 1:
            out.pop("strategy", None)  # one process: DDP or not computes the same
        return out

    def describe(self) -> str:
        """One word per non-default field, e.g. ``cuda x4 ddp bf16-mixed tf32`` (empty for one CPU in float32)."""
        h = self.hashed()
        words = [h.get("accelerator", "")]
        if self.world_size > 1:
            words += [f"x{self.world_size}", self.strategy]
        words += [h.get("precision", ""), "tf32" if self.tf32 else ""]
        return " ".join(w for w in words if w)

    def per_device_batch(self, global_batch: int, key: str = "batch_size") -> int:
        """``global_batch / world_size``; a one-line ``ValueError`` when it does not divide."""
        if global_batch % self.world_size:
            raise ValueError(f"{key} {global_batch} is the global batch and must divide over the {self.world_size} "
                             f"processes ({self.devices} devices x {self.num_nodes} nodes); choose a multiple of "
                             f"{self.world_size} or other --devices")
        return global_batch // self.world_size


def _accelerator_class(name: str) -> Any:
    from lightning.pytorch.accelerators import CPUAccelerator, CUDAAccelerator, MPSAccelerator

    return {"cpu": CPUAccelerator, "cuda": CUDAAccelerator, "mps": MPSAccelerator}[name]


def resolve_accelerator(name: str | None) -> str:
    """``auto`` / ``gpu`` -> ``cuda`` when CUDA is available (else ``mps`` where available, else ``cpu``)."""
    name = str(name or "auto")
    if name in ("auto", "gpu"):
        for candidate in ("cuda", "mps"):
            if _accelerator_class(candidate).is_available():
                return candidate
        if name == "gpu":
            raise ValueError("--accelerator gpu: no CUDA or MPS device is visible; use --accelerator cpu or auto")
        return "cpu"
    if name not in ("cpu", "cuda", "mps"):
        raise ValueError(f"accelerator {name!r}: choose cpu, cuda, gpu, mps or auto")
    return name


def resolve(trainer: dict[str, Any], tf32: bool = False) -> Hardware:
    """The :class:`Hardware` that Lightning makes of a Trainer section's device options (defaults:
    :data:`DEFAULTS`), using Lightning's own device parsing; bad values raise one-line ``ValueError``\\ s."""
    opts = {**DEFAULTS, **{k: v for k, v in trainer.items() if k in DEVICE_KEYS and v is not None}}
    accelerator = resolve_accelerator(opts["accelerator"])
    cls = _accelerator_class(accelerator)
    devices = opts["devices"]
    try:
        if devices in ("auto", -1, "-1"):
            n = cls.auto_device_count()
        else:
            n = len(cls.get_parallel_devices(cls.parse_devices(devices)))
    except Exception as err:  # Lightning's MisconfigurationException: the message names the problem
        raise ValueError(f"devices {devices!r} on {accelerator}: {str(err).splitlines()[0]}") from None
    nodes = int(opts["num_nodes"])
    if n < 1 or nodes < 1:
        raise ValueError(f"devices {devices!r} x num_nodes {nodes} gives no process; use at least 1 of each")
    strategy = str(opts["strategy"])
    strategy = ("ddp" if n * nodes > 1 else "single") if strategy == "auto" else strategy
    precision = str(opts["precision"])
    precision = PRECISIONS.get(precision) or precision
    return Hardware(accelerator, n, nodes, strategy, precision, bool(tf32))


def trainer_args(trainer: dict[str, Any], hw: Hardware) -> dict[str, Any]:
    """A Trainer section with the device defaults filled in (``accelerator=auto``, one device, float32) and, under
    DDP on GPUs, ``sync_batchnorm`` (batch-norm statistics over the global batch, as on one device; PyTorch's
    ``SyncBatchNorm`` has no CPU implementation, so CPU processes keep per-process statistics)."""
    sync = {"sync_batchnorm": hw.world_size > 1 and hw.accelerator != "cpu"}
    return {**DEFAULTS, **sync, **{k: v for k, v in trainer.items() if v is not None}}


def set_float32_precision(tf32: bool = False) -> None:
    """Set, explicitly, whether float32 matrix products and cuDNN convolutions may use TF32 (10-bit mantissa,
    ~1e-3 relative error) instead of full float32 (off by default: PyTorch allows TF32 in cuDNN convolutions)."""
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")


@contextlib.contextmanager
def full_float32(device_type: str = "cpu") -> Iterator[None]:
    """Inside: no autocast and no TF32 (e.g. for equivariance probes, whose errors must sit at float32 round-off);
    the previous settings come back afterwards."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.get_float32_matmul_precision())
    set_float32_precision(False)
    try:
        with torch.autocast(device_type=device_type, enabled=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[:2]
        torch.set_float32_matmul_precision(saved[2])


def is_rank_zero() -> bool:
    """True in the process that writes results: global rank 0 as the launchers announce it in the environment
    (``RANK`` from torchrun, ``SLURM_PROCID`` under ``srun``, ``NODE_RANK`` / ``LOCAL_RANK`` from Lightning's own
    launcher), and in a single process. Usable before any Trainer exists."""
    env = os.environ
    if "RANK" in env:
        return int(env["RANK"]) == 0
    if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
        return int(env["SLURM_PROCID"]) == 0
    return int(env.get("NODE_RANK", env.get("GROUP_RANK", "0"))) == 0 and int(env.get("LOCAL_RANK", "0")) == 0


def eval_batch(global_batch: int, hw: Hardware) -> int:
    """Per-device evaluation batch: the global one divided, rounded up (metrics do not depend on it)."""
    return max(1, math.ceil(global_batch / hw.world_size))
