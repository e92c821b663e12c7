"""dataset.download: cvdf through real Snakemake: config/kinetics400.yaml with the download on and
its mirror on a real HTTP server on 127.0.0.1 (helpers.cvdf_mirror); a dry run plans the download
and fetches nothing; `snakemake lists` downloads, extracts and makes the lists."""

from __future__ import annotations

import json

import pytest

from helpers.cvdf_mirror import TRAIN_ROWS, VAL_ROWS, mirror_files
from helpers.e2e import planned_jobs, shipped_config, snakemake, write_config
from helpers.http_server import server  # noqa: F401  (server: fixture)

pytestmark = pytest.mark.e2e

RESULTS = "results_kinetics400"


def download_config(base: str, **dataset) -> dict:
    config = shipped_config("kinetics400.yaml")
    del config["dataset"]["root"]  # the copy goes to {results_dir}/kinetics400
    config["dataset"].update(download="cvdf", download_mirrors=[base], **dataset)
    return config


def test_a_dry_run_plans_the_download_and_fetches_nothing(server, tmp_path):
    base, state = server
    state.files.update(mirror_files(tmp_path / "source", base))
    config = download_config(base)
    plan = snakemake(tmp_path, write_config(tmp_path, config), "--dry-run", "evaluate")
    assert plan.returncode == 0, plan.stderr[-3000:]
    jobs = planned_jobs(plan)
    # Evaluating a released model needs only the val split.
    assert jobs["download_kinetics"] == 1 and jobs["make_lists"] == 1 and jobs["downscale"] == 1
    assert "kinetics400/val.done" in plan.stdout + plan.stderr
    config["train"]["enabled"] = True
    config["pretrained"].update(name="r50_pretrain_c2_model_iter450450_clean", drop_head=True)
    config["model"].update(arch="i3d", depth=50, use_nonlocal=True, video_length=8, sample_rate=8)
    training = snakemake(tmp_path, write_config(tmp_path, config), "--dry-run", "lists")
    assert training.returncode == 0, training.stderr[-3000:]
    assert planned_jobs(training)["download_kinetics"] == 2
    assert state.requests == []
    assert not (tmp_path / RESULTS).exists() or not any((tmp_path / RESULTS).rglob("*.done"))


def test_snakemake_lists_downloads_extracts_and_lists(server, tmp_path):
    base, state = server
    state.files.update(mirror_files(tmp_path / "source", base))
    config = download_config(base)
    config["train"]["enabled"] = True  # both splits
    config["pretrained"].update(name=None, drop_head=True)
    config["model"].update(arch="i3d", depth=50, use_nonlocal=False, video_length=8, sample_rate=8)
    # downscale reads the downloaded copy too (its empty files are recorded, not fatal).
    result = snakemake(tmp_path, write_config(tmp_path, config), "lists", "downscale")
    assert result.returncode == 0, result.stderr[-5000:]
    copy = tmp_path / RESULTS / "kinetics400"
    lists = tmp_path / RESULTS / "lists" / "split1"
    summary = json.loads((lists / "lists.json").read_text())
    missing = TRAIN_ROWS // 20 + VAL_ROWS // 20
    assert summary["num_train"] == TRAIN_ROWS - TRAIN_ROWS // 20
    assert summary["num_test"] == VAL_ROWS and summary["num_missing"] == missing
    assert len(list((copy / "train").iterdir())) == TRAIN_ROWS - TRAIN_ROWS // 20
    assert len(list((copy / "val").iterdir())) == VAL_ROWS - VAL_ROWS // 20
    done = json.loads((tmp_path / RESULTS / "download" / "kinetics400" / "train.done").read_text())
    assert done["parts"] == 2 and done["videos"] == TRAIN_ROWS - TRAIN_ROWS // 20
    log = (tmp_path / RESULTS / "logs" / "make_lists" / "split1.log").read_text()
    assert "the CVDF mirror" in log
    rows = (tmp_path / RESULTS / "downscaled" / "manifest.csv").read_text().splitlines()[1:]
    assert len(rows) == len(list((copy / "train").iterdir())) + len(list((copy / "val").iterdir()))
    # Nothing is fetched again: a second run has nothing to do.
    requests = len(state.requests)
    again = snakemake(tmp_path, write_config(tmp_path, config), "lists", "downscale")
    assert again.returncode == 0 and len(state.requests) == requests
    assert "Nothing to be done" in again.stdout + again.stderr
