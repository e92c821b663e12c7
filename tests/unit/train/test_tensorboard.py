"""train.tensorboard: training's metrics and evaluation's confusion matrix as TensorBoard event
files in the run folder, read back with TensorBoard's own EventAccumulator."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nlflow.models import load_checkpoint, save_checkpoint
from nlflow.train import train
from nlflow.train.progress import MetricsLog
from nlflow.train.tensorboard import TENSORBOARD_DIR
from nlflow.workflow import stages
from nlflow.workflow.config import OPERATIONAL_KEYS

from helpers.evaluation import SPEC, tiny_checkpoint, tiny_test_store
from helpers.training import tiny_data, tiny_settings  # noqa: F401  (module-scoped fixture)


def events(run_dir: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(run_dir / TENSORBOARD_DIR), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def scalars(accumulator: EventAccumulator, tag: str) -> dict[int, float]:
    return {event.step: event.value for event in accumulator.Scalars(tag)}


def test_training_writes_its_metrics_as_event_files(tiny_data, tmp_path):
    out = tmp_path / "run"
    train(tiny_settings(tensorboard=True), tiny_data["train"], tiny_data["val"], tiny_data["init"], out,
          tiny_data["classes"])
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    windows = [r for r in records if "loss" in r]
    accumulator = events(out)
    assert {"train/loss", "train/lr", "train/clip_top1", "train/clips_per_s", "train/data_wait",
            "val/clip_top1"} <= set(accumulator.Tags()["scalars"])
    for tag, key in (("train/loss", "loss"), ("train/lr", "lr"), ("train/clips_per_s", "clips_per_s"),
                     ("train/data_wait", "data_wait"), ("train/clip_top1", "top1")):
        logged = scalars(accumulator, tag)
        assert list(logged) == [r["iter"] for r in windows] == [2, 4, 6]
        assert list(logged.values()) == pytest.approx([r[key] for r in windows], rel=1e-6)
    validations = scalars(accumulator, "val/clip_top1")
    assert validations == pytest.approx({r["iter"]: r["val_top1"] for r in records if "val_top1" in r})
    assert list(validations) == [3, 6]


def test_without_the_key_no_event_files_and_the_key_is_operational(tiny_data, tmp_path):
    out = tmp_path / "run"
    train(tiny_settings(max_iter=2, val_period=0), tiny_data["train"], tiny_data["val"], tiny_data["init"], out,
          tiny_data["classes"])
    assert not (out / TENSORBOARD_DIR).exists()
    assert "tensorboard" in OPERATIONAL_KEYS["train"]
    assert "tensorboard" not in tiny_settings(tensorboard=True).result_dict()  # the same run folder either way


def test_a_resumed_run_replaces_the_events_after_its_checkpoint(tmp_path):
    first = MetricsLog(tmp_path / "metrics.jsonl", True, 0, tensorboard=True)
    for it in (1, 2, 3, 4):
        first.write({"iter": it, "loss": float(it)})
    first.close()  # killed after iteration 4, resumed from the checkpoint at 2
    resumed = MetricsLog(tmp_path / "metrics.jsonl", True, 2, tensorboard=True)
    for it in (3, 4, 5):
        resumed.write({"iter": it, "loss": 10.0 * it})
    resumed.close()
    assert scalars(events(tmp_path), "train/loss") == {1: 1.0, 2: 2.0, 3: 30.0, 4: 40.0, 5: 50.0}


def test_evaluation_adds_its_confusion_matrix_to_the_run_that_made_the_model(tmp_path, caplog):
    store, _, _ = tiny_test_store(tmp_path)
    model = tmp_path / "model.pt"
    save_checkpoint(model, load_checkpoint(tiny_checkpoint(tmp_path / "tiny.pt")), ["Grow", "MoveUp", "StandStill"],
                    extra={"iterations": 6, "settings": {"scale_range": [SPEC.scale, SPEC.scale + 8]}})
    runs = tmp_path / "checkpoints"
    (runs / "a1").mkdir(parents=True)
    (runs / "b2").mkdir()
    save_checkpoint(runs / "a1" / "model_final.pt", load_checkpoint(tiny_checkpoint(tmp_path / "other.pt", seed=1)))
    shutil.copyfile(model, runs / "b2" / "model_final.pt")  # what the train job published

    def run_evaluation(enabled: bool, name: str) -> dict:
        stages.evaluate(str(model), str(store), str(tmp_path / name / "metrics.json"),
                        str(tmp_path / name / "predictions.csv"), SPEC.to_dict(), "mean_softmax",
                        str(tmp_path / "cache"), {"batch_size": 16, "num_workers": 0},
                        tensorboard={"enabled": enabled, "runs": str(runs)})
        return json.loads((tmp_path / name / "metrics.json").read_text())

    run_evaluation(False, "off")
    assert not (runs / "b2" / TENSORBOARD_DIR).exists()
    metrics = run_evaluation(True, "on")
    assert not (runs / "a1" / TENSORBOARD_DIR).exists()
    accumulator = events(runs / "b2")
    (image,) = accumulator.Images("evaluate/confusion_matrix")
    assert image.step == 6 and image.encoded_image_string.startswith(b"\x89PNG") and image.width > 100
    assert scalars(accumulator, "evaluate/video_top1") == pytest.approx({6: metrics["top1"]})
    assert scalars(accumulator, "evaluate/video_top5") == pytest.approx({6: metrics["top5"]})

    (runs / "b2" / "model_final.pt").unlink()
    with caplog.at_level(logging.WARNING, logger="nlflow.workflow.stages"):
        run_evaluation(True, "lost")
    assert any("no training run below" in record.getMessage() for record in caplog.records)
