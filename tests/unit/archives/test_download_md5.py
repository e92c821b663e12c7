"""A configured MD5 (HMDB-51 publishes only MD5s) next to the SHA-256 lock file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from nlflow.archives.download import DownloadError, fetch, read_lock_file

DATA = b"hmdb51" * 10_000
MD5 = hashlib.md5(DATA).hexdigest()
SHA256 = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def mirror(tmp_path) -> Path:
    source = tmp_path / "mirror" / "hmdb51_org.rar"
    source.parent.mkdir()
    source.write_bytes(DATA)
    return source


def test_md5_checked_then_sha256_recorded_and_both_verified_later(tmp_path, mirror):
    dest, lock = tmp_path / "download" / "hmdb51_org.rar", tmp_path / "download" / "hmdb51_org.rar.sha256"
    first = fetch([f"file:{mirror}"], dest, md5=MD5.upper(), lock_file=lock)
    assert first.recorded_in_lock and read_lock_file(lock) == {"hmdb51_org.rar": SHA256}
    again = fetch([f"file:{mirror}"], dest, md5=MD5, lock_file=lock)
    assert again.already_present and not again.recorded_in_lock


def test_md5_mismatch_keeps_nothing_and_records_nothing(tmp_path, mirror):
    dest, lock = tmp_path / "hmdb51_org.rar", tmp_path / "lock.sha256"
    with pytest.raises(DownloadError, match=f"MD5 mismatch \\(expected {'0' * 32} .* got {MD5}"):
        fetch([f"file:{mirror}"], dest, md5="0" * 32, lock_file=lock)
    assert not dest.exists() and not Path(f"{dest}.part").exists() and not lock.exists()


def test_an_existing_file_with_the_wrong_md5_is_fetched_again(tmp_path, mirror):
    dest = tmp_path / "hmdb51_org.rar"
    dest.write_bytes(b"something else")
    result = fetch([f"file:{mirror}"], dest, md5=MD5)
    assert not result.already_present and dest.read_bytes() == DATA


def test_md5_and_the_lock_must_both_agree(tmp_path, mirror):
    dest, lock = tmp_path / "hmdb51_org.rar", tmp_path / "lock.sha256"
    lock.write_text(f"{'1' * 64}  hmdb51_org.rar\n")  # a lock from another file of that name
    with pytest.raises(DownloadError, match="SHA-256 mismatch"):
        fetch([f"file:{mirror}"], dest, md5=MD5, lock_file=lock)


def test_a_malformed_md5_is_refused(tmp_path, mirror):
    with pytest.raises(DownloadError, match="not an MD5"):
        fetch([f"file:{mirror}"], tmp_path / "x.rar", md5="abc")
