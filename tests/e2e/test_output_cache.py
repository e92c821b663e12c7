"""Between-workflow cache: a second experiment folder reuses the first one's download, extraction
and downscaled videos through SNAKEMAKE_OUTPUT_CACHE instead of computing them again."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers.e2e import demo_config, planned_jobs, snakemake, write_config

pytestmark = pytest.mark.e2e

CACHED_RULES = ("download_dataset", "extract_dataset", "downscale")
SMALL_DEMO = {"clips_per_group": 1, "num_frames": 40}  # 125 short videos: the cache, not the codec, is tested


def _run_downscale(workdir: Path, cache: Path):
    config_file = write_config(workdir, demo_config(demo=SMALL_DEMO))
    env = dict(os.environ, SNAKEMAKE_OUTPUT_CACHE=str(cache))
    result = snakemake(workdir, config_file, "--cache", *CACHED_RULES, "--", "downscale", env=env)
    assert result.returncode == 0, result.stderr[-5000:]
    return config_file, result.stdout + result.stderr


def test_second_workdir_reuses_cached_downscale(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    first, second = tmp_path / "experiment_a", tmp_path / "experiment_b"
    first.mkdir()
    second.mkdir()

    _run_downscale(first, cache)
    assert "125 to encode" in (first / "results/logs/downscale.log").read_text()
    assert any(p.name.endswith("_videos") for p in cache.iterdir())

    config_file, second_log = _run_downscale(second, cache)
    assert "Symlinking output file results/downscaled/manifest.csv from cache" in second_log
    # the job never ran here (Snakemake only creates its empty log file); the outputs resolve into the cache
    assert (second / "results/logs/downscale.log").read_text() == ""
    manifest = second / "results/downscaled/manifest.csv"
    assert manifest.is_symlink() and Path(os.path.realpath(manifest)).parent == cache.resolve()
    assert manifest.read_text() == (first / "results/downscaled/manifest.csv").read_text()

    def videos(workdir: Path) -> list[Path]:  # <class>/<video>; class folders may be symlinks
        root = workdir / "results/downscaled/videos"
        return sorted(p.relative_to(root) for p in root.glob("*/*.avi"))

    assert len(videos(first)) == 124 and videos(second) == videos(first)

    # what comes after builds on the cached videos without redoing them
    plan = planned_jobs(snakemake(second, config_file, "--dry-run", "lmdb"))
    assert "downscale" not in plan and plan["shuffle_rep"] == 1 and plan["write_lmdb"] == 3
