"""Single-file LMDB stores of videos: one record per list entry, written atomically, read lazily.

Layout (format "nlflow-lmdb", version 1):

* key ``b"__meta__"``: UTF-8 JSON ``{"format", "version", "kind", "count", "classes", "embedded", "settings",
  "excluded"}``; ``excluded`` lists the list entries left out (``{"video", "label", "reason"}``), so
  evaluation can count every listed test video
* key ``b"%08d" % i``: 4-byte little-endian header length, a UTF-8 JSON header
  ``{"video", "label", "frames", "bytes", "crc32"}`` (plus ``"path"``, absolute, in path mode), then
  the raw bytes of the video file (embedded mode) or nothing (path mode). ``bytes`` and ``crc32``
  (length and CRC-32 of the payload) came later and are optional: stores written before them still
  read, and older readers ignore them.

No pickle anywhere, so a store is safe to open whatever its origin.

Damage (a store truncated by an interrupted copy, a flipped bit): LMDB maps the file into memory
and trusts it, so touching a page past the end of a truncated file kills the process with SIGBUS.
Opening therefore checks that the file is as long as the environment's last page says, that every
value the B-tree describes ends inside the file (:mod:`nlflow.store.lmdb_layout`) and that the
metadata agrees with the B-tree; reading a record checks its length against its header and its
payload against its CRC-32. Every failure is one :class:`LmdbStoreError` line that names the
command rebuilding the store.
"""

from __future__ import annotations

import json
import logging
import operator
import os
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import lmdb
from tqdm import tqdm

from nlflow.diskspace import check_free_space
from nlflow.errors import NlflowError
from nlflow.fileio import atomic_path, rebuild_hint
from nlflow.store import lmdb_layout

log = logging.getLogger(__name__)

FORMAT = "nlflow-lmdb"
VERSION = 1
META_KEY = b"__meta__"
KINDS = ("train", "val", "test")

_HEADER_LEN = struct.Struct("<I")
# Headers are a few hundred bytes; a larger length field is a damaged record, not a header to read.
_MAX_HEADER_BYTES = 1 << 20
# Header fields that guard the payload; not part of what header() reports.
_INTEGRITY_KEYS = ("bytes", "crc32")
# Records per write transaction, and bytes: LMDB keeps a transaction's dirty pages in memory until
# it commits, so a count alone lets memory grow with the video size (256 embedded 256p videos at
# qscale 2 hold several hundred MB); the byte bound keeps the writer's memory flat.
_BATCH = 256
_BATCH_BYTES = 64 << 20
# Per-record slack for the initial map size: the JSON header, the key, B-tree pages and the
# rounding of large values up to whole overflow pages.
_PER_RECORD_SLACK = 3 * 4096
_BASE_MAP_SIZE = 16 << 20
# With lock=False the reader table is not used, but keep it generous for anyone opening with locks.
_MAX_READERS = 1024

# realpath -> (pid, (st_dev, st_ino), environment): see _shared_environment.
_ENVS: dict[str, tuple[int, tuple[int, int], lmdb.Environment]] = {}
_ENVS_LOCK = threading.Lock()


class LmdbStoreError(NlflowError):
    """An LMDB store is missing, not an nlflow store, of an unknown version, or has a bad record."""


@dataclass(frozen=True)
class Record:
    """One stored video: ``data`` holds the file bytes (embedded) or ``path`` its absolute path."""

    video: str
    label: int
    frames: int
    data: bytes | None
    path: str | None

    @property
    def source(self) -> bytes | str:
        """What the video decoders accept: the bytes when embedded, else the path."""
        if self.data is not None:
            return self.data
        if self.path is None:
            raise LmdbStoreError(f"record for {self.video} has neither bytes nor a path")
        return self.path


def record_key(index: int) -> bytes:
    return b"%08d" % index


