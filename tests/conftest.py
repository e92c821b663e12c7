"""Fixtures for every test: one torch thread, and the repository root."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

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
