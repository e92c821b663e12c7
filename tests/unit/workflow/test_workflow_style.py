"""The workflow's own style checks: Snakemake's formatter and its linter find nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from helpers.e2e import REPO


def test_snakefmt_leaves_the_workflow_unchanged():
    files = [str(REPO / "Snakefile"), *sorted(str(p) for p in (REPO / "rules").glob("*.smk"))]
    result = subprocess.run([sys.executable, "-m", "snakefmt", "--check", *files], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("config", ["demo.yaml", "config.yaml", "hmdb51.yaml", "folder-cpu.yaml"])
def test_snakemake_lint_is_clean(tmp_path, config):
    for name in ("a", "b"):  # the folder configs' dataset.root, my_videos, relative to the working directory
        (tmp_path / "my_videos" / name).mkdir(parents=True)
        (tmp_path / "my_videos" / name / "v.mp4").write_bytes(b"x")
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
         "--configfile", str(REPO / "config" / config), "--lint"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0 and "Lints for" not in result.stdout + result.stderr, result.stdout + result.stderr
