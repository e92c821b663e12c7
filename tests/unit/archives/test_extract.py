"""extract_archive() on archives made here (zip, tar, RAR4, RAR5) and on RARs made by others."""

from __future__ import annotations

import io
import os
import re
import shutil
import tarfile
import zipfile
import zlib
from pathlib import Path

import pytest
import rars

from nlflow.archives.extract import (
    ArchiveEntry,
    ExtractError,
    MissingVolumeError,
    UnsafeArchiveError,
    detect_format,
    extract_archive,
    plan_extraction,
    safe_member_path,
)
from nlflow.archives.rar_headers import list_rar
from nlflow.errors import NlflowError

from helpers.rar import CONTENT, SHARED, needs_shared, patch_rar5_name


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _no_leftovers(parent: Path, expected: set[str]) -> None:
    assert {p.name for p in parent.iterdir()} == expected  # no temporary sibling left behind


def _make_rar(path: Path, fmt: str, solid: bool) -> Path:
    builder = rars.RarBuilder(format=fmt, solid=solid)
    for name, data in CONTENT.items():
        builder.add_bytes(data, name)
    builder.write(str(path))
    return path


# ---------------------------------------------------------------- archives made here


@pytest.mark.parametrize("fmt,solid", [("rar29", False), ("rar29", True), ("rar50", False), ("rar50", True)])
def test_rar_round_trip(tmp_path, fmt, solid):
    archive = _make_rar(tmp_path / "UCF101.rar", fmt, solid)
    result = extract_archive(archive, tmp_path / "data", expected_top="UCF-101")
    assert _tree(tmp_path / "data") == CONTENT
    assert result.format == ("rar5" if fmt == "rar50" else "rar4")
    assert result.files == 3 and result.bytes == sum(map(len, CONTENT.values()))
    assert result.root == tmp_path / "data" / "UCF-101"
    _no_leftovers(tmp_path, {"UCF101.rar", "data"})


def test_zip_and_tar(tmp_path):
    with zipfile.ZipFile(tmp_path / "a.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in CONTENT.items():
            archive.writestr(name, data)
    for mode, name in [("w", "a.tar"), ("w:gz", "a.tar.gz")]:
        with tarfile.open(tmp_path / name, mode) as archive:
            for member, data in CONTENT.items():
                info = tarfile.TarInfo(member)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    for name, kind in [("a.zip", "zip"), ("a.tar", "tar"), ("a.tar.gz", "tar")]:
        assert detect_format(tmp_path / name) == kind
        result = extract_archive(tmp_path / name, tmp_path / f"out-{name}")
        assert _tree(tmp_path / f"out-{name}") == CONTENT and result.files == 3


def test_existing_target_is_replaced_whole(tmp_path):
    archive = _make_rar(tmp_path / "u.rar", "rar50", False)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "stale.txt").write_text("from an older run")
    extract_archive(archive, tmp_path / "data")
    assert _tree(tmp_path / "data") == CONTENT


def test_expected_top_mismatch(tmp_path):
    archive = _make_rar(tmp_path / "u.rar", "rar50", False)
    with pytest.raises(ExtractError, match="UCF101/"):
        extract_archive(archive, tmp_path / "data", expected_top="UCF101")
    _no_leftovers(tmp_path, {"u.rar"})


