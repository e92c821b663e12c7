"""The demo dataset in HMDB-51's and in a plain folder's layout, read back by those kinds' list makers."""

from __future__ import annotations

import json

import pytest
import rars

from nlflow.cli import build_parser
from nlflow.demo import dataset as demo
from nlflow.demo.layouts import hmdb_class, hmdb_code, hmdb_split_files
from nlflow.lists.folder import folder_lists
from nlflow.lists.hmdb51 import hmdb51_lists
from nlflow.workflow import stages

NUM_FRAMES = 20  # decodable, and small enough to stay fast
HMDB_CLASSES = ["grow", "move_down", "move_up", "shrink", "stand_still"]


@pytest.fixture(scope="module")
def hmdb_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("hmdb_demo")
    summary = demo.generate_demo(out, num_frames=NUM_FRAMES, clips_per_group=1, n_jobs=2, layout="hmdb51")
    work = tmp_path_factory.mktemp("hmdb_extracted")
    stages.extract(summary.videos_path, str(work / "videos"), nested=True)
    stages.extract(summary.splits_path, str(work / "splits"))
    return out, summary, work


@pytest.fixture(scope="module")
def folder_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("folder_demo")
    return out, demo.generate_demo(out, num_frames=NUM_FRAMES, clips_per_group=1, n_jobs=2, layout="folder")


def test_hmdb_layout_is_an_archive_of_class_archives(hmdb_demo):
    out, summary, _ = hmdb_demo
    assert sorted(p.name for p in out.iterdir()) == ["demo_manifest.json", "hmdb51_org.rar", "test_train_splits.rar"]
    assert summary.classes == HMDB_CLASSES and summary.layout == "hmdb51"
    assert rars.RarFile(summary.videos_path).namelist() == [f"{name}.rar" for name in HMDB_CLASSES]
    splits = rars.RarFile(summary.splits_path)
    text = splits.read("testTrainMulti_7030_splits/grow_test_split1.txt").decode()
    assert text.splitlines()[0] == "Demo_film_01_grow_u_nm_np1_fr_goo_0.avi 2 "  # trailing space, as published
    manifest = json.loads((out / "demo_manifest.json").read_text())
    assert manifest["layout"] == "hmdb51" and manifest["dataset_files"] == {
        "videos": "hmdb51_org.rar", "splits": "test_train_splits.rar"}
    assert manifest["corrupt"] == ["shrink/Demo_film_25_shrink_u_nm_np1_fr_goo_0.avi"]


@pytest.mark.parametrize("split", [1, 2, 3])
def test_hmdb_layout_lists_for_every_split(hmdb_demo, split):
    _, summary, work = hmdb_demo
    lists = hmdb51_lists(work / "splits", split, work / "videos", 5)
    assert lists.classes == HMDB_CLASSES
    # 25 groups: 7 tested, 1 unused (code 0), 17 trained on
    assert (len(lists.train), len(lists.test)) == (5 * 17, 5 * 7)
    special = "grow/#02_Tom_&_Jerry's_(Best_of!),_Vol;1_grow_u_nm_np1_fr_goo_0.avi"
    assert (work / "videos" / special).is_file()
    assert special in {v.path for v in (lists.test if split == 1 else lists.train)}
    assert summary.corrupt_videos[0] in {v.path for v in lists.train}  # group 25 trains in every split
    unused_group = 21 + split
    assert not [v for v in lists.train + lists.test if f"_film_{unused_group:02d}_" in v.path]


def test_hmdb_codes_and_names():
    assert hmdb_class("StandStill") == "stand_still" and hmdb_class("Grow") == "grow"
    assert [hmdb_code(g, 1) for g in (1, 7, 8, 21, 22, 23, 25)] == ["2", "2", "1", "1", "0", "1", "1"]
    files = hmdb_split_files(demo.DEMO_CLASSES, 2)
    assert len(files) == 5 * 3 and all(len(text.splitlines()) == 50 for text in files.values())


def test_folder_layout_is_a_plain_tree_with_special_names(folder_demo):
    out, summary = folder_demo
    root = out / "videos"
    assert sorted(p.name for p in out.iterdir()) == ["demo_manifest.json", "videos"]
    assert summary.videos_path == str(root) and summary.splits_path is None
    assert sorted(p.name for p in root.iterdir()) == list(demo.DEMO_CLASSES)
    assert (root / "MoveUp" / "v_MoveUp_g02_c01 (take #1, Tom & Jerry's; best!).avi").is_file()
    assert len(list(root.rglob("*.avi"))) == 125
    lists = folder_lists(root, test_fraction=0.3, seed=0, group_pattern=r"_g(\d+)_")
    assert len(lists.test) == 35 and not {v.group for v in lists.train} & {v.group for v in lists.test}


def test_cli_format_option():
    args = build_parser().parse_args(["demo", "out", "--format", "hmdb51"])
    assert args.format == "hmdb51"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "out", "--format", "kinetics"])
    with pytest.raises(demo.DemoError, match="unknown demo format"):
        demo.generate_demo("unused", layout="kinetics")


@pytest.mark.parametrize("layout", ["kinetics_cvdf", "kinetics_folders"])
def test_kinetics_layouts_are_read_back_with_classids_labels(tmp_path, layout):
    from nlflow.lists.kinetics import kinetics_lists
    from nlflow.lists.kinetics_facts import kinetics400_classes, original_val_list

    summary = demo.generate_demo(tmp_path, num_frames=NUM_FRAMES, clips_per_group=1, n_jobs=2, layout=layout)
    root = tmp_path / "kinetics400"
    assert summary.videos_path == str(root) and summary.splits_path is None
    assert sorted(p.name for p in root.iterdir()) == ["annotations", "train", "val"]
    lists = kinetics_lists(root)
    assert lists.about["layout"] == {"kinetics_cvdf": "cvdf", "kinetics_folders": "class_folders"}[layout]
    names = kinetics400_classes()
    labels = sorted({video.label for video in lists.train})
    assert [names[label] for label in labels] == sorted(summary.classes, key=names.index)
    # 25 groups x 5 classes: 7 test groups form val; one listed video per class and split is not on disk
    assert (len(lists.train), len(lists.test), len(lists.missing)) == (90, 40, 10)
    assert all(video.path.endswith(".mp4") for video in lists.train + lists.test)
    original = set(original_val_list())
    assert all((video.group, video.label) in original for video in lists.test)  # val ids are the original's
    assert summary.corrupt_videos[0].startswith("train/")
