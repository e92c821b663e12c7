"""fetch() against a real HTTP server on 127.0.0.1 (Range support and failure switches)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from nlflow.archives.download import DownloadError, fetch, local_source_path, read_lock_file
from nlflow.errors import NlflowError

from helpers.http_server import payload, server  # noqa: F401  (server: fixture)

FAST = dict(retries=3, backoff=0.01, timeout=5)




def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_plain_download_verifies_checksum(server, tmp_path):
    base, state = server
    data = payload(3_000_000)
    state.files["/UCF101.rar"] = data
    dest = tmp_path / "UCF101.rar"
    result = fetch([f"{base}/UCF101.rar"], dest, sha256=_sha(data).upper(), **FAST)
    assert dest.read_bytes() == data
    assert result.sha256 == _sha(data) and result.size == len(data)
    assert not result.already_present and not result.resumed
    assert _leftovers(tmp_path) == ["UCF101.rar"]

    again = fetch([f"{base}/UCF101.rar"], dest, sha256=_sha(data), **FAST)
    assert again.already_present
    assert len(state.requests) == 1  # nothing was fetched the second time


def test_interrupted_transfer_resumes_with_range(server, tmp_path):
    base, state = server
    data = payload(2_500_000, seed=1)
    state.files["/big.bin"] = data
    state.drop_after["/big.bin"] = 1_000_000
    dest = tmp_path / "big.bin"

    # With no retries the first, broken transfer fails, and nothing looks finished.
    with pytest.raises(DownloadError):
        fetch([f"{base}/big.bin"], dest, sha256=_sha(data), retries=0, backoff=0.01, timeout=5)
    assert not dest.exists()
    part = tmp_path / "big.bin.part"
    assert part.stat().st_size == 1_000_000

    result = fetch([f"{base}/big.bin"], dest, sha256=_sha(data), **FAST)
    assert result.resumed
    assert dest.read_bytes() == data
    assert not part.exists()
    assert state.requests[0] == ("/big.bin", None)
    assert state.requests[1] == ("/big.bin", "bytes=1000000-")
    assert state.bytes_sent["/big.bin"] < 2 * len(data)


def test_drop_then_retry_resumes_within_one_call(server, tmp_path):
    base, state = server
    data = payload(1_200_000, seed=2)
    state.files["/f.bin"] = data
    state.drop_after["/f.bin"] = 300_000
    state.fail_once.add("/f.bin")  # 500 first, then the dropped transfer, then the resume
    result = fetch([f"{base}/f.bin"], tmp_path / "f.bin", sha256=_sha(data), **FAST)
    assert (tmp_path / "f.bin").read_bytes() == data
    assert result.resumed
    assert [r for _, r in state.requests] == [None, None, "bytes=300000-"]


def test_server_ignoring_range_restarts_or_fails_strictly(server, tmp_path):
    base, state = server
    data = payload(800_000, seed=3)
    state.files["/n.bin"] = data
    state.ignore_range.add("/n.bin")
    (tmp_path / "n.bin.part").write_bytes(data[:100_000])
    with pytest.raises(DownloadError, match="Range"):
        fetch([f"{base}/n.bin"], tmp_path / "n.bin", sha256=_sha(data), strict_resume=True, **FAST)
    assert not (tmp_path / "n.bin").exists()

    result = fetch([f"{base}/n.bin"], tmp_path / "n.bin", sha256=_sha(data), **FAST)
    assert (tmp_path / "n.bin").read_bytes() == data  # started from zero, not appended
    assert not result.resumed


def test_mirror_fallback_after_404(server, tmp_path):
    base, state = server
    data = payload(50_000, seed=4)
    state.files["/mirror2/s.zip"] = data
    result = fetch([f"{base}/mirror1/s.zip", f"{base}/mirror2/s.zip"], tmp_path / "s.zip", sha256=_sha(data), **FAST)
    assert result.source == f"{base}/mirror2/s.zip"
    # the 404 was not retried
    assert [p for p, _ in state.requests] == ["/mirror1/s.zip", "/mirror2/s.zip"]
    assert (tmp_path / "s.zip").read_bytes() == data


def test_all_mirrors_failing_is_one_clear_error(server, tmp_path):
    base, state = server
    state.fail_once.add("/x")  # 500 once, then 404: retried once, then given up
    with pytest.raises(DownloadError) as info:
        fetch([f"{base}/x", "http://127.0.0.1:9/nothing-listens"], tmp_path / "x", retries=1, backoff=0.01, timeout=2)
    message = str(info.value)
    assert "\n" not in message and "404" in message and "2 source" in message
    assert isinstance(info.value, NlflowError)
    assert _leftovers(tmp_path) == []


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    base, state = server
    state.files["/a.bin"] = payload(10_000, seed=5)
    with pytest.raises(DownloadError) as info:
        fetch([f"{base}/a.bin"], tmp_path / "a.bin", sha256="0" * 64, **FAST)
    assert "expected " + "0" * 64 in str(info.value) and "got " in str(info.value)
    assert _leftovers(tmp_path) == []


def test_lock_file_records_then_detects_a_changed_file(server, tmp_path):
    base, state = server
    first = payload(20_000, seed=6)
    state.files["/UCF101.rar"] = first
    lock = tmp_path / "checksums.sha256"
    lock.write_text(f"{'a' * 64}  other.zip\n")
    dest = tmp_path / "data" / "UCF101.rar"

    result = fetch([f"{base}/UCF101.rar"], dest, lock_file=lock, **FAST)
    assert result.recorded_in_lock
    assert read_lock_file(lock) == {"UCF101.rar": _sha(first), "other.zip": "a" * 64}
    assert f"{_sha(first)}  UCF101.rar" in lock.read_text()

    # The server now serves different bytes: a fresh download must be refused.
    dest.unlink()
    state.files["/UCF101.rar"] = payload(20_000, seed=7)
    with pytest.raises(DownloadError, match="mismatch"):
        fetch([f"{base}/UCF101.rar"], dest, lock_file=lock, **FAST)
    assert not dest.exists() and not (tmp_path / "data" / "UCF101.rar.part").exists()
    assert read_lock_file(lock)["UCF101.rar"] == _sha(first)  # the record was not overwritten

    # A configured checksum wins over the lock file.
    result = fetch([f"{base}/UCF101.rar"], dest, sha256=_sha(state.files["/UCF101.rar"]), lock_file=lock, **FAST)
    assert result.sha256 == _sha(state.files["/UCF101.rar"])


def test_existing_wrong_dest_is_replaced_only_by_a_verified_file(server, tmp_path):
    base, state = server
    data = payload(30_000, seed=8)
    state.files["/v.bin"] = data
    dest = tmp_path / "v.bin"
    dest.write_bytes(b"stale")
    result = fetch([f"{base}/v.bin"], dest, sha256=_sha(data), **FAST)
    assert not result.already_present and dest.read_bytes() == data


def test_file_sources(tmp_path, monkeypatch):
    data = payload(70_000, seed=9)
    source_dir = tmp_path / "mirror"
    source_dir.mkdir()
    (source_dir / "s.zip").write_bytes(data)
    out = tmp_path / "out"

    result = fetch([f"file://{source_dir}/s.zip"], out / "a.zip", sha256=_sha(data), **FAST)
    assert (out / "a.zip").read_bytes() == data and result.source.startswith("file://")

    monkeypatch.chdir(tmp_path)
    fetch(["file:mirror/missing.zip", "file:mirror/s.zip"], out / "b.zip", sha256=_sha(data), **FAST)
    assert (out / "b.zip").read_bytes() == data

    # a plain path, resuming from an existing prefix
    (out / "c.zip.part").write_bytes(data[:1000])
    result = fetch([str(source_dir / "s.zip")], out / "c.zip", sha256=_sha(data), **FAST)
    assert result.resumed and (out / "c.zip").read_bytes() == data
    assert sorted(os.listdir(out)) == ["a.zip", "b.zip", "c.zip"]


def test_local_source_path_parsing():
    assert local_source_path("file:data/x.rar") == Path("data/x.rar")
    assert local_source_path("file:///abs/x%20y.rar") == Path("/abs/x y.rar")
    assert local_source_path("/abs/x.rar") == Path("/abs/x.rar")
    assert local_source_path("https://example.org/x.rar") is None
    with pytest.raises(DownloadError, match="scheme"):
        local_source_path("ftp://example.org/x.rar")


def test_complete_part_file_is_finished_without_refetching(server, tmp_path):
    base, state = server
    data = payload(40_000, seed=10)
    state.files["/w.bin"] = data
    (tmp_path / "w.bin.part").write_bytes(data)  # killed after the last byte, before the rename
    result = fetch([f"{base}/w.bin"], tmp_path / "w.bin", sha256=_sha(data), **FAST)
    assert result.resumed and (tmp_path / "w.bin").read_bytes() == data
    assert state.requests == [("/w.bin", "bytes=40000-")] and state.bytes_sent.get("/w.bin", 0) == 0


def test_local_folder_source_takes_the_file_of_the_same_name(tmp_path):
    folder = tmp_path / "offline"
    folder.mkdir()
    data = os.urandom(5000)
    (folder / "UCF101.rar").write_bytes(data)
    dest = tmp_path / "download" / "UCF101.rar"
    result = fetch([str(folder)], dest, sha256=hashlib.sha256(data).hexdigest())
    assert dest.read_bytes() == data and result.size == 5000
