"""How the rendered demo videos are packaged: as UCF-101's downloads, as HMDB-51's, or as a plain
`<class>/<video>` folder, so that every dataset kind runs end to end with no network.

Each layout names the videos (where a video of class c, group g, clip k is written while rendering)
and packages the rendered tree. The packaging copies the official quirks that the list makers must
cope with: UCF-101's CRLF split files and `UCF-101/` top folder; HMDB-51's archive of per-class
RARs, lower-case class folders, one split file per class with codes 1 / 2 / 0 and trailing spaces,
and file names with ``#&()'!,;`` in them (one demo source film carries them all); Kinetics-400's
two layouts (the CVDF mirror's flat folders with annotation CSVs, and class folders), MP4 files
named by YouTube id and segment, class names from classids.json with spaces, parentheses and an
apostrophe, and listed videos the copy lacks.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import re
import zipfile
from pathlib import Path
from typing import Iterable, Sequence

from nlflow.fileio import atomic_path

FORMATS = ("ucf101", "hmdb51", "folder", "kinetics_cvdf", "kinetics_folders")
NUM_GROUPS = 25
# Frames per video: long enough that only the last 3 of 10 test clips of 8 x 8 frames wrap, as on
# real UCF-101 (186 frames on average).
DEFAULT_NUM_FRAMES = 144
NUM_SPLITS = 3
GROUPS_PER_TEST_SPLIT = 7
# Fixed archive timestamps keep the archives byte-identical for a given seed.
ARCHIVE_MTIME = 1357000000  # 2013-01-01
ZIP_DATE_TIME = (2013, 1, 1, 0, 0, 0)

UCF_RAR_NAME = "UCF101.rar"
UCF_SPLITS_ZIP_NAME = "UCF101TrainTestSplits-RecognitionTask.zip"
UCF_ARCHIVE_ROOT = "UCF-101"
UCF_SPLITS_ROOT = "ucfTrainTestlist"

HMDB_RAR_NAME = "hmdb51_org.rar"
HMDB_SPLITS_RAR_NAME = "test_train_splits.rar"
HMDB_SPLITS_ROOT = "testTrainMulti_7030_splits"
HMDB_TAGS = "u_nm_np1_fr_goo"  # visible body part, camera motion, people, viewpoint, quality
FOLDER_ROOT = "videos"
# The group whose names carry the characters real HMDB-51 names hold (and a space, in the folder
# layout). Group 2 is tested in split 1 and trained on in splits 2 and 3.
SPECIAL_GROUP = 2
HMDB_SPECIAL_FILM = "#02_Tom_&_Jerry's_(Best_of!),_Vol;1"
FOLDER_SPECIAL_SUFFIX = " (take #{clip}, Tom & Jerry's; best!)"


# ---------------------------------------------------------------- UCF-101


def video_relpath(class_name: str, group: int, clip: int) -> str:
    return f"{class_name}/v_{class_name}_g{group:02d}_c{clip:02d}.avi"


def groups_tested_in_split(split: int) -> range:
    """Groups in the test list of an official split (split k tests 7(k-1)+1 .. 7k)."""
    return range(GROUPS_PER_TEST_SPLIT * (split - 1) + 1, GROUPS_PER_TEST_SPLIT * split + 1)


def split_files(classes: Iterable[str], clips_per_group: int) -> dict[str, str]:
    """Contents of classInd.txt, trainlist0k.txt, testlist0k.txt in the official format (CRLF)."""
    classes = list(classes)
    files = {"classInd.txt": "".join(f"{i + 1} {name}\r\n" for i, name in enumerate(classes))}
    for split in range(1, NUM_SPLITS + 1):
        train, test = [], []
        for label, name in enumerate(classes, start=1):
            for group in range(1, NUM_GROUPS + 1):
                for clip in range(1, clips_per_group + 1):
                    rel = video_relpath(name, group, clip)
                    if group in groups_tested_in_split(split):
                        test.append(f"{rel}\r\n")
                    else:
                        train.append(f"{rel} {label}\r\n")
        files[f"trainlist{split:02d}.txt"] = "".join(train)
        files[f"testlist{split:02d}.txt"] = "".join(test)
    return files


def write_splits_zip(path: Path, root: str, files: dict[str, str]) -> None:
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(zipfile.ZipInfo(f"{root}/", ZIP_DATE_TIME), b"")
            for name, text in files.items():
                info = zipfile.ZipInfo(f"{root}/{name}", ZIP_DATE_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, text.encode("ascii"))


def _rar_of(top: str, folders: Sequence[str], files: dict[str, bytes]):
    """A stored (uncompressed) RAR5 builder with ``top/`` (if any), the folders and the files."""
    import rars  # only the generator needs it

    # Stored: AVI payloads hardly compress and rars' compressor costs ~2 s/MB here.
    builder = rars.RarBuilder(store=True)
    if top:
        builder.add_directory(top, mtime=ARCHIVE_MTIME)
    for folder in folders:
        builder.add_directory(folder, mtime=ARCHIVE_MTIME)
    for name, data in files.items():
        builder.add_bytes(data, name, mtime=ARCHIVE_MTIME)
    return builder


def _write_rar(path: Path, builder) -> None:
    with atomic_path(path) as tmp:
        builder.write(str(tmp))


def package_ucf101(out: Path, staging: Path, classes: Sequence[str], videos: Sequence[str],
                   clips_per_group: int) -> dict[str, Path]:
    files = {f"{UCF_ARCHIVE_ROOT}/{rel}": (staging / rel).read_bytes() for rel in videos}
    _write_rar(out / UCF_RAR_NAME, _rar_of(UCF_ARCHIVE_ROOT, [f"{UCF_ARCHIVE_ROOT}/{c}" for c in classes], files))
    write_splits_zip(out / UCF_SPLITS_ZIP_NAME, UCF_SPLITS_ROOT, split_files(classes, clips_per_group))
    return {"videos": out / UCF_RAR_NAME, "splits": out / UCF_SPLITS_ZIP_NAME}


# ---------------------------------------------------------------- HMDB-51


def hmdb_class(class_name: str) -> str:
    """HMDB-51 spells classes in lower case with underscores: ``MoveDown`` -> ``move_down``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", class_name).lower()


