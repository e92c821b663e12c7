"""The training loop on a tiny real pipeline: synthetic videos -> LMDB -> I3D-NL width 4 -> checkpoints."""

from __future__ import annotations

import json
import re
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from nlflow.models import load_checkpoint, read_checkpoint
from nlflow.train import TrainSettings, train
from nlflow.train.loop import TrainingError, data_wait_advice, weights_digest
from nlflow.train.snapshots import list_snapshots, load_latest_snapshot, load_snapshot

from helpers.training import CLASSES, tiny_data, tiny_settings  # noqa: F401  (module-scoped fixture)


def read_metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_train_writes_model_metrics_and_checkpoints(tiny_data, tmp_path):
    out = tmp_path / "run"
    final = train(tiny_settings(), tiny_data["train"], tiny_data["val"], tiny_data["init"], out, tiny_data["classes"])
    assert final == out / "model_final.pt"
    model = load_checkpoint(final)
    assert model.classes == CLASSES
    payload = read_checkpoint(final)
    assert payload["extra"]["iterations"] == 6 and payload["extra"]["settings"]["batch_size"] == 4
    init = read_checkpoint(tiny_data["init"])["state_dict"]
    changed = [k for k, v in payload["state_dict"].items() if v.is_floating_point() and not torch.equal(v, init[k])]
    assert changed, "training changed no weight"

    metrics = read_metrics(out)
    steps = [m for m in metrics if "loss" in m]
    assert [m["iter"] for m in steps] == [2, 4, 6]
    assert all(np.isfinite(m["loss"]) and 0 <= m["top1"] <= 1 and m["clips_per_s"] > 0
               and 0 <= m["data_wait"] <= 1 for m in steps)
    # lr of the window's last update: iteration 1 is still warming up, 5 is past the step
    assert steps[0]["lr"] == pytest.approx(0.05 * 0.55) and steps[-1]["lr"] == pytest.approx(0.005)
    assert steps[-1]["epoch"] == pytest.approx(6 * 4 / 10)  # from the real dataset size
    vals = [m for m in metrics if "val_top1" in m]
    assert [m["iter"] for m in vals] == [3, 6] and all(m["val_clips"] == 5 for m in vals)

    assert [i for i, _ in list_snapshots(out / "checkpoints")] == [4, 6]
    state = load_latest_snapshot(out / "checkpoints")
    assert state["finished"] and state["iteration"] == 6
    # The final model is the finished checkpoint (precise BN included).
    for key, value in state["model"].items():
        assert torch.equal(value, payload["state_dict"][key]), key

    # A finished directory: a second call returns at once and rewrites nothing.
    stamp = final.stat().st_mtime_ns
    assert train(tiny_settings(), tiny_data["train"], tiny_data["val"], tiny_data["init"], out,
                 CLASSES) == final
    assert final.stat().st_mtime_ns == stamp


def test_precise_bn_recomputes_running_statistics(tiny_data, tmp_path):
    common = dict(max_iter=2, val_period=0, val_videos=0)
    plain = train(tiny_settings(precise_bn_iters=0, **common), tiny_data["train"], None, tiny_data["init"],
                  tmp_path / "a", CLASSES)
    precise = train(tiny_settings(precise_bn_iters=3, **common), tiny_data["train"], None, tiny_data["init"],
                    tmp_path / "b", CLASSES)
    a, b = read_checkpoint(plain)["state_dict"], read_checkpoint(precise)["state_dict"]
    bn_keys = [k for k in a if k.endswith("running_mean")]
    assert bn_keys
    # Same learned weights, different BN statistics; the cumulative average counted 3 batches.
    assert all(torch.equal(a[k], b[k]) for k in a if not k.endswith(("running_mean", "running_var",
                                                                      "num_batches_tracked")))
    assert any(not torch.equal(a[k], b[k]) for k in bn_keys)
    assert all(int(b[k.replace("running_mean", "num_batches_tracked")]) == 3 for k in bn_keys)


def test_fp16_loss_scaling_and_channels_last_resume_exactly(tiny_data, tmp_path):
    """The CPU twin of the CUDA fp16 path: autocast fp16, a gradient scaler, channels_last_3d.

    The scaler's state travels in the checkpoints: a run resumed from the middle ends with the
    uninterrupted run's weights and scaler state.
    """
    settings = tiny_settings(amp="fp16", channels_last=True, max_iter=4, checkpoint_period=2, keep_checkpoints=3,
                             log_period=2, val_period=0, precise_bn_iters=1)
    whole = train(settings, tiny_data["train"], tiny_data["val"], tiny_data["init"], tmp_path / "whole", CLASSES)
    saved = dict(list_snapshots(tmp_path / "whole" / "checkpoints"))
    assert sorted(saved) == [2, 4]
    middle, end = load_snapshot(saved[2]), load_snapshot(saved[4])
    assert middle["scaler"]["scale"] > 0 and middle["scaler"] != end["scaler"]
    weights = read_checkpoint(whole)["state_dict"]
    assert all(v.dtype != torch.float16 for v in weights.values())  # master weights stay fp32
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())

    (tmp_path / "resumed" / "checkpoints").mkdir(parents=True)
    shutil.copy(saved[2], tmp_path / "resumed" / "checkpoints" / saved[2].name)
    resumed = train(settings, tiny_data["train"], tiny_data["val"], tiny_data["init"], tmp_path / "resumed",
                    CLASSES)
    assert weights_digest(load_checkpoint(resumed)) == weights_digest(load_checkpoint(whole))
    assert load_latest_snapshot(tmp_path / "resumed" / "checkpoints")["scaler"] == end["scaler"]


