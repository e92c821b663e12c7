"""Your own videos: a `<class>/<video>` folder -> train and test lists (0-based labels).

Classes are the visible sub-folders of the root, sorted by name. Videos are every file with a video
suffix below a class folder (sub-folders allowed). The split comes from the user's list files when
given (one ``path[ label]`` per line, path relative to the root, label 0-based and optional because
the folder gives it), else from a seeded, stratified split by ``test_fraction`` that keeps the
videos of one group (``group_pattern``'s first group) on one side.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Mapping

from nlflow.errors import NlflowError
from nlflow.fileio import shown_path
from nlflow.lists.holdout import hold_out
from nlflow.lists.listfiles import DatasetLists, ListedVideo
from nlflow.lists.split_files import (
    DuplicateEntryError,
    LabelError,
    MalformedLineError,
    MissingVideosError,
    SplitOverlapError,
    UnknownClassError,
    check_class_count,
    read_lines,
    where,
)
from nlflow.lists.video_tree import VIDEO_SUFFIXES, class_folders, is_video_file, list_videos

log = logging.getLogger(__name__)

# `<path> <label>`: the label is a trailing integer after white space (the path may hold spaces).
_LABELLED_LINE = re.compile(r"^(.*?\S)\s+(\d+)$")


class FolderDatasetError(NlflowError):
    """The dataset folder or its grouping does not fit `<class>/<video>`."""


def folder_classes(root: str | os.PathLike) -> list[str]:
    """The class folders of ``root``; an error unless it exists and holds at least two."""
    root = Path(root)
    if not root.is_dir():
        raise FolderDatasetError(
            f"dataset.root {shown_path(root)} does not exist or is not a folder (a relative path is taken from the "
            "working directory: where snakemake runs, or its --directory)")
    classes = class_folders(root)
    if len(classes) < 2:
        raise FolderDatasetError(
            f"dataset.root {shown_path(root)} holds {len(classes)} class folder(s); a classifier needs at least 2 "
            "(the layout is <root>/<class>/<video>)"
        )
    return classes


def check_folder(
    root: str | os.PathLike, group_pattern: str | None, num_classes: int | None
) -> tuple[int | None, list[str]]:
    """What start-up checks of a `folder` dataset: the class folders (at least two, none empty,
    as many as ``num_classes`` when it is set) and that ``group_pattern`` finds a group in every
    video. Returns the class count (None when the folder cannot be read) and every problem found."""
    try:
        classes = folder_classes(root)
    except FolderDatasetError as exc:
        return None, [str(exc)]
    problems = []
    if num_classes is not None and num_classes != len(classes):
        problems.append(
            f"dataset.num_classes is {num_classes} but dataset.root {shown_path(root)} holds {len(classes)} class "
            f"folders ({_examples(classes, 8)}): leave dataset.num_classes out to take the folder's count"
        )
    known = set(classes)
    in_classes = [rel for rel in list_videos(root) if "/" in rel and rel.split("/")[0] in known]
    by_class = Counter(rel.split("/")[0] for rel in in_classes)
    empty = [name for name in classes if not by_class[name]]
    if empty:
        problems.append(
            f"class folder(s) without videos in dataset.root {shown_path(root)}: {_examples(empty, 8)}; every class "
            f"folder is a class, so add videos or remove the folder (video suffixes: {' '.join(VIDEO_SUFFIXES)})"
        )
    try:
        pattern = compile_group_pattern(group_pattern)
    except FolderDatasetError as exc:
        return len(classes), problems + [str(exc)]
    if pattern is not None:
        problems += _group_pattern_problems(root, pattern, in_classes)
    return len(classes), problems


def _group_pattern_problems(root: str | os.PathLike, pattern: re.Pattern, videos: list[str]) -> list[str]:
    unmatched = [rel for rel in videos if not _has_group(pattern, rel)]
    if not unmatched:
        return []
    how = (f"matches none of the {len(videos)} videos" if len(unmatched) == len(videos)
           else f"finds no group in {len(unmatched)} of the {len(videos)} videos")
    return [
        f"dataset.group_pattern {pattern.pattern!r} {how} in dataset.root {shown_path(root)} (e.g. "
        f"{_examples(unmatched, 3, quote=True)}; it is searched in <class>/<file> paths): fix the pattern so "
        "that every video has a group, or leave group_pattern out (then every video is its own group)"
    ]


def _has_group(pattern: re.Pattern, path: str) -> bool:
    match = pattern.search(path)
    return match is not None and match.group(1) is not None


def _examples(names: list[str], limit: int, quote: bool = False) -> str:
    shown = [repr(name) if quote else name for name in names[:limit]]
    return ", ".join(shown) + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def compile_group_pattern(pattern: str | None) -> re.Pattern | None:
    """``dataset.group_pattern`` as a regex with exactly one group, or a one-line error."""
    if pattern is None:
        return None
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise FolderDatasetError(f"dataset.group_pattern {pattern!r} is not a regular expression ({exc})") from None
    if compiled.groups != 1:
        raise FolderDatasetError(
            f"dataset.group_pattern {pattern!r} must have exactly one group (...), it has {compiled.groups}"
        )
    return compiled


def group_of(path: str, pattern: re.Pattern | None, source: str) -> str:
    """The group a video belongs to: ``pattern``'s group searched in its relative path, else itself."""
    if pattern is None:
        return path
    match = pattern.search(path)
    if match is None or match.group(1) is None:
        raise FolderDatasetError(
            f"{source}: dataset.group_pattern {pattern.pattern!r} does not match {path!r}; every video needs a "
            "group (or leave group_pattern out)"
        )
    return match.group(1)


