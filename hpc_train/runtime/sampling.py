"""Sharded, seeded, resumable data order: each rank reads its own slice of a shuffled epoch."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sized
from typing import Any

from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset, Sampler

from hpc_train.errors import UserError


class ResumableDistributedSampler(DistributedSampler[Any]):
    """DistributedSampler that can begin an epoch part-way, after `start` of this rank's samples."""

    def __init__(self, dataset: Dataset[Any], *, num_replicas: int, rank: int, seed: int) -> None:
        # Padding (drop_last=False) gives every rank the same number of samples, hence of steps.
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed,
                         drop_last=False)
        self.start = 0

    def __iter__(self) -> Iterator[Any]:
        # The permutation depends only on seed and epoch, so skipping is exact after a restart.
        return itertools.islice(super().__iter__(), self.start, None)

    def __len__(self) -> int:
        return self.num_samples - self.start


class ShardSampler(Sampler[int]):
    """Indices rank, rank+world, ... in order, with no padding: every sample is evaluated once."""

    def __init__(self, length: int, *, num_replicas: int, rank: int) -> None:
        self.indices = range(rank, length, num_replicas)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def _check(loader: DataLoader[Any], what: str) -> int:
    if not isinstance(loader, DataLoader):
        raise UserError(f"{what} must be a torch DataLoader, got {type(loader).__name__}")
    if isinstance(loader.dataset, IterableDataset) or not isinstance(loader.dataset, Sized):
        raise UserError(f"{what} wraps an iterable dataset; the trainer shards map-style datasets\n"
                        "HINT: give a Dataset with __len__ and __getitem__ (e.g. a TensorDataset)")
    if loader.batch_size is None:
        raise UserError(f"{what} uses a custom batch_sampler; the trainer needs a plain batch_size to shard by")
    return loader.batch_size


def _rebuild(loader: DataLoader[Any], sampler: Sampler[Any], batch_size: int) -> DataLoader[Any]:
    workers: dict[str, Any] = {}
    if loader.num_workers > 0:
        workers = {"persistent_workers": loader.persistent_workers, "prefetch_factor": loader.prefetch_factor,
                   "worker_init_fn": loader.worker_init_fn,
                   "multiprocessing_context": loader.multiprocessing_context}
    return DataLoader(loader.dataset, batch_size=batch_size, sampler=sampler, num_workers=loader.num_workers,
                      collate_fn=loader.collate_fn, pin_memory=loader.pin_memory, drop_last=loader.drop_last,
                      timeout=loader.timeout, **workers)


def shard_train_loader(loader: DataLoader[Any], *, world_size: int, rank: int,
                       seed: int) -> tuple[DataLoader[Any], ResumableDistributedSampler]:
    """The same batches-per-step loader over a ResumableDistributedSampler(shuffle=True, seed=seed)."""
    batch_size = _check(loader, "train_loader")
    sampler = ResumableDistributedSampler(loader.dataset, num_replicas=world_size, rank=rank, seed=seed)
    return _rebuild(loader, sampler, batch_size), sampler


def shard_eval_loader(loader: DataLoader[Any], *, world_size: int, rank: int) -> DataLoader[Any]:
    """The loader over this rank's unpadded, unshuffled share of the dataset."""
    batch_size = _check(loader, "val_loader")
    sampler = ShardSampler(len(loader.dataset), num_replicas=world_size, rank=rank)  # type: ignore[arg-type]
    return _rebuild(loader, sampler, batch_size)


def batches_per_epoch(sampler: ResumableDistributedSampler, batch_size: int, drop_last: bool) -> int:
    """Batches in one full epoch of this rank (the same on every rank)."""
    n = sampler.num_samples
    return n // batch_size if drop_last else math.ceil(n / batch_size)
