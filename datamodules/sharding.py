"""Evaluation data under DDP: every example evaluated exactly once over all ranks.

Lightning's default ``DistributedSampler`` pads a split by repeating examples so that every rank gets the same
number, which counts some examples twice in a metric's summed state; its ``UnrepeatedDistributedSampler`` refuses a
rank with no example. :class:`ShardSampler` does neither: rank ``r`` of ``n`` gets examples ``r, r + n, ...``
(possibly none), so summed metric states over the ranks equal a single process's.
"""

from __future__ import annotations

from typing import Any

import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler


class ShardSampler(DistributedSampler):
    """Rank ``r`` of ``n`` gets examples ``r, r + n, ...``: none twice, none left out, possibly none at all
    (Lightning leaves a ``DistributedSampler`` subclass alone)."""

    def __init__(self, dataset: Any, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.indices = range(rank, len(dataset), num_replicas)
        self.num_samples = self.total_size = len(self.indices)

    def __iter__(self) -> Any:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def replicas(trainer: Any = None) -> dict[str, int] | None:
    """``{"num_replicas": n, "rank": r}`` under DDP with n > 1 (from the ``trainer``'s strategy, else from an
    initialised process group), else ``None``."""
    kwargs = getattr(getattr(trainer, "strategy", None), "distributed_sampler_kwargs", None)
    if kwargs is None and dist.is_available() and dist.is_initialized():
        kwargs = {"num_replicas": dist.get_world_size(), "rank": dist.get_rank()}
    return kwargs if kwargs and kwargs["num_replicas"] > 1 else None


def eval_sampler(dataset: Any, trainer: Any = None) -> ShardSampler | None:
    """Under DDP a :class:`ShardSampler` of ``dataset``; ``None`` (sequential) in a single process."""
    kwargs = replicas(trainer)
    return None if kwargs is None else ShardSampler(dataset, **kwargs)


def eval_loader(dataset: Any, batch_size: int, trainer: Any = None, num_workers: int = 0) -> DataLoader:
    """A validation / test loader of ``dataset`` in order, sharded without padding under DDP
    (:func:`eval_sampler`)."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, sampler=eval_sampler(dataset, trainer),
                      num_workers=num_workers, persistent_workers=num_workers > 0)
