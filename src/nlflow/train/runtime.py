"""Where and how a training process computes: device, process group, mixed precision, threads,
seeds, and what to say when a CUDA device runs out of memory."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import platform
import random
from typing import Any, Iterator

import numpy as np
import torch

from nlflow.errors import ConfigError
from nlflow.train import distributed as ddp
from nlflow.train.solver import TrainSettings

log = logging.getLogger(__name__)


def amp_dtype(amp: str) -> torch.dtype | None:
    """The autocast dtype of a ``train.amp`` mode (None: no autocast)."""
    return {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


@dataclasses.dataclass
class Runtime:
    """Where and how this process computes."""

    info: ddp.DistInfo
    device: torch.device
    amp_dtype: torch.dtype | None
    scaler: torch.amp.GradScaler
    channels_last: bool

    def autocast(self) -> Any:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)


def configure_determinism(deterministic: bool, use_cuda: bool) -> None:
    # CPU kernels are deterministic for a fixed thread count (and the switch below imports
    # torch._inductor: seconds on a small machine), so it is only thrown on CUDA.
    if use_cuda and deterministic:
        # cuBLAS needs this set before its first use to be deterministic.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    if use_cuda:
        torch.backends.cudnn.deterministic = deterministic
        torch.backends.cudnn.benchmark = not deterministic


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_runtime(settings: TrainSettings) -> Runtime:
    use_cuda = torch.cuda.is_available()
    # Checked before joining the process group, so a bad set-up fails with one clear line.
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda and world_size > 1 and local_rank >= torch.cuda.device_count():
        raise ConfigError(f"process {local_rank} of this node needs GPU {local_rank}, but only "
                          f"{torch.cuda.device_count()} CUDA device(s) are visible on {platform.node()}")
    ddp.check_sync_bn(settings.sync_bn, world_size, use_cuda)
    info = ddp.init_distributed(use_cuda)
    device = torch.device("cuda", info.local_rank) if use_cuda else torch.device("cpu")
    configure_determinism(settings.deterministic, use_cuda)
    dtype = amp_dtype(settings.amp)
    if dtype == torch.float16 and device.type != "cuda" and info.is_main:
        log.warning("amp fp16 on %s: fp16 autocast with a CPU gradient scaler, the twin of the CUDA fp16 path "
                    "(bf16 needs no scaler)", device.type)
    if settings.channels_last and device.type == "cpu" and info.is_main:
        log.warning("train.channels_last on the CPU: channels_last_3d convolutions ran 20x slower than the "
                    "default layout on a CPU (docs/benchmarks.md); it is meant for GPUs")
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    return Runtime(info, device, dtype, scaler, settings.channels_last)


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """``threads`` intra-op threads inside the block (0: torch's default), restored afterwards."""
    previous = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def fitting_accumulate(local_batch: int, accumulate: int, fits: int) -> int | None:
    """The smallest ``train.accumulate`` above the current one that divides this process's share of
    the global batch into micro-batches of at most ``fits`` clips (None: none does)."""
    for candidate in range(accumulate + 1, local_batch + 1):
        if local_batch % candidate == 0 and local_batch // candidate <= fits:
            return candidate
    return None
