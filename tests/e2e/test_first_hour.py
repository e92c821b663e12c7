"""End to end, a new user's first hour: the README's own-videos section with config/folder-cpu.yaml,
offline, on a folder of real short clips named in several scripts (with a text file named .mp4, a
truncated video and a class of one video), the zoo model from a local copy; then training longer
continues the run, and a config copied from the UCF-101 recipe states every problem at once.

The zoo's released file cannot be fetched here: its stand-in is a Caffe2-format file of the zoo
network's shape (the demo's writer), freshly initialised, so the run proves the route, not transfer
learning. Only the cost keys below differ from the shipped file (and pretrained.pkl, as the README
says for offline use); `dataset.root: my_videos` is taken from the working directory, as documented.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from helpers.e2e import planned_jobs, shipped_config, snakemake, write_config
from helpers.own_videos import LONE_CLASS, NOT_A_VIDEO, TRUNCATED, make_own_videos, write_zoo_stand_in

pytestmark = pytest.mark.e2e

ZOO_NAME = "i3d_nonlocal_8x8_IN_pretrain_400k"
# Cost only: the full-width zoo network, made cheap on 2 cores (small frames, 2 updates, 1 view).
CHEAP = {
    "downscale": {"short_side": 64},
    "train": {"batch_size": 2, "max_iter": 2, "crop_size": 56, "scale_range": [64, 72], "precise_bn_iters": 1,
              "val_videos": 2, "checkpoint_period": 2, "log_period": 1, "num_workers": 0},
    "test": {"num_clips": 1, "scale": 64, "crop_size": 64, "batch_size": 1, "num_workers": 0},
}


def folder_cpu_config(**changes) -> dict:
    """The shipped file, offline (pretrained.pkl: the folder holding <name>.pkl), made cheap."""
    config = shipped_config("folder-cpu.yaml", {"pretrained": {"pkl": "zoo"}}, CHEAP, changes)
    assert config["dataset"]["root"] == "my_videos" and config["pretrained"]["name"] == ZOO_NAME
    return config


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("first_hour")
    make_own_videos(workdir / "my_videos")
    stand_in = write_zoo_stand_in(workdir / "zoo", ZOO_NAME)
    config_file = write_config(workdir, folder_cpu_config(), name="my_config.yaml")
    result = snakemake(workdir, config_file, timeout=1800)
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir, config_file, stand_in


def test_the_own_videos_run_offline_from_the_local_zoo_copy(first_run):
    workdir, _, stand_in = first_run
    results = workdir / "results"
    log = (results / f"logs/download_weights/{ZOO_NAME}.log").read_text()
    assert f"from zoo/{ZOO_NAME}.pkl" in log  # the copy, not the zoo's URL
    lock = (results / f"weights/download/{ZOO_NAME}.pkl.sha256").read_text()
    assert lock == f"{hashlib.sha256(stand_in.read_bytes()).hexdigest()}  {ZOO_NAME}.pkl\n"
    lists = json.loads((results / "lists/split1/lists.json").read_text())
    assert lists["num_classes"] == 4
    metrics = json.loads((results / "evaluate/metrics.json").read_text())
    lone = next(row for row in metrics["per_class"] if row["class"] == LONE_CLASS)
    assert lone == {"label": 0, "class": LONE_CLASS, "videos": 0, "correct": 0, "accuracy": None}
    assert (results / "train/model_final.pt").stat().st_size > 0


def test_the_report_shows_the_data_problems(first_run):
    workdir, _, _ = first_run
    report = (workdir / "results/report/report.md").read_text()
    assert "over 3 of 4 classes" in report and "Top-5 is left out: with 4 classes" in report
    assert "video top-5" not in report
    assert f"**Classes without test videos** (1 of 4): `{LONE_CLASS}`" in report
    assert f"| {LONE_CLASS} | 1 | 0 | 0 | n/a |" in report
    for video in (NOT_A_VIDEO, TRUNCATED):
        assert f"- `{video}` (" in report and "corrupt" in report.split(video)[1].splitlines()[0]


def test_raising_max_iter_continues_the_run(first_run):
    workdir, _, _ = first_run
    longer = write_config(workdir, folder_cpu_config(train={"max_iter": 3}), name="longer.yaml")
    jobs = planned_jobs(snakemake(workdir, longer, "--dry-run", "train"))
    assert jobs.get("train") == 1 and "clean_weights" not in jobs and "downscale" not in jobs
    result = snakemake(workdir, longer, "train", timeout=900)
    assert result.returncode == 0, result.stderr[-5000:]
    log = (workdir / "results/logs/train.log").read_text()
    assert "from its iteration 2" in log and "resuming from" in log and "at iteration 2" in log
    iters = [record["iter"] for record in map(json.loads, (workdir / "results/train/metrics.jsonl").open())
             if "loss" in record]
    assert iters == [1, 2, 3]


def test_a_changed_local_copy_is_refused_by_the_lock(first_run):
    workdir, config_file, stand_in = first_run
    other = workdir / "other_zoo" / f"{ZOO_NAME}.pkl"
    other.parent.mkdir()
    other.write_bytes(stand_in.read_bytes()[:-1] + b"\x00")
    changed = write_config(workdir, dict(folder_cpu_config(), pretrained={"name": ZOO_NAME, "pkl": "other_zoo"}),
                           name="changed.yaml")
    (workdir / f"results/weights/download/{ZOO_NAME}.pkl").unlink()
    result = snakemake(workdir, changed, f"results/weights/download/{ZOO_NAME}.pkl")
    assert result.returncode != 0
    log = (workdir / f"results/logs/download_weights/{ZOO_NAME}.log").read_text()
    assert "SHA-256 mismatch" in log and f"weights/download/{ZOO_NAME}.pkl.sha256" in log


def test_the_ucf101_recipe_with_the_folder_lines_merged_in_says_every_problem_at_once(first_run, tmp_path):
    workdir, _, _ = first_run
    config = shipped_config("config.yaml", {"dataset": {"name": "folder", "root": str(workdir / "my_videos"),
                                                        "group_pattern": r"_g(\d+)_"}})
    result = snakemake(tmp_path, write_config(tmp_path, config), "--dry-run")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "4 problems in the config (fix them all, then start again)" in output
    for fragment in ("dataset.videos is not used", "dataset.splits is not used", "dataset.num_classes is 101",
                     f"class folders ({LONE_CLASS}, Wave & Smile, Прыжок, 縮む)",
                     r"dataset.group_pattern '_g(\\d+)_' matches none of the 21 videos"):
        assert fragment in output, fragment
