"""Files nlflow wrote earlier, damaged the way disks, full quotas and interrupted copies damage them
(cut to half their size, a bit flipped), end in one clear line that says how to recover, or in a
recomputation: never a signal, a traceback or a silently different result.

Every file is damaged by the test itself. Reads that could kill the process (a memory-mapped LMDB
store read past its end) run in a subprocess, so a regression fails the test instead of ending it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from nlflow.archives.download import DownloadError, fetch, read_lock_file
from nlflow.errors import NlflowError, one_line
from nlflow.evaluate import EvaluationError, evaluate, reaggregate
from nlflow.evaluate.report import ReportError, read_metrics_jsonl, write_report
from nlflow.lists import listfiles
from nlflow.models import CheckpointError, ModelConfig, build_model, read_checkpoint, save_checkpoint
from nlflow.store.lmdb_store import LmdbReader, LmdbStoreError, write_store
from nlflow.train.snapshots import load_latest_snapshot, save_snapshot, snapshot_path
from nlflow.video.manifest import ManifestError, ManifestRow, read_manifest, write_manifest
from nlflow.workflow.adapter import run_stage

from helpers.e2e import demo_config, planned_jobs, snakemake, write_config
from helpers.evaluation import SPEC, tiny_checkpoint, tiny_test_store
from helpers.reports import write_eval_metrics
from helpers.stores import CLASSES, fake_videos

STORE = "results/lmdb/split1/test.lmdb"  # where the workflow keeps a store: the rebuild hint names it
REBUILD_STORE = f"rebuild it with `snakemake -f {STORE}`"


def cut_to_half(path: Path) -> int:
    """Truncate ``path`` to half its size, as an interrupted copy or a full quota leaves it."""
    size = path.stat().st_size // 2
    os.truncate(path, size)
    return size


def flip_bit(path: Path, offset: int | None = None, mask: int = 0x10) -> int:
    """Flip the bits ``mask`` of the byte at ``offset`` (default: the middle of the file)."""
    data = bytearray(path.read_bytes())
    offset = len(data) // 2 if offset is None else offset
    data[offset] ^= mask
    path.write_bytes(bytes(data))
    return offset


def offset_of(path: Path, needle: bytes) -> int:
    data = path.read_bytes()
    assert data.count(needle) == 1, f"{needle!r} is not unique in {path}"
    return data.index(needle)


# ------------------------------------------------------------------ LMDB stores


def _store(workdir: Path, count: int = 40) -> tuple[Path, list[tuple[str, bytes]]]:
    """A store of ``count`` fake videos at the workflow's place under ``workdir``; (video, payload) per record."""
    entries, frames, content = fake_videos(workdir / "videos", count)
    store = workdir / STORE
    write_store(store, entries, workdir / "videos", "test", CLASSES, {}, frames)
    return store, [(video, content[video]) for video, _ in entries]


_READ_EVERY_RECORD = """
import sys
from nlflow.errors import NlflowError, one_line
from nlflow.store import lmdb_store
if "--unchecked" in sys.argv:
    lmdb_store._check_file = lambda env, path: None
try:
    reader = lmdb_store.LmdbReader(sys.argv[1])
    for index in range(len(reader)):
        reader[index]
except NlflowError as error:
    sys.exit(one_line(error))
"""


def _read_every_record(workdir: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _READ_EVERY_RECORD, STORE, *flags], cwd=workdir, capture_output=True, text=True,
        timeout=120,
    )


def _flip_record_length(store: Path, index: int, mask: int, high_half: bool) -> None:
    """Flip bits of the value length LMDB's leaf node keeps for record ``index``: the node is 2 bytes
    low and 2 bytes high half of the length, 2 bytes flags, 2 bytes key size, then the key."""
    key = offset_of(store, b"%08d" % index)
    flip_bit(store, key - (6 if high_half else 8), mask)


_DAMAGE = {
    "cut": cut_to_half,
    # The last record's length + 64 KiB: its value would run past the end of the file.
    "record-length": lambda store: _flip_record_length(store, 39, 0x01, high_half=True),
}