def folder_videos(root: Path, classes: list[str], pattern: re.Pattern | None) -> list[ListedVideo]:
    """Every video below a class folder, labelled by the folder; each class must hold one at least."""
    label_of = {name: label for label, name in enumerate(classes)}
    videos = []
    outside = 0
    for rel in list_videos(root):
        class_name = rel.split("/")[0]
        if "/" not in rel or class_name not in label_of:
            outside += 1
            continue
        videos.append(ListedVideo(rel, label_of[class_name], group_of(rel, pattern, str(root)), str(root / rel)))
    if outside:
        log.warning("%d video file(s) directly in %s (not in a class folder) are not used", outside, root)
    counts = Counter(video.label for video in videos)
    empty = [name for label, name in enumerate(classes) if not counts[label]]
    if empty:
        raise FolderDatasetError(
            f"class folder(s) without videos under {shown_path(root)}: {', '.join(empty)} (video suffixes: "
            f"{' '.join(VIDEO_SUFFIXES)})"
        )
    return videos


def _relative_path(raw: str, root: Path, at: str) -> str:
    """A list file's path as a clean path relative to the root (an absolute one must lie inside it)."""
    path = PurePosixPath(raw.replace("\\", "/"))
    if path.is_absolute():
        try:
            path = PurePosixPath(Path(path).resolve().relative_to(root.resolve()).as_posix())
        except ValueError:
            raise MalformedLineError(f"{at}: {raw!r} is outside dataset.root {root}") from None
    if ".." in path.parts:
        raise MalformedLineError(f"{at}: {raw!r} leaves the dataset root ('..')")
    return path.as_posix()