def encode_record(header: Mapping[str, Any], data: bytes = b"") -> bytes:
    """Pack a JSON header, the payload's length and CRC-32, and the raw payload into one LMDB value."""
    guarded = {**header, "bytes": len(data), "crc32": zlib.crc32(data)}
    head = json.dumps(guarded, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return _HEADER_LEN.pack(len(head)) + head + data


def _split_record(value: bytes | memoryview) -> tuple[dict[str, Any], int]:
    """(header, offset of the payload) of an LMDB value, reading only its first bytes.

    When the header records the payload length, the value's length must match it: a damaged
    length in the B-tree that still ends inside the file would otherwise cut the payload short or
    append the next record's bytes to it.
    """
    try:
        (head_len,) = _HEADER_LEN.unpack_from(value, 0)
        end = _HEADER_LEN.size + head_len
        if head_len > _MAX_HEADER_BYTES or end > len(value):
            raise ValueError("header length past the end of the value")
        header = json.loads(bytes(value[_HEADER_LEN.size:end]).decode("utf-8"))
        if not isinstance(header, dict):
            raise TypeError("header is not a JSON object")
        size = header.get("bytes")
        if size is not None and end + int(size) != len(value):
            raise ValueError(f"value of {len(value)} bytes, its header says {end + int(size)}")
    except (struct.error, ValueError, TypeError) as exc:
        raise LmdbStoreError(f"malformed LMDB record: {exc}") from exc
    return header, end


def decode_record(value: bytes | memoryview, embedded: bool) -> Record:
    """Inverse of :func:`encode_record`; raises :class:`LmdbStoreError` on a malformed or damaged value."""
    header, end = _split_record(value)
    try:
        video, label, frames = str(header["video"]), int(header["label"]), int(header["frames"])
    except (KeyError, TypeError, ValueError) as exc:
        raise LmdbStoreError(f"malformed LMDB record: {type(exc).__name__} {exc}") from exc
    data = bytes(value[end:])
    if "crc32" in header and zlib.crc32(data) != header["crc32"]:
        raise LmdbStoreError(f"malformed LMDB record: the payload of {video} fails its CRC-32")
    if embedded:
        return Record(video, label, frames, data, None)
    return Record(video, label, frames, None, str(header.get("path")) if header.get("path") else None)


def _initial_map_size(sizes: Sequence[int]) -> int:
    return _BASE_MAP_SIZE + sum(sizes) + len(sizes) * _PER_RECORD_SLACK


def _put_batch(env: lmdb.Environment, items: list[tuple[bytes, bytes]]) -> None:
    """Write ``items`` in one transaction, doubling the map size whenever it runs full."""
    while True:
        try:
            with env.begin(write=True) as txn:
                for key, value in items:
                    txn.put(key, value)
            return
        except lmdb.MapFullError:
            new_size = env.info()["map_size"] * 2
            log.debug("LMDB map full; growing to %d bytes", new_size)
            env.set_mapsize(new_size)


def write_store(
    path: str | os.PathLike,
    entries: Sequence[tuple[str, int]],
    video_root: str | os.PathLike,
    kind: str,
    classes: Sequence[str],
    settings: Mapping[str, Any],
    frames: Mapping[str, int],
    embed: bool = True,
    excluded: Sequence[tuple[str, int, str]] = (),
    check_disk: bool = True,
) -> int:
    """Write ``entries`` (relative video path, label) into a single-file LMDB at ``path``.

    ``excluded`` are the list entries that could not be stored, as ``(video, label, reason)``;
    they are kept in the metadata (:attr:`LmdbReader.excluded`).
    ``frames`` maps each relative path to its decoded frame count (from the downscale manifest).
    ``embed=True`` stores the file bytes; ``embed=False`` stores the absolute path only.
    The file appears at ``path`` only when complete (no ``-lock`` file is left next to it).
    Nothing is written when the records' bytes do not fit on the filesystem (``check_disk=False``:
    a warning, and the store is tried). Returns the number of records written.
    """
    if kind not in KINDS:
        raise LmdbStoreError(f"unknown store kind {kind!r}; expected one of {', '.join(KINDS)}")
    video_root = Path(video_root)
    files = [video_root / rel for rel, _ in entries]
    sizes = _payload_sizes(entries, files, frames, embed)
    check_free_space(path, sum(sizes) + len(sizes) * _PER_RECORD_SLACK, f"the {kind} store", enforce=check_disk)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "count": len(entries),
        "classes": list(classes),
        "embedded": bool(embed),
        "settings": dict(settings),
        "excluded": [{"video": video, "label": int(label), "reason": reason} for video, label, reason in excluded],
    }
    with atomic_path(path) as tmp:
        # lock=False: the temp file has a single writer and no -lock file may appear beside it.
        env = lmdb.open(
            # meminit: unused parts of a page are zeros, not old heap data, so that the same
            # records make the same bytes (a store re-made after a crash is byte-identical).
            str(tmp), subdir=False, lock=False, map_size=_initial_map_size(sizes), sync=False, metasync=False,
            readahead=False, meminit=True,
        )
        try:
            meta_item = (META_KEY, json.dumps(meta, sort_keys=True).encode("utf-8"))
            _put_records(env, entries, files, frames, embed, kind, last=meta_item)
            env.sync(True)
            needed = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
        finally:
            env.close()
        # Readers refuse a file shorter than its last page (see _check_file). LMDB does not write
        # pages it freed in the same transaction, so the end of the file could in principle lack
        # them: make sure it does not (the missing pages are free, zeros are fine).
        if os.path.getsize(tmp) < needed:
            os.truncate(tmp, needed)
    log.info("wrote %s LMDB with %d videos (%s) to %s", kind, len(entries), "embedded" if embed else "paths", path)
    return len(entries)


