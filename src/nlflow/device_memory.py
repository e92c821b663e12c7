"""Device memory: what a run held before its first forward pass, and, when a CUDA device runs out
of memory, how many items would have fitted (for a one-line message that says what to change)."""

from __future__ import annotations

import dataclasses
import re

import torch

# torch >= 2.5 raises this for any device; older releases only have the CUDA name.
OutOfMemoryError = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


def cuda_memory_gb(device: torch.device) -> float | None:
    """Peak memory allocated on a CUDA ``device`` so far, in GiB (None elsewhere)."""
    if device.type != "cuda":
        return None
    try:
        return round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
    except Exception:  # stats unavailable (e.g. some MIG/driver set-ups): never worth a crash
        return None


_TRIED = re.compile(r"Tried to allocate ([\d.]+) (GiB|MiB|KiB|B)\b")
_UNITS = {"GiB": 2**30, "MiB": 2**20, "KiB": 2**10, "B": 1}


def requested_bytes(message: str) -> int:
    """The allocation a CUDA out-of-memory message says failed (0 when it does not say)."""
    found = _TRIED.search(message)
    return int(float(found.group(1)) * _UNITS[found.group(2)]) if found else 0


def largest_fitting_batch(batch: int, fixed_bytes: int, needed_bytes: int, total_bytes: int,
                          headroom: float = 0.9) -> int:
    """How many items fit where ``batch`` items needed ``needed_bytes`` (weights, gradients and
    optimizer state, ``fixed_bytes``, included), if memory grows linearly with the batch and
    ``headroom`` of the device may be used. 0 when not even one fits."""
    per_item = max(needed_bytes - fixed_bytes, 1) / max(batch, 1)
    return max(0, int((total_bytes * headroom - fixed_bytes) // per_item))


@dataclasses.dataclass
class MemoryProbe:
    """What an out-of-memory message needs: the device's size and the memory held before the
    first forward pass (weights, optimizer state), so the per-item cost can be estimated."""

    device: torch.device
    fixed_bytes: int = 0

    @classmethod
    def start(cls, device: torch.device) -> "MemoryProbe":
        fixed = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
        return cls(device, fixed)

    def fitting_batch(self, batch: int, error: BaseException) -> int | None:
        """Items that would have fitted where ``batch`` items ran out of memory (None: unknown)."""
        if self.device.type != "cuda":
            return None
        try:
            total = torch.cuda.get_device_properties(self.device).total_memory
            needed = torch.cuda.memory_allocated(self.device) + requested_bytes(str(error))
        except Exception:  # a failing device may not answer: then say less, not crash
            return None
        return largest_fitting_batch(batch, self.fixed_bytes, needed, total)