def hmdb_film(group: int) -> str:
    return HMDB_SPECIAL_FILM if group == SPECIAL_GROUP else f"Demo_film_{group:02d}"


def hmdb_relpath(class_name: str, group: int, clip: int) -> str:
    name = hmdb_class(class_name)
    return f"{name}/{hmdb_film(group)}_{name}_{HMDB_TAGS}_{clip - 1}.avi"


def hmdb_code(group: int, split: int) -> str:
    """1 train, 2 test, 0 unused: split k tests groups 7(k-1)+1 .. 7k and leaves group 21 + k out."""
    if group in groups_tested_in_split(split):
        return "2"
    return "0" if group == NUM_GROUPS - NUM_SPLITS - 1 + split else "1"


def hmdb_split_files(classes: Sequence[str], clips_per_group: int) -> dict[str, str]:
    """``<class>_test_split<k>.txt``: ``<video> <code> `` per line (trailing space, as the official files)."""
    files = {}
    for class_name in classes:
        for split in range(1, NUM_SPLITS + 1):
            lines = [
                f"{hmdb_relpath(class_name, group, clip).split('/', 1)[1]} {hmdb_code(group, split)} \n"
                for group in range(1, NUM_GROUPS + 1)
                for clip in range(1, clips_per_group + 1)
            ]
            files[f"{hmdb_class(class_name)}_test_split{split}.txt"] = "".join(lines)
    return files


def package_hmdb51(out: Path, staging: Path, classes: Sequence[str], videos: Sequence[str],
                   clips_per_group: int) -> dict[str, Path]:
    inner = {}
    for class_name in map(hmdb_class, classes):
        files = {rel: (staging / rel).read_bytes() for rel in videos if rel.split("/")[0] == class_name}
        inner[f"{class_name}.rar"] = _rar_of(class_name, [], files).to_bytes()
    _write_rar(out / HMDB_RAR_NAME, _rar_of("", [], inner))
    split_texts = {f"{HMDB_SPLITS_ROOT}/{name}": text.encode("utf-8")
                   for name, text in hmdb_split_files(classes, clips_per_group).items()}
    _write_rar(out / HMDB_SPLITS_RAR_NAME, _rar_of(HMDB_SPLITS_ROOT, [], split_texts))
    return {"videos": out / HMDB_RAR_NAME, "splits": out / HMDB_SPLITS_RAR_NAME}


# ---------------------------------------------------------------- your own folder


def folder_relpath(class_name: str, group: int, clip: int) -> str:
    rel = video_relpath(class_name, group, clip)
    if group != SPECIAL_GROUP:
        return rel
    return rel[: -len(".avi")] + FOLDER_SPECIAL_SUFFIX.format(clip=clip) + ".avi"


def package_folder(out: Path, staging: Path, classes: Sequence[str], videos: Sequence[str],
                   clips_per_group: int) -> dict[str, Path]:
    """The rendered tree itself, moved into ``out/videos`` (one rename per class folder)."""
    with atomic_path(out / FOLDER_ROOT) as tmp:
        tmp.mkdir()
        for class_name in classes:
            os.replace(staging / class_name, tmp / class_name)
    return {"videos": out / FOLDER_ROOT}




# ---------------------------------------------------------------- Kinetics-400

