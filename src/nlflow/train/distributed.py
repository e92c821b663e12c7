"""Multi-process training helpers (torchrun): process group, batch split, sharded sample order.

Every process sees the same global sample stream; rank r takes its slice of each global batch,
so the global batches (and with them the result) do not depend on the number of processes.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from nlflow.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(use_cuda: bool) -> DistInfo:
    """Join the process group torchrun describes in the environment; a plain run is rank 0 of 1."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
        log.info("rank %d/%d joined the process group (%s)", rank, world_size, backend)
    info = DistInfo(rank=rank, world_size=world_size, local_rank=local_rank)
    log_hosts(info)
    return info


def log_hosts(info: DistInfo) -> None:
    """One line from rank 0 saying where every rank runs: the first thing to check when a
    multi-node run misbehaves (were the nodes really different machines?)."""
    hosts = all_gather_objects(socket.gethostname(), info)
    if info.is_main:
        log.info("%d processes on %d host(s): %s", info.world_size, len(set(hosts)),
                 ", ".join(f"rank {rank} on {host}" for rank, host in enumerate(hosts)))


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def check_sync_bn(sync_bn: bool, world_size: int, use_cuda: bool) -> None:
    """SyncBatchNorm across processes needs CUDA (torch refuses CPU tensors): say so before starting."""
    if sync_bn and world_size > 1 and not use_cuda:
        raise ConfigError("train.sync_bn needs CUDA: torch's SyncBatchNorm only runs on GPU tensors; "
                          "set train.sync_bn to false for CPU (gloo) runs")


def per_rank_batch(global_batch: int, world_size: int) -> int:
    if global_batch % world_size:
        raise ConfigError(
            f"batch_size {global_batch} (global) cannot be split evenly over {world_size} processes")
    return global_batch // world_size


def all_reduce_sum(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    """Sum a few numbers over all processes (identity in a single process)."""
    if not info.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def all_gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def epoch_order(dataset_size: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled order of one epoch; a pure function of (seed, epoch)."""
    return np.random.default_rng([seed, epoch, 0x5EED]).permutation(dataset_size)


class IterationSampler(Sampler):
    """Yields this rank's share of the global batches of iterations ``start .. stop-1`` (see ``set_range``).

    An epoch is ``iters_per_epoch`` whole global batches of a fresh permutation (a short remainder
    is dropped, as the original's fixed-size batches did); iteration k lies in epoch
    ``k // iters_per_epoch``, so a run resumed at iteration k continues exactly where it stopped.
    """

    def __init__(self, dataset_size: int, global_batch: int, seed: int, rank: int = 0, world_size: int = 1):
        if dataset_size < 1:
            raise ConfigError("the training set is empty")
        self.dataset_size = dataset_size
        self.global_batch = global_batch
        self.local_batch = per_rank_batch(global_batch, world_size)
        self.seed = seed
        self.rank = rank
        # A set smaller than one batch still trains: each "epoch" then repeats its permutation.
        self.iters_per_epoch = max(1, dataset_size // global_batch)
        self.start_iter = self.stop_iter = 0

    def epoch_of(self, iteration: int) -> int:
        return iteration // self.iters_per_epoch

    def set_range(self, start_iter: int, stop_iter: int) -> None:
        self.start_iter, self.stop_iter = start_iter, stop_iter

    def __len__(self) -> int:
        return max(0, self.stop_iter - self.start_iter) * self.local_batch

    def __iter__(self) -> Iterator[int]:
        cached_epoch, order = -1, np.empty(0, dtype=np.int64)
        for it in range(self.start_iter, self.stop_iter):
            epoch, step = divmod(it, self.iters_per_epoch)
            if epoch != cached_epoch:
                order = epoch_order(self.dataset_size, self.seed, epoch)
                if len(order) < self.global_batch:
                    order = np.resize(order, self.global_batch)
                cached_epoch = epoch
            first = step * self.global_batch + self.rank * self.local_batch
            yield from (int(i) for i in order[first:first + self.local_batch])
