"""A Kinetics-400 copy on disk -> nlflow lists, labelled with the original's classids.json.

Two layouts, found by looking (the make_lists log says which):

- ``cvdf``: the Common Visual Data Foundation mirror, ``annotations/train.csv`` and
  ``annotations/val.csv`` (``label,youtube_id,time_start,time_end,split[,is_cc]``) next to flat
  ``train/`` and ``val/`` folders of ``<youtube_id>_<start:06d>_<end:06d>.mp4``. The CSV lists the
  videos; a listed video that is not on disk is *missing*.
- ``class_folders``: ``train/<class>/<video>`` and ``val/<class>/<video>`` as the official crawler
  writes them (``<youtube_id>_<start>_<end>.mp4``, class names with spaces) and as the original's
  copy holds them (``train_256/``, ``val_256/``, ``<youtube_id>.mp4``, class names with
  underscores). The folders list the videos; with ``annotations/<split>.csv`` present too, a listed
  id found in no class folder is missing.

Labels are the ids of the original's ``classids.json`` (:mod:`nlflow.lists.kinetics_facts`), the
400 outputs of the released models, whatever subset of classes the copy holds; ``classes.txt``
always names all of them. ``classes`` replaces that label set for a Kinetics-format copy of
another dataset.

The test list (also the validation list: Kinetics is validated on its val split, as the original
did) is the copy's val split, or with ``test_list="original"`` exactly the 19,761 videos of the
original's ``vallist.txt`` with its labels. Missing videos stay in the test list (the store leaves
them out and evaluation counts them wrong, as ``TEST.DATASET_SIZE`` does) and go to no training
list; all of them are named in ``missing.csv``.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Iterator, Sequence

from nlflow.errors import NlflowError
from nlflow.lists.kinetics_facts import kinetics400_classes, original_val_list
from nlflow.lists.listfiles import DatasetLists, ListedVideo, MissingVideo
from nlflow.lists.split_files import MalformedLineError, UnknownClassError, check_class_count, where
from nlflow.lists.video_tree import is_hidden, is_video_file

log = logging.getLogger(__name__)

CVDF, CLASS_FOLDERS = "cvdf", "class_folders"
TEST_LISTS = ("val", "original")
# The split folders each layout may use: the official names, and the original's downscaled copy's.
SPLIT_FOLDERS = {"train": ("train", "train_256"), "val": ("val", "val_256")}
ANNOTATIONS = "annotations"
CSV_COLUMNS = ("label", "youtube_id", "time_start", "time_end")
LOOKED_FOR = (
    "looked for the CVDF mirror's layout (annotations/train.csv and annotations/val.csv next to flat train/ and "
    "val/ folders of <youtube_id>_<start>_<end>.mp4) or class folders (train/<class>/<video> and "
    "val/<class>/<video>; train_256/ and val_256/ as in the original's copy)"
)
# A YouTube id is 11 characters of [A-Za-z0-9_-]; a clip's file adds _<start>_<end> (the crawler's
# %06d) and a suffix, sometimes two (the original's copy has `<id>.mp4.webm`).
_CLIP_NAME = re.compile(r"^(?P<id>[A-Za-z0-9_-]{11})(?:_(?P<start>\d+)_(?P<end>\d+))?\.")


class KineticsError(NlflowError):
    """A Kinetics copy whose layout, annotations or classes nlflow cannot read."""


@dataclasses.dataclass(frozen=True)
class KineticsLayout:
    """Where one copy keeps its videos and annotations."""

    kind: str  # CVDF or CLASS_FOLDERS
    root: Path
    folders: dict[str, str]  # split ("train", "val") -> its folder under root, those present
    annotations: dict[str, Path]  # split -> its CSV, those present

    def describe(self) -> str:
        folders = ", ".join(f"{name}/" for name in self.folders.values())
        csvs = ", ".join(f"{ANNOTATIONS}/{path.name}" for path in self.annotations.values())
        if self.kind == CVDF:
            return f"the CVDF mirror's layout: {csvs} listing the videos of flat {folders}"
        extra = f", missing videos found against {csvs}" if csvs else " (no annotations/*.csv: missing videos not known)"
        return f"class folders: {folders} holding <class>/<video>{extra}"


@dataclasses.dataclass(frozen=True)
class LabelSet:
    """Class names -> labels; a folder may spell a name with underscores for spaces."""

    names: tuple[str, ...]
    origin: str  # for messages: "classids.json" or "dataset.classes"

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {name: label for label, name in enumerate(self.names)})
        object.__setattr__(self, "_underscored", {name.replace(" ", "_"): label for label, name in enumerate(self.names)})

    def label(self, name: str) -> int | None:
        found = self._index.get(name)  # type: ignore[attr-defined]
        return found if found is not None else self._underscored.get(name)  # type: ignore[attr-defined]

    def unknown(self, name: str, at: str) -> UnknownClassError:
        hint = ("a Kinetics-format copy of another dataset: list its classes in dataset.classes"
                if self.origin == "classids.json" else "add it to dataset.classes")
        return UnknownClassError(f"{at}: class {name!r} is not one of the {len(self.names)} classes of {self.origin} ({hint})")


def label_set(classes: Sequence[str] | None) -> LabelSet:
    """The configured label set: ``dataset.classes``, or the original's 400."""
    if classes is None:
        return LabelSet(kinetics400_classes(), "classids.json")
    names = tuple(str(name).strip() for name in classes)
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates or not all(names):
        raise KineticsError(f"dataset.classes must be distinct, non-empty names (repeated: {', '.join(duplicates)})")
    return LabelSet(names, "dataset.classes")


