"""Fixtures for every test: one torch thread, and the repository root; idle OpenMP threads that sleep."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Before torch loads OpenMP, and inherited by every Snakemake, torchrun and SLURM job the tests
# start: two test workers (pyproject's addopts) and their subprocesses share 2 cores, and an idle
# OpenMP thread that spin-waits takes a core from the process that has work (2-thread torch work in
# two processes at once ran 20-40x slower here, 2026-12-03). Only how idle threads wait changes, not
# any result. A value set by the caller is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from helpers import REPO


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Test networks are tiny: a second OpenMP thread only adds barrier waits, which explode when
    other processes (DataLoader workers, subprocesses) share the 2 cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
