"""`folder` datasets: a `<class>/<video>` tree -> lists, by a seeded grouped split or the user's list files."""

from __future__ import annotations

from pathlib import Path

import pytest

from nlflow.lists.folder import FolderDatasetError, folder_inventory, folder_lists
from nlflow.lists.split_files import (
    DuplicateEntryError,
    LabelError,
    MalformedLineError,
    MissingVideosError,
    SplitFileError,
    SplitOverlapError,
    UnknownClassError,
)
from nlflow.errors import NlflowError

CLASSES = ["Clap", "Jump", "Wave & Smile"]  # sorted by name: labels 0, 1, 2
GROUPS = 10
CLIPS = 3


def make_tree(root: Path, classes=CLASSES, groups=GROUPS, clips=CLIPS) -> Path:
    """`<class>/rec<GG>_clip<C>.mp4`; recording GG exists in every class (one recording, many actions)."""
    for name in classes:
        for group in range(1, groups + 1):
            for clip in range(1, clips + 1):
                path = root / name / f"rec{group:02d}_clip{clip}.mp4"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"not decoded here")
    return root


def paths(videos) -> list[str]:
    return [video.path for video in videos]


def test_labels_are_sorted_class_folders_and_every_video_is_listed_once(tmp_path):
    root = make_tree(tmp_path / "data")
    (root / "notes.txt").write_text("ignored: not a video")
    (root / ".hidden").mkdir()
    (root / "Clap" / ".DS_Store").write_bytes(b"")
    lists = folder_lists(root, test_fraction=0.3, seed=0)
    assert lists.classes == CLASSES
    assert lists.val is None  # attach_validation decides later
    everything = lists.train + lists.test
    assert sorted(paths(everything)) == sorted(
        f"{c}/rec{g:02d}_clip{k}.mp4" for c in CLASSES for g in range(1, GROUPS + 1) for k in range(1, CLIPS + 1)
    )
    assert all(CLASSES[video.label] == video.path.split("/")[0] for video in everything)
    # stratified: 30 % of the 30 videos of every class
    for label in range(3):
        assert sum(video.label == label for video in lists.test) == 9
    assert lists.about["test"] == "held out of the folder"


def test_same_seed_same_lists_other_seed_other_lists(tmp_path):
    root = make_tree(tmp_path / "data")
    first = folder_lists(root, test_fraction=0.3, seed=7, group_pattern=r"(rec\d+)_")
    again = folder_lists(root, test_fraction=0.3, seed=7, group_pattern=r"(rec\d+)_")
    other = folder_lists(root, test_fraction=0.3, seed=8, group_pattern=r"(rec\d+)_")
    assert (paths(first.train), paths(first.test)) == (paths(again.train), paths(again.test))
    assert paths(first.test) != paths(other.test)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_groups_stay_together_across_classes(tmp_path, seed):
    root = make_tree(tmp_path / "data")
    lists = folder_lists(root, test_fraction=0.3, seed=seed, group_pattern=r"(rec\d+)_")
    train_groups = {video.group for video in lists.train}
    test_groups = {video.group for video in lists.test}
    assert not train_groups & test_groups
    assert len(test_groups) == 3  # 3 of 10 recordings, each with every class
    assert all(sum(v.label == label for v in lists.test) == 9 for label in range(3))


def test_uneven_groups_still_stratify_and_never_empty_a_class(tmp_path):
    root = tmp_path / "data"
    sizes = {"A": [5, 1, 1, 1, 1, 1], "B": [2, 2, 2, 2], "C": [1, 1]}  # videos per group
    for name, groups in sizes.items():
        for group, count in enumerate(groups):
            for clip in range(count):
                path = root / name / f"{name}_g{group}_c{clip}.avi"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"x")
    for seed in range(5):
        # groups per class here: the pattern's group holds the class folder
        lists = folder_lists(root, test_fraction=0.5, seed=seed, group_pattern=r"^([^/]+/[^_]+_g\d+)_")
        held = {name: sum(v.label == label for v in lists.test) for label, name in enumerate(sizes)}
        assert held["B"] == 4 and held["C"] == 1 and abs(held["A"] - 5) <= 1, held
        assert not {v.group for v in lists.train} & {v.group for v in lists.test}
    # one global group per number: C's two groups also hold 6 of A's 10 videos and 4 of B's 8, so
    # holding out both would empty C; a class never loses all its training videos
    for seed in range(5):
        lists = folder_lists(root, test_fraction=0.9, seed=seed, group_pattern=r"_g(\d+)_")
        assert all(any(v.label == label for v in lists.train) for label in range(3))


def test_group_pattern_must_match_every_video_and_have_one_group(tmp_path):
    root = make_tree(tmp_path / "data")
    (root / "Jump" / "stray.mp4").write_bytes(b"x")
    with pytest.raises(FolderDatasetError, match=r"does not match 'Jump/stray.mp4'"):
        folder_lists(root, group_pattern=r"(rec\d+)_")
    with pytest.raises(FolderDatasetError, match="exactly one group"):
        folder_lists(root, group_pattern=r"rec\d+")
    with pytest.raises(FolderDatasetError, match="not a regular expression"):
        folder_lists(root, group_pattern=r"(rec")


