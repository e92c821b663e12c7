"""Kinetics-400 end to end with real Snakemake: a Kinetics-format copy (the demo videos in the CVDF
mirror's layout, then in class folders, each lacking one listed video per class and split) goes
through `snakemake lists` and `snakemake evaluate` with config/kinetics400.yaml.

With only `dataset.root` changed, the plan is the README's row: download and convert the released
model, no training, evaluate. The real run swaps the released file (no network here) for a
zoo-format 400-class network at width 8 and cheaper test views."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
import yaml

from nlflow.demo.dataset import generate_demo
from nlflow.demo.layouts import KINETICS_CLASSES
from nlflow.demo.weights import write_demo_pretrained
from nlflow.lists.kinetics_facts import kinetics400_classes
from nlflow.models import ModelConfig

from helpers import REPO
from helpers.e2e import planned_jobs, snakemake, write_config

pytestmark = pytest.mark.e2e

NUM_FRAMES = 40
RELEASED = "i3d_nonlocal_8x8_IN_pretrain_400k"
TINY = {"arch": "i3d", "depth": 50, "use_nonlocal": True, "width": 8, "video_length": 8, "sample_rate": 8}
RESULTS = "results_kinetics400"


def kinetics_config(root) -> dict:
    config = yaml.safe_load((REPO / "config" / "kinetics400.yaml").read_text())
    config["dataset"]["root"] = str(root)
    return config


@pytest.fixture(scope="module", params=["kinetics_cvdf", "kinetics_folders"])
def copy(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param)
    summary = generate_demo(out, num_frames=NUM_FRAMES, clips_per_group=1, n_jobs=2, layout=request.param)
    return request.param, out / "kinetics400", summary


def test_only_the_root_changes_to_plan_a_released_models_row(copy, tmp_path):
    _, root, _ = copy
    plan = snakemake(tmp_path, write_config(tmp_path, kinetics_config(root)), "--dry-run", "evaluate")
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert planned_jobs(plan) == {"download_weights": 1, "clean_weights": 1, "make_lists": 1, "downscale": 1,
                                  "write_lmdb": 1, "evaluate": 1}
    assert f"https://dl.fbaipublicfiles.com/video-nonlocal/{RELEASED}.pkl" in plan.stdout + plan.stderr


@pytest.fixture(scope="module")
def run(copy, tmp_path_factory):
    layout, root, summary = copy
    workdir = tmp_path_factory.mktemp(f"{layout}_run")
    released = workdir / f"{RELEASED}.pkl"
    write_demo_pretrained(released, ModelConfig(**TINY), num_pretrain_classes=400)
    config = kinetics_config(root)
    config["pretrained"].update(name=None, pkl=str(released))
    config["model"].update(TINY)
    config["downscale"]["short_side"] = 112
    config["test"].update(num_clips=2, scale=112, crop_size=112, num_workers=1)
    config_file = write_config(workdir, config)
    result = snakemake(workdir, config_file, "evaluate")
    assert result.returncode == 0, result.stderr[-5000:]
    return layout, workdir / RESULTS, summary


def test_lists_carry_classids_labels_and_name_the_missing_videos(run):
    layout, results, _ = run
    lists = results / "lists" / "split1"
    assert (lists / "classes.txt").read_text().splitlines() == list(kinetics400_classes())
    names = kinetics400_classes()
    expected_labels = {names.index(name) for name in KINETICS_CLASSES.values()}
    for part in ("train", "test"):
        labels = {int(line.rsplit(" ", 1)[1]) for line in (lists / f"{part}.txt").read_text().splitlines()}
        assert labels == expected_labels
    with open(lists / "missing.csv", newline="") as handle:
        missing = list(csv.DictReader(handle))
    assert len(missing) == 10 and {row["split"] for row in missing} == {"train", "val"}
    assert all(len(row["youtube_id"]) == 11 and row["class"] in KINETICS_CLASSES.values() for row in missing)
    summary = json.loads((lists / "lists.json").read_text())
    assert (summary["num_train"], summary["num_test"], summary["num_missing"]) == (90, 40, 10)
    log = (results / "logs" / "make_lists" / "split1.log").read_text()
    found = {"kinetics_cvdf": "the CVDF mirror's layout", "kinetics_folders": "class folders: train/, val/"}[layout]
    assert found in log and "10 listed videos are not in the copy (5 train, 5 val" in log


def test_the_released_network_is_evaluated_without_training(run):
    _, results, _ = run
    assert not (results / "train").exists()
    metrics = json.loads((results / "evaluate" / "metrics.json").read_text())
    # the 5 missing val videos are listed, left out of the store and counted wrong
    assert (metrics["num_listed"], metrics["num_videos"]) == (40, 35)
    assert sorted(video["reason"] for video in metrics["excluded_videos"]) == ["missing"] * 5
    assert metrics["top1"] * 40 == pytest.approx(metrics["top1_decoded"] * 35)
    assert metrics["classes"] == list(kinetics400_classes())
    with open(results / "downscaled" / "manifest.csv", newline="") as handle:
        assert {row["video"].split("/")[0] for row in csv.DictReader(handle)} == {"val"}  # no training: val only


def test_the_converted_released_model_predicts_kinetics_names(run):
    _, results, summary = run
    video = next((results / "downscaled" / "videos" / "val").rglob("*.mp4"))
    output = subprocess.run(
        [sys.executable, "-m", "nlflow.cli", "predict", str(video), "--checkpoint", str(results / "weights" / "init.pt"),
         "--views", "1", "--topk", "3", "--json"], capture_output=True, text=True, check=True).stdout
    top = json.loads(output)[0]["top"]
    assert len(top) == 3 and all(entry["class"] in kinetics400_classes() for entry in top)


def test_test_list_original_lists_the_original_19761_videos(copy, tmp_path):
    _, root, _ = copy
    config = kinetics_config(root)
    config["dataset"]["test_list"] = "original"
    result = snakemake(tmp_path, write_config(tmp_path, config), "lists")
    assert result.returncode == 0, result.stderr[-3000:]
    lists = tmp_path / RESULTS / "lists" / "split1"
    assert len((lists / "test.txt").read_text().splitlines()) == 19761
    summary = json.loads((lists / "lists.json").read_text())
    assert summary["missing_by_split"] == {"train": 5, "val": 19761 - 35}


def test_the_recipes_table_plans_every_job(copy, tmp_path):
    """config/kinetics400_recipes.tsv: 13 of the original's trainings, one tarball for their starts."""
    _, root, _ = copy
    config = kinetics_config(root)
    config["experiments"] = str(REPO / "config" / "kinetics400_recipes.tsv")
    plan = snakemake(tmp_path, write_config(tmp_path, config), "--dry-run", "all")
    assert plan.returncode == 0, plan.stderr[-3000:]
    jobs = planned_jobs(plan)
    assert {rule: jobs.get(rule) for rule in ("download_pretrained_tarball", "extract_pretrained_start", "make_lists",
                                               "clean_weights", "train", "evaluate", "report", "compare")} == {
        "download_pretrained_tarball": 1, "extract_pretrained_start": 2, "make_lists": 1,
        "clean_weights": 13, "train": 13, "evaluate": 13, "report": 13, "compare": 1}
    assert "download_weights" not in jobs  # no released model: every recipe starts from the tarball
    assert "https://dl.fbaipublicfiles.com/video-nonlocal/pretrained_model.tar.gz" in plan.stdout + plan.stderr
