"""Kinetics-400 copies -> lists: the facts shipped from the original, both layouts, the labels of
classids.json, missing videos, `test_list: original`, and every error a copy can cause.

Expected values are the original's (process_data/kinetics/classids.json and vallist.txt at commit
c253ed5), written out by hand where a test names one."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from nlflow.demo.kinetics_copy import MISSING_EVERY, write_cvdf_copy
from nlflow.errors import ConfigError, NlflowError
from nlflow.lists.datasets import dataset_spec, make_dataset_lists
from nlflow.lists.kinetics import (
    CLASS_FOLDERS,
    CVDF,
    KineticsError,
    copy_inventory,
    find_layout,
    kinetics_lists,
    youtube_id_of,
)
from nlflow.lists.kinetics_facts import ORIGINAL_VAL_COUNT, kinetics400_classes, original_val_list
from nlflow.lists.listfiles import list_paths, write_lists
from nlflow.lists.split_files import MalformedLineError, UnknownClassError

HEADER = "label,youtube_id,time_start,time_end,split,is_cc\n"
# (name, classids.json id), read off the original's classids.json
KNOWN_IDS = [("abseiling", 0), ("air drumming", 1), ("massaging person's head", 196),
             ("passing American football (in game)", 208), ("passing American football (not in game)", 209),
             ("zumba", 399)]


# ---------------------------------------------------------------- the shipped facts


def test_classids_json_is_shipped_in_label_order():
    names = kinetics400_classes()
    assert len(names) == 400 and len(set(names)) == 400
    for name, label in KNOWN_IDS:
        assert names[label] == name
    assert list(names) == sorted(names)  # classids.json numbers the names alphabetically


def test_the_original_val_list_is_shipped_with_its_labels():
    videos = original_val_list()
    assert len(videos) == ORIGINAL_VAL_COUNT == 19761
    assert videos[0] == ("0wR5jVB-WPk", 0)  # vallist.txt line 1: .../val_256/abseiling/0wR5jVB-WPk.mp4 0
    assert videos[4] == ("6_4kjPiQr7w", 0)  # line 5: ...abseiling/6_4kjPiQr7w.mkv 0
    assert len({youtube_id for youtube_id, _ in videos}) == 19761
    assert all(len(youtube_id) == 11 for youtube_id, _ in videos)
    per_class = [0] * 400
    for _, label in videos:
        per_class[label] += 1
    assert min(per_class) == 45 and max(per_class) == 50


@pytest.mark.parametrize("name, expected", [
    ("0wR5jVB-WPk.mp4", "0wR5jVB-WPk"),
    ("9EnSwbXxu5g.mp4.webm", "9EnSwbXxu5g"),  # the original's copy has double suffixes
    ("--_Bh6Oq2KQ_000012_000022.mp4", "--_Bh6Oq2KQ"),  # ids may start with - and hold _
    ("my clip.mp4", "my clip"),  # not a YouTube name: the file is its own id
])
def test_youtube_ids_from_file_names(name, expected):
    assert youtube_id_of(name) == expected


# ---------------------------------------------------------------- copies made by hand


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not decoded by list making")
    return path


def cvdf_copy(root: Path, train_rows: list[str], val_rows: list[str], present: set[str]) -> Path:
    """annotations/*.csv with the given rows; flat train/ and val/ holding the ``present`` stems."""
    (root / "annotations").mkdir(parents=True)
    for split, rows in (("train", train_rows), ("val", val_rows)):
        (root / "annotations" / f"{split}.csv").write_text(HEADER + "".join(f"{row}\n" for row in rows))
        (root / split).mkdir()
        for row in rows:
            label, youtube_id, start, end = next(csv.reader([row]))[:4]
            stem = f"{youtube_id}_{int(start):06d}_{int(end):06d}"
            if stem in present:
                touch(root / split / f"{stem}.mp4")
    return root


TRAIN_ROWS = ['abseiling,aaaaaaaaaaa,10,20,train,0', 'zumba,bbbbbbbbbbb,0,10,train,0',
              '"passing American football (in game)",c-c_cccccc,5,15,train,0', "massaging person's head,ddddddddddd,3,13,train,1"]
VAL_ROWS = ['abseiling,0wR5jVB-WPk,1,11,val,0', 'zumba,eeeeeeeeeee,2,12,val,0', 'zumba,fffffffffff,4,14,val,0']
PRESENT = {"aaaaaaaaaaa_000010_000020", "bbbbbbbbbbb_000000_000010", "c-c_cccccc_000005_000015",
           "0wR5jVB-WPk_000001_000011", "eeeeeeeeeee_000002_000012"}


def test_cvdf_layout_lists_by_annotation_and_names_missing_videos(tmp_path, caplog):
    root = cvdf_copy(tmp_path / "k400", TRAIN_ROWS, VAL_ROWS, PRESENT)
    caplog.set_level("INFO")
    lists = kinetics_lists(root)
    assert "the CVDF mirror's layout" in caplog.text
    assert lists.about["layout"] == CVDF and lists.classes == list(kinetics400_classes())
    assert [(v.path, v.label) for v in lists.train] == [
        ("train/aaaaaaaaaaa_000010_000020.mp4", 0), ("train/bbbbbbbbbbb_000000_000010.mp4", 399),
        ("train/c-c_cccccc_000005_000015.mp4", 208)]
    # the missing val video stays in the test list (counted wrong downstream), the train one does not
    assert [(v.path, v.label) for v in lists.test] == [
        ("val/0wR5jVB-WPk_000001_000011.mp4", 0), ("val/eeeeeeeeeee_000002_000012.mp4", 399),
        ("val/fffffffffff_000004_000014.mp4", 399)]
    assert [(m.split, m.youtube_id, m.label) for m in lists.missing] == [
        ("train", "ddddddddddd", 196), ("val", "fffffffffff", 399)]
    assert lists.missing[0].listed_in == f"{root / 'annotations' / 'train.csv'}:5"
    summary = lists.summary()
    assert summary["num_missing"] == 2 and summary["missing_by_split"] == {"train": 1, "val": 1}


def test_missing_csv_names_them_by_id(tmp_path):
    root = cvdf_copy(tmp_path / "k400", TRAIN_ROWS, VAL_ROWS, PRESENT)
    out = list_paths(tmp_path / "lists")
    write_lists(out, make_dataset_lists({"name": "kinetics400", "root": str(root), "num_classes": 400}, root, None))
    with open(out["missing"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["split"], r["youtube_id"], r["class"], r["path"]) for r in rows] == [
        ("train", "ddddddddddd", "massaging person's head", "train/ddddddddddd_000003_000013.mp4"),
        ("val", "fffffffffff", "zumba", "val/fffffffffff_000004_000014.mp4")]
    assert (tmp_path / "lists" / "classes.txt").read_text().splitlines()[208] == "passing American football (in game)"
    assert json.loads(out["summary"].read_text())["validation"] == "test"


@pytest.mark.parametrize("train_dir, val_dir, class_dir", [
    ("train", "val", "passing American football (in game)"),  # the official crawler: spaces
    ("train_256", "val_256", "passing_American_football_(in_game)"),  # the original's copy: underscores
])
def test_class_folders_with_spaces_or_underscores(tmp_path, train_dir, val_dir, class_dir, caplog):
    root = tmp_path / "k400"
    touch(root / train_dir / class_dir / "aaaaaaaaaaa_000010_000020.mp4")
    touch(root / train_dir / "zumba" / "bbbbbbbbbbb.mkv")
    touch(root / val_dir / class_dir / "0wR5jVB-WPk.mp4.webm")
    touch(root / val_dir / "zumba" / "notes.txt")  # not a video
    caplog.set_level("INFO")
    lists = kinetics_lists(root)
    assert "class folders" in caplog.text and "missing videos not known" in caplog.text
    assert lists.about["layout"] == CLASS_FOLDERS and not lists.missing
    assert [(v.path, v.label, v.group) for v in lists.train] == [
        (f"{train_dir}/{class_dir}/aaaaaaaaaaa_000010_000020.mp4", 208, "aaaaaaaaaaa"),
        (f"{train_dir}/zumba/bbbbbbbbbbb.mkv", 399, "bbbbbbbbbbb")]
    assert [(v.path, v.label) for v in lists.test] == [(f"{val_dir}/{class_dir}/0wR5jVB-WPk.mp4.webm", 208)]


def test_class_folders_find_missing_videos_against_annotations(tmp_path):
    root = tmp_path / "k400"
    touch(root / "train" / "zumba" / "bbbbbbbbbbb_000000_000010.mp4")
    touch(root / "val" / "abseiling" / "0wR5jVB-WPk_000001_000011.mp4")
    (root / "annotations").mkdir()
    (root / "annotations" / "val.csv").write_text(HEADER + "abseiling,0wR5jVB-WPk,1,11,val,0\nzumba,zzzzzzzzzzz,0,10,val,0\n")
    lists = kinetics_lists(root)
    assert [(m.split, m.youtube_id, m.path) for m in lists.missing] == [
        ("val", "zzzzzzzzzzz", "val/zumba/zzzzzzzzzzz_000000_000010.mp4")]
    assert [v.path for v in lists.test] == ["val/abseiling/0wR5jVB-WPk_000001_000011.mp4",
                                            "val/zumba/zzzzzzzzzzz_000000_000010.mp4"]


def test_test_list_original_is_the_original_vallist_with_its_labels(tmp_path):
    root = tmp_path / "k400"
    first, fifth = original_val_list()[0][0], original_val_list()[4][0]
    touch(root / "val" / "abseiling" / f"{first}_000001_000011.mp4")
    touch(root / "val" / "zumba" / f"{fifth}.mkv")  # filed under another class than the original's
    touch(root / "val" / "zumba" / "eeeeeeeeeee.mp4")  # not in the original's list
    lists = kinetics_lists(root, test_list="original")
    assert len(lists.test) == 19761 and len(lists.missing) == 19759
    assert lists.test[0].path == f"val/abseiling/{first}_000001_000011.mp4"
    assert (lists.test[4].path, lists.test[4].label) == (f"val/zumba/{fifth}.mkv", 0)  # the original's label
    assert "eeeeeeeeeee" not in {video.group for video in lists.test}
    assert lists.missing[0].listed_in == "vallist.txt:2"
    assert lists.about["test"] == "the original's vallist.txt (19,761 videos)"


def test_own_label_set_for_a_kinetics_format_copy_of_another_dataset(tmp_path):
    root = tmp_path / "k"
    touch(root / "train" / "jump" / "a.mp4")
    touch(root / "val" / "run" / "b.mp4")
    lists = kinetics_lists(root, classes=["run", "jump"])
    assert lists.classes == ["run", "jump"] and lists.about["labels"] == "dataset.classes"
    assert [(v.path, v.label) for v in lists.train + lists.test] == [("train/jump/a.mp4", 1), ("val/run/b.mp4", 0)]
    with pytest.raises(UnknownClassError, match=r"class 'run' is not one of the 1 classes of dataset.classes"):
        kinetics_lists(root, classes=["jump"])
    with pytest.raises(KineticsError, match="cannot go with dataset.classes"):
        kinetics_lists(root, classes=["run", "jump"], test_list="original")


# ---------------------------------------------------------------- bad input


def test_a_row_that_does_not_parse_names_file_and_line(tmp_path):
    root = cvdf_copy(tmp_path / "k400", TRAIN_ROWS, VAL_ROWS, PRESENT)
    path = root / "annotations" / "train.csv"
    path.write_text(path.read_text() + "zumba,ggggggggggg,3\n")
    with pytest.raises(MalformedLineError, match=rf"{path}:6: 3 fields, the header has 6"):
        kinetics_lists(root)
    path.write_text(HEADER + "zumba,ggggggggggg,three,13,train,0\n")
    with pytest.raises(MalformedLineError, match=rf"{path}:2: time_start 'three' is not a number of seconds"):
        kinetics_lists(root)
    path.write_text("name,id\nzumba,ggggggggggg\n")
    with pytest.raises(MalformedLineError, match=rf"{path}:1: the header lacks label, youtube_id, time_start"):
        kinetics_lists(root)


def test_a_label_not_in_classids_json_is_named(tmp_path):
    root = cvdf_copy(tmp_path / "k400", ["dancing robot,aaaaaaaaaaa,1,11,train,0"], VAL_ROWS, PRESENT)
    with pytest.raises(UnknownClassError, match=r"train.csv:2: class 'dancing robot' is not one of the 400 classes of "
                                                r"classids.json \(a Kinetics-format copy of another dataset: list its "
                                                r"classes in dataset.classes\)"):
        kinetics_lists(root)
    folders = tmp_path / "folders"
    touch(folders / "val" / "Abseiling" / "x.mp4")  # names are matched exactly (or with underscores)
    with pytest.raises(UnknownClassError, match=r"val/Abseiling \(a class folder\): class 'Abseiling'"):
        kinetics_lists(folders)


def test_an_empty_or_absent_root(tmp_path):
    with pytest.raises(KineticsError, match=r"dataset.root .*nowhere does not exist"):
        find_layout(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(KineticsError, match=r"is empty: looked for the CVDF mirror's layout \(annotations/train.csv"):
        find_layout(tmp_path / "empty")


def test_a_layout_that_matches_neither_says_what_was_looked_for(tmp_path):
    touch(tmp_path / "k" / "videos" / "abseiling" / "x.mp4")
    with pytest.raises(KineticsError, match=r"has no val/ folder \(the test list\): looked for the CVDF mirror's layout "
                                            r".* or class folders \(train/<class>/<video> and val/<class>/<video>"):
        find_layout(tmp_path / "k")
    touch(tmp_path / "flat" / "val" / "aaaaaaaaaaa_000001_000011.mp4")
    with pytest.raises(KineticsError, match=r"flat val/ without annotations/val.csv"):
        find_layout(tmp_path / "flat")
    touch(tmp_path / "mixed" / "val" / "aaaaaaaaaaa_000001_000011.mp4")
    touch(tmp_path / "mixed" / "train" / "zumba" / "b.mp4")
    (tmp_path / "mixed" / "annotations").mkdir()
    with pytest.raises(KineticsError, match=r"must have the same layout"):
        find_layout(tmp_path / "mixed")
    touch(tmp_path / "both" / "val" / "zumba" / "b.mp4")
    touch(tmp_path / "both" / "val_256" / "zumba" / "b.mp4")
    with pytest.raises(KineticsError, match=r"holds both val/ and val_256/"):
        find_layout(tmp_path / "both")


# ---------------------------------------------------------------- the workflow's start-up view


def test_dataset_spec_for_kinetics(tmp_path):
    root = cvdf_copy(tmp_path / "k400", TRAIN_ROWS, VAL_ROWS, PRESENT)
    spec = dataset_spec({"name": "kinetics400", "root": str(root)})
    assert spec.num_classes == 400 and spec.kind.archives == ()
    assert spec.video_folders() == {"train": "train", "val": "val"}
    settings = spec.lists_settings()
    assert settings["inventory"] == copy_inventory(root)
    classes = tmp_path / "classes.txt"
    classes.write_text("run\njump\n\n")
    assert dataset_spec({"name": "kinetics400", "root": str(root), "classes": str(classes)}).num_classes == 2
    with pytest.raises(ConfigError, match="dataset.num_classes is 3 but dataset.classes names 2 classes"):
        dataset_spec({"name": "kinetics400", "root": str(root), "classes": ["run", "jump"], "num_classes": 3})
    with pytest.raises(ConfigError, match="dataset.root is required for dataset.name kinetics400"):
        dataset_spec({"name": "kinetics400"})
    with pytest.raises(ConfigError, match="dataset.test_list is only used with dataset.name kinetics400"):
        dataset_spec({"name": "folder", "root": str(root), "test_list": "original"})
    with pytest.raises(NlflowError, match="is empty"):
        (tmp_path / "empty").mkdir()
        dataset_spec({"name": "kinetics400", "root": str(tmp_path / "empty")})


def test_the_inventory_changes_when_a_video_is_added(tmp_path):
    root = tmp_path / "k"
    touch(root / "val" / "zumba" / "a.mp4")
    before = copy_inventory(root)
    touch(root / "val" / "zumba" / "b.mp4")
    assert copy_inventory(root) != before


# ---------------------------------------------------------------- memory at full size

MEMORY_PROBE = """
import resource, sys
from nlflow.lists.kinetics import kinetics_lists
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
lists = kinetics_lists(sys.argv[1])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(len(lists.train), len(lists.missing), (after - before) * 1024)
"""


def test_a_246k_row_annotation_file_is_read_in_bounded_memory(tmp_path):
    """Kinetics-400's train.csv has 246,535 rows: list making holds one small record per listed
    video, never the file's text or several copies of the table (measured: 0.53 KB a row)."""
    root = tmp_path / "k400"
    rows, names = 246_535, kinetics400_classes()
    (root / "annotations").mkdir(parents=True)
    with open(root / "annotations" / "train.csv", "w") as handle:
        handle.write(HEADER)
        handle.writelines(f"{names[i % 400]},{i:011d},{i % 290},{i % 290 + 10},train,0\n" for i in range(rows))
    (root / "annotations" / "val.csv").write_text(HEADER + "zumba,eeeeeeeeeee,2,12,val,0\n")
    touch(root / "val" / "eeeeeeeeeee_000002_000012.mp4")
    for i in range(0, rows, 20):  # 5% on disk: the others are missing, the most records per row
        touch(root / "train" / f"{i:011d}_{i % 290:06d}_{i % 290 + 10:06d}.mp4")
    probe = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(root)], capture_output=True, text=True, check=True)
    train, missing, grown = map(int, probe.stdout.split())
    assert (train, missing) == (rows // 20 + 1, rows - rows // 20 - 1)
    assert grown < 1536 * rows, f"{grown / rows:.0f} bytes a row"


def test_list_making_memory_grows_by_a_bounded_amount_per_annotated_video(tmp_path):
    """A 246k-row train.csv must not need more than a few hundred MB: measured 2026-12-03 at about
    0.7 KB per row (benchmarks/bench_kinetics_lists.py); bounded here at 4 KB (tracemalloc)."""
    peaks = {}
    for rows in (500, 4000):
        root = tmp_path / str(rows)
        write_cvdf_copy(root, rows, val_rows=100)
        tracemalloc.start()
        lists = kinetics_lists(root)
        peaks[rows] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert len(lists.train) == rows - rows // MISSING_EVERY
        assert len(lists.missing) == rows // MISSING_EVERY + 100 // MISSING_EVERY
    assert (peaks[4000] - peaks[500]) / 3500 < 4096
