"""HMDB-51 official split files -> train and test lists (0-based labels), validated.

Official format (``test_train_splits.rar`` -> ``testTrainMulti_7030_splits/``): one file per class
and split, ``<class>_test_split<k>.txt``, one line per video of that class, ``<video>.avi <code>``
with code 1 = train, 2 = test, 0 = not used in split k; lines may end in spaces. Labels are the
class folders of the extracted videos sorted by name, 0-based (the official data has no class
index file). Video names hold characters such as ``#&()'!,;``: they are kept exactly.

A video's group is the source film its clip was cut from (the file name before ``_<class>_`` and
the tags ``_<body>_<camera motion>_<people>_<viewpoint>_<quality>_<n>``), across classes, so a
validation list held out of the training videos never shares a film with what is left.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from nlflow.lists.listfiles import DatasetLists, ListedVideo
from nlflow.lists.split_files import (
    DuplicateEntryError,
    MalformedLineError,
    MissingSplitFileError,
    SplitFileError,
    UnknownClassError,
    check_class_count,
    check_videos_exist,
    find_split_dir,
    read_lines,
    where,
)
from nlflow.lists.video_tree import class_folders

log = logging.getLogger(__name__)

NUM_SPLITS = 3
SPLIT_DIRNAME = "testTrainMulti_7030_splits"
TRAIN, TEST, UNUSED = "1", "2", "0"
_SPLIT_FILE = re.compile(r"^(?P<cls>.+)_test_split(?P<split>\d+)\.txt$")
# _<visible body part>_<camera motion>_<number of people>_<viewpoint>_<quality>_<clip number>
_TAGS = re.compile(r"_[a-z]_(?:cm|nm)_np\d+_(?:fr|ba|le|ri)_(?:bad|med|goo)_\d+$")
_CLIP_NUMBER = re.compile(r"_\d+$")


def source_film(name: str, class_name: str) -> str:
    """The film a clip was cut from: ``April_09_brush_hair_u_nm_np1_ba_goo_0.avi`` -> ``April_09``."""
    stem = Path(name).stem
    untagged = _TAGS.sub("", stem)
    if untagged == stem:  # not the official naming: drop a trailing clip number at least
        return _CLIP_NUMBER.sub("", stem)
    suffix = f"_{class_name}"
    return untagged[: -len(suffix)] if untagged.endswith(suffix) and len(untagged) > len(suffix) else untagged


def parse_split_file(path: Path, class_name: str, label: int) -> dict[str, list[ListedVideo]]:
    """One class's split file -> {"1": train videos, "2": test videos, "0": unused ones}."""
    by_code: dict[str, list[ListedVideo]] = {TRAIN: [], TEST: [], UNUSED: []}
    first_seen: dict[str, str] = {}
    for line_no, line in read_lines(path):
        at = where(path, line_no)
        name, code = line.rsplit(None, 1) if len(line.split()) > 1 else ("", line)
        if not name or code not in by_code:
            raise MalformedLineError(f"{at}: expected '<video>.avi <1|2|0>' (1 train, 2 test, 0 unused), got {line!r}")
        if "/" in name or "\\" in name:
            raise MalformedLineError(f"{at}: expected a file name without folders, got {name!r}")
        if name in first_seen:
            raise DuplicateEntryError(f"{at}: {name} already listed at {first_seen[name]}")
        first_seen[name] = at
        video = ListedVideo(f"{class_name}/{name}", label, source_film(name, class_name), at)
        by_code[code].append(video)
    return by_code


def hmdb51_lists(
    splits_dir: str | os.PathLike,
    split: int,
    video_root: str | os.PathLike,
    expected_num_classes: int | None = None,
    expected_from: str | None = None,
) -> DatasetLists:
    """One official split as train and test lists (no validation list yet: see attach_validation)."""
    if split not in range(1, NUM_SPLITS + 1):
        raise SplitFileError(f"split must be 1..{NUM_SPLITS}, got {split!r}")
    split_dir = find_split_dir(splits_dir, SPLIT_DIRNAME)
    video_root = Path(video_root)
    classes = class_folders(video_root)
    check_class_count(classes, expected_num_classes, f"{video_root} (class folders)", expected_from)
    listed_classes = {
        match["cls"] for match in map(_SPLIT_FILE.match, (p.name for p in split_dir.iterdir())) if match
    }
    unknown = sorted(listed_classes - set(classes))
    if unknown:
        raise UnknownClassError(
            f"{split_dir / f'{unknown[0]}_test_split{split}.txt'}: class {unknown[0]!r} has no folder "
            f"under {video_root}" + (f" (nor {len(unknown) - 1} more)" if len(unknown) > 1 else "")
        )
    train: list[ListedVideo] = []
    test: list[ListedVideo] = []
    for label, class_name in enumerate(classes):
        path = split_dir / f"{class_name}_test_split{split}.txt"
        if not path.is_file():
            raise MissingSplitFileError(f"split file not found: {path} (class folder {class_name!r})")
        by_code = parse_split_file(path, class_name, label)
        if not by_code[TRAIN] or not by_code[TEST]:
            raise SplitFileError(f"{path}: no {'training' if not by_code[TRAIN] else 'test'} videos (code "
                                 f"{TRAIN if not by_code[TRAIN] else TEST}) listed")
        train += by_code[TRAIN]
        test += by_code[TEST]
    check_videos_exist(train + test, video_root)
    about = {"dataset": "hmdb51", "split": split, "test": f"official split {split}"}
    return DatasetLists(classes, train, None, test, about)
