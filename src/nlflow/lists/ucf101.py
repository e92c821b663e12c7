"""UCF-101 official split files -> nlflow list files (0-based labels), validated.

Official formats (``ucfTrainTestlist/``):
- ``classInd.txt``: ``1 ApplyEyeMakeup`` (1-based index, class name)
- ``trainlistNN.txt``: ``ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1`` (1-based label)
- ``testlistNN.txt``: ``ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi`` (no label)

Our list files: ``<relative path> <0-based label>`` per line; ``classes.txt`` one name per line.
The class of a video is taken from its folder, never from its file name: the official data spells
the folder ``HandstandPushups`` but the files ``v_HandStandPushups_...``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

from nlflow.lists.listfiles import DatasetLists, ListedVideo
from nlflow.lists.split_files import (
    ClassCountError,
    DuplicateEntryError,
    LabelError,
    MalformedLineError,
    SplitFileError,
    SplitOverlapError,
    UnknownClassError,
    check_class_count,
    check_videos_exist,
    find_split_dir,
    read_lines,
    where,
)

NUM_SPLITS = 3
NUM_GROUPS = 25
SPLIT_DIRNAME = "ucfTrainTestlist"

# v_<Class>_g<GG>_c<CC>.avi ; the class part may itself contain underscores in other datasets
_VIDEO_NAME = re.compile(r"^v_(?P<cls>.+)_g(?P<group>\d+)_c(?P<clip>\d+)\.avi$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class VideoEntry:
    """One parsed line of a train/test split file."""

    path: str  # relative path as listed (folder/file.avi), forward slashes
    label: int  # 0-based
    group: int
    clip: int
    source: str  # "file:line" for error messages


# ---------------------------------------------------------------- low-level reading


def parse_class_index(path: str | os.PathLike) -> list[str]:
    """Parse ``classInd.txt`` into class names in label order (index 1 -> label 0)."""
    path = Path(path)
    names: list[str] = []
    seen: dict[str, str] = {}
    for line_no, line in read_lines(path):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise MalformedLineError(
                f"{where(path, line_no)}: expected '<index> <ClassName>', got {line!r}"
            )
        index, name = int(parts[0]), parts[1]
        if index != len(names) + 1:
            raise MalformedLineError(
                f"{where(path, line_no)}: class index {index} out of order (expected {len(names) + 1})"
            )
        if name.lower() in seen:
            raise DuplicateEntryError(
                f"{where(path, line_no)}: class {name!r} already defined ({seen[name.lower()]})"
            )
        seen[name.lower()] = where(path, line_no)
        names.append(name)
    if not names:
        raise ClassCountError(f"{path}: no classes listed")
    return names


def _parse_video_path(raw: str, at: str) -> tuple[str, str, int, int]:
    """Split ``Folder/v_Class_gGG_cCC.avi`` into (normalised path, folder, group, clip)."""
    rel = raw.replace("\\", "/")
    parts = rel.split("/")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise MalformedLineError(f"{at}: expected '<Class>/<video>.avi', got {raw!r}")
    folder, filename = parts
    match = _VIDEO_NAME.match(filename)
    if not match:
        raise MalformedLineError(
            f"{at}: video name {filename!r} does not follow v_<Class>_g<GG>_c<CC>.avi"
        )
    # Case-insensitive on purpose: HandstandPushups/v_HandStandPushups_... is official.
    if match["cls"].lower() != folder.lower():
        raise LabelError(
            f"{at}: file name class {match['cls']!r} disagrees with its folder {folder!r}"
        )
    return rel, folder, int(match["group"]), int(match["clip"])


def parse_video_list(
    path: str | os.PathLike, classes: list[str], labelled: bool
) -> list[VideoEntry]:
    """Parse a ``trainlistNN.txt`` (``labelled=True``) or ``testlistNN.txt`` file.

    A test list may carry labels too; they are then checked like train labels.
    """
    path = Path(path)
    by_name = {name.lower(): i for i, name in enumerate(classes)}
    entries: list[VideoEntry] = []
    first_seen: dict[str, str] = {}
    for line_no, line in read_lines(path):
        at = where(path, line_no)
        parts = line.split()
        if len(parts) not in (1, 2) or (labelled and len(parts) != 2):
            expected = "'<Class>/<video>.avi <label>'" if labelled else "'<Class>/<video>.avi'"
            raise MalformedLineError(f"{at}: expected {expected}, got {line!r}")
        rel, folder, group, clip = _parse_video_path(parts[0], at)
        label = by_name.get(folder.lower())
        if label is None:
            raise UnknownClassError(f"{at}: class folder {folder!r} is not in classInd.txt")
        if len(parts) == 2:
            if not parts[1].lstrip("-").isdigit():
                raise MalformedLineError(f"{at}: label {parts[1]!r} is not an integer")
            listed = int(parts[1])
            if not 1 <= listed <= len(classes):
                raise LabelError(
                    f"{at}: label {listed} out of range 1..{len(classes)} (labels are 1-based)"
                )
            if listed - 1 != label:
                raise LabelError(
                    f"{at}: label {listed} ({classes[listed - 1]}) disagrees with folder "
                    f"{folder!r} (label {label + 1})"
                )
        key = rel.lower()
        if key in first_seen:
            raise DuplicateEntryError(f"{at}: {rel} already listed at {first_seen[key]}")
        first_seen[key] = at
        entries.append(VideoEntry(rel, label, group, clip, at))
    return entries


def check_disjoint(train: list[VideoEntry], test: list[VideoEntry]) -> None:
    """Train and test must not share a video nor a class+group (same actor/scene)."""
    train_groups = {(e.label, e.group): e for e in train}
    train_paths = {e.path.lower(): e for e in train}
    for e in test:
        if e.path.lower() in train_paths:
            raise SplitOverlapError(
                f"{e.source}: {e.path} is also in the train list ({train_paths[e.path.lower()].source})"
            )
        other = train_groups.get((e.label, e.group))
        if other is not None:
            raise SplitOverlapError(
                f"{e.source}: group g{e.group:02d} of class {e.path.split('/')[0]} is in both "
                f"test and train ({other.source})"
            )


def load_split(
    split_dir: str | os.PathLike, split: int, expected_num_classes: int | None = None,
    expected_from: str | None = None,
) -> tuple[list[str], list[VideoEntry], list[VideoEntry]]:
    """Parse and cross-check one official split: (classes, train entries, test entries)."""
    if split not in range(1, NUM_SPLITS + 1):
        raise SplitFileError(f"split must be 1..{NUM_SPLITS}, got {split!r}")
    root = find_split_dir(split_dir, SPLIT_DIRNAME)
    classes = parse_class_index(root / "classInd.txt")
    check_class_count(classes, expected_num_classes, root / "classInd.txt", expected_from)
    train = parse_video_list(root / f"trainlist{split:02d}.txt", classes, labelled=True)
    test = parse_video_list(root / f"testlist{split:02d}.txt", classes, labelled=False)
    if not train:
        raise SplitFileError(f"{root / f'trainlist{split:02d}.txt'}: no videos listed")
    if not test:
        raise SplitFileError(f"{root / f'testlist{split:02d}.txt'}: no videos listed")
    check_disjoint(train, test)
    return classes, train, test


def ucf101_lists(
    split_dir: str | os.PathLike,
    split: int,
    video_root: str | os.PathLike | None = None,
    expected_num_classes: int | None = None,
    expected_from: str | None = None,
) -> DatasetLists:
    """One official split as train and test lists (no validation list yet: see attach_validation).

    A video's group is its ``gGG`` number across all classes, as the official splits use it.
    """
    classes, train, test = load_split(split_dir, split, expected_num_classes, expected_from)
    if video_root is not None:
        check_videos_exist(train + test, video_root)

    def listed(entries: list[VideoEntry]) -> list[ListedVideo]:
        return [ListedVideo(e.path, e.label, f"g{e.group:02d}", e.source) for e in entries]

    about = {"dataset": "ucf101", "split": split, "test": f"official split {split}"}
    return DatasetLists(classes, listed(train), None, listed(test), about)