# ---------------------------------------------------------------- the layout


def _folder_shape(folder: Path) -> str:
    """``flat`` (videos directly inside), ``classes`` (sub-folders), or ``empty``."""
    has_videos = has_folders = False
    with os.scandir(folder) as entries:
        for entry in entries:
            if is_hidden(entry.name):
                continue
            if entry.is_dir():
                has_folders = True
            elif is_video_file(entry.name):
                has_videos = True
            if has_videos and has_folders:
                raise KineticsError(
                    f"{folder} holds both videos and sub-folders: a split folder is either flat (the CVDF mirror) or "
                    "one sub-folder per class"
                )
    return "flat" if has_videos else "classes" if has_folders else "empty"


def find_layout(root: str | os.PathLike) -> KineticsLayout:
    """The layout of the copy at ``root`` (see the module docstring), or one error saying what was looked for."""
    root = Path(root)
    if not root.is_dir():
        raise KineticsError(f"dataset.root {root} does not exist or is not a folder")
    if not any(not is_hidden(entry.name) for entry in root.iterdir()):
        raise KineticsError(f"dataset.root {root} is empty: {LOOKED_FOR}")
    folders: dict[str, str] = {}
    for split, names in SPLIT_FOLDERS.items():
        present = [name for name in names if (root / name).is_dir()]
        if len(present) > 1:
            raise KineticsError(f"{root} holds both {present[0]}/ and {present[1]}/: keep one {split} folder")
        if present:
            folders[split] = present[0]
    annotations = {split: root / ANNOTATIONS / f"{split}.csv" for split in SPLIT_FOLDERS
                   if (root / ANNOTATIONS / f"{split}.csv").is_file()}
    if "val" not in folders:
        raise KineticsError(f"{root} has no val/ folder (the test list): {LOOKED_FOR}")
    shapes = {split: _folder_shape(root / folder) for split, folder in folders.items()}
    if set(shapes.values()) == {"empty"}:
        raise KineticsError(f"{root}: the split folders {', '.join(folders.values())} hold no videos: {LOOKED_FOR}")
    kinds = {shape for shape in shapes.values() if shape != "empty"}
    if kinds == {"flat", "classes"}:
        raise KineticsError(f"{root}: {', '.join(f'{folders[s]}/ is {shape}' for s, shape in shapes.items())}; "
                            "the two split folders must have the same layout")
    if kinds == {"flat"}:
        lacking = [split for split in folders if split not in annotations]
        if lacking:
            raise KineticsError(
                f"{root}: flat {folders[lacking[0]]}/ without {ANNOTATIONS}/{lacking[0]}.csv; the CVDF layout's file "
                f"names carry no class, the CSV gives it ({LOOKED_FOR})"
            )
        return KineticsLayout(CVDF, root, folders, annotations)
    return KineticsLayout(CLASS_FOLDERS, root, folders, annotations)


# ---------------------------------------------------------------- reading the annotations


@dataclasses.dataclass(frozen=True, slots=True)
class Annotation:
    youtube_id: str
    label: int
    start: int
    end: int
    at: str  # "file:line"

    @property
    def clip_stem(self) -> str:
        """The file name without suffix, as the crawler and the CVDF mirror write it."""
        return f"{self.youtube_id}_{self.start:06d}_{self.end:06d}"


