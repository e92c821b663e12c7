"""Data problems in the reports: per-class train / test counts, undecodable videos, classes without
test videos (whose accuracy is unknown, not 100 %), top-5 left out with 5 classes or fewer, and over
how many classes the mean class accuracy is."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nlflow.evaluate.data_overview import read_data_overview
from nlflow.evaluate.headline import headline_numbers
from nlflow.evaluate.metrics import compute_metrics
from nlflow.evaluate.report import write_report
from nlflow.lists.listfiles import list_paths
from nlflow.video.manifest import ManifestRow, write_manifest

CLASSES = ["Clap", "Jump", "Wave", "Lone"]
# (video, label) per list; Lone has a single video, which trains
TRAIN = [("Clap/c1.mp4", 0), ("Clap/c2.mp4", 0), ("Clap/bad.mp4", 0), ("Jump/j1.mp4", 1), ("Jump/j2.mp4", 1),
         ("Wave/w1.mp4", 2), ("Wave/w2.mp4", 2), ("Lone/only.mp4", 3)]
TEST = [("Clap/c3.mp4", 0), ("Jump/j3.mp4", 1), ("Jump/gone.mp4", 1), ("Wave/w3.mp4", 2), ("Wave/w4.mp4", 2)]
CORRUPT = "Clap/bad.mp4"  # a text file named .mp4: the manifest says corrupt
MISSING = "Jump/gone.mp4"  # not in the manifest at all


def write_run_files(root: Path, train=TRAIN, val=None, classes=CLASSES) -> dict[str, Path]:
    paths = list_paths(root / "lists")
    paths["train"].parent.mkdir(parents=True)
    for name, entries in (("train", train), ("val", val or TEST), ("test", TEST)):
        paths[name].write_text("".join(f"{video} {label}\n" for video, label in entries))
    paths["classes"].write_text("".join(f"{name}\n" for name in classes))
    paths["summary"].write_text(json.dumps({"validation": "held_out" if val else "test"}))
    rows = [ManifestRow(video, "ok", 40, 25.0, 160, 120, 1000) for video, _ in train + (val or []) + TEST
            if video not in (CORRUPT, MISSING)]
    rows.append(ManifestRow(CORRUPT, "corrupt", 0, 0.0, 0, 0, 12, "InvalidDataError: not a video"))
    write_manifest(root / "manifest.csv", rows)
    return paths


def write_metrics(path: Path, classes=CLASSES) -> dict:
    """Scores of the 4 decodable test videos: Clap right, Jump right, Wave one right one wrong."""
    labels = np.array([0, 1, 2, 2])
    predicted = [0, 1, 2, 0]
    logits = np.full((4, 1, len(classes)), -3.0)
    logits[np.arange(4), 0, predicted] = 3.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    metrics = compute_metrics(probs, logits, labels, classes, num_listed=5)
    path.write_text(json.dumps(metrics))
    return metrics


def test_the_overview_counts_usable_videos_per_class_and_lists_the_excluded(tmp_path):
    data = read_data_overview(lists=write_run_files(tmp_path), manifest=tmp_path / "manifest.csv")
    assert data.per_class.to_dict("list") == {
        "class": CLASSES, "train": [2, 2, 2, 1], "val": [0, 0, 0, 0], "test": [1, 1, 2, 0], "excluded": [1, 1, 0, 0]}
    assert data.excluded.to_dict("records") == [
        {"list": "train", "video": CORRUPT, "class": "Clap", "reason": "corrupt", "error": "InvalidDataError: not a video"},
        {"list": "test", "video": MISSING, "class": "Jump", "reason": "missing", "error": "not in the downscale manifest"},
    ]
    assert data.classes_without_test_videos == ["Lone"] and not data.separate_val


def test_report_md_shows_the_data_problems_and_no_top5_for_four_classes(tmp_path):
    paths = write_run_files(tmp_path)
    metrics = write_metrics(tmp_path / "metrics.json")
    assert metrics["per_class"][3]["accuracy"] is None
    # Over the 3 classes with test videos: (1 + 1 + 0.5) / 3, never 100 % for the class without any.
    assert metrics["mean_class_accuracy"] == (1 + 1 + 0.5) / 3
    data = read_data_overview(lists=paths, manifest=tmp_path / "manifest.csv")
    text = write_report(None, tmp_path / "metrics.json", tmp_path / "report", {}, data)[-1].read_text()
    assert "| mean class accuracy (video level, decoded videos), over 3 of 4 classes | 83.33 % |" in text
    assert "top-5" not in text.split("## Data")[0].replace("Top-5 is left out", "")
    assert "Top-5 is left out: with 4 classes" in text
    assert "| video top-1 (1 view, mean_softmax), all listed test videos | 60.00 % |" in text  # 3 of 5 listed
    assert "| class | train | test | excluded | test accuracy |" in text
    assert "| Lone | 1 | 0 | 0 | n/a |" in text and "| Wave | 2 | 2 | 0 | 50.00 % |" in text
    assert "**Classes without test videos** (1 of 4): `Lone`." in text
    assert f"- `{CORRUPT}` (train, class `Clap`): corrupt (InvalidDataError: not a video)" in text
    assert f"- `{MISSING}` (test, class `Jump`): missing (not in the downscale manifest)" in text


def test_a_held_out_validation_list_gets_its_column(tmp_path):
    val = [("Clap/v1.mp4", 0), ("Lone/v2.mp4", 3)]
    paths = write_run_files(tmp_path, val=val)
    data = read_data_overview(lists=paths, manifest=tmp_path / "manifest.csv")
    assert data.separate_val and data.per_class["val"].tolist() == [1, 0, 0, 1]
    write_metrics(tmp_path / "metrics.json")
    text = write_report(None, tmp_path / "metrics.json", tmp_path / "report", {}, data)[-1].read_text()
    assert "| class | train | val | test | excluded | test accuracy |" in text and "| Lone | 1 | 1 | 0 | 0 | n/a |" in text


def test_more_than_five_classes_keep_top5(tmp_path):
    classes = CLASSES + ["E", "F"]
    write_metrics(tmp_path / "metrics.json", classes)
    text = write_report(None, tmp_path / "metrics.json", tmp_path / "report", {})[-1].read_text()
    assert "| video top-5, all listed test videos |" in text and "over 3 of 6 classes" in text
    assert "Top-5 is left out" not in text and "## Data" not in text


def test_the_front_page_numbers_carry_the_data_problems(tmp_path):
    paths = write_run_files(tmp_path)
    write_metrics(tmp_path / "metrics.json")
    config = {"model": {"arch": "i3d", "use_nonlocal": True, "depth": 50}, "dataset": {"name": "folder"}}
    numbers = headline_numbers(tmp_path / "metrics.json", config, lists=paths, manifest=tmp_path / "manifest.csv")
    assert numbers["top5"] is None and numbers["top1"] == "60.00 %"
    assert (numbers["mean_class_accuracy"], numbers["classes_scored"]) == ("83.33 %", "3 of 4")
    assert numbers["no_test_classes"] == ["Lone"]
    assert numbers["excluded"] == [f"{CORRUPT} (train, corrupt)", f"{MISSING} (test, missing)"]
    # before make_lists or downscale ran: the numbers without the data lines
    bare = headline_numbers(tmp_path / "metrics.json", config, lists=list_paths(tmp_path / "none"),
                            manifest=tmp_path / "none.csv")
    assert "excluded" not in bare and bare["classes_scored"] == "3 of 4"
