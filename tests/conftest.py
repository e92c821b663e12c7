"""Shared fixtures: the repository root and a small demo configuration for end-to-end runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

# Test models are tiny: one thread is faster than two (and leaves the other core to DataLoader
# workers and subprocesses).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
