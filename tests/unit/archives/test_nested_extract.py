"""Archives of per-class archives: each inner archive is held to the outer archive's safety rules."""

from __future__ import annotations

from pathlib import Path

import pytest
import rars

from nlflow.archives.extract import ExtractError, UnsafeArchiveError
from nlflow.archives.nested_extract import archive_stem, extract_nested

from helpers.rar import SHARED, needs_shared, patch_rar5_name


def rar_bytes(files: dict[str, bytes]) -> bytes:
    builder = rars.RarBuilder(format="rar50")
    for name, data in files.items():
        builder.add_bytes(data, name)
    return builder.to_bytes()


def outer(path: Path, inner: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(rar_bytes(inner))
    return path


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


def test_class_folder_or_plain_files_both_become_the_class_folder(tmp_path):
    archive = outer(tmp_path / "in" / "set.rar", {
        "jump.rar": rar_bytes({"jump/a (1).avi": b"a", "jump/b.avi": b"b"}),
        "wave.rar": rar_bytes({"w #1.avi": b"w"}),  # no folder inside: the archive name gives the class
    })
    result = extract_nested(archive, tmp_path / "out" / "videos")
    tree = {p.relative_to(result.target).as_posix(): p.read_bytes()
            for p in sorted(result.target.rglob("*")) if p.is_file()}
    assert tree == {"jump/a (1).avi": b"a", "jump/b.avi": b"b", "wave/w #1.avi": b"w"}
    assert result.classes == ("jump", "wave") and result.files == 3
    assert leftovers(tmp_path / "out") == ["videos"]


@pytest.mark.parametrize(
    "inner, fragment",
    [
        ({"jump.rar": rar_bytes({"jump/a.avi": b"a"}), "notes.txt": b"hello"}, "'notes.txt' is not an archive"),
        ({"jump.rar": rar_bytes({"jump/a.avi": b"a"}), "more/jump.rar": rar_bytes({"jump/b.avi": b"b"})},
         "two inner archives for class 'jump'"),
        ({"jump.rar": rar_bytes({"wave/a.avi": b"a", "jump/b.avi": b"b"})}, "expected jump/<video>"),
    ],
)
def test_unexpected_contents_are_refused_and_nothing_is_left(tmp_path, inner, fragment):
    archive = outer(tmp_path / "set.rar", inner)
    with pytest.raises(ExtractError, match=fragment):
        extract_nested(archive, tmp_path / "out" / "videos")
    assert leftovers(tmp_path / "out") == []


def test_an_inner_archive_with_a_traversal_name_is_refused(tmp_path):
    builder = rars.RarBuilder(format="rar50")
    builder.add_bytes(b"fine", "jump/ok.avi")
    builder.add_bytes(b"pwned", "aa/pwned.txt")
    evil = patch_rar5_name(builder.to_bytes(), b"aa/pwned.txt", b"../pwned.txt")
    archive = outer(tmp_path / "work" / "set.rar", {"jump.rar": evil})
    with pytest.raises(UnsafeArchiveError, match="'..'"):
        extract_nested(archive, tmp_path / "work" / "out" / "videos")
    assert list(tmp_path.rglob("pwned.txt")) == []
    assert leftovers(tmp_path / "work" / "out") == []


@needs_shared
def test_an_inner_archive_with_an_escaping_symlink_is_refused(tmp_path):
    evil = (SHARED / "rar5-evil-symlink-traversal.rar").read_bytes()
    archive = outer(tmp_path / "a" / "b" / "set.rar", {"up.rar": evil})
    with pytest.raises(UnsafeArchiveError, match="outside"):
        extract_nested(archive, tmp_path / "a" / "b" / "out")
    assert list(tmp_path.rglob("pwned.txt")) == []
    assert leftovers(tmp_path / "a" / "b") == ["set.rar"]


def test_a_damaged_outer_archive_is_one_error(tmp_path):
    archive = outer(tmp_path / "set.rar", {"jump.rar": rar_bytes({"jump/a.avi": b"a" * 1000})})
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    with pytest.raises(ExtractError):
        extract_nested(archive, tmp_path / "out")
    assert leftovers(tmp_path) == ["set.rar"]


def test_archive_stem():
    assert [archive_stem(n) for n in ("brush_hair.rar", "x.tar.gz", "y.ZIP", "z.tgz")] == ["brush_hair", "x", "y", "z"]