def _payload_sizes(entries: Sequence[tuple[str, int]], files: Sequence[Path], frames: Mapping[str, int],
                   embed: bool) -> list[int]:
    """The bytes each record will carry (0 in path mode), after checking that every entry has a
    frame count and a file: a store is refused before anything is written."""
    missing_frames = [rel for rel, _ in entries if rel not in frames]
    if missing_frames:
        raise LmdbStoreError(
            f"no frame count for {len(missing_frames)} video(s), e.g. {missing_frames[0]} (not in the manifest?)"
        )
    sizes = []
    for file in files:
        try:
            sizes.append(file.stat().st_size if embed else 0)
        except FileNotFoundError:
            raise LmdbStoreError(f"video file not found: {file}") from None
    return sizes


def _put_records(env: lmdb.Environment, entries: Sequence[tuple[str, int]], files: Sequence[Path],
                 frames: Mapping[str, int], embed: bool, kind: str, last: tuple[bytes, bytes]) -> None:
    """One record per entry, in transactions bounded by count and bytes (see ``_BATCH_BYTES``);
    ``last`` (the metadata) goes into the final transaction, with the last records."""
    batch: list[tuple[bytes, bytes]] = []
    batch_bytes = 0
    progress = tqdm(zip(entries, files), total=len(entries), desc=f"lmdb {kind}", unit="video", disable=None)
    for index, ((rel, label), file) in enumerate(progress):
        header: dict[str, Any] = {"video": rel, "label": int(label), "frames": int(frames[rel])}
        if embed:
            try:
                payload = file.read_bytes()
            except OSError as exc:
                raise LmdbStoreError(f"cannot read video file {file}: {exc.strerror or exc}") from exc
        else:
            header["path"] = str(file.resolve())
            payload = b""
        batch.append((record_key(index), encode_record(header, payload)))
        batch_bytes += len(payload)
        if len(batch) >= _BATCH or batch_bytes >= _BATCH_BYTES:
            _put_batch(env, batch)
            batch, batch_bytes = [], 0
    _put_batch(env, [*batch, last])


def _damaged(path: Path, what: str) -> LmdbStoreError:
    return LmdbStoreError(f"LMDB store {path} is damaged: {what}; {rebuild_hint(path)}")


