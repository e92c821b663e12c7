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
import logging
import os
import re
from pathlib import Path

from nlflow.errors import NlflowError
from nlflow.fileio import read_text_checked, rebuild_hint, write_text_atomic

log = logging.getLogger(__name__)

NUM_SPLITS = 3
NUM_GROUPS = 25
SPLIT_DIRNAME = "ucfTrainTestlist"

# v_<Class>_g<GG>_c<CC>.avi ; the class part may itself contain underscores in other datasets
_VIDEO_NAME = re.compile(r"^v_(?P<cls>.+)_g(?P<group>\d+)_c(?P<clip>\d+)\.avi$", re.IGNORECASE)
_MAX_MISSING_EXAMPLES = 5


class SplitFileError(NlflowError):
    """A UCF-101 split file is missing or has bad content (message names file and line)."""


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
    """The same class+group (i.e. the same actor) appears in both train and test."""


class ClassCountError(SplitFileError):
    pass


class MissingVideosError(NlflowError):
    """Listed videos are not present under the video root."""


class ListFileError(NlflowError):
    """One of our own list files (train/val/test/classes.txt) is malformed."""


@dataclasses.dataclass(frozen=True)
class VideoEntry:
    """One parsed line of a train/test split file."""

    path: str  # relative path as listed (folder/file.avi), forward slashes
    label: int  # 0-based
    group: int
    clip: int
    source: str  # "file:line" for error messages