# The demo classes as Kinetics-400 classes (classids.json names with spaces, parentheses, an apostrophe).
KINETICS_CLASSES = {
    "Grow": "balloon blowing",
    "MoveDown": "passing American football (in game)",
    "MoveUp": "massaging person's head",
    "Shrink": "folding paper",
    "StandStill": "tying knot (not on a tie)",
}
KINETICS_ROOT = "kinetics400"
KINETICS_CLIP_SECONDS = 10
# One listed video per class and split that the copy lacks (a real copy lacks about 5%).
KINETICS_MISSING_GROUP = 0


def kinetics_split(group: int) -> str:
    """The demo's split 1 as Kinetics' splits: its test groups are the val split."""
    return "val" if group in groups_tested_in_split(1) else "train"


def _kinetics_id(class_name: str, group: int, clip: int) -> str:
    """A YouTube-style id: 11 characters of [A-Za-z0-9_-]. Val videos take the original's
    vallist.txt ids of their class (so ``dataset.test_list: original`` finds them), others a digest."""
    from nlflow.lists.kinetics_facts import kinetics400_classes, original_val_list

    if kinetics_split(group) == "val" or group == KINETICS_MISSING_GROUP:
        label = kinetics400_classes().index(KINETICS_CLASSES[class_name])
        ids = [youtube_id for youtube_id, listed in original_val_list() if listed == label]
        index = -1 if group == KINETICS_MISSING_GROUP else (clip - 1) * GROUPS_PER_TEST_SPLIT + group - 1
        if index < len(ids) - 1:
            return ids[index]
    digest = hashlib.sha256(f"{class_name}/{group}/{clip}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:11]


def _kinetics_segment(group: int, clip: int) -> tuple[int, int]:
    start = KINETICS_CLIP_SECONDS * ((3 * group + clip) % 30)
    return start, start + KINETICS_CLIP_SECONDS


def _kinetics_file(class_name: str, group: int, clip: int) -> str:
    start, end = _kinetics_segment(group, clip)
    return f"{_kinetics_id(class_name, group, clip)}_{start:06d}_{end:06d}.mp4"


def kinetics_cvdf_relpath(class_name: str, group: int, clip: int) -> str:
    """The CVDF mirror: flat split folders, the class only in the annotations."""
    return f"{kinetics_split(group)}/{_kinetics_file(class_name, group, clip)}"


def kinetics_folders_relpath(class_name: str, group: int, clip: int) -> str:
    """The official crawler's layout: one folder per class, named with spaces."""
    return f"{kinetics_split(group)}/{KINETICS_CLASSES[class_name]}/{_kinetics_file(class_name, group, clip)}"


def kinetics_annotations(classes: Sequence[str], clips_per_group: int) -> dict[str, str]:
    """``train.csv`` and ``val.csv`` as the CVDF mirror writes them: every rendered video, and one
    more per class and split that the copy lacks."""
    rows: dict[str, list[list]] = {"train": [], "val": []}
    missing = {"train": NUM_GROUPS + 1, "val": KINETICS_MISSING_GROUP}  # groups that render nothing
    for class_name in classes:
        listed = [(group, clip) for group in range(1, NUM_GROUPS + 1) for clip in range(1, clips_per_group + 1)]
        for group, clip in listed + [(group, 1) for group in missing.values()]:
            split = kinetics_split(group) if group != KINETICS_MISSING_GROUP else "val"
            start, end = _kinetics_segment(group, clip)
            rows[split].append([KINETICS_CLASSES[class_name], _kinetics_id(class_name, group, clip), start, end, split, 0])
    texts = {}
    for split, table in rows.items():
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["label", "youtube_id", "time_start", "time_end", "split", "is_cc"])
        writer.writerows(table)
        texts[f"{split}.csv"] = buffer.getvalue()
    return texts


def package_kinetics(out: Path, staging: Path, classes: Sequence[str], videos: Sequence[str],
                     clips_per_group: int) -> dict[str, Path]:
    """The rendered split folders moved into ``out/kinetics400``, with ``annotations/*.csv``."""
    with atomic_path(out / KINETICS_ROOT) as tmp:
        tmp.mkdir()
        for split in ("train", "val"):
            os.replace(staging / split, tmp / split)
        (tmp / "annotations").mkdir()
        for name, text in kinetics_annotations(classes, clips_per_group).items():
            (tmp / "annotations" / name).write_text(text, encoding="utf-8")
    return {"videos": out / KINETICS_ROOT}


RELPATH = {"ucf101": video_relpath, "hmdb51": hmdb_relpath, "folder": folder_relpath,
           "kinetics_cvdf": kinetics_cvdf_relpath, "kinetics_folders": kinetics_folders_relpath}
PACKAGE = {"ucf101": package_ucf101, "hmdb51": package_hmdb51, "folder": package_folder,
           "kinetics_cvdf": package_kinetics, "kinetics_folders": package_kinetics}


def layout_class_name(layout: str, class_name: str) -> str:
    """How ``layout`` spells a demo class."""
    if layout.startswith("kinetics"):
        return KINETICS_CLASSES[class_name]
    return RELPATH[layout](class_name, 1, 1).split("/")[0]
