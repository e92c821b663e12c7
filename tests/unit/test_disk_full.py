"""A full disk in every stage that writes, on a real small filesystem (a tmpfs; skipped where it
cannot be mounted): the stage checks the space it needs before it writes (preflight); when the disk
fills anyway (preflight off, or an estimate too low) the error is recognised as the disk's, reaches
the user as one line with the free space, leaves no partial output and is never recorded as a
corrupt video; after space is freed the same call finishes with the same bytes."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import rars
import torch

from nlflow.archives.download import fetch
from nlflow.archives.extract import extract_archive
from nlflow.diskspace import DiskSpaceError, fault_message, storage_fault
from nlflow.evaluate.report import write_report
from nlflow.evaluate.view_cache import CachedVideo, ViewCache
from nlflow.models import ModelConfig, build_model, save_checkpoint
from nlflow.store.lmdb_store import write_store
from nlflow.video.downscale import downscale_video
from nlflow.video.manifest import read_manifest
from nlflow.workflow import stages
from nlflow.workflow.adapter import run_stage

from helpers.evaluation import tiny_videos
from helpers.http_server import payload, serve
from helpers.reports import write_eval_metrics
from helpers.small_disk import leftovers, small_disk
from helpers.stores import CLASSES, fake_videos

MB = 1_000_000


@pytest.fixture()
def disk(tmp_path):
    with small_disk(tmp_path / "disk", 16 * MB) as mounted:
        yield mounted


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_download_stops_before_a_transfer_that_cannot_fit_and_resumes_after_a_full_disk(disk):
    data = payload(3 * MB)
    dest = disk.path / "download" / "UCF101.rar"
    with serve() as (base, state):
        state.files["/UCF101.rar"] = data
        disk.fill(leave=1 * MB)
        with pytest.raises(DiskSpaceError, match=r"downloading UCF101.rar needs about 3.0 MB .* but only .* free"):
            fetch([f"{base}/UCF101.rar"], dest, sha256=_sha(data), retries=2, backoff=0.01, timeout=5)
        assert not dest.exists() and leftovers(disk.path) == []

        with pytest.raises(OSError) as info:
            fetch([f"{base}/UCF101.rar"], dest, sha256=_sha(data), retries=2, backoff=0.01, timeout=5,
                  check_disk=False)
        assert storage_fault(info.value).errno == errno.ENOSPC
        assert len(state.requests) == 2  # one per call: a full disk is not retried, nor another mirror tried
        kept = dest.with_name("UCF101.rar.part")
        assert 0 < kept.stat().st_size < len(data) and not dest.exists()

        disk.free_up()
        result = fetch([f"{base}/UCF101.rar"], dest, sha256=_sha(data), retries=2, backoff=0.01, timeout=5)
    assert result.resumed and dest.read_bytes() == data and leftovers(disk.path) == []


def _rar(path: Path, files: dict[str, bytes]) -> Path:
    builder = rars.RarBuilder(store=True)
    builder.add_directory("UCF-101")
    for name, data in files.items():
        builder.add_bytes(data, name)
    builder.write(str(path))
    return path


def test_extraction_on_a_full_disk_leaves_nothing_and_finishes_once_space_is_freed(disk, tmp_path):
    files = {f"UCF-101/v_{i}.avi": payload(MB, seed=i) for i in range(3)}
    archive = _rar(tmp_path / "UCF101.rar", files)
    target = disk.path / "extracted" / "videos"
    disk.fill(leave=2 * MB)
    with pytest.raises(DiskSpaceError, match=r"extracting UCF101.rar needs about 3.0 MB"):
        extract_archive(archive, target)
    with pytest.raises(OSError) as info:
        extract_archive(archive, target, check_disk=False)
    assert storage_fault(info.value).errno == errno.ENOSPC  # the extractor's text: "(os error 28)"
    assert not target.exists() and leftovers(disk.path) == [] and sorted(os.listdir(target.parent)) == []

    disk.free_up()
    extract_archive(archive, target)
    assert _tree(target) == files


def test_downscale_raises_on_a_full_disk_instead_of_recording_corrupt_videos(disk, tmp_path):
    source = tmp_path / "videos"
    entries, _ = tiny_videos(source / "UCF-101", per_class=3)
    settings = dict(short_side=64, upsample=True, keyframe_interval=12, qscale=2, n_jobs=1)
    stages.downscale(str(source), str(tmp_path / "reference"), str(tmp_path / "reference.csv"), **settings)
    reference = _tree(tmp_path / "reference")

    out, manifest = disk.path / "downscaled" / "videos", disk.path / "downscaled" / "manifest.csv"
    disk.fill(leave=60_000)  # a few of the nine videos fit
    with pytest.raises(OSError) as info:
        stages.downscale(str(source), str(out), str(manifest), **settings, estimate_bytes=None)
    assert storage_fault(info.value).errno == errno.ENOSPC
    assert not manifest.exists() and not out.exists()  # nothing counted as done
    finished = disk.path / "downscaled" / ".videos.partial"
    assert leftovers(finished) == [] and 0 < len(list(finished.rglob("*.avi"))) < len(entries)

    disk.free_up()
    stages.downscale(str(source), str(out), str(manifest), **settings)
    assert _tree(out) == reference
    assert all(row.status == "ok" for row in read_manifest(manifest).values())
    assert manifest.read_bytes() == (tmp_path / "reference.csv").read_bytes()


def test_downscale_stops_early_when_the_videos_made_so_far_say_the_rest_will_not_fit(disk, tmp_path):
    source = tmp_path / "videos"
    tiny_videos(source / "UCF-101", per_class=6, frames=40)
    settings = dict(short_side=96, upsample=True, keyframe_interval=12, qscale=2, n_jobs=1)
    stages.downscale(str(source), str(tmp_path / "reference"), str(tmp_path / "reference.csv"), **settings)
    sizes = [row.bytes for row in read_manifest(tmp_path / "reference.csv").values()]
    out, manifest = disk.path / "videos", disk.path / "manifest.csv"
    disk.fill(leave=sum(sizes[:8]) + 5 * max(sizes))  # the first 8 of 18 fit, the other 10 would not
    # an estimate far too low passes the first check; the size measured on 8 videos stops the stage
    with pytest.raises(DiskSpaceError, match=r"downscale's other 10 videos \(at .* a video so far\) needs about"):
        stages.downscale(str(source), str(out), str(manifest), **settings, estimate_bytes=1000)
    assert len(list((disk.path / ".videos.partial").rglob("*.avi"))) == 8 and leftovers(disk.path) == []


def test_an_input_output_error_reading_a_video_is_no_corrupt_video(tmp_path):
    # /proc/self/mem answers reads at address 0 with a real EIO, as a failing disk would
    with pytest.raises(OSError) as info:
        downscale_video("/proc/self/mem", tmp_path / "out.avi", 64, True, 12, 2, name="Class/v.avi")
    assert storage_fault(info.value).errno == errno.EIO and not (tmp_path / "out.avi").exists()


def test_stores_on_a_full_disk(disk, tmp_path):
    videos = tmp_path / "videos"
    entries, frames, _ = fake_videos(videos, 40)
    write_store(tmp_path / "reference.lmdb", entries, videos, "test", CLASSES, {}, frames)
    store = disk.path / "lmdb" / "test.lmdb"
    disk.fill(leave=40_000)
    with pytest.raises(DiskSpaceError, match=r"the test store needs about .* at .*test.lmdb but only"):
        write_store(store, entries, videos, "test", CLASSES, {}, frames)
    with pytest.raises(Exception) as info:
        write_store(store, entries, videos, "test", CLASSES, {}, frames, check_disk=False)
    fault = storage_fault(info.value)  # LMDB reports its short write as EIO
    assert fault is not None and fault.errno == errno.EIO
    message = fault_message(fault, store)
    assert "free space" in message and "dmesg" not in message  # nearly no space left: a full disk, not a failing one
    assert not store.exists() and leftovers(disk.path) == []

    disk.free_up()
    write_store(store, entries, videos, "test", CLASSES, {}, frames)
    assert store.read_bytes() == (tmp_path / "reference.lmdb").read_bytes()


def test_checkpoints_cache_and_report_on_a_full_disk(disk, tmp_path):
    model = build_model(ModelConfig(width=4, num_classes=3, video_length=4, sample_rate=2))
    cache = ViewCache(disk.path / "view_scores")
    cache.open({"format": "test"})
    write_eval_metrics(tmp_path / "eval.json")
    disk.fill(leave=20_000)
    writes = {
        "checkpoint": lambda: save_checkpoint(disk.path / "model_final.pt", model, ["a", "b", "c"]),
        "score cache": lambda: cache.put(CachedVideo(0, "a/v.avi", 1, {"probs": np.ones((300, 400)), "logits": np.ones((300, 400))}, "")),
        "report": lambda: write_report(None, tmp_path / "eval.json", disk.path / "report", {}),
    }
    for what, write in writes.items():
        with pytest.raises(Exception) as info:
            write()
        assert storage_fault(info.value) is not None, what
    assert leftovers(disk.path) == [] and not (disk.path / "model_final.pt").exists()
    assert not list((disk.path / "report").glob("*.png"))

    disk.free_up()
    for write in writes.values():
        write()
    assert torch.load(disk.path / "model_final.pt", weights_only=False)["classes"] == ["a", "b", "c"]


def test_a_full_disk_ends_the_job_in_one_line(disk, tmp_path, capfd):
    files = {f"UCF-101/v_{i}.avi": payload(MB, seed=i) for i in range(3)}
    archive = _rar(tmp_path / "UCF101.rar", files)
    target = disk.path / "extracted" / "videos"
    log_file = disk.path / "logs" / "extract" / "videos.log"
    job = SimpleNamespace(rule="extract_dataset", log=[str(log_file)], output=[str(target)], threads=1)
    disk.fill(leave=1_500_000)
    with pytest.raises(SystemExit) as exit_info:
        run_stage(job, stages.extract, archive=str(archive), target_dir=str(target), check_disk=False)
    assert exit_info.value.code == 1
    errors = [line for line in capfd.readouterr().err.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "Traceback" not in capfd.readouterr().err
    message = errors[0].split("extract_dataset failed: ", 1)[1]
    assert message.startswith("no space left on the device at ")
    assert f"free on {disk.path}" in message and "extracting UCF101.rar needs about 3.0 MB" in message
    assert message.endswith("free space (or point results_dir at a larger disk) and run the same command again: "
                            "finished work is kept")
    assert json.dumps(message)  # one plain line


def test_an_input_output_error_with_space_left_names_both_causes(tmp_path):
    # LMDB reports a full disk as EIO, and its partial store is gone (its space free again) by the
    # time the line is written: the line must not rule out a full disk, nor a failing one
    fault = storage_fault(OSError(errno.EIO, os.strerror(errno.EIO), str(tmp_path / "train.lmdb")))
    message = fault_message(fault, tmp_path / "train.lmdb")
    assert message.startswith(f"input/output error at {tmp_path / 'train.lmdb'}; ")
    assert "filled up while writing" in message and "dmesg" in message and "free space" in message