def test_corrupt_zip_fails_and_leaves_no_target(tmp_path):
    data = os.urandom(50_000)
    with zipfile.ZipFile(tmp_path / "a.zip", "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("d/x.bin", data)
    raw = bytearray((tmp_path / "a.zip").read_bytes())
    index = raw.index(data[:64]) + 1000
    raw[index] ^= 0xFF
    (tmp_path / "a.zip").write_bytes(bytes(raw))
    with pytest.raises(ExtractError, match="damaged"):
        extract_archive(tmp_path / "a.zip", tmp_path / "out")
    _no_leftovers(tmp_path, {"a.zip"})


@pytest.mark.parametrize("fmt", ["rar29", "rar50"])
def test_corrupt_rar_fails_and_leaves_no_target(tmp_path, fmt):
    builder = rars.RarBuilder(format=fmt, store=True)
    payload = os.urandom(40_000)
    builder.add_bytes(payload, "d/x.bin")
    raw = bytearray(builder.to_bytes())
    raw[raw.index(payload[:64]) + 20_000] ^= 0xFF
    (tmp_path / "x.rar").write_bytes(bytes(raw))
    with pytest.raises(ExtractError) as info:
        extract_archive(tmp_path / "x.rar", tmp_path / "out")
    assert isinstance(info.value, NlflowError) and "\n" not in str(info.value)
    _no_leftovers(tmp_path, {"x.rar"})


def test_truncated_tar_gz_fails(tmp_path):
    with tarfile.open(tmp_path / "a.tar.gz", "w:gz") as archive:
        info = tarfile.TarInfo("d/x.bin")
        payload = os.urandom(200_000)
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))
    raw = (tmp_path / "a.tar.gz").read_bytes()
    (tmp_path / "a.tar.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ExtractError):
        extract_archive(tmp_path / "a.tar.gz", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_rar5_multivolume_made_here(tmp_path):
    builder = rars.RarBuilder(format="rar50", volume_size=40_000)
    for name, data in CONTENT.items():
        builder.add_bytes(data, name)
    volumes = [Path(p) for p in builder.write_volumes(str(tmp_path / "set.part1.rar"))]
    assert len(volumes) >= 2
    result = extract_archive(volumes[0], tmp_path / "out")
    assert _tree(tmp_path / "out") == CONTENT and result.volumes == tuple(volumes)

    volumes[-1].unlink()  # the last volume is missing: never extract a truncated file
    with pytest.raises(MissingVolumeError, match="missing"):
        extract_archive(volumes[0], tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


# ---------------------------------------------------------------- safety


@pytest.mark.parametrize("name", ["../evil.txt", "/etc/evil", "a/../../evil", "C:/evil", "C:\\evil", "a\\..\\..\\evil", ""])
def test_unsafe_names_refused(name):
    with pytest.raises(UnsafeArchiveError):
        safe_member_path(name)


def test_safe_names_normalised():
    assert safe_member_path("./UCF-101//a\\b.avi") == "UCF-101/a/b.avi"


def test_link_policy():
    inside = [ArchiveEntry("d/f", "file", size=1), ArchiveEntry("d/l", "symlink", link_target="f")]
    plan, skipped = plan_extraction(inside)
    assert [e.name for e in plan] == ["d/f"] and skipped == ["d/l"]
    for entries in (
        [ArchiveEntry("d/l", "symlink", link_target="../../etc")],
        [ArchiveEntry("l", "symlink", link_target="/etc/passwd")],
        [ArchiveEntry("h", "hardlink", link_target="../outside")],
        # the path of a later member goes through a link (inside or not): refused
        [ArchiveEntry("up", "symlink", link_target="d"), ArchiveEntry("up/f", "file", size=1)],
    ):
        with pytest.raises(UnsafeArchiveError):
            plan_extraction(entries)


@pytest.mark.parametrize("name", ["../escaped.txt", "/tmp/absolute.txt"])
def test_zip_and_tar_with_unsafe_members(tmp_path, name):
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as archive:
        archive.writestr("ok.txt", b"ok")
        archive.writestr(zipfile.ZipInfo(name), b"bad")
    with tarfile.open(tmp_path / "a.tar", "w") as archive:
        info = tarfile.TarInfo(name)
        info.size = 3
        archive.addfile(info, io.BytesIO(b"bad"))
    work = tmp_path / "work"
    for archive_name in ("a.zip", "a.tar"):
        with pytest.raises(UnsafeArchiveError):
            extract_archive(tmp_path / archive_name, work / "out")
    assert not work.exists() and not (tmp_path / "escaped.txt").exists()


def test_tar_symlink_escape_refused_and_inside_link_skipped(tmp_path):
    def tar_with(links: list[tuple[str, str]]) -> Path:
        path = tmp_path / f"l{len(list(tmp_path.iterdir()))}.tar"
        with tarfile.open(path, "w") as archive:
            info = tarfile.TarInfo("d/real.txt")
            info.size = 2
            archive.addfile(info, io.BytesIO(b"hi"))
            for name, target in links:
                link = tarfile.TarInfo(name)
                link.type = tarfile.SYMTYPE
                link.linkname = target
                archive.addfile(link)
        return path

    with pytest.raises(UnsafeArchiveError):
        extract_archive(tar_with([("d/esc", "../../x")]), tmp_path / "out")
    result = extract_archive(tar_with([("d/alias", "real.txt")]), tmp_path / "out")
    assert result.skipped == ("d/alias",)
    assert not any(p.is_symlink() for p in (tmp_path / "out").rglob("*"))
    assert _tree(tmp_path / "out") == {"d/real.txt": b"hi"}


def test_rar_with_traversal_name_made_by_patching(tmp_path):
    builder = rars.RarBuilder(format="rar50")
    builder.add_bytes(b"fine", "ok.txt")
    builder.add_bytes(b"pwned", "aa/pwned.txt")
    raw = patch_rar5_name(builder.to_bytes(), b"aa/pwned.txt", b"../pwned.txt")
    assert [i.filename for i in rars.RarFile.from_bytes(raw).infolist()][1] == "../pwned.txt"
    work = tmp_path / "work"
    work.mkdir()
    (work / "evil.rar").write_bytes(raw)
    with pytest.raises(UnsafeArchiveError):
        extract_archive(work / "evil.rar", work / "out")
    assert not (tmp_path / "pwned.txt").exists() and not (work / "pwned.txt").exists()
    _no_leftovers(work, {"evil.rar"})


# ---------------------------------------------------------------- RARs made by others


def _expected_listing(exp: Path) -> dict[str, tuple[str, int, int]]:
    """name -> (kind flag F/D/L, size, crc) from rarfile's .rar.exp dump."""
    entries: dict[str, tuple[str, int, int]] = {}
    for block in re.split(r"\n(?=\S)", exp.read_text(encoding="utf-8")):
        name = re.search(r"^\s+name=(.*)$", block, re.M)
        if not name:
            continue
        kind = re.search(r"\bis=(\S+)", block).group(1)
        size = int(re.search(r"\bdec=(\d+)", block).group(1))
        crc = int(re.search(r"\bcrc=0x([0-9a-f]+)", block).group(1), 16)
        flag = "D" if "D" in kind else "L" if "L" in kind else "F"
        entries[name.group(1).rstrip("/")] = (flag, size, crc)
    return entries


@needs_shared
@pytest.mark.parametrize(
    "archive", ["rar3-solid.rar", "rar5-solid.rar", "rar3-subdirs.rar", "rar5-subdirs.rar", "rar3-comment-plain.rar", "rar3-vols.part1.rar"]
)
def test_shared_archives_match_listing(tmp_path, archive):
    expected = _expected_listing(SHARED / f"{archive}.exp")
    assert expected, "the listing could not be parsed"
    result = extract_archive(SHARED / archive, tmp_path / "out")
    out = tmp_path / "out"
    for name, (flag, size, crc) in expected.items():
        path = out / name
        if flag == "D":
            assert path.is_dir(), name
        else:
            data = path.read_bytes()
            assert (len(data), zlib.crc32(data)) == (size, crc), name
    found = {p.relative_to(out).as_posix() for p in out.rglob("*")}
    implied_folders = {"/".join(n.split("/")[:i]) for n in expected for i in range(1, n.count("/") + 1)}
    assert found == set(expected) | implied_folders
    if archive.startswith("rar3-vols"):
        assert len(result.volumes) == 3


@needs_shared
def test_volume_headers():
    def flags(path):
        listing = list_rar(path)
        return listing.is_volume, listing.has_next_volume

    assert [flags(SHARED / f"rar3-vols.part{i}.rar") for i in (1, 2, 3)] == [(True, True), (True, True), (True, False)]
    assert flags(SHARED / "rar5-solid.rar") == (False, False)


@needs_shared
@pytest.mark.parametrize("present", [["part1"], ["part1", "part2"], ["part2", "part3"]])
def test_incomplete_volume_set_fails_loudly(tmp_path, present):
    work = tmp_path / "work"
    work.mkdir()
    for part in present:
        shutil.copy(SHARED / f"rar3-vols.{part}.rar", work)
    given = work / f"rar3-vols.{present[0]}.rar"
    with pytest.raises(MissingVolumeError):
        extract_archive(given, work / "out")
    _no_leftovers(work, {f"rar3-vols.{part}.rar" for part in present})


@needs_shared
def test_evil_symlink_traversal_writes_nothing_outside(tmp_path):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    shutil.copy(SHARED / "rar5-evil-symlink-traversal.rar", work)
    with pytest.raises(UnsafeArchiveError, match="outside"):
        extract_archive(work / "rar5-evil-symlink-traversal.rar", work / "out")
    assert list(tmp_path.rglob("pwned.txt")) == []
    _no_leftovers(work, {"rar5-evil-symlink-traversal.rar"})


@needs_shared
def test_unix_symlink_archive_with_escaping_link_is_refused(tmp_path):
    # random_link -> ../random123 points outside the target; data_link -> data.txt would be skipped
    with pytest.raises(UnsafeArchiveError, match="random_link"):
        extract_archive(SHARED / "rar3-symlink-unix.rar", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_rar_inside_link_skipped(tmp_path):
    builder = rars.RarBuilder(format="rar50")
    builder.add_bytes(b"data", "d/data.txt")
    builder.add_unix_symlink("d/alias", "data.txt")
    builder.write(str(tmp_path / "l.rar"))
    result = extract_archive(tmp_path / "l.rar", tmp_path / "out")
    assert result.skipped == ("d/alias",)
    assert _tree(tmp_path / "out") == {"d/data.txt": b"data"}
    assert not (tmp_path / "out" / "d" / "alias").exists()


def test_not_an_archive(tmp_path):
    (tmp_path / "x.rar").write_bytes(b"<html>mirror error page</html>")
    with pytest.raises(ExtractError, match="not a RAR"):
        extract_archive(tmp_path / "x.rar", tmp_path / "out")
