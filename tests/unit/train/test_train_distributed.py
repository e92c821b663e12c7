"""Two CPU processes under torchrun (gloo): the loop trains, both ranks end with identical weights."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from nlflow.models import load_checkpoint
from nlflow.train.snapshots import load_latest_snapshot

from helpers.training import tiny_data, tiny_settings  # noqa: F401  (module-scoped fixture)

TORCHRUN = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun not installed")
def test_torchrun_two_processes_train_in_step(tiny_data, tmp_path):  # noqa: F811
    settings = tiny_settings(max_iter=4, checkpoint_period=2, log_period=2, val_period=2, num_workers=0)
    (tmp_path / "settings.json").write_text(json.dumps(settings.to_dict()))
    out = tmp_path / "out"
    proc = subprocess.run(
        [TORCHRUN, "--standalone", "--nproc-per-node", "2", "-m", "nlflow.train",
         "--settings", str(tmp_path / "settings.json"), "--train-lmdb", str(tiny_data["train"]),
         "--val-lmdb", str(tiny_data["val"]), "--init", str(tiny_data["init"]), "--out-dir", str(out),
         "--classes", str(tiny_data["classes"])],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stdout
    # The loop compares a digest of every rank's weights before the final checkpoint.
    assert "weights identical on all 2 processes" in proc.stdout
    assert "over 2 process(es)" in proc.stdout
    state = load_latest_snapshot(out / "checkpoints")
    assert state["world_size"] == 2 and len(state["rng"]) == 2  # one RNG state per rank, for resuming
    model = load_checkpoint(out / "model_final.pt")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # Validation counted every clip once across the two shards.
    vals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if "val_top1" in line]
    assert [v["val_clips"] for v in vals] == [5, 5]
