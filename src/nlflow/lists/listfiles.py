"""nlflow's own list files, the contract between `lists` and every later stage.

- ``train.txt`` / ``val.txt`` / ``test.txt``: ``<relative path> <0-based label>`` per line; the path
  may contain spaces and any other character but a newline (the label is after the last space).
- ``classes.txt``: line i is the name of label i.
- ``lists.json``: how the lists were made (dataset, split, counts, where validation comes from),
  for the log and the report.
- ``missing.csv``: the videos a dataset's annotations list but its copy lacks (Kinetics: about
  5% of any copy), one per row by id; just the header for kinds whose lists hold only videos on disk.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from pathlib import Path
from typing import Any, Sequence

from nlflow.errors import NlflowError
from nlflow.fileio import read_text_checked, rebuild_hint, write_json_atomic, write_text_atomic

LIST_NAMES = ("train", "val", "test")


class ListFileError(NlflowError):
    """One of our own list files (train/val/test/classes.txt) is malformed."""


@dataclasses.dataclass(frozen=True, slots=True)
class ListedVideo:
    """One video of a split, whatever the dataset it came from."""

    path: str  # relative to the video root, forward slashes
    label: int  # 0-based
    group: str  # videos of one group (actor, recording, source film) stay on one side of a split
    source: str  # "file:line" (or the folder) it came from, for error messages


@dataclasses.dataclass(frozen=True, slots=True)
class MissingVideo:
    """A video the annotations list that the copy on disk lacks."""

    split: str  # the dataset's split it is listed in ("train", "val")
    youtube_id: str  # its id (a Kinetics YouTube id)
    label: int
    path: str  # where it would be, relative to the video root (the test list carries it so)
    listed_in: str  # "file:line" of the annotation that lists it


MISSING_FIELDS = ("split", "youtube_id", "label", "class", "path", "listed_in")


@dataclasses.dataclass(frozen=True)
class DatasetLists:
    """Everything ``lists`` writes: the classes, the three lists, the missing videos, and how they were made."""

    classes: list[str]
    train: list[ListedVideo]
    val: list[ListedVideo] | None  # None until attach_validation decides (own list, held out, or test)
    test: list[ListedVideo]
    about: dict[str, Any]  # lists.json without the counts (dataset, split, test and validation sources)
    missing: list[MissingVideo] = dataclasses.field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        counts = {"num_classes": len(self.classes), "num_train": len(self.train), "num_val": len(self.val or ()),
                  "num_test": len(self.test), "num_missing": len(self.missing)}
        if self.missing:
            counts["missing_by_split"] = {split: sum(video.split == split for video in self.missing)
                                          for split in sorted({video.split for video in self.missing})}
        return {**self.about, **counts}


def format_list(entries: Sequence[tuple[str, int]]) -> str:
    for path, _ in entries:
        if "\n" in path or "\r" in path:
            raise ListFileError(f"a video path cannot hold a line break: {path!r}")
    return "".join(f"{path} {label}\n" for path, label in entries)


def list_paths(out_dir: str | os.PathLike) -> dict[str, Path]:
    """Where ``write_lists`` puts each file inside one lists folder."""
    out = Path(out_dir)
    return {**{name: out / f"{name}.txt" for name in (*LIST_NAMES, "classes")}, "summary": out / "lists.json",
            "missing": out / "missing.csv"}


def format_missing(missing: Sequence[MissingVideo], classes: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MISSING_FIELDS)
    for video in missing:
        writer.writerow([video.split, video.youtube_id, video.label, classes[video.label], video.path, video.listed_in])
    return buffer.getvalue()


def write_lists(out: dict[str, str | os.PathLike], lists: DatasetLists) -> None:
    """Write ``classes``, ``train``, ``val``, ``test``, ``summary`` (lists.json) and, when ``out``
    names it, ``missing`` (missing.csv) to the paths in ``out``."""
    for name in LIST_NAMES:
        videos = getattr(lists, name)
        write_text_atomic(out[name], format_list([(video.path, video.label) for video in videos]))
    write_text_atomic(out["classes"], "".join(f"{name}\n" for name in lists.classes))
    if "missing" in out:
        write_text_atomic(out["missing"], format_missing(lists.missing, lists.classes))
    write_json_atomic(out["summary"], lists.summary())


def _read_our_file(path: Path, what: str) -> str:
    """The text of one of our list files; damage (cut off mid-line, not UTF-8) is a ListFileError
    that says how to write the file again."""
    if not path.is_file():
        raise ListFileError(f"{what} not found: {path}")
    return read_text_checked(path, ListFileError, f"if nlflow wrote it, {rebuild_hint(path)}")


def read_list(path: str | os.PathLike, num_classes: int | None = None) -> list[tuple[str, int]]:
    """Read one of our list files: ``<relative path> <0-based label>`` per line.

    With ``num_classes``, a label outside ``0..num_classes - 1`` is an error too (a changed digit
    still parses as a label).
    """
    path = Path(path)
    out = []
    for line_no, line in enumerate(_read_our_file(path, "list file").splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        rel, sep, label = line.rpartition(" ")
        if not sep or not rel.strip() or not label.isdigit():
            raise ListFileError(
                f"{path}:{line_no}: expected '<relative path> <label>', got {line!r:.120}; if nlflow wrote it, {rebuild_hint(path)}"
            )
        if num_classes is not None and int(label) >= num_classes:
            raise ListFileError(
                f"{path}:{line_no}: label {label} is out of range for {num_classes} classes; if nlflow wrote it, {rebuild_hint(path)}"
            )
        out.append((rel.strip(), int(label)))
    return out


def read_classes(path: str | os.PathLike) -> list[str]:
    """Read ``classes.txt``: line i is the name of label i."""
    path = Path(path)
    names = [line.strip() for line in _read_our_file(path, "classes file").splitlines()]
    names = [n for n in names if n]
    if not names:
        raise ListFileError(f"{path}: no class names")
    return names