@pytest.mark.parametrize("damage", _DAMAGE)
def test_a_damaged_store_read_without_the_checks_dies_of_sigbus(tmp_path, damage):
    """The issue's crash, reproduced: what the checks on opening prevent."""
    store, _ = _store(tmp_path)
    _DAMAGE[damage](store)
    assert _read_every_record(tmp_path, "--unchecked").returncode == -signal.SIGBUS


def test_a_truncated_store_is_one_clear_line_on_opening(tmp_path):
    store, _ = _store(tmp_path)
    full = store.stat().st_size
    half = cut_to_half(store)
    result = _read_every_record(tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"LMDB store {STORE} is damaged: the file has {half} bytes but its LMDB environment needs {full} "
        f"({full // 4096} pages of 4096), e.g. cut short by an interrupted copy; {REBUILD_STORE} "
        "(plus your usual --configfile/--profile)"
    ]


def test_a_record_length_past_the_end_of_the_file_is_one_clear_line_on_opening(tmp_path):
    store, _ = _store(tmp_path)
    _DAMAGE["record-length"](store)
    result = _read_every_record(tmp_path)
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"LMDB store {STORE} is damaged: the value of key '00000039' (")
    assert ") runs past the last page " in line and REBUILD_STORE in line


def test_a_record_length_off_by_one_is_caught_by_the_record_header(tmp_path):
    """A length still inside the file passes LMDB and the layout check; the record's own header
    says how long it is, and is read before the payload."""
    store, records = _store(tmp_path)
    _flip_record_length(store, 5, 0x01, high_half=False)
    reader = LmdbReader(store)
    with pytest.raises(LmdbStoreError, match=r"damaged: record 5: malformed LMDB record: value of \d+ bytes, its header says \d+; rebuild"):
        reader[5]
    assert (reader[4].data, reader[6].data) == (records[4][1], records[6][1])


