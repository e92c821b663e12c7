"""Training checkpoints: atomic, pruned, newest readable one found, RNG states round-trip."""

from __future__ import annotations

import random

import numpy as np
import torch

from nlflow.train.snapshots import (
    capture_rng_state, list_snapshots, load_latest_snapshot, restore_rng_state, save_snapshot, snapshot_path,
)


def test_save_keeps_last_k_and_loads_newest(tmp_path):
    model = torch.nn.Linear(3, 2)
    for it in (10, 20, 30):
        save_snapshot(tmp_path, it, {"model": model.state_dict()}, keep=2)
    assert [i for i, _ in list_snapshots(tmp_path)] == [20, 30]
    state = load_latest_snapshot(tmp_path)
    assert state["iteration"] == 30
    assert torch.equal(state["model"]["weight"], model.weight.detach())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_truncated_newest_falls_back_and_temp_files_are_ignored(tmp_path):
    save_snapshot(tmp_path, 5, {"x": torch.ones(3)}, keep=3)
    good = snapshot_path(tmp_path, 5).read_bytes()
    snapshot_path(tmp_path, 9).write_bytes(good[: len(good) // 2])  # torn by a crash / full disk
    (tmp_path / ".iter_00000012.pt.abc.tmp").write_bytes(good)  # an interrupted atomic write
    state = load_latest_snapshot(tmp_path)
    assert state["iteration"] == 5
    assert load_latest_snapshot(tmp_path / "missing") is None


def test_rng_state_round_trip_through_a_checkpoint(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    save_snapshot(tmp_path, 1, {"rng": capture_rng_state()}, keep=1)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    restore_rng_state(load_latest_snapshot(tmp_path)["rng"])  # loaded with weights_only=True
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