def test_tree_problems_are_one_line_errors(tmp_path):
    with pytest.raises(FolderDatasetError, match="does not exist"):
        folder_lists(tmp_path / "nowhere")
    make_tree(tmp_path / "one", classes=["Only"])
    with pytest.raises(FolderDatasetError, match="1 class folder"):
        folder_lists(tmp_path / "one")
    root = make_tree(tmp_path / "data")
    (root / "Empty").mkdir()
    (root / "Empty" / "readme.txt").write_text("no videos")
    with pytest.raises(FolderDatasetError, match="without videos.*Empty"):
        folder_lists(root)
    root = make_tree(tmp_path / "four")
    with pytest.raises(SplitFileError, match=r"3 classes, expected 4 \(dataset.num_classes\)"):
        folder_lists(root, expected_num_classes=4, expected_from="dataset.num_classes")


# ---------------------------------------------------------------- the user's list files


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_user_list_files_are_read_as_given(tmp_path):
    root = make_tree(tmp_path / "data")
    (root / "Wave & Smile" / "take #2 (Tom's, best!).mkv").write_bytes(b"x")
    train = write(tmp_path / "train.csv", "Clap/rec01_clip1.mp4 0\nJump/rec01_clip1.mp4\n"
                  f"{root}/Wave & Smile/rec01_clip1.mp4 2\n\n")
    test = write(tmp_path / "test.csv", "Clap/rec02_clip1.mp4\r\nWave & Smile/take #2 (Tom's, best!).mkv 2 \r\n")
    val = write(tmp_path / "val.csv", "Jump/rec03_clip1.mp4\t1\n")
    lists = folder_lists(root, {"train": str(train), "test": str(test), "val": str(val)})
    assert [(v.path, v.label) for v in lists.train] == [
        ("Clap/rec01_clip1.mp4", 0), ("Jump/rec01_clip1.mp4", 1), ("Wave & Smile/rec01_clip1.mp4", 2)]
    assert [(v.path, v.label) for v in lists.test] == [
        ("Clap/rec02_clip1.mp4", 0), ("Wave & Smile/take #2 (Tom's, best!).mkv", 2)]
    assert [(v.path, v.label) for v in lists.val] == [("Jump/rec03_clip1.mp4", 1)]
    assert lists.train[1].source == f"{train}:2"
    assert lists.about["test"] == f"list file {test}"


@pytest.mark.parametrize(
    "line, error, fragment",
    [
        ("Clap/rec01_clip1.mp4 2", LabelError, "label 2 disagrees with folder 'Clap' (label 0"),
        ("Dance/rec01_clip1.mp4", UnknownClassError, "class folder 'Dance' is not one of the 3"),
        ("Clap/rec99_clip1.mp4 0", MissingVideosError, "Clap/rec99_clip1.mp4 does not exist"),
        ("rec01_clip1.mp4", MalformedLineError, "expected '<class>/<video>[ <label>]'"),
        ("Clap/../Jump/rec01_clip1.mp4", MalformedLineError, "leaves the dataset root"),
        ("/etc/passwd", MalformedLineError, "outside dataset.root"),
        ("Clap/notes.txt", MalformedLineError, "is not a video file"),
        ("Clap/rec01_clip2.mp4", DuplicateEntryError, "already listed at"),
    ],
)
def test_a_bad_line_is_one_error_naming_file_and_line(tmp_path, line, error, fragment):
    root = make_tree(tmp_path / "data")
    (root / "Clap" / "notes.txt").write_text("x")
    train = write(tmp_path / "train.txt", "Jump/rec01_clip1.mp4 1\nClap/rec01_clip2.mp4\n" + line + "\n")
    test = write(tmp_path / "test.txt", "Jump/rec02_clip1.mp4\n")
    with pytest.raises(error) as info:
        folder_lists(root, {"train": str(train), "test": str(test)})
    message = str(info.value)
    assert isinstance(info.value, NlflowError) and "\n" not in message
    assert f"{train}:3" in message and fragment in message, message


def test_a_video_in_train_and_test_is_refused(tmp_path):
    root = make_tree(tmp_path / "data")
    train = write(tmp_path / "train.txt", "Jump/rec01_clip1.mp4\nClap/rec01_clip1.mp4\n")
    test = write(tmp_path / "test.txt", "Clap/rec02_clip1.mp4\nClap/rec01_clip1.mp4\n")
    with pytest.raises(SplitOverlapError, match=rf"{test}:2: Clap/rec01_clip1.mp4 is also listed at {train}:2"):
        folder_lists(root, {"train": str(train), "test": str(test)})
    with pytest.raises(FolderDatasetError, match="both train and test"):
        folder_lists(root, {"train": str(train)})


def test_inventory_changes_when_a_video_does(tmp_path):
    root = make_tree(tmp_path / "data")
    before = folder_inventory(root)
    assert folder_inventory(root) == before
    (root / "Clap" / "new.avi").write_bytes(b"x")
    assert folder_inventory(root) != before