def test_wrong_number_of_classes_is_a_clear_error(tiny_data, tmp_path):
    with pytest.raises(TrainingError, match="5-class head"):
        train(tiny_settings(), tiny_data["train"], None, tiny_data["init"], tmp_path / "x", CLASSES + ["Extra"])


def _train_cli(data: dict, out: Path, settings: TrainSettings) -> subprocess.Popen:
    settings_path = out.parent / f"{out.name}.settings.json"
    settings_path.write_text(json.dumps(settings.to_dict()))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    return subprocess.Popen(
        [sys.executable, "-m", "nlflow.train", "--settings", str(settings_path), "--train-lmdb", str(data["train"]),
         "--val-lmdb", str(data["val"]), "--init", str(data["init"]), "--out-dir", str(out),
         "--classes", str(data["classes"])],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_killed_run_resumes_to_the_same_weights(tiny_data, tmp_path):
    """SIGKILL after the first checkpoint, restart: bit-identical to an uninterrupted run (2 workers)."""
    settings = tiny_settings(max_iter=16, checkpoint_period=4, keep_checkpoints=3, log_period=4, val_period=8,
                             num_workers=2)
    # The reference runs in this process: same code, same thread count (settings.threads).
    reference = load_checkpoint(train(settings, tiny_data["train"], tiny_data["val"], tiny_data["init"],
                                      tmp_path / "whole", tiny_data["classes"]))

    out = tmp_path / "killed"
    proc = _train_cli(tiny_data, out, settings)
    deadline = time.monotonic() + 240
    while not list_snapshots(out / "checkpoints") and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "model_final.pt").exists()
    killed_at = list_snapshots(out / "checkpoints")[-1][0]
    assert killed_at < 16

    again = _train_cli(tiny_data, out, settings)
    log_text = again.communicate(timeout=300)[0]
    assert again.returncode == 0, log_text
    assert "resuming from" in log_text and f"at iteration {killed_at}" in log_text
    resumed = load_checkpoint(out / "model_final.pt")
    assert weights_digest(resumed) == weights_digest(reference)
    # The metrics log has each iteration once, as if never interrupted.
    iters = [m["iter"] for m in read_metrics(out) if "loss" in m]
    assert iters == [4, 8, 12, 16]


def test_data_wait_advice_names_the_setting_to_change():
    assert data_wait_advice(None, 2, 16, 1) is None
    assert data_wait_advice(0.05, 2, 16, 1) is None
    more_workers = data_wait_advice(0.5, 4, 32, 2)
    assert "50%" in more_workers and "raise train.num_workers (now 4" in more_workers
    # 8 workers each for 2 processes on 16 cores: the CPU is the limit, not the worker count.
    cpu_bound = data_wait_advice(0.5, 8, 16, 2)
    assert "decoding is the limit" in cpu_bound and "--set-threads train=N" in cpu_bound


def test_a_diverging_run_stops_before_the_bad_update_and_keeps_the_last_good_checkpoint(tiny_data, tmp_path):
    # A learning rate of 1e20 makes the first update's weights so large that the second step's loss
    # or gradients overflow: the run must stop there, name why, and leave iteration 1 on disk.
    out = tmp_path / "run"
    settings = tiny_settings(base_lr=1e20, warmup_iters=0, max_iter=6, checkpoint_period=1, val_period=0)
    with pytest.raises(TrainingError) as caught:
        train(settings, tiny_data["train"], None, tiny_data["init"], out, tiny_data["classes"])
    message = str(caught.value)
    assert "\n" not in message
    match = re.match(r"training stopped at iteration (\d+): (the training loss is (nan|inf)|the gradient of \S+ is not "
                     r"finite), so the update was not applied; the last good checkpoint (\S+) \(iteration (\d+)\) is kept",
                     message)
    assert match, message
    stopped, kept = int(match.group(1)), int(match.group(5))
    assert kept == stopped - 1 >= 1
    assert list_snapshots(out / "checkpoints")[-1][0] == kept
    assert all(torch.isfinite(v).all() for v in load_snapshot(match.group(4))["model"].values()
               if v.is_floating_point())
    assert not (out / "model_final.pt").exists()