def _seconds(text: str, column: str, at: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise MalformedLineError(f"{at}: {column} {text!r} is not a number of seconds") from None
    if value < 0 or not value.is_integer():
        raise MalformedLineError(f"{at}: {column} {text!r} is not a whole, non-negative number of seconds")
    return int(value)


def read_annotations(path: str | os.PathLike, labels: LabelSet) -> Iterator[Annotation]:
    """The rows of one annotation CSV, streamed (a 246k-row train.csv never sits in memory as text)."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [column.strip() for column in next(reader, [])]
        absent = [column for column in CSV_COLUMNS if column not in header]
        if absent:
            raise MalformedLineError(
                f"{where(path, 1)}: the header lacks {', '.join(absent)} (expected "
                f"label,youtube_id,time_start,time_end,split[,is_cc]), got {','.join(header)!r:.120}"
            )
        index = {column: header.index(column) for column in CSV_COLUMNS}
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            at = where(path, reader.line_num)
            if len(row) != len(header):
                raise MalformedLineError(f"{at}: {len(row)} fields, the header has {len(header)}: {','.join(row)!r:.120}")
            name, youtube_id = row[index["label"]].strip(), row[index["youtube_id"]].strip()
            if not youtube_id or "/" in youtube_id or youtube_id in (".", ".."):
                raise MalformedLineError(f"{at}: {youtube_id!r} is not a YouTube id")
            label = labels.label(name)
            if label is None:
                raise labels.unknown(name, at)
            yield Annotation(youtube_id, label, _seconds(row[index["time_start"]], "time_start", at),
                             _seconds(row[index["time_end"]], "time_end", at), at)


# ---------------------------------------------------------------- videos on disk


@dataclasses.dataclass(frozen=True, slots=True)
class FoundVideo:
    path: str  # relative to the root
    youtube_id: str
    label: int | None  # from its class folder; None in a flat folder


def youtube_id_of(file_name: str) -> str:
    """The YouTube id a clip's file name starts with; a name that carries none is its own id."""
    match = _CLIP_NAME.match(file_name)
    return match["id"] if match else file_name.split(".", 1)[0]


def _videos_in(folder: Path) -> list[str]:
    with os.scandir(folder) as entries:
        return sorted(entry.name for entry in entries
                      if not is_hidden(entry.name) and is_video_file(entry.name) and entry.is_file())


def class_folder_videos(layout: KineticsLayout, split: str, labels: LabelSet) -> list[FoundVideo]:
    """Every video of ``<split folder>/<class>/``, labelled by its folder."""
    top = layout.folders[split]
    found: list[FoundVideo] = []
    with os.scandir(layout.root / top) as entries:
        class_dirs = sorted(entry.name for entry in entries if entry.is_dir() and not is_hidden(entry.name))
    for class_dir in class_dirs:
        label = labels.label(class_dir)
        if label is None:
            raise labels.unknown(class_dir, f"{layout.root / top / class_dir} (a class folder)")
        for name in _videos_in(layout.root / top / class_dir):
            found.append(FoundVideo(f"{top}/{class_dir}/{name}", youtube_id_of(name), label))
    return found


# ---------------------------------------------------------------- the lists


@dataclasses.dataclass
class _Split:
    """One split's videos in the order they are listed (missing ones too), and the missing ones."""

    listed: list[ListedVideo]
    missing: list[MissingVideo]

    @property
    def present(self) -> list[ListedVideo]:
        absent = {video.path for video in self.missing}
        return [video for video in self.listed if video.path not in absent]


def _listed(video: MissingVideo) -> ListedVideo:
    return ListedVideo(video.path, video.label, video.youtube_id, video.listed_in)


def _cvdf_split(layout: KineticsLayout, split: str, labels: LabelSet) -> _Split:
    top = layout.folders.get(split)
    on_disk = {name.split(".", 1)[0]: name for name in _videos_in(layout.root / top)} if top else {}
    listed, missing, seen = [], [], set()
    duplicates = 0
    for row in read_annotations(layout.annotations[split], labels):
        stem = row.clip_stem
        if stem in seen:
            duplicates += 1
            continue
        seen.add(stem)
        name = on_disk.get(stem)
        if name is None:
            missing.append(MissingVideo(split, row.youtube_id, row.label, f"{top or split}/{stem}.mp4", row.at))
            listed.append(_listed(missing[-1]))
        else:
            listed.append(ListedVideo(f"{top}/{name}", row.label, row.youtube_id, row.at))
    if duplicates:
        log.warning("%s: %d rows repeat an earlier clip (same id, start and end) and were skipped",
                    layout.annotations[split], duplicates)
    return _Split(listed, missing)


def _class_folder_split(layout: KineticsLayout, split: str, labels: LabelSet) -> _Split:
    found = class_folder_videos(layout, split, labels) if split in layout.folders else []
    present = [ListedVideo(video.path, video.label, video.youtube_id, str(layout.root / video.path)) for video in found]
    missing = []
    if split in layout.annotations:
        ids = {video.youtube_id for video in found}
        folder = layout.folders.get(split, split)
        listed = set()
        for row in read_annotations(layout.annotations[split], labels):
            if row.youtube_id not in ids and row.youtube_id not in listed:
                listed.add(row.youtube_id)
                path = f"{folder}/{labels.names[row.label]}/{row.clip_stem}.mp4"
                missing.append(MissingVideo(split, row.youtube_id, row.label, path, row.at))
    return _Split(present + [_listed(video) for video in missing], missing)


def _original_test_split(val: _Split, layout: KineticsLayout) -> _Split:
    """The original's 19,761 validation videos: the copy's file where it has one, with the original's label."""
    by_id = {video.group: video for video in val.present}
    folder = layout.folders["val"]
    names = kinetics400_classes()
    listed, missing, disagree = [], [], 0
    for line, (youtube_id, label) in enumerate(original_val_list(), start=1):
        at = f"vallist.txt:{line}"
        video = by_id.get(youtube_id)
        if video is None:
            missing.append(MissingVideo("val", youtube_id, label, f"{folder}/{names[label]}/{youtube_id}.mp4", at))
            listed.append(_listed(missing[-1]))
            continue
        disagree += video.label != label
        listed.append(ListedVideo(video.path, label, youtube_id, at))
    if disagree:
        log.warning("%d videos of the copy's val split have another label than in the original's vallist.txt: "
                    "the original's label is used", disagree)
    return _Split(listed, missing)


def kinetics_lists(
    root: str | os.PathLike,
    test_list: str = "val",
    classes: Sequence[str] | None = None,
    expected_num_classes: int | None = None,
    expected_from: str | None = None,
) -> DatasetLists:
    """The train and test lists of the Kinetics copy at ``root`` (see the module docstring)."""
    if test_list not in TEST_LISTS:
        raise KineticsError(f"dataset.test_list must be one of {', '.join(TEST_LISTS)}, got {test_list!r}")
    if test_list == "original" and classes is not None:
        raise KineticsError("dataset.test_list original is the original's Kinetics-400 list: it cannot go with dataset.classes")
    labels = label_set(classes)
    check_class_count(list(labels.names), expected_num_classes, labels.origin, expected_from)
    layout = find_layout(root)
    log.info("Kinetics copy at %s: %s", layout.root, layout.describe())
    read_split = _cvdf_split if layout.kind == CVDF else _class_folder_split
    has_train = "train" in layout.folders or "train" in layout.annotations
    train = read_split(layout, "train", labels) if has_train else _Split([], [])
    if not train.present:
        log.warning("%s: no training videos (no train/ folder): the lists serve evaluation only", layout.root)
    val = read_split(layout, "val", labels)
    test = _original_test_split(val, layout) if test_list == "original" else val
    if len(test.missing) == len(test.listed):
        raise KineticsError(f"{layout.root}: none of the {len(test.listed)} listed test videos is on disk")
    about = {"dataset": "kinetics400", "root": str(layout.root), "layout": layout.kind,
             "test": "the original's vallist.txt (19,761 videos)" if test_list == "original" else "the copy's val split",
             "labels": labels.origin}
    # Missing test videos stay listed: the store leaves them out and evaluation counts them wrong.
    return DatasetLists(list(labels.names), train.present, None, test.listed, about, missing=train.missing + test.missing)


# ---------------------------------------------------------------- what the workflow asks at start-up


def video_folders(root: str | os.PathLike) -> dict[str, str]:
    """split -> the folder (under ``root``) holding its videos: what downscale reads of a copy."""
    return dict(find_layout(root).folders)


def copy_inventory(root: str | os.PathLike) -> str:
    """A digest that changes when videos are added to or removed from the copy, or its annotations change.

    A copy holds ~260k files: rather than stat each (slow on a network filesystem, and done at every
    Snakemake start), the modification times of the split and class folders are taken (adding or
    removing a file changes its folder's), with the annotations' sizes and times.
    """
    layout = find_layout(root)
    digest = hashlib.sha256(layout.kind.encode())
    for split, folder in sorted(layout.folders.items()):
        top = layout.root / folder
        digest.update(f"{split}\t{folder}\t{top.stat().st_mtime_ns}\n".encode())
        with os.scandir(top) as entries:
            stamps = sorted((entry.name, entry.stat().st_mtime_ns) for entry in entries
                            if entry.is_dir() and not is_hidden(entry.name))
        for name, mtime in stamps:
            digest.update(f"{name}\t{mtime}\n".encode("utf-8", "surrogateescape"))
    for split, path in sorted(layout.annotations.items()):
        info = path.stat()
        digest.update(f"{split}\t{info.st_size}\t{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]
