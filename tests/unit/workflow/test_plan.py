"""`nlflow plan` and the estimates behind the preflight checks, against the sizes measured in the
UCF-101 scale rehearsal (docs/scale.md, 2026-11-30: the per-stage table and the qscale table)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from nlflow.diskspace import DiskSpaceError
from nlflow.workflow.config import load_config
from nlflow.workflow.plan import (CPU_S_PER_ARCHIVE_BYTE, demo_dataset_estimate, downscale_estimate, plan_stages,
                                  qscale_factor)
from nlflow.workflow import stages

from helpers import REPO
from helpers.e2e import demo_config, write_config
from helpers.evaluation import tiny_videos
from helpers.small_disk import small_disk

GB = 1e9
NLFLOW = shutil.which("nlflow")


def _disk(stages_planned, name):
    return next(stage.disk_bytes for stage in stages_planned if stage.stage == name)


def test_ucf101_estimates_match_the_rehearsals_measured_sizes():
    planned = plan_stages(load_config(REPO / "config" / "config.yaml"))
    # docs/scale.md's table: download 6.4 GB, extract 6.5 GB, downscale 34.8 GB, the stores
    # 25.0 + 9.7 + 9.7 GB; ~92 GB for the data stages
    for name, measured in {"download": 6.4, "extract": 6.5, "downscale": 34.8, "write_lmdb": 44.4}.items():
        assert _disk(planned, name) == pytest.approx(measured * GB, rel=0.05), name
    data_stages = sum(_disk(planned, name) for name in ("download", "extract", "downscale", "write_lmdb"))
    assert data_stages == pytest.approx(92 * GB, rel=0.05)


def test_a_cvdf_download_is_planned_from_the_reported_sizes_before_the_copy_exists(tmp_path):
    config = load_config(REPO / "config" / "kinetics400.yaml")
    config["results_dir"] = str(tmp_path / "results")
    del config["dataset"]["root"]
    config["dataset"]["download"] = "cvdf"
    # Evaluation only: the val split, 19,882 of the 299,758 reported videos' 436 GB of .tar.gz
    # (443 GB extracted), at 10 MB/s; no download/extract rows of an archive dataset.
    planned = {stage.stage: stage for stage in plan_stages(config, link_bytes_per_s=10e6)}
    assert "download" not in planned and "extract" not in planned
    val_share = 19_882 / 299_758
    assert planned["download_kinetics"].disk_bytes == pytest.approx(443 * GB * val_share)
    # the transfer, and the extraction at the rehearsal's CPU seconds per archive byte
    tarballs = 436 * GB * val_share
    assert planned["download_kinetics"].cpu_s == pytest.approx(tarballs / 10e6 + tarballs * CPU_S_PER_ARCHIVE_BYTE)
    assert "estimate" in planned["download_kinetics"].note and "unverified" in planned["download_kinetics"].note
    # Figures from a report and assumed frames stop no job: downscale checks the disk as it goes.
    assert downscale_estimate(config) is None
    config["train"]["enabled"] = True
    config["dataset"]["keep_tarballs"] = True
    train_val_share = (241_190 + 19_882) / 299_758
    trained = {stage.stage: stage for stage in plan_stages(config, link_bytes_per_s=10e6)}
    assert trained["download_kinetics"].disk_bytes == pytest.approx((443 + 436) * GB * train_val_share)


def test_qscale_scales_the_output_as_measured():
    # docs/scale.md, "is 2 worth its disk?": 2.93, 1.42, 0.56 MB a video at qscale 2, 4, 8
    assert qscale_factor(4) == pytest.approx(1.42 / 2.93, rel=0.01)
    assert qscale_factor(8) == pytest.approx(0.56 / 2.93, rel=0.01)
    assert qscale_factor(2) < qscale_factor(1) and qscale_factor(4) < qscale_factor(3) < qscale_factor(2)
    config = load_config(REPO / "config" / "config.yaml")
    at_2 = downscale_estimate(config)
    config["downscale"]["qscale"] = 8
    assert downscale_estimate(config) / at_2 == pytest.approx(7.3 / 38.1, rel=0.02)  # the table's 7.3 and 38.1 GB


def test_downscale_stops_before_its_first_video_when_the_estimate_does_not_fit(tmp_path):
    source = tmp_path / "videos"
    tiny_videos(source / "UCF-101", per_class=1)
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(DiskSpaceError, match=r"downscale \(3 videos, estimated\) needs about .* but only .* free"):
        stages.downscale(str(source), str(tmp_path / "out"), str(tmp_path / "manifest.csv"), short_side=64,
                         upsample=True, keyframe_interval=12, qscale=2, n_jobs=1, estimate_bytes=10 * free)
    assert [path for path in tmp_path.rglob("*.avi") if source not in path.parents] == []
    assert not (tmp_path / "manifest.csv").exists() and not (tmp_path / "out").exists()


def test_the_demo_dataset_stops_before_its_first_video_when_the_estimate_does_not_fit(tmp_path):
    # A 50 MB tmpfs (2026-12-03) filled up while the demo's videos were packed into UCF101.rar: the
    # stage now says so before it renders anything.
    out = tmp_path / "demo_source"
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(DiskSpaceError, match=r"the demo dataset \(its videos, then the archive packed from them\) "
                                             r"needs about .* at .*demo_source but only .* free"):
        stages.make_demo_dataset(str(out), seed=0, num_frames=8, clips_per_group=1, estimate_bytes=10 * free)
    assert not out.exists() or list(out.rglob("*")) == []


def test_the_demo_dataset_estimate_counts_its_videos_twice():
    # 250 videos of 144 frames at 915 bytes a frame (UCF101.rar, 32.9 MB): the videos and the
    # archive packed from them are on disk together
    assert demo_dataset_estimate(demo_config()) == pytest.approx(2 * 32.9e6, rel=0.01)
    smaller = demo_config(demo={"num_frames": 48, "clips_per_group": 1})
    assert demo_dataset_estimate(smaller) == pytest.approx(2 * 32.9e6 / 6, rel=0.01)


@pytest.mark.skipif(NLFLOW is None, reason="the nlflow console script is not installed")
def test_plan_prints_every_stage_and_says_whether_it_fits(tmp_path):
    result = subprocess.run([NLFLOW, "plan", "--configfile", str(REPO / "config" / "demo.yaml"), "--cores", "2"],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    for name in ("make_demo_dataset", "download", "extract", "downscale", "write_lmdb", "clean_weights", "train",
                 "evaluate"):
        assert name in rows, name
    assert result.stdout.rstrip().endswith("fits")

    with small_disk(tmp_path / "disk", 8_000_000) as disk:
        config = write_config(tmp_path, demo_config(results_dir=str(disk.path / "results")))
        small = subprocess.run([NLFLOW, "plan", "--configfile", str(config)], capture_output=True, text=True,
                               timeout=300)
    assert small.returncode == 0, small.stderr
    assert f"free on {disk.path}" in small.stdout
    assert "not enough space: free" in small.stdout.splitlines()[-1]


@pytest.mark.skipif(NLFLOW is None, reason="the nlflow console script is not installed")
def test_plan_on_a_bad_config_is_one_line(tmp_path):
    config = write_config(tmp_path, demo_config(downscale={"short_side": "big"}))
    result = subprocess.run([NLFLOW, "plan", "--configfile", str(config)], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert str(config) in result.stderr