@pytest.mark.parametrize(
    "count, size, embed, depth", [(1, 10, True, 1), (700, 0, False, 2), (3000, 1500, True, 3)],
    ids=["one-record", "paths", "inline-values"],
)
def test_the_layout_check_accepts_stores_of_every_shape(tmp_path, count, size, embed, depth):
    """B-trees of one to three levels, values inline in leaf pages and on overflow pages."""
    import lmdb

    root = tmp_path / "videos"
    root.mkdir()
    entries = [(f"v{i}.avi", 0) for i in range(count)]
    for name, _ in entries:
        (root / name).write_bytes(os.urandom(size))
    write_store(tmp_path / "s.lmdb", entries, root, "train", ["A"], {}, {name: 9 for name, _ in entries}, embed=embed)
    reader = LmdbReader(tmp_path / "s.lmdb")
    assert [reader[i].video for i in (0, count // 2, count - 1)] == [entries[i][0] for i in (0, count // 2, count - 1)]
    reader.close()
    env = lmdb.open(str(tmp_path / "s.lmdb"), subdir=False, readonly=True, lock=False)
    assert env.stat()["depth"] == depth
    env.close()


def test_a_flipped_bit_in_a_payload_fails_its_checksum_and_only_that_record(tmp_path):
    store, records = _store(tmp_path)
    video, payload = records[7]
    flip_bit(store, store.read_bytes().index(payload) + 500)
    reader = LmdbReader(store)
    with pytest.raises(LmdbStoreError) as error:
        reader[7]
    message = str(error.value)
    assert f"record 7: malformed LMDB record: the payload of {video} fails its CRC-32" in message
    assert "rebuild it with `snakemake -f" in message and "\n" not in message
    assert reader.header(7)["video"] == video  # the header is intact
    assert (reader[6].data, reader[8].data) == (records[6][1], records[8][1])


def test_metadata_that_disagrees_with_the_records_is_refused(tmp_path):
    store, _ = _store(tmp_path)
    flip_bit(store, offset_of(store, b'"count": 40') + len(b'"count": '), 0x01)  # 40 -> 50
    with pytest.raises(LmdbStoreError, match="metadata lists 50 records but it holds 40; rebuild it with"):
        LmdbReader(store)


def test_unreadable_metadata_is_refused(tmp_path):
    store, _ = _store(tmp_path)
    flip_bit(store, offset_of(store, b'"classes":'), 0x80)  # not UTF-8 any more
    with pytest.raises(LmdbStoreError, match="damaged: unreadable __meta__ record .*rebuild it with"):
        LmdbReader(store)


def test_stores_written_without_checksums_still_read(tmp_path, monkeypatch):
    """Stores written before the records carried their length and CRC-32 are read as before."""
    from nlflow.store import lmdb_store

    def unguarded(header, data=b""):
        head = json.dumps(header, separators=(",", ":"), sort_keys=True).encode("utf-8")
        return lmdb_store._HEADER_LEN.pack(len(head)) + head + data

    monkeypatch.setattr(lmdb_store, "encode_record", unguarded)
    store, records = _store(tmp_path, count=3)
    monkeypatch.undo()
    reader = LmdbReader(store)
    assert [reader[i].data for i in range(3)] == [payload for _, payload in records]
    assert reader.header(1) == {"video": records[1][0], "label": 1, "frames": 61}


# ------------------------------------------------------------------ the evaluation cache


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A test store, a checkpoint and a finished evaluation of them (its cache and metrics)."""
    tmp = tmp_path_factory.mktemp("damaged_eval")
    store, _, entries = tiny_test_store(tmp, corrupt=True)
    checkpoint = tiny_checkpoint(tmp / "model.pt")
    reference = evaluate(checkpoint, store, SPEC, tmp / "cache", tmp / "m.json", tmp / "p.csv", batch_size=16)
    return SimpleNamespace(tmp=tmp, store=store, checkpoint=checkpoint, entries=entries, reference=reference)


def _evaluate_again(evaluated, tmp_path: Path, damage) -> dict:
    cache = tmp_path / "cache"
    shutil.copytree(evaluated.tmp / "cache", cache)
    damage(cache)
    return evaluate(evaluated.checkpoint, evaluated.store, SPEC, cache, tmp_path / "m.json", tmp_path / "p.csv", batch_size=16)


def _same_metrics(metrics: dict, reference: dict) -> None:
    for key in ("top1", "top5", "top1_decoded", "clip_top1", "confusion_matrix", "num_listed", "num_videos", "failed_videos"):
        assert metrics[key] == reference[key], key


def _entry(cache: Path, index: int) -> Path:
    return cache / "videos" / f"{index:08d}.npz"


def _rewrite_entry(path: Path, **changes) -> None:
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    arrays.update(changes)
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def test_damaged_cache_entries_are_logged_once_and_recomputed(evaluated, tmp_path, caplog):
    def damage(cache):
        cut_to_half(_entry(cache, 0))
        flip_bit(_entry(cache, 1))
        with np.load(_entry(cache, 2)) as data:
            _rewrite_entry(_entry(cache, 2), probs=data["probs"][:2])  # too few views
        shutil.copyfile(_entry(cache, 4), _entry(cache, 3))  # another video's scores

    with caplog.at_level(logging.WARNING, logger="nlflow.evaluate.view_cache"):
        metrics = _evaluate_again(evaluated, tmp_path, damage)
    assert (metrics["run"]["computed"], metrics["run"]["reused"]) == (4, len(evaluated.entries) - 4)
    _same_metrics(metrics, evaluated.reference)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "evaluation cache" in r.getMessage()]
    assert len(warnings) == 4
    assert "00000000.npz is damaged (BadZipFile" in warnings[0]
    assert "00000001.npz is damaged (BadZipFile: Bad CRC-32" in warnings[1]
    assert "00000002.npz does not match this test set: probs float32[2, 3]" in warnings[2]
    assert f"00000003.npz does not match this test set: holds {evaluated.entries[4][0]!r}" in warnings[3]
    assert all(w.endswith(f"recomputing {evaluated.entries[i][0]}") for i, w in enumerate(warnings))
    # The recomputed entries are whole again: the next run computes nothing.
    again = evaluate(evaluated.checkpoint, evaluated.store, SPEC, tmp_path / "cache", tmp_path / "m.json", tmp_path / "p.csv")
    assert again["run"]["computed"] == 0


@pytest.mark.parametrize("damage", [cut_to_half, lambda path: flip_bit(path, mask=0x80)], ids=["cut", "flipped"])
def test_a_damaged_identity_recomputes_everything(evaluated, tmp_path, caplog, damage):
    with caplog.at_level(logging.WARNING, logger="nlflow.evaluate.view_cache"):
        metrics = _evaluate_again(evaluated, tmp_path, lambda cache: damage(cache / "identity.json"))
    assert (metrics["run"]["computed"], metrics["run"]["reused"]) == (len(evaluated.entries), 0)
    _same_metrics(metrics, evaluated.reference)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "identity.json" in r.getMessage()]
    assert "identity.json is damaged (" in warning
    assert warning.endswith(f"recomputing every video (discarding {len(evaluated.entries)} cached)")


def test_reaggregate_names_a_damaged_cache_and_the_way_out(evaluated, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(evaluated.tmp / "cache", cache)
    flip_bit(_entry(cache, 2))
    with pytest.raises(EvaluationError, match=r"00000002.npz is damaged \(BadZipFile.*: run evaluate again"):
        reaggregate(cache)
    shutil.copyfile(_entry(evaluated.tmp / "cache", 2), _entry(cache, 2))
    _rewrite_entry(_entry(cache, 1), video=np.array("Other/v_Other_g01_c01.avi"))
    with pytest.raises(EvaluationError, match="videos and labels do not match identity.json: run evaluate again"):
        reaggregate(cache)
    cut_to_half(cache / "identity.json")
    with pytest.raises(EvaluationError, match="identity.json is damaged .*: run evaluate again"):
        reaggregate(cache)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_a_damaged_test_store_stops_evaluation_and_is_not_cached_as_a_failed_video(evaluated, tmp_path, num_workers):
    store = tmp_path / "test.lmdb"
    shutil.copyfile(evaluated.store, store)
    video = (evaluated.tmp / "videos" / evaluated.entries[2][0]).read_bytes()
    flip_bit(store, offset_of(store, video[:256]) + len(video) // 2)
    with pytest.raises(LmdbStoreError) as error:
        evaluate(evaluated.checkpoint, store, SPEC, tmp_path / "cache", tmp_path / "m.json", tmp_path / "p.csv",
                 num_workers=num_workers)
    assert one_line(error.value) == str(error.value)
    assert f"{store} is damaged: record 2: malformed LMDB record: the payload of {evaluated.entries[2][0]} fails its CRC-32" in str(error.value)
    assert not _entry(tmp_path / "cache", 2).exists() and not (tmp_path / "m.json").exists()


# ------------------------------------------------------------------ the downscale manifest and settings stamp


@pytest.fixture()
def manifest(tmp_path) -> SimpleNamespace:
    """A manifest of six downscaled 'videos' (files of known size) and one corrupt one."""
    videos = tmp_path / "results/downscaled/videos"
    rows = []
    for i in range(6):
        rel = f"Grow/v_Grow_g{i + 1:02d}_c01.avi"
        (videos / rel).parent.mkdir(parents=True, exist_ok=True)
        (videos / rel).write_bytes(b"x" * (1000 + i))
        rows.append(ManifestRow(rel, "ok", 80 + i, 25.0, 112, 112, 1000 + i))
    rows.insert(3, ManifestRow("Grow/v_Grow_g09_c01.avi", "corrupt", 0, 0.0, 0, 0, 0, "InvalidDataError: truncated"))
    path = tmp_path / "results/downscaled/manifest.csv"
    write_manifest(path, rows)
    return SimpleNamespace(path=path, videos=videos, rows=rows)


def test_a_manifest_cut_in_half_is_refused_with_the_rebuild_command(manifest, monkeypatch):
    monkeypatch.chdir(manifest.path.parents[2])
    lines = manifest.path.read_text().count("\n")
    cut_to_half(manifest.path)
    with pytest.raises(ManifestError) as error:
        read_manifest(manifest.path)
    assert str(error.value) == (
        f"{manifest.path} is damaged: it ends in the middle of line {manifest.path.read_text().count(chr(10)) + 1} "
        "(truncated?); rebuild it with `snakemake -f results/downscaled/manifest.csv` (plus your usual "
        "--configfile/--profile) (this re-runs the downscale job)"
    )
    assert manifest.path.read_text().count("\n") < lines


def test_a_manifest_cut_at_a_line_end_is_caught_by_the_videos_beside_it(manifest):
    text = manifest.path.read_text()
    manifest.path.write_text(text[: text.rindex("\n", 0, len(text) // 2) + 1])
    assert len(read_manifest(manifest.path)) < len(manifest.rows)  # alone, it still parses
    with pytest.raises(ManifestError, match=r"is damaged: \d downscaled video\(s\) lack an 'ok' row, e.g. Grow/v_Grow_g0\d_c01.avi; rebuild"):
        read_manifest(manifest.path, videos_dir=manifest.videos)


@pytest.mark.parametrize(
    "needle, mask, expected",
    [
        (b"v_Grow_g02", 0x80, r"manifest.csv:3 is damaged \(a byte that is not UTF-8 text\); rebuild"),
        (b",ok,81", 0x02, r"manifest.csv:3 is damaged \(malformed row 'Grow/v_Grow_g02_c01.avi,mk,81"),
        (b"v_Grow_g02", 0x01, r"damaged: 1 downscaled video\(s\) lack an 'ok' row, e.g. Grow/v_Grow_g02_c01.avi"),
        (b"1001,", 0x01, r"damaged: 1 row\(s\) record another file size than the video has, e.g. Grow/v_Grow_g02_c01.avi"),
        (b"corrupt,", 0x20, r"manifest.csv:5 is damaged \(malformed row 'Grow/v_Grow_g09_c01.avi,Corrupt"),
    ],
    ids=["not-utf8", "status", "video-name", "size", "status-case"],
)
def test_a_flipped_bit_in_the_manifest_is_refused(manifest, needle, mask, expected):
    flip_bit(manifest.path, offset_of(manifest.path, needle) + (1 if needle.startswith(b",") else 0), mask)
    with pytest.raises(ManifestError, match=expected):
        read_manifest(manifest.path, videos_dir=manifest.videos)


def test_a_damaged_settings_stamp_means_encoding_again(tmp_path, caplog):
    from nlflow.demo.dataset import make_class_video
    from nlflow.video.downscale import SETTINGS_STAMP, downscale_all

    source = tmp_path / "src"
    make_class_video(source / "Grow/v_Grow_g01_c01.avi", "Grow", np.random.default_rng(0), num_frames=12, size=(64, 48))
    run = lambda: downscale_all(source, ["Grow/v_Grow_g01_c01.avi"], tmp_path / "out", tmp_path / "m.csv", short_side=32)  # noqa: E731
    run()
    for damage in (cut_to_half, lambda path: flip_bit(path, mask=0x80)):
        damage(tmp_path / "out" / SETTINGS_STAMP)
        with caplog.at_level(logging.INFO, logger="nlflow.video.downscale"):
            caplog.clear()
            (row,) = run()
        assert row.status == "ok" and "0 up to date, 1 to encode" in caplog.text
        assert json.loads((tmp_path / "out" / SETTINGS_STAMP).read_text())["short_side"] == 32


# ------------------------------------------------------------------ list files


@pytest.fixture()
def lists(tmp_path) -> Path:
    out = tmp_path / "results/lists/split1"
    out.mkdir(parents=True)
    classes = ["Grow", "MoveUp", "Shrink"]
    (out / "train.txt").write_text("".join(f"{classes[i % 3]}/v_{classes[i % 3]}_g{i:02d}_c01.avi {i % 3}\n" for i in range(8, 21)))
    (out / "classes.txt").write_text("".join(f"{name}\n" for name in classes))
    return out


def test_a_list_cut_in_half_names_the_file_and_line(lists, monkeypatch):
    monkeypatch.chdir(lists.parents[2])
    cut_to_half(lists / "train.txt")
    line = (lists / "train.txt").read_text().count("\n") + 1
    with pytest.raises(listfiles.ListFileError) as error:
        listfiles.read_list(lists / "train.txt")
    assert str(error.value) == (
        f"{lists / 'train.txt'} is damaged: it ends in the middle of line {line} (truncated?); if nlflow wrote it, "
        "rebuild it with `snakemake -f results/lists/split1/train.txt` (plus your usual --configfile/--profile)"
    )


def test_a_flipped_bit_in_a_list_names_the_file_and_line(lists):
    flip_bit(lists / "train.txt", offset_of(lists / "train.txt", b"g13"), 0x80)
    with pytest.raises(listfiles.ListFileError, match=r"train.txt:6 is damaged \(a byte that is not UTF-8 text\); if nlflow"):
        listfiles.read_list(lists / "train.txt")


def test_a_flipped_label_digit_is_out_of_range(lists):
    flip_bit(lists / "train.txt", offset_of(lists / "train.txt", b"g10_c01.avi 1") + len("g10_c01.avi "), 0x08)  # 1 -> 9
    with pytest.raises(listfiles.ListFileError, match=r"train.txt:3: label 9 is out of range for 3 classes; if nlflow"):
        listfiles.read_list(lists / "train.txt", num_classes=3)
    flip_bit(lists / "train.txt", offset_of(lists / "train.txt", b"g10_c01.avi 9") + len("g10_c01.avi "), 0x40)  # 9 -> y
    with pytest.raises(listfiles.ListFileError, match=r"train.txt:3: expected '<relative path> <label>'"):
        listfiles.read_list(lists / "train.txt")


def test_a_classes_file_cut_in_half_is_refused(lists):
    cut_to_half(lists / "classes.txt")
    with pytest.raises(listfiles.ListFileError, match="classes.txt is damaged: it ends in the middle of line 2"):
        listfiles.read_classes(lists / "classes.txt")


# ------------------------------------------------------------------ the download lock file


@pytest.fixture()
def locked_download(tmp_path) -> SimpleNamespace:
    """A file fetched from a local source, its checksum recorded in the lock file."""
    source = tmp_path / "mirror" / "UCF101.rar"
    source.parent.mkdir()
    source.write_bytes(os.urandom(5000))
    dest = tmp_path / "download" / "UCF101.rar"
    lock = tmp_path / "download" / "UCF101.rar.sha256"
    fetch([str(source)], dest, lock_file=lock)
    assert lock.read_text().endswith("  UCF101.rar\n")
    return SimpleNamespace(source=source, dest=dest, lock=lock)


def test_a_lock_file_cut_in_half_is_an_error_not_a_forgotten_checksum(locked_download):
    cut_to_half(locked_download.lock)
    expected = (
        f"{locked_download.lock} is damaged: it ends in the middle of line 1 (truncated?); re-check the lock file "
        f"against `sha256sum {locked_download.dest}` and correct it, or delete it to record the checksum of the "
        "file as it is now"
    )
    with pytest.raises(DownloadError) as error:
        fetch([str(locked_download.source)], locked_download.dest, lock_file=locked_download.lock)
    assert str(error.value) == expected


def test_a_flipped_bit_in_the_lock_file_is_an_error(locked_download):
    digest = locked_download.lock.read_text().split()[0]
    position = next(i for i, c in enumerate(digest) if c.isdigit())  # a digit | 0x40 is a letter past 'f'
    flip_bit(locked_download.lock, position, 0x40)
    with pytest.raises(DownloadError, match=r"UCF101.rar.sha256:1: '.*' is not a SHA-256 \(64 hex digits\); re-check the lock file"):
        read_lock_file(locked_download.lock)
    locked_download.lock.write_bytes(b"\xff" + locked_download.lock.read_bytes()[1:])
    with pytest.raises(DownloadError, match=r"UCF101.rar.sha256:1 is damaged \(a byte that is not UTF-8 text\); re-check"):
        read_lock_file(locked_download.lock)


# ------------------------------------------------------------------ metrics.jsonl and metrics.json for the report


def test_damaged_training_metrics_lines_are_skipped_with_one_warning(tmp_path, caplog):
    jsonl = tmp_path / "metrics.jsonl"
    # 21 lines of one length: half the file is lines 1-10 and half of line 11.
    jsonl.write_text("".join(json.dumps({"iter": i, "loss": 0.5, "lr": 0.01}) + "\n" for i in range(10, 31)))
    flip_bit(jsonl, offset_of(jsonl, b'{"iter": 14,'), 0x80)  # line 5: not UTF-8
    flip_bit(jsonl, offset_of(jsonl, b'{"iter": 16,') + 1, 0x01)  # line 7: no longer JSON
    cut_to_half(jsonl)
    with caplog.at_level(logging.WARNING, logger="nlflow.evaluate.report"):
        records = read_metrics_jsonl(jsonl)
    assert [r["iter"] for r in records] == [10, 11, 12, 13, 15, 17, 18, 19]
    (warning,) = caplog.records
    assert warning.getMessage() == (
        f"{jsonl}: skipped 3 damaged line(s) (first: line 5); the training curves lack those points"
    )
    write_eval_metrics(tmp_path / "eval.json")
    assert write_report(jsonl, tmp_path / "eval.json", tmp_path / "report", {})[-1].name == "report.md"


@pytest.mark.parametrize(
    "damage, expected",
    [
        (cut_to_half, r"metrics.json is damaged \(JSONDecodeError: "),
        (lambda p: flip_bit(p, offset_of(p, b'"confusion_matrix"') + 3), r"metrics.json is damaged \(no 'confusion_matrix'\)"),
        (lambda p: flip_bit(p, mask=0x80), r"metrics.json is damaged \(UnicodeDecodeError: "),
    ],
    ids=["cut", "key", "not-utf8"],
)
def test_damaged_evaluation_metrics_stop_the_report_with_the_rebuild_command(tmp_path, monkeypatch, damage, expected):
    metrics = tmp_path / "results/evaluate/metrics.json"
    metrics.parent.mkdir(parents=True)
    write_eval_metrics(metrics)
    damage(metrics)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ReportError, match=expected + r".*; rebuild it with `snakemake -f results/evaluate/metrics.json`"):
        write_report(None, metrics, tmp_path / "report", {})


# ------------------------------------------------------------------ model checkpoints and training snapshots


@pytest.fixture()
def model_file(tmp_path) -> Path:
    model = build_model(ModelConfig(num_classes=3, width=4, video_length=4, sample_rate=2))
    return save_checkpoint(tmp_path / "model.pt", model, ["a", "b", "c"])


@pytest.mark.parametrize(
    "damage, reason",
    [(cut_to_half, "not a readable zip"), (flip_bit, "checksum mismatch in .*/data/")],
    ids=["cut", "flipped"],
)
def test_a_damaged_model_checkpoint_is_one_line(model_file, capsys, damage, reason):
    damage(model_file)
    with pytest.raises(CheckpointError, match=f"cannot read checkpoint {model_file}: the file is damaged \\({reason}"):
        read_checkpoint(model_file)
    from nlflow.cli import main

    assert main(["predict", str(model_file), "--checkpoint", str(model_file)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert re.match(f"nlflow predict: cannot read checkpoint {model_file}: the file is damaged \\({reason}", line)
    assert "copy it again, or if nlflow wrote it, rebuild it with `snakemake -f" in line


@pytest.mark.parametrize("damage", [cut_to_half, flip_bit], ids=["cut", "flipped"])
def test_resuming_skips_a_damaged_newest_snapshot(tmp_path, caplog, damage):
    for iteration in (10, 20):
        save_snapshot(tmp_path, iteration, {"weight": torch.full((4000,), float(iteration))}, keep=2)
    damage(snapshot_path(tmp_path, 20))
    with caplog.at_level(logging.WARNING, logger="nlflow.train.snapshots"):
        state = load_latest_snapshot(tmp_path)
    assert state["iteration"] == 10 and torch.equal(state["weight"], torch.full((4000,), 10.0))
    assert "skipping unreadable checkpoint" in caplog.text and "iter_00000020.pt" in caplog.text


# ------------------------------------------------------------------ one line through a DataLoader worker and a Snakemake job


class _DamagedStoreDataset(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 1

    def __getitem__(self, index):
        raise LmdbStoreError("LMDB store x.lmdb is damaged: record 0: the record is missing; rebuild it")


def test_an_error_from_a_dataloader_worker_keeps_its_one_line():
    loader = torch.utils.data.DataLoader(_DamagedStoreDataset(), batch_size=None, num_workers=1)
    with pytest.raises(NlflowError) as error:
        next(iter(loader))
    assert "Traceback" in str(error.value)  # how torch hands it over
    assert one_line(error.value) == "LMDB store x.lmdb is damaged: record 0: the record is missing; rebuild it"


def test_a_stage_failing_in_a_worker_logs_one_line(tmp_path):
    def stage():
        next(iter(torch.utils.data.DataLoader(_DamagedStoreDataset(), batch_size=None, num_workers=1)))

    job = SimpleNamespace(log=[str(tmp_path / "job.log")], rule="evaluate", threads=1)
    with pytest.raises(SystemExit) as exit_status:
        run_stage(job, stage)
    assert exit_status.value.code == 1
    (line,) = (tmp_path / "job.log").read_text().splitlines()
    assert line.endswith("ERROR nlflow: evaluate failed: LMDB store x.lmdb is damaged: record 0: the record is missing; rebuild it")


@pytest.mark.e2e
def test_through_snakemake_the_hint_rebuilds_one_store_and_a_job_fails_with_one_line(tmp_path, monkeypatch):
    """Real Snakemake on the demo up to the stores: the command in a damaged store's message
    rebuilds that store alone; a job reading a damaged manifest fails with the one line in its log
    and on stderr, no traceback."""
    config = write_config(tmp_path, demo_config(demo={"clips_per_group": 1, "num_frames": 40}))
    made = snakemake(tmp_path, config, "lmdb")
    assert made.returncode == 0, made.stderr[-3000:]

    store = tmp_path / STORE
    records = len(LmdbReader(store))
    assert records > 0
    cut_to_half(store)
    monkeypatch.chdir(tmp_path)  # where the user runs snakemake
    with pytest.raises(LmdbStoreError, match=REBUILD_STORE):
        LmdbReader(STORE)
    rebuilt = snakemake(tmp_path, config, "-f", STORE)
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    assert planned_jobs(rebuilt) == {"write_lmdb": 1}
    assert len(LmdbReader(store)) == records

    manifest = tmp_path / "results/downscaled/manifest.csv"
    intact = manifest.read_bytes()
    cut_to_half(manifest)
    failed = snakemake(tmp_path, config, "-f", STORE)
    assert failed.returncode != 0
    cut_line = intact[: len(intact) // 2].count(b"\n") + 1
    expected = ("write_lmdb failed: results/downscaled/manifest.csv is damaged: it ends in the middle of line "
                f"{cut_line} (truncated?); rebuild it with `snakemake -f results/downscaled/manifest.csv`")
    (line,) = (tmp_path / "results/logs/lmdb/split1_test.log").read_text().splitlines()
    assert expected in line
    assert expected in failed.stderr and "Traceback" not in failed.stderr + failed.stdout


def test_a_resumed_run_drops_damaged_metrics_lines(tmp_path):
    from nlflow.train.progress import MetricsLog

    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"iter": 2, "loss": 1.0}\n{"iter": 4, "lo\xff\n{"iter": 4, "loss": 0.9}\n{"iter": 6, "loss": 0.8}\n')
    MetricsLog(path, enabled=True, resume_iter=4)
    assert path.read_text() == '{"iter": 2, "loss": 1.0}\n{"iter": 4, "loss": 0.9}\n'
