"""Single-file LMDB stores: round trips, atomic writing, format checks, use from worker processes."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import pickle

import lmdb
import pytest
from torch.utils.data import DataLoader, Dataset

from nlflow.store import lmdb_store
from nlflow.store.lmdb_store import (
    META_KEY,
    LmdbReader,
    LmdbStoreError,
    _put_batch,
    decode_record,
    encode_record,
    write_store,
)

from helpers.stores import CLASSES, fake_videos


def test_embedded_round_trip_and_meta(tmp_path):
    root = tmp_path / "videos"
    entries, frames, content = fake_videos(root, 7)
    store = tmp_path / "out" / "train.lmdb"
    settings = {"short_side": 128, "seed": 3}

    excluded = [("b/gone.avi", 1, "missing")]
    assert write_store(store, entries, root, "train", CLASSES, settings, frames, embed=True, excluded=excluded) == 7

    assert sorted(p.name for p in store.parent.iterdir()) == ["train.lmdb"]  # no -lock, no temp file
    reader = LmdbReader(store)
    assert reader.meta == {
        "format": "nlflow-lmdb", "version": 1, "kind": "train", "count": 7, "classes": CLASSES,
        "embedded": True, "settings": settings, "excluded": [{"video": "b/gone.avi", "label": 1, "reason": "missing"}],
    }
    assert reader.excluded == excluded
    assert len(reader) == 7 and reader.kind == "train" and reader.classes == CLASSES
    for i, (rel, label) in enumerate(entries):
        record = reader[i]
        assert (record.video, record.label, record.frames) == (rel, label, frames[rel])
        assert record.data == content[rel] and record.path is None
        assert reader.source(i) == content[rel]
    assert reader[-1].video == entries[-1][0]
    assert reader.entries() == entries  # headers only
    assert reader.header(2) == {"video": entries[2][0], "label": entries[2][1], "frames": frames[entries[2][0]]}
    assert [r.video for r in reader] == [rel for rel, _ in entries]
    with pytest.raises(IndexError):
        reader[7]
    reader.close()
    assert not (store.parent / "train.lmdb-lock").exists()


def test_path_mode_stores_absolute_paths(tmp_path):
    root = tmp_path / "videos"
    entries, frames, _ = fake_videos(root, 4)
    store = tmp_path / "test.lmdb"
    write_store(store, entries, root, "test", CLASSES, {}, frames, embed=False)

    reader = LmdbReader(store)
    assert reader.meta["embedded"] is False
    for i, (rel, label) in enumerate(entries):
        record = reader[i]
        assert record.data is None
        assert os.path.isabs(record.path) and record.path == str((root / rel).resolve())
        assert reader.source(i) == record.path and record.label == label
    # Path mode stays small: no video bytes inside.
    assert store.stat().st_size < sum((root / rel).stat().st_size for rel, _ in entries) + 64 * 1024


def test_record_encoding_round_trip_and_malformed():
    value = encode_record({"video": "a/b.avi", "label": 2, "frames": 80}, b"\x00\x01payload")
    record = decode_record(value, embedded=True)
    assert (record.video, record.label, record.frames, record.data) == ("a/b.avi", 2, 80, b"\x00\x01payload")
    with pytest.raises(LmdbStoreError):
        decode_record(b"\xff\xff\x00\x00{}", embedded=True)  # header length past the end
    with pytest.raises(LmdbStoreError):
        decode_record(encode_record({"video": "x"}), embedded=True)  # no label/frames


def test_failed_write_leaves_nothing(tmp_path):
    root = tmp_path / "videos"
    entries, frames, _ = fake_videos(root, 3)
    # A directory where a video should be: stat works, reading fails half-way through writing.
    (root / "Beta/broken.avi").mkdir(parents=True)
    entries.append(("Beta/broken.avi", 1))
    frames["Beta/broken.avi"] = 70
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(LmdbStoreError, match="broken.avi"):
        write_store(out / "val.lmdb", entries, root, "val", CLASSES, {}, frames)
    assert list(out.iterdir()) == []


def test_write_errors_are_clear(tmp_path):
    root = tmp_path / "videos"
    entries, frames, _ = fake_videos(root, 2)
    with pytest.raises(LmdbStoreError, match="not found"):
        write_store(tmp_path / "a.lmdb", entries + [("Alpha/nope.avi", 0)], root, "train", CLASSES, {},
                    {**frames, "Alpha/nope.avi": 10})
    with pytest.raises(LmdbStoreError, match="no frame count"):
        write_store(tmp_path / "a.lmdb", entries, root, "train", CLASSES, {}, {})
    with pytest.raises(LmdbStoreError, match="kind"):
        write_store(tmp_path / "a.lmdb", entries, root, "training", CLASSES, {}, frames)
    assert not (tmp_path / "a.lmdb").exists()


def test_map_grows_when_full(tmp_path):
    env = lmdb.open(str(tmp_path / "small.lmdb"), subdir=False, lock=False, map_size=64 * 1024)
    try:
        items = [(b"%08d" % i, os.urandom(100_000)) for i in range(10)]
        _put_batch(env, items)
        assert env.info()["map_size"] > 1_000_000
        with env.begin() as txn:
            assert txn.get(b"00000009") == items[9][1]
    finally:
        env.close()


def test_reader_rejects_foreign_files(tmp_path):
    with pytest.raises(LmdbStoreError, match="not found"):
        LmdbReader(tmp_path / "missing.lmdb")

    text = tmp_path / "text.lmdb"
    text.write_bytes(b"this is not an LMDB file" * 500)
    with pytest.raises(LmdbStoreError, match="cannot open"):
        LmdbReader(text)

    def raw_store(name: str, meta: bytes | None) -> str:
        path = tmp_path / name
        env = lmdb.open(str(path), subdir=False, lock=False, map_size=1 << 20)
        with env.begin(write=True) as txn:
            txn.put(b"00000000", b"x")
            if meta is not None:
                txn.put(META_KEY, meta)
        env.close()
        return path

    with pytest.raises(LmdbStoreError, match="no __meta__"):
        LmdbReader(raw_store("nometa.lmdb", None))
    with pytest.raises(LmdbStoreError, match="not an nlflow"):
        LmdbReader(raw_store("other.lmdb", json.dumps({"format": "something-else"}).encode()))
    with pytest.raises(LmdbStoreError, match="version 2"):
        LmdbReader(raw_store("newer.lmdb", json.dumps({"format": "nlflow-lmdb", "version": 2}).encode()))


class _DigestDataset(Dataset):
    """Returns (index, sha256 of the record bytes, pid) so the test can check worker reads."""

    def __init__(self, reader: LmdbReader):
        self.reader = reader

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, index: int):
        record = self.reader[index]
        return index, hashlib.sha256(record.data).hexdigest(), os.getpid()


def test_dataloader_workers_read_every_record(tmp_path):
    root = tmp_path / "videos"
    entries, frames, content = fake_videos(root, 20)
    store = tmp_path / "train.lmdb"
    write_store(store, entries, root, "train", CLASSES, {}, frames)
    reader = LmdbReader(store)
    reader[0]  # open a handle in the parent before the workers fork

    loader = DataLoader(_DigestDataset(reader), batch_size=3, num_workers=2, collate_fn=lambda b: b)
    seen = {}
    pids = set()
    for batch in loader:
        for index, digest, pid in batch:
            seen[index] = digest
            pids.add(pid)
    expected = {i: hashlib.sha256(content[rel]).hexdigest() for i, (rel, _) in enumerate(entries)}
    assert seen == expected
    assert os.getpid() not in pids and len(pids) == 2


def _read_in_child(reader: LmdbReader, queue) -> None:
    record = reader[1]
    handle_pid = lmdb_store._ENVS[os.path.realpath(reader.path)][0]
    queue.put((record.video, len(record.data), handle_pid == os.getpid()))


def test_reader_reopens_after_fork(tmp_path):
    root = tmp_path / "videos"
    entries, frames, content = fake_videos(root, 3)
    store = tmp_path / "train.lmdb"
    write_store(store, entries, root, "train", CLASSES, {}, frames)
    reader = LmdbReader(store)
    assert reader[0].video == entries[0][0]
    parent_handle = lmdb_store._ENVS[os.path.realpath(store)]

    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_read_in_child, args=(reader, queue))
    child.start()
    video, size, reopened = queue.get(timeout=30)
    child.join(timeout=30)
    assert child.exitcode == 0
    assert (video, size, reopened) == (entries[1][0], len(content[entries[1][0]]), True)
    # The child closing its inherited copy leaves the parent's handle working.
    assert lmdb_store._ENVS[os.path.realpath(store)] is parent_handle
    assert reader[2].data == content[entries[2][0]]


def test_readers_of_one_file_share_a_handle_and_see_replacements(tmp_path):
    root = tmp_path / "videos"
    entries, frames, content = fake_videos(root, 4)
    store = tmp_path / "val.lmdb"
    write_store(store, entries[:2], root, "val", CLASSES, {}, frames)
    first, second = LmdbReader(store), LmdbReader(store)  # py-lmdb alone refuses a second open
    assert first[0].data == second[0].data == content[entries[0][0]]
    first.close()
    assert second[1].data == content[entries[1][0]]  # re-opens lazily after another reader closed

    write_store(store, entries, root, "val", CLASSES, {}, frames)  # replaced while a handle is open
    third = LmdbReader(store)
    assert len(third) == 4 and third[3].data == content[entries[3][0]]


def test_reader_pickles_without_a_handle(tmp_path):
    root = tmp_path / "videos"
    entries, frames, content = fake_videos(root, 2)
    store = tmp_path / "val.lmdb"
    write_store(store, entries, root, "val", CLASSES, {}, frames)
    reader = LmdbReader(store)
    reader[0]
    data = pickle.dumps(reader)
    assert len(data) < 2000  # path + meta only
    clone = pickle.loads(data)
    assert clone[1].data == content[entries[1][0]] and len(clone) == 2


def _videos_of_sizes(root, sizes: list[int]) -> tuple[list[tuple[str, int]], dict[str, int]]:
    entries, frames = [], {}
    for i, size in enumerate(sizes):
        rel = f"{CLASSES[i % 3]}/v{i:05d}.avi"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(os.urandom(size))
        entries.append((rel, i % 3))
        frames[rel] = 100
    return entries, frames


def test_the_initial_map_holds_thousands_of_records_without_growing(tmp_path, monkeypatch):
    # One byte past a page is the worst case for LMDB's overflow pages; the map sized from the file
    # sizes must still hold every record, so a store of 13k videos never needs a manual setting.
    sizes = [4097] * 1500 + [3 * 4096 + 1] * 500 + [100] * 1000
    entries, frames = _videos_of_sizes(tmp_path / "videos", sizes)
    map_sizes = []

    def put_and_record_map_size(env, items):
        _put_batch(env, items)
        map_sizes.append(env.info()["map_size"])

    monkeypatch.setattr(lmdb_store, "_put_batch", put_and_record_map_size)
    write_store(tmp_path / "train.lmdb", entries, tmp_path / "videos", "train", CLASSES, {}, frames)
    assert set(map_sizes) == {lmdb_store._initial_map_size(sizes)}  # never doubled
    assert len(LmdbReader(tmp_path / "train.lmdb")) == 3000


def test_write_transactions_are_bounded_in_bytes(tmp_path, monkeypatch):
    # LMDB holds a transaction's pages in memory until it commits: big videos must not pile up.
    sizes = [30_000] * 20
    entries, frames = _videos_of_sizes(tmp_path / "videos", sizes)
    monkeypatch.setattr(lmdb_store, "_BATCH_BYTES", 100_000)
    batches = []

    def record_batch(env, items):
        batches.append(sum(len(value) for _, value in items))
        _put_batch(env, items)

    monkeypatch.setattr(lmdb_store, "_put_batch", record_batch)
    write_store(tmp_path / "train.lmdb", entries, tmp_path / "videos", "train", CLASSES, {}, frames)
    assert len(batches) >= 6 and max(batches) < 100_000 + 2 * 30_000
    assert len(LmdbReader(tmp_path / "train.lmdb")) == 20
