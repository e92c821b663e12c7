"""Archives of archives (HMDB-51's ``hmdb51_org.rar`` holds one RAR per class) -> one class tree.

The outer archive and every inner one go through :func:`extract_archive`, so an inner archive is
held to the same rules as the outer one: no absolute paths, no ``..``, no links out of the tree,
sizes and CRCs verified. Inner archive ``<class>.rar`` must hold ``<class>/<video>`` (the official
layout) or only plain files; either way its videos land in ``<target>/<class>/``. The target is
replaced as a whole, atomically, once every inner archive is extracted; the inner archives are
deleted one by one as they are unpacked, so the disk holds about one copy of the videos at a time.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from nlflow.archives.extract import ExtractError, detect_format, extract_archive
from nlflow.fileio import atomic_path, scratch_dir

log = logging.getLogger(__name__)

_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".rar", ".zip")


@dataclass(frozen=True)
class NestedExtractResult:
    target: Path
    classes: tuple[str, ...]  # one per inner archive, sorted
    files: int
    bytes: int


def archive_stem(name: str) -> str:
    """``brush_hair.rar`` -> ``brush_hair`` (and ``x.tar.gz`` -> ``x``)."""
    lowered = name.lower()
    for suffix in _ARCHIVE_SUFFIXES:
        if lowered.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def extract_nested(archive: str | os.PathLike, target_dir: str | os.PathLike, *,
                   check_disk: bool = True) -> NestedExtractResult:
    """Extract every archive inside ``archive`` into ``target_dir/<inner archive name>/``
    (``check_disk``: as :func:`extract_archive`, for the outer and each inner archive)."""
    archive, target = Path(archive), Path(target_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    files = size = 0
    classes: list[str] = []
    with scratch_dir(target) as scratch:
        outer = extract_archive(archive, Path(scratch) / "outer", check_disk=check_disk)
        inner_archives = _inner_archives(outer.target, archive.name)
        with atomic_path(target) as staging:
            staging.mkdir()
            for index, inner in enumerate(inner_archives):
                class_name = archive_stem(inner.name)
                unpacked = Path(scratch) / f"inner{index}"
                result = extract_archive(inner, unpacked, check_disk=check_disk)
                inner.unlink()  # unpacked now: free its space before the next one
                _move_class_tree(unpacked, staging / class_name, f"{archive.name}: {inner.name}")
                classes.append(class_name)
                files += result.files
                size += result.bytes
    log.info("%s: %d inner archives, %d files (%d bytes) -> %s", archive.name, len(classes), files, size, target)
    return NestedExtractResult(target, tuple(classes), files, size)


def _inner_archives(outer_root: Path, label: str) -> list[Path]:
    """Every file the outer archive held; each must be an archive, and their names distinct classes."""
    found = sorted(path for path in outer_root.rglob("*") if path.is_file())
    if not found:
        raise ExtractError(f"{label}: holds no inner archives")
    by_class: dict[str, Path] = {}
    for path in found:
        try:
            detect_format(path)
        except ExtractError:
            member = path.relative_to(outer_root).as_posix()
            raise ExtractError(f"{label}: member {member!r} is not an archive (expected one archive per class)") from None
        class_name = archive_stem(path.name)
        if class_name in by_class:
            raise ExtractError(f"{label}: two inner archives for class {class_name!r}: {by_class[class_name].name}, {path.name}")
        by_class[class_name] = path
    return [by_class[name] for name in sorted(by_class)]


def _move_class_tree(unpacked: Path, class_dir: Path, label: str) -> None:
    """Put an inner archive's videos at ``class_dir``: from its `<class>/` folder or from its top level."""
    top = sorted(p.name for p in unpacked.iterdir())
    if top == [class_dir.name] and (unpacked / class_dir.name).is_dir():
        os.replace(unpacked / class_dir.name, class_dir)
    elif all((unpacked / name).is_file() for name in top):
        os.replace(unpacked, class_dir)
    else:
        shown = ", ".join(top[:5]) + (", ..." if len(top) > 5 else "")
        raise ExtractError(f"{label} holds {shown}; expected {class_dir.name}/<video> (one class per inner archive)")