def read_user_list(
    path: str | os.PathLike, root: Path, classes: list[str], pattern: re.Pattern | None
) -> list[ListedVideo]:
    """A user's list file: ``<class>/<video>[ <0-based label>]`` per line, each checked against the tree."""
    path = Path(path)
    label_of = {name: label for label, name in enumerate(classes)}
    videos: list[ListedVideo] = []
    first_seen: dict[str, str] = {}
    for line_no, line in read_lines(path):
        at = where(path, line_no)
        labelled = _LABELLED_LINE.match(line)
        raw, label_text = (labelled[1], labelled[2]) if labelled else (line, None)
        rel = _relative_path(raw, root, at)
        class_name = rel.split("/")[0]
        if "/" not in rel:
            raise MalformedLineError(f"{at}: expected '<class>/<video>[ <label>]', got {line!r}")
        if class_name not in label_of:
            raise UnknownClassError(
                f"{at}: class folder {class_name!r} is not one of the {len(classes)} class folders of {root}"
            )
        label = label_of[class_name]
        if label_text is not None and int(label_text) != label:
            raise LabelError(
                f"{at}: label {label_text} disagrees with folder {class_name!r} (label {label}: labels are "
                "0-based, classes sorted by folder name)"
            )
        if not is_video_file(rel):
            raise MalformedLineError(f"{at}: {rel!r} is not a video file (suffixes: {' '.join(VIDEO_SUFFIXES)})")
        if not (root / rel).is_file():
            raise MissingVideosError(f"{at}: {rel} does not exist under {root}")
        if rel in first_seen:
            raise DuplicateEntryError(f"{at}: {rel} already listed at {first_seen[rel]}")
        first_seen[rel] = at
        videos.append(ListedVideo(rel, label, group_of(rel, pattern, at), at))
    if not videos:
        raise MalformedLineError(f"{path}: no videos listed")
    return videos


def _check_no_overlap(first: list[ListedVideo], second: list[ListedVideo], grouped: bool) -> None:
    """No video may be in two lists; a shared group (possible leakage) is worth a warning."""
    seen = {video.path: video for video in first}
    for video in second:
        if video.path in seen:
            raise SplitOverlapError(f"{video.source}: {video.path} is also listed at {seen[video.path].source}")
    if grouped:
        shared = sorted({video.group for video in first} & {video.group for video in second})
        if shared:
            log.warning("%d group(s) have videos in two lists (e.g. %s): clips of one recording may leak",
                        len(shared), shared[0])


def folder_lists(
    root: str | os.PathLike,
    user_lists: Mapping[str, str | None] | None = None,
    test_fraction: float = 0.3,
    seed: int = 0,
    group_pattern: str | None = None,
    expected_num_classes: int | None = None,
    expected_from: str | None = None,
) -> DatasetLists:
    """Train and test lists (and the user's val list, if any) of a `<class>/<video>` folder."""
    root = Path(root)
    classes = folder_classes(root)
    check_class_count(classes, expected_num_classes, f"{root} (class folders)", expected_from)
    pattern = compile_group_pattern(group_pattern)
    user_lists = {name: path for name, path in (user_lists or {}).items() if path}
    if user_lists and not {"train", "test"} <= set(user_lists):
        raise FolderDatasetError("dataset.lists needs both train and test (val is optional)")
    if user_lists:
        lists = {name: read_user_list(path, root, classes, pattern) for name, path in user_lists.items()}
        _check_no_overlap(lists["train"], lists["test"], pattern is not None)
        if "val" in lists:
            _check_no_overlap(lists["train"], lists["val"], pattern is not None)
        about = {"dataset": "folder", "root": str(root), "test": f"list file {user_lists['test']}"}
        return DatasetLists(classes, lists["train"], lists.get("val"), lists["test"], about)
    train, test = hold_out(folder_videos(root, classes, pattern), test_fraction, seed, classes, "test")
    about = {"dataset": "folder", "root": str(root), "test": "held out of the folder",
             "test_fraction": test_fraction, "seed": seed, "group_pattern": group_pattern}
    return DatasetLists(classes, train, None, test, about)


def folder_inventory(root: str | os.PathLike) -> str:
    """A digest of every video's path, size and modification time: changes when the folder's videos do."""
    root = Path(root)
    digest = hashlib.sha256()
    for rel in list_videos(root):
        info = (root / rel).stat()
        digest.update(f"{rel}\t{info.st_size}\t{info.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:16]
