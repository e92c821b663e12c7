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
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from nlflow.errors import one_line
from nlflow.evaluate.multiview import EvaluationError, evaluate, reaggregate
from nlflow.store.lmdb_store import LmdbReader, LmdbStoreError, write_store

from test_lmdb_store import CLASSES, _make_videos
from test_multiview import SPEC, tiny_checkpoint, tiny_test_store

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
    entries, frames, content = _make_videos(workdir / "videos", count)
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

    with caplog.at_level(logging.WARNING, logger="nlflow.evaluate.multiview"):
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
    with caplog.at_level(logging.WARNING, logger="nlflow.evaluate.multiview"):
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
