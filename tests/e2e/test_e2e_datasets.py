"""End to end with real Snakemake: the demo in `folder` layout trains (with TensorBoard event
files) and evaluates (a short run), then `snakemake features` embeds its test videos; the demo in
HMDB-51's layout goes through download (MD5-checked), nested extraction, lists and the LMDB
stores; the class count is checked against the data."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nlflow.demo.dataset import generate_demo

from helpers.e2e import demo_config, planned_jobs, snakemake, write_config

pytestmark = pytest.mark.e2e

NUM_FRAMES = 40  # shorter than one 8 x 8 clip span: periodic sampling, as the original
# Seed 1 puts group 2 (the names with #&'(),;! and spaces) in the test list, group 25 (the
# undecodable video) in training: both the train and the test side see odd names.
FOLDER_SEED = 1
SPECIAL_TEST_VIDEO = "MoveUp/v_MoveUp_g02_c01 (take #1, Tom & Jerry's; best!).avi"
# A short run: the point is that every stage takes a `folder` dataset, not accuracy.
QUICK = {
    "train": {"max_iter": 20, "lr_steps": [0], "lr_relative": [1.0], "warmup_iters": 5, "checkpoint_period": 20,
              "log_period": 5, "val_period": 0, "val_videos": 16, "precise_bn_iters": 2, "num_workers": 1},
    "test": {"num_clips": 2, "num_workers": 1},
}


def with_dataset(dataset: dict) -> dict:
    config = demo_config(**QUICK)
    config["dataset"] = dataset  # replaced whole: the demo's archive keys do not belong to every kind
    return config


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    source = tmp_path_factory.mktemp("folder_source")
    generate_demo(source, num_frames=NUM_FRAMES, clips_per_group=1, n_jobs=2, layout="folder")
    workdir = tmp_path_factory.mktemp("folder_run")
    config = with_dataset({"name": "folder", "root": str(source / "videos"), "group_pattern": r"_g(\d+)_",
                           "seed": FOLDER_SEED})
    config["train"]["tensorboard"] = True
    config_file = write_config(workdir, config)
    plan = snakemake(workdir, config_file, "--dry-run")
    result = snakemake(workdir, config_file)
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir, config_file, source / "videos", plan


def test_folder_plan_has_no_download(folder_run):
    _, _, _, plan = folder_run
    jobs = planned_jobs(plan)
    assert "download_dataset" not in jobs and "extract_dataset" not in jobs
    assert jobs["make_lists"] == jobs["downscale"] == jobs["train"] == jobs["evaluate"] == 1


def test_folder_dataset_trains_and_evaluates(folder_run):
    workdir, _, _, _ = folder_run
    lists = json.loads((workdir / "results/lists/split1/lists.json").read_text())
    assert lists["dataset"] == "folder" and lists["validation"] == "test"
    assert (lists["num_classes"], lists["num_train"], lists["num_test"]) == (5, 90, 35)
    metrics = json.loads((workdir / "results/evaluate/metrics.json").read_text())
    assert metrics["num_listed"] == 35 and metrics["num_views"] == 6
    with open(workdir / "results/evaluate/predictions.csv", newline="") as handle:
        videos = {row["video"] for row in csv.DictReader(handle)}
    assert SPECIAL_TEST_VIDEO in videos
    assert (workdir / "results/train/model_final.pt").stat().st_size > 0
    report = (workdir / "results/report/report.md").read_text()
    assert "validation uses the test list (dataset.val_fraction is 0)" in report
    assert "validation uses the test list" in (workdir / "results/logs/make_lists/split1.log").read_text()


def test_tensorboard_holds_training_and_the_confusion_matrix(folder_run):
    workdir, _, _, _ = folder_run
    (events,) = (workdir / "results/train/checkpoints").glob("*/tensorboard")
    accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    assert [event.step for event in accumulator.Scalars("train/loss")] == [5, 10, 15, 20]
    assert [event.step for event in accumulator.Images("evaluate/confusion_matrix")] == [20]
    metrics = json.loads((workdir / "results/evaluate/metrics.json").read_text())
    assert accumulator.Scalars("evaluate/video_top1")[0].value == pytest.approx(metrics["top1"])


def test_features_of_every_listed_test_video(folder_run):
    workdir, config_file, _, _ = folder_run
    result = snakemake(workdir, config_file, "features")
    assert result.returncode == 0, result.stderr[-5000:]
    frame = pd.read_parquet(workdir / "results/features/test.parquet")
    with open(workdir / "results/evaluate/predictions.csv", newline="") as handle:
        evaluated = {row["video"] for row in csv.DictReader(handle)}
    assert set(frame.video) == evaluated and len(frame) == 35 and SPECIAL_TEST_VIDEO in evaluated
    assert (frame.error == "").all() and {len(vector) for vector in frame.feature} == {8 * 32}
    # per clip: the job runs again (a result key), from the cached views, without the network
    config = yaml.safe_load(config_file.read_text())
    config["features"] = {"per_clip": True}
    per_clip = write_config(workdir, config, name="per_clip.yaml")
    assert planned_jobs(snakemake(workdir, per_clip, "features", "--dry-run")) == {"extract_features": 1, "features": 1}
    result = snakemake(workdir, per_clip, "features")
    assert result.returncode == 0, result.stderr[-5000:]
    assert "0 computed, 35 from the cache" in (workdir / "results/logs/features_test.log").read_text()
    assert len(pd.read_parquet(workdir / "results/features/test.parquet")) == 35 * 2  # test.num_clips 2


def test_a_new_video_in_the_folder_reruns_downscale_and_lists(folder_run):
    workdir, config_file, root, _ = folder_run
    assert "Nothing to be done" in "".join(
        (result := snakemake(workdir, config_file, "--dry-run")).stdout + result.stderr)
    added = root / "Grow" / "v_Grow_g01_c09.avi"
    added.write_bytes((root / "Grow" / "v_Grow_g01_c01.avi").read_bytes())
    try:
        jobs = planned_jobs(snakemake(workdir, config_file, "--dry-run"))
    finally:
        added.unlink()
    assert jobs.get("downscale") == 1 and jobs.get("make_lists") == 1


def test_folder_num_classes_mismatch_stops_at_start_up(folder_run, tmp_path):
    _, _, root, _ = folder_run
    config = with_dataset({"name": "folder", "root": str(root), "num_classes": 4})
    result = snakemake(tmp_path, write_config(tmp_path, config), "--dry-run")
    assert result.returncode != 0
    assert "dataset.num_classes is 4 but dataset.root" in result.stdout + result.stderr


# ---------------------------------------------------------------- HMDB-51 layout: through the LMDB stores


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def hmdb_run(tmp_path_factory):
    source = tmp_path_factory.mktemp("hmdb_source")
    summary = generate_demo(source, num_frames=NUM_FRAMES, clips_per_group=1, n_jobs=2, layout="hmdb51")
    archives = {part: Path(getattr(summary, f"{part}_path")) for part in ("videos", "splits")}
    dataset = {"name": "hmdb51", "split": 1, "num_classes": 5, "val_fraction": 0.1, **{
        part: {"filename": path.name, "urls": [f"file:{path}"], "md5": md5_of(path)} for part, path in archives.items()}}
    workdir = tmp_path_factory.mktemp("hmdb_run")
    config_file = write_config(workdir, with_dataset(dataset))
    result = snakemake(workdir, config_file, "lmdb")
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir, dataset


def test_hmdb51_layout_reaches_the_lmdb_stores(hmdb_run):
    workdir, _ = hmdb_run
    results = workdir / "results"
    assert sorted(p.name for p in (results / "extracted/videos").iterdir() if p.is_dir()) == [
        "grow", "move_down", "move_up", "shrink", "stand_still"]
    lists = json.loads((results / "lists/split1/lists.json").read_text())
    assert lists["validation"] == "held_out" and lists["num_test"] == 35
    assert lists["num_train"] + lists["num_val"] == 85  # 17 training films x 5 classes, a tenth held out
    special = "grow/#02_Tom_&_Jerry's_(Best_of!),_Vol;1_grow_u_nm_np1_fr_goo_0.avi"
    assert f"{special} 0" in (results / "lists/split1/test.txt").read_text().splitlines()
    for part in ("train", "val", "test"):
        assert (results / f"lmdb/split1/{part}.lmdb").stat().st_size > 0
    # the first download's SHA-256 is pinned next to the configured MD5
    lock = (results / "download/hmdb51_org.rar.sha256").read_text()
    assert lock.endswith("  hmdb51_org.rar\n")
    from nlflow.store.lmdb_store import LmdbReader

    with LmdbReader(results / "lmdb/split1/test.lmdb") as reader:
        assert special in {video for video, _ in reader.entries()}


def test_hmdb51_class_count_left_out_is_checked_against_the_data(hmdb_run, tmp_path):
    workdir, dataset = hmdb_run
    config = with_dataset({key: value for key, value in dataset.items() if key != "num_classes"})
    result = snakemake(workdir, write_config(workdir, config, name="no_count.yaml"), "lists")
    assert result.returncode != 0
    log = (workdir / "results/logs/make_lists/split1.log").read_text()
    assert "5 classes, expected 51 (dataset.num_classes, or HMDB-51's 51 when it is left out)" in log
