"""Training longer continues a shorter run: the run folders of one lineage, the schedule check, and
the weights against a run trained from scratch with the longer schedule (tiny real pipeline)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nlflow.models import load_checkpoint
from nlflow.train import train
from nlflow.train.continuation import same_schedule
from nlflow.train.job import prepare_run_folder
from nlflow.train.loop import weights_digest
from nlflow.train.snapshots import list_snapshots, load_snapshot

from helpers.training import tiny_data, tiny_settings  # noqa: F401  (module-scoped fixture)

# A fixed schedule: the LR steps at iteration 4 whatever max_iter is.
FIXED = dict(lr_steps=[0, 4], lr_relative=[1, 0.1], checkpoint_period=4, keep_checkpoints=2, log_period=2,
             val_period=3, precise_bn_iters=2)


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def train_job(checkpoint_dir: Path, data: dict, **settings):
    """What the train stage does: the run folder (continuing an earlier run if it can), then train."""
    settings = tiny_settings(**settings)
    run_dir, start = prepare_run_folder(checkpoint_dir, settings, data["train"], data["val"], data["init"])
    final = train(settings, data["train"], data["val"], data["init"], run_dir, data["classes"])
    return run_dir, start, load_checkpoint(final)


def logged_iterations(run_dir: Path) -> list[int]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [record["iter"] for record in map(json.loads, lines) if "loss" in record]


def test_raising_max_iter_continues_to_the_weights_of_the_longer_run_from_scratch(tiny_data, tmp_path):
    shorter_dir, start, shorter = train_job(tmp_path / "runs", tiny_data, max_iter=6, **FIXED)
    assert start is None
    finished = load_snapshot(list_snapshots(shorter_dir / "checkpoints")[-1][1])
    assert finished["finished"] and "before_precise_bn" in finished

    longer_dir, start, longer = train_job(tmp_path / "runs", tiny_data, max_iter=10, **FIXED)
    assert longer_dir != shorter_dir and (start.run_dir, start.iteration) == (shorter_dir, 6)
    _, scratch_start, scratch = train_job(tmp_path / "scratch", tiny_data, max_iter=10, **FIXED)
    assert scratch_start is None
    # Bit-identical: the shorter run's state before its precise BN is where the longer run was at 6.
    assert weights_digest(longer) == weights_digest(scratch)
    assert weights_digest(shorter) != weights_digest(longer)
    assert logged_iterations(longer_dir) == [2, 4, 6, 8, 10]
    # The shorter run keeps its folder and result: lowering max_iter again finds it finished.
    again_dir, again_start, again = train_job(tmp_path / "runs", tiny_data, max_iter=6, **FIXED)
    assert again_dir == shorter_dir and again_start is None and weights_digest(again) == weights_digest(shorter)


def test_a_shorter_max_iter_continues_from_a_longer_runs_checkpoint(tiny_data, tmp_path):
    """k == max_iter: the 10-iteration run's snapshot at 8 (before any precise BN) finishes an 8-iteration run."""
    train_job(tmp_path / "runs", tiny_data, max_iter=10, **FIXED)
    _, start, continued = train_job(tmp_path / "runs", tiny_data, max_iter=8, **FIXED)
    assert start.iteration == 8
    _, _, scratch = train_job(tmp_path / "scratch", tiny_data, max_iter=8, **FIXED)
    assert weights_digest(continued) == weights_digest(scratch)


def test_a_schedule_scaled_to_max_iter_starts_again(tiny_data, tmp_path, caplog):
    scaled = dict(FIXED, lr_steps=None, lr_relative=None)
    train_job(tmp_path / "runs", tiny_data, max_iter=6, **scaled)
    _, start, _ = train_job(tmp_path / "runs", tiny_data, max_iter=10, **scaled)
    assert start is None  # steps at 2 and 4 for 6 iterations, at 4 and 8 for 10: not the same LRs before 6
    _, start, _ = train_job(tmp_path / "runs", tiny_data, max_iter=10, seed=2, **FIXED)
    assert start is None  # another lineage: nothing to continue


def test_same_schedule_compares_every_learning_rate_before_the_point():
    shorter, longer = tiny_settings(max_iter=20, lr_steps=[0, 15]), tiny_settings(max_iter=30, lr_steps=[0, 15])
    assert same_schedule(shorter, longer, 20)
    scaled_20, scaled_30 = (tiny_settings(max_iter=n, lr_steps=None, lr_relative=None) for n in (20, 30))
    assert scaled_20.lr_steps == [0, 8, 15] and not same_schedule(scaled_20, scaled_30, 20)
    assert same_schedule(scaled_20, scaled_30, 8)  # they agree up to the first step
    warmed = tiny_settings(max_iter=30, lr_steps=[0, 15], warmup_iters=5)
    assert not same_schedule(shorter, warmed, 20)
