"""Reading split and list text files, and the errors they raise: one line that names the file and
the line number, whatever the dataset (UCF-101, HMDB-51 or the user's own lists)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Protocol

from nlflow.errors import NlflowError

_MAX_MISSING_EXAMPLES = 5


class SplitFileError(NlflowError):
    """A split or list file is missing or has bad content (the message names file and line)."""


class MissingSplitFileError(SplitFileError):
    pass


class MalformedLineError(SplitFileError):
    pass


class UnknownClassError(SplitFileError):
    pass


class LabelError(SplitFileError):
    """A label is out of range or disagrees with the class of the video's folder."""


class DuplicateEntryError(SplitFileError):
    pass


class SplitOverlapError(SplitFileError):
    """The same video or group (the same actor, recording or source film) is in train and test."""


class ClassCountError(SplitFileError):
    pass


class MissingVideosError(NlflowError):
    """Listed videos are not present under the video root."""


def read_lines(path: str | os.PathLike) -> list[tuple[int, str]]:
    """Non-blank, stripped lines with 1-based line numbers; tolerates a BOM, CRLF and trailing spaces."""
    path = Path(path)
    if not path.is_file():
        raise MissingSplitFileError(f"split file not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SplitFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip().lstrip("\ufeff")
        if line:
            out.append((number, line))
    return out


def find_split_dir(path: str | os.PathLike, dirname: str) -> Path:
    """An official split folder given as itself or as the folder that contains it (an extracted
    split archive): ``path / dirname`` when that folder exists, else ``path``."""
    nested = Path(path) / dirname
    return nested if nested.is_dir() else Path(path)


def where(path: str | os.PathLike, line_no: int) -> str:
    return f"{path}:{line_no}"


def check_class_count(
    classes: list[str], expected: int | None, found_in: str | os.PathLike, expected_from: str | None = None
) -> None:
    """The data's class count equals the configured (or otherwise known) one, when there is one."""
    if expected is not None and len(classes) != expected:
        origin = f" ({expected_from})" if expected_from else ""
        raise ClassCountError(f"{found_in}: {len(classes)} classes, expected {expected}{origin}")


class _HasPath(Protocol):
    path: str


def check_videos_exist(entries: Iterable[_HasPath], video_root: str | os.PathLike) -> None:
    """Every entry's ``path`` is a file under ``video_root``; one error names the first few that are not."""
    root = Path(video_root)
    if not root.is_dir():
        raise MissingVideosError(f"video root {root} does not exist or is not a directory")
    entries = list(entries)
    missing = [e.path for e in entries if not (root / e.path).is_file()]
    if missing:
        examples = ", ".join(missing[:_MAX_MISSING_EXAMPLES])
        more = "" if len(missing) <= _MAX_MISSING_EXAMPLES else ", ..."
        raise MissingVideosError(
            f"{len(missing)} of {len(entries)} listed videos are missing under {root}: {examples}{more}"
        )