def _validate_meta(raw: bytes | None, path: Path) -> dict[str, Any]:
    if raw is None:
        raise LmdbStoreError(f"{path} is an LMDB file but not an nlflow store (no __meta__ record)")
    try:
        meta = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _damaged(path, f"unreadable __meta__ record ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise LmdbStoreError(f"{path} is not an nlflow LMDB store (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("version") != VERSION:
        raise LmdbStoreError(
            f"{path} has nlflow LMDB format version {meta.get('version')!r}; this nlflow reads version {VERSION}: "
            + rebuild_hint(path)
        )
    bad = _meta_type_problem(meta)
    if bad:
        raise _damaged(path, f"__meta__ record has {bad}")
    return meta


def _meta_type_problem(meta: Mapping[str, Any]) -> str | None:
    """The first field of the metadata that is not what write_store writes (a changed byte can keep
    the JSON valid), or None."""
    checks = {
        "count": lambda v: type(v) is int and v >= 0,
        "embedded": lambda v: isinstance(v, bool),
        "kind": lambda v: v in KINDS,
        "classes": lambda v: isinstance(v, list) and all(isinstance(c, str) for c in v),
        "excluded": lambda v: isinstance(v, list) and all(isinstance(e, dict) and {"video", "label", "reason"} <= set(e) for e in v),
    }
    for key, ok in checks.items():
        if key == "excluded" and key not in meta:  # optional
            continue
        if not ok(meta.get(key)):
            return f"a bad {key!r} field ({meta.get(key)!r:.60})"
    return None


def _check_file(env: lmdb.Environment, path: Path) -> None:
    """Refuse a store whose reading would run past the end of its file: touching a page past the
    end of a memory-mapped file kills the process with SIGBUS, no exception to catch.

    LMDB itself refuses page numbers past the environment's last page, so the file must hold that
    many pages; and every value must end on those pages (:mod:`nlflow.store.lmdb_layout`).
    """
    pages, page_size = env.info()["last_pgno"] + 1, env.stat()["psize"]
    expected, actual = pages * page_size, os.path.getsize(path)
    if actual < expected:
        raise _damaged(
            path, f"the file has {actual} bytes but its LMDB environment needs {expected} "
            f"({pages} pages of {page_size}), e.g. cut short by an interrupted copy"
        )
    with open(path, "rb") as handle:
        unchecked = lmdb_layout.unchecked_reason(handle.fileno())
        if unchecked:
            log.debug("%s: value extents not checked (%s)", path, unchecked)
            return
        try:
            lmdb_layout.check_values_inside(handle.fileno(), page_size, pages - 1)
        except (lmdb_layout.LayoutError, struct.error) as exc:
            raise _damaged(path, str(exc)) from None


def _shared_environment(path: Path) -> lmdb.Environment:
    """This process's read-only environment for the store file at ``path`` (opened on first use).

    py-lmdb refuses to open one file twice in a process, so readers of the same file share one
    handle. A handle inherited through fork must not be used: it is closed in the child (with
    lock=False that only unmaps the child's view) and the file re-opened. A file replaced at the
    same path (new inode) is re-opened too. Every opening checks the file first (:func:`_check_file`).
    """
    key = os.path.realpath(path)
    try:
        stat = os.stat(key)
    except FileNotFoundError:
        raise LmdbStoreError(f"LMDB store not found: {path}") from None
    identity = (stat.st_dev, stat.st_ino)
    pid = os.getpid()
    with _ENVS_LOCK:
        cached = _ENVS.get(key)
        if cached is not None:
            cached_pid, cached_identity, env = cached
            if cached_pid == pid and cached_identity == identity:
                return env
            del _ENVS[key]
            env.close()
        try:
            env = lmdb.open(
                key, subdir=False, readonly=True, lock=False, readahead=False, meminit=False,
                max_readers=_MAX_READERS,
            )
        except lmdb.Error as exc:
            raise LmdbStoreError(f"cannot open {path} as an LMDB store ({exc}); if nlflow wrote it, {rebuild_hint(path)}") from None
        try:
            _check_file(env, path)
        except lmdb.Error as exc:
            env.close()
            raise _damaged(path, str(exc)) from None
        except LmdbStoreError:
            env.close()
            raise
        _ENVS[key] = (pid, identity, env)
        return env


def _close_shared_environment(path: Path) -> None:
    key = os.path.realpath(path)
    with _ENVS_LOCK:
        cached = _ENVS.pop(key, None)
        if cached is not None:
            cached[2].close()


class LmdbReader:
    """Random access to a store written by :func:`write_store`.

    Holds no LMDB handle itself: every access goes through a per-process shared handle that opens
    lazily and re-opens when the process id changed. A reader can therefore be handed to forked
    or spawned DataLoader workers (it pickles as path + meta) with no ``worker_init_fn``.

    A damaged store raises :class:`LmdbStoreError` naming the store and how to rebuild it: on
    opening (file too short, metadata unreadable or disagreeing with the B-tree) or on reading the
    damaged record.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise LmdbStoreError(f"LMDB store not found: {self.path}")
        opened_here = os.path.realpath(self.path) not in _ENVS
        try:
            self.meta: dict[str, Any] = self._read_meta()
        finally:
            # Keep no handle in the parent just for the meta: most reading happens in workers.
            if opened_here:
                _close_shared_environment(self.path)
        self.embedded = bool(self.meta["embedded"])
        self._count = int(self.meta["count"])

    def _read_meta(self) -> dict[str, Any]:
        env = _shared_environment(self.path)
        try:
            with env.begin(buffers=True) as txn:
                raw = txn.get(META_KEY)
                raw = None if raw is None else bytes(raw)
                records = txn.stat()["entries"] - (raw is not None)
        except lmdb.Error as exc:
            raise _damaged(self.path, f"cannot read its metadata ({exc})") from None
        meta = _validate_meta(raw, self.path)
        if records != meta["count"]:
            raise _damaged(self.path, f"its metadata lists {meta['count']} records but it holds {records}")
        return meta

    def _read_record(self, index: int, decode):
        """``decode(value)`` of record ``index``, read in place; damage becomes one clear error."""
        env = _shared_environment(self.path)
        try:
            with env.begin(buffers=True) as txn:
                value = txn.get(record_key(index))
                if value is None:
                    raise LmdbStoreError("the record is missing")
                return decode(value)
        except (lmdb.Error, LmdbStoreError) as exc:
            raise _damaged(self.path, f"record {index}: {exc}") from None

    def close(self) -> None:
        """Close this process's handle on the file (any reader of it re-opens on next access)."""
        _close_shared_environment(self.path)

    def __len__(self) -> int:
        return self._count

    @property
    def kind(self) -> str:
        return str(self.meta["kind"])

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def excluded(self) -> list[tuple[str, int, str]]:
        """List entries that were left out of the store: ``(video, label, reason)``."""
        return [(str(e["video"]), int(e["label"]), str(e["reason"])) for e in self.meta.get("excluded", [])]

    def _checked_index(self, index: int) -> int:
        """``index`` as a position in the store (negative counts from the end), or IndexError."""
        index = operator.index(index)
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError(f"record {index} out of range for a store of {self._count}")
        return index

    def __getitem__(self, index: int) -> Record:
        index = self._checked_index(index)
        return self._read_record(index, lambda value: decode_record(value, self.embedded))

    def __iter__(self) -> Iterator[Record]:
        for index in range(self._count):
            yield self[index]

    def header(self, index: int) -> dict[str, Any]:
        """The JSON header of record ``index`` (video, label, frames[, path]) without copying the payload."""
        index = self._checked_index(index)
        header, _ = self._read_record(index, _split_record)
        return {key: value for key, value in header.items() if key not in _INTEGRITY_KEYS}

    def entries(self) -> list[tuple[str, int]]:
        """(video, label) of every record, in order, reading headers only."""
        return [(str(h["video"]), int(h["label"])) for h in map(self.header, range(self._count))]

    def source(self, index: int) -> bytes | str:
        """Record ``index`` in the form the video decoders accept (bytes or a path)."""
        return self[index].source

    def __enter__(self) -> "LmdbReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
