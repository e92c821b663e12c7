"""End-to-end: the README's demo (config/demo.yaml, unchanged) with real Snakemake in a temporary folder.

This is the issue's acceptance run: every stage real, the undecodable video reported and excluded,
the too-short videos kept (sampled periodically, as the original), the network learns motion (video top-1 >= 0.8, chance is 0.2), and a second run has nothing to do.
"""

from __future__ import annotations

import csv
import json

import pytest

from e2e_helpers import demo_config, planned_jobs, snakemake, write_config

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo_run")
    config_file = write_config(workdir, demo_config())
    result = snakemake(workdir, config_file)
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir, config_file, result


def test_whole_dag_produces_metrics(finished_run):
    workdir, _, _ = finished_run
    metrics = json.loads((workdir / "results/evaluate/metrics.json").read_text())
    assert 0.0 <= metrics["top1"] <= metrics["top5"] <= 1.0
    # 5 classes x 7 test groups x 2 clips, all listed and all scored (one is shorter than a clip).
    assert metrics["num_listed"] == metrics["num_videos"] == 70
    assert metrics["failed_videos"] == [] and metrics["excluded_videos"] == []
    assert metrics["top1"] >= 0.8, metrics
    with open(workdir / "results/evaluate/predictions.csv") as handle:
        assert "Grow/v_Grow_g03_c01.avi" in {row["video"] for row in csv.DictReader(handle)}
    assert (workdir / "results/train/model_final.pt").stat().st_size > 0
    assert any((workdir / "results/report").iterdir())


def test_the_undecodable_video_is_reported_and_excluded_and_short_ones_kept(finished_run):
    workdir, _, _ = finished_run
    with open(workdir / "results/downscaled/manifest.csv") as handle:
        rows = list(csv.DictReader(handle))
    statuses = {row["status"] for row in rows}
    assert "corrupt" in statuses
    demo = json.loads((workdir / "results/demo_source/demo_manifest.json").read_text())
    log = (workdir / "results/logs/shuffle_rep/split1.log").read_text()
    assert "excluded 1 of" in log and "1 corrupt" in log
    train_list = (workdir / "results/lists/split1/train_shuffled.txt").read_text()
    assert demo["corrupt"] and demo["short"]
    for bad in demo["corrupt"]:
        assert bad not in train_list
    assert "MoveUp/v_MoveUp_g25_c01.avi" in train_list  # 30 frames < one 8 x 8 clip: kept


def test_second_run_has_nothing_to_do(finished_run):
    workdir, config_file, _ = finished_run
    again = snakemake(workdir, config_file)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Nothing to be done" in again.stdout + again.stderr


# Each rule takes exactly the config values it uses as params, so a change re-runs what it affects.
ONE_EACH = dict.fromkeys(("train", "evaluate", "report", "all"), 1)
RERUN_CASES = {
    "nothing": ({}, {}),
    "learning rate": ({"train": {"base_lr": 0.05}}, ONE_EACH),
    "test clips": ({"test": {"num_clips": 4}}, dict.fromkeys(("evaluate", "report", "all"), 1)),
    "short side": ({"downscale": {"short_side": 128}}, {"downscale": 1, "shuffle_rep": 1, "write_lmdb": 3, **ONE_EACH}),
    "split": ({"dataset": {"split": 2}}, {"make_lists": 1, "shuffle_rep": 1, "write_lmdb": 3, **ONE_EACH}),
}


@pytest.mark.parametrize("case", RERUN_CASES, ids=list(RERUN_CASES))
def test_config_change_reruns_exactly_what_it_affects(finished_run, case):
    workdir, _, _ = finished_run
    overrides, expected = RERUN_CASES[case]
    changed = demo_config(**{section: dict(values) for section, values in overrides.items()})
    config_file = write_config(workdir, changed, name=f"changed-{case.replace(' ', '_')}.yaml")
    plan = snakemake(workdir, config_file, "--dry-run")
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert planned_jobs(plan) == expected


def test_snakemake_report_builds(finished_run):
    workdir, config_file, _ = finished_run
    html = workdir / "report.html"
    result = snakemake(workdir, config_file, "--report", str(html))
    assert result.returncode == 0, result.stderr[-3000:]
    text = html.read_text(errors="replace")
    for name in ("training_curves.png", "confusion_matrix.png", "per_class_accuracy.png", "metrics.json"):
        assert name in text