@dataclasses.dataclass(frozen=True)
class ListsSummary:
    split: int
    num_classes: int
    num_train: int
    num_val: int
    num_test: int
    out_dir: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- low-level reading


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank, stripped lines with 1-based line numbers; tolerates BOM and CRLF."""
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


def _where(path: Path, line_no: int) -> str:
    return f"{path}:{line_no}"


def parse_class_index(path: str | os.PathLike) -> list[str]:
    """Parse ``classInd.txt`` into class names in label order (index 1 -> label 0)."""
    path = Path(path)
    names: list[str] = []
    seen: dict[str, str] = {}
    for line_no, line in _read_lines(path):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise MalformedLineError(
                f"{_where(path, line_no)}: expected '<index> <ClassName>', got {line!r}"
            )
        index, name = int(parts[0]), parts[1]
        if index != len(names) + 1:
            raise MalformedLineError(
                f"{_where(path, line_no)}: class index {index} out of order (expected {len(names) + 1})"
            )
        if name.lower() in seen:
            raise DuplicateEntryError(
                f"{_where(path, line_no)}: class {name!r} already defined ({seen[name.lower()]})"
            )
        seen[name.lower()] = _where(path, line_no)
        names.append(name)
    if not names:
        raise ClassCountError(f"{path}: no classes listed")
    return names


def _parse_video_path(raw: str, where: str) -> tuple[str, str, int, int]:
    """Split ``Folder/v_Class_gGG_cCC.avi`` into (normalised path, folder, group, clip)."""
    rel = raw.replace("\\", "/")
    parts = rel.split("/")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise MalformedLineError(f"{where}: expected '<Class>/<video>.avi', got {raw!r}")
    folder, filename = parts
    match = _VIDEO_NAME.match(filename)
    if not match:
        raise MalformedLineError(
            f"{where}: video name {filename!r} does not follow v_<Class>_g<GG>_c<CC>.avi"
        )
    # Case-insensitive on purpose: HandstandPushups/v_HandStandPushups_... is official.
    if match["cls"].lower() != folder.lower():
        raise LabelError(
            f"{where}: file name class {match['cls']!r} disagrees with its folder {folder!r}"
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
    for line_no, line in _read_lines(path):
        where = _where(path, line_no)
        parts = line.split()
        if len(parts) not in (1, 2) or (labelled and len(parts) != 2):
            expected = "'<Class>/<video>.avi <label>'" if labelled else "'<Class>/<video>.avi'"
            raise MalformedLineError(f"{where}: expected {expected}, got {line!r}")
        rel, folder, group, clip = _parse_video_path(parts[0], where)
        label = by_name.get(folder.lower())
        if label is None:
            raise UnknownClassError(f"{where}: class folder {folder!r} is not in classInd.txt")
        if len(parts) == 2:
            if not parts[1].lstrip("-").isdigit():
                raise MalformedLineError(f"{where}: label {parts[1]!r} is not an integer")
            listed = int(parts[1])
            if not 1 <= listed <= len(classes):
                raise LabelError(
                    f"{where}: label {listed} out of range 1..{len(classes)} (labels are 1-based)"
                )
            if listed - 1 != label:
                raise LabelError(
                    f"{where}: label {listed} ({classes[listed - 1]}) disagrees with folder "
                    f"{folder!r} (label {label + 1})"
                )
        key = rel.lower()
        if key in first_seen:
            raise DuplicateEntryError(f"{where}: {rel} already listed at {first_seen[key]}")
        first_seen[key] = where
        entries.append(VideoEntry(rel, label, group, clip, where))
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


def check_videos_exist(entries: list[VideoEntry], video_root: str | os.PathLike) -> None:
    root = Path(video_root)
    if not root.is_dir():
        raise MissingVideosError(f"video root {root} does not exist or is not a directory")
    missing = [e.path for e in entries if not (root / e.path).is_file()]
    if missing:
        examples = ", ".join(missing[:_MAX_MISSING_EXAMPLES])
        more = "" if len(missing) <= _MAX_MISSING_EXAMPLES else ", ..."
        raise MissingVideosError(
            f"{len(missing)} of {len(entries)} listed videos are missing under {root}: {examples}{more}"
        )


def find_split_dir(split_dir: str | os.PathLike) -> Path:
    """Accept the ``ucfTrainTestlist`` folder itself or the folder that contains it."""
    split_dir = Path(split_dir)
    if not (split_dir / "classInd.txt").is_file() and (split_dir / SPLIT_DIRNAME / "classInd.txt").is_file():
        return split_dir / SPLIT_DIRNAME
    return split_dir


def load_split(
    split_dir: str | os.PathLike, split: int, expected_num_classes: int | None = None
) -> tuple[list[str], list[VideoEntry], list[VideoEntry]]:
    """Parse and cross-check one official split: (classes, train entries, test entries)."""
    if split not in range(1, NUM_SPLITS + 1):
        raise SplitFileError(f"split must be 1..{NUM_SPLITS}, got {split!r}")
    root = find_split_dir(split_dir)
    classes = parse_class_index(root / "classInd.txt")
    if expected_num_classes is not None and len(classes) != expected_num_classes:
        raise ClassCountError(
            f"{root / 'classInd.txt'}: {len(classes)} classes, expected {expected_num_classes}"
        )
    train = parse_video_list(root / f"trainlist{split:02d}.txt", classes, labelled=True)
    test = parse_video_list(root / f"testlist{split:02d}.txt", classes, labelled=False)
    if not train:
        raise SplitFileError(f"{root / f'trainlist{split:02d}.txt'}: no videos listed")
    if not test:
        raise SplitFileError(f"{root / f'testlist{split:02d}.txt'}: no videos listed")
    check_disjoint(train, test)
    return classes, train, test


# ---------------------------------------------------------------- our list files


def format_list(entries: list[tuple[str, int]]) -> str:
    return "".join(f"{path} {label}\n" for path, label in entries)


def make_lists(
    split_dir: str | os.PathLike,
    split: int,
    out_dir: str | os.PathLike,
    video_root: str | os.PathLike | None = None,
    expected_num_classes: int | None = None,
) -> ListsSummary:
    """Write ``train.txt``, ``val.txt``, ``test.txt``, ``classes.txt`` for one split into out_dir.

    val and test are both the official test list (val only drives clip accuracy during training).
    With ``video_root`` every listed video must exist there. Nothing is written unless all checks pass.
    """
    classes, train, test = load_split(split_dir, split, expected_num_classes)
    if video_root is not None:
        check_videos_exist(train + test, video_root)
    out = Path(out_dir)
    test_text = format_list([(e.path, e.label) for e in test])
    write_text_atomic(out / "classes.txt", "".join(f"{name}\n" for name in classes))
    write_text_atomic(out / "train.txt", format_list([(e.path, e.label) for e in train]))
    write_text_atomic(out / "val.txt", test_text)
    write_text_atomic(out / "test.txt", test_text)
    summary = ListsSummary(split, len(classes), len(train), len(test), len(test), str(out))
    log.info(
        "split %d: %d classes, %d train, %d test videos -> %s",
        split, len(classes), len(train), len(test), out,
    )
    return summary


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
