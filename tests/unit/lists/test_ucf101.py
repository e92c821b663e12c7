"""Split-file parsing and list making on hand-written and full-size fake UCF-101 split files."""

from __future__ import annotations

from pathlib import Path

import pytest

from nlflow.errors import NlflowError
from nlflow.lists import listfiles, split_files, ucf101

from helpers.lists import write_ucf101_lists

CLASS_IND = "1 ApplyEyeMakeup\n2 HandstandPushups\n3 Typing\n"

TRAIN_01 = """\
ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1
ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c02.avi 1
HandstandPushups/v_HandStandPushups_g08_c01.avi 2
Typing/v_Typing_g09_c01.avi 3
"""

TEST_01 = """\
ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi
HandstandPushups/v_HandStandPushups_g01_c01.avi
Typing/v_Typing_g02_c03.avi
"""


def write_split(root: Path, class_ind=CLASS_IND, train=TRAIN_01, test=TEST_01, split=1) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "classInd.txt").write_text(class_ind, newline="")
    (root / f"trainlist{split:02d}.txt").write_text(train, newline="")
    (root / f"testlist{split:02d}.txt").write_text(test, newline="")
    return root


def test_make_lists_official_format(tmp_path):
    split_dir = write_split(tmp_path / "ucfTrainTestlist")
    out = tmp_path / "lists"
    summary = write_ucf101_lists(split_dir, 1, out)
    assert (summary.num_classes, summary.num_train, summary.num_val, summary.num_test) == (3, 4, 3, 3)
    assert listfiles.read_classes(out / "classes.txt") == ["ApplyEyeMakeup", "HandstandPushups", "Typing"]
    train = listfiles.read_list(out / "train.txt")
    assert train == [
        ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", 0),
        ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c02.avi", 0),
        ("HandstandPushups/v_HandStandPushups_g08_c01.avi", 1),
        ("Typing/v_Typing_g09_c01.avi", 2),
    ]
    test = listfiles.read_list(out / "test.txt")
    assert test == [
        ("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", 0),
        ("HandstandPushups/v_HandStandPushups_g01_c01.avi", 1),
        ("Typing/v_Typing_g02_c03.avi", 2),
    ]
    assert (out / "val.txt").read_text() == (out / "test.txt").read_text()
    # exact on-disk format: one space, 0-based label, LF
    assert (out / "train.txt").read_text().splitlines()[2] == "HandstandPushups/v_HandStandPushups_g08_c01.avi 1"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_parent_of_split_dir_is_accepted(tmp_path):
    write_split(tmp_path / "splits" / "ucfTrainTestlist")
    summary = write_ucf101_lists(tmp_path / "splits", 1, tmp_path / "lists")
    assert summary.num_train == 4


def test_bom_crlf_blank_lines_and_stray_whitespace(tmp_path):
    def messy(text: str) -> str:
        lines = ["  " + line + " \t" for line in text.splitlines()]
        return "\ufeff" + "\r\n\r\n".join(lines) + "\r\n\r\n"

    split_dir = write_split(tmp_path / "s", messy(CLASS_IND), messy(TRAIN_01), messy(TEST_01))
    write_ucf101_lists(split_dir, 1, tmp_path / "lists")
    assert listfiles.read_classes(tmp_path / "lists" / "classes.txt")[0] == "ApplyEyeMakeup"
    assert listfiles.read_list(tmp_path / "lists" / "train.txt")[0] == ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", 0)


def test_windows_path_separators_are_normalised(tmp_path):
    split_dir = write_split(tmp_path / "s", train=TRAIN_01.replace("/", "\\"))
    write_ucf101_lists(split_dir, 1, tmp_path / "lists")
    assert listfiles.read_list(tmp_path / "lists" / "train.txt")[0][0] == "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi"


def test_folder_lookup_is_case_insensitive(tmp_path):
    train = TRAIN_01.replace("HandstandPushups/", "HandStandPushups/")
    split_dir = write_split(tmp_path / "s", train=train)
    write_ucf101_lists(split_dir, 1, tmp_path / "lists")
    assert ("HandStandPushups/v_HandStandPushups_g08_c01.avi", 1) in listfiles.read_list(tmp_path / "lists" / "train.txt")


@pytest.mark.parametrize(
    "kind, train, test, error, fragments",
    [
        ("malformed", TRAIN_01 + "Typing/v_Typing_g10_c01.avi\n", TEST_01,
         ucf101.MalformedLineError, ["trainlist01.txt:5", "<label>"]),
        ("bad name", TRAIN_01 + "Typing/typing_10.avi 3\n", TEST_01,
         ucf101.MalformedLineError, ["trainlist01.txt:5", "typing_10.avi"]),
        ("not int", TRAIN_01.replace("g09_c01.avi 3", "g09_c01.avi three"), TEST_01,
         ucf101.MalformedLineError, ["trainlist01.txt:4", "three"]),
        ("unknown class", TRAIN_01, TEST_01 + "Juggling/v_Juggling_g01_c01.avi\n",
         ucf101.UnknownClassError, ["testlist01.txt:4", "Juggling"]),
        ("label out of range", TRAIN_01.replace("g09_c01.avi 3", "g09_c01.avi 4"), TEST_01,
         ucf101.LabelError, ["trainlist01.txt:4", "out of range"]),
        ("label zero", TRAIN_01.replace("g09_c01.avi 3", "g09_c01.avi 0"), TEST_01,
         ucf101.LabelError, ["trainlist01.txt:4", "1-based"]),
        ("label disagrees", TRAIN_01.replace("g09_c01.avi 3", "g09_c01.avi 1"), TEST_01,
         ucf101.LabelError, ["trainlist01.txt:4", "Typing"]),
        ("file name vs folder", TRAIN_01 + "Typing/v_Juggling_g10_c01.avi 3\n", TEST_01,
         ucf101.LabelError, ["trainlist01.txt:5", "Juggling"]),
        ("duplicate", TRAIN_01 + "Typing/v_Typing_g09_c01.avi 3\n", TEST_01,
         ucf101.DuplicateEntryError, ["trainlist01.txt:5", "trainlist01.txt:4"]),
        ("same video in both", TRAIN_01, TEST_01 + "Typing/v_Typing_g09_c01.avi\n",
         ucf101.SplitOverlapError, ["testlist01.txt:4", "Typing/v_Typing_g09_c01.avi"]),
        ("group overlap", TRAIN_01, TEST_01 + "Typing/v_Typing_g09_c05.avi\n",
         ucf101.SplitOverlapError, ["testlist01.txt:4", "g09", "trainlist01.txt:4"]),
        ("empty test", TRAIN_01, "\n\n", ucf101.SplitFileError, ["testlist01.txt", "no videos"]),
    ],
)
def test_bad_split_files_raise_clear_errors(tmp_path, kind, train, test, error, fragments):
    split_dir = write_split(tmp_path / "s", train=train, test=test)
    out = tmp_path / "lists"
    with pytest.raises(error) as info:
        write_ucf101_lists(split_dir, 1, out)
    assert isinstance(info.value, NlflowError)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (kind, message)
    assert not out.exists()  # nothing written when validation fails


def test_bad_class_index(tmp_path):
    with pytest.raises(ucf101.MalformedLineError, match=r"classInd.txt:2.*out of order"):
        write_ucf101_lists(write_split(tmp_path / "a", "1 A\n3 B\n"), 1, tmp_path / "o")
    with pytest.raises(ucf101.DuplicateEntryError, match=r"classInd.txt:2.*already defined"):
        write_ucf101_lists(write_split(tmp_path / "b", "1 Typing\n2 typing\n"), 1, tmp_path / "o")
    with pytest.raises(ucf101.MalformedLineError, match=r"classInd.txt:1"):
        write_ucf101_lists(write_split(tmp_path / "c", "ApplyEyeMakeup 1\n"), 1, tmp_path / "o")


def test_expected_class_count(tmp_path):
    split_dir = write_split(tmp_path / "s")
    with pytest.raises(ucf101.ClassCountError, match="3 classes, expected 101"):
        write_ucf101_lists(split_dir, 1, tmp_path / "o", expected_num_classes=101)
    assert write_ucf101_lists(split_dir, 1, tmp_path / "o", expected_num_classes=3).num_classes == 3


def test_missing_files_and_bad_split_number(tmp_path):
    split_dir = write_split(tmp_path / "s")
    with pytest.raises(split_files.MissingSplitFileError, match="trainlist02.txt"):
        write_ucf101_lists(split_dir, 2, tmp_path / "o")
    with pytest.raises(ucf101.SplitFileError, match="1..3"):
        write_ucf101_lists(split_dir, 4, tmp_path / "o")


def test_video_root_check(tmp_path):
    split_dir = write_split(tmp_path / "s")
    root = tmp_path / "UCF-101"
    paths = [line.split()[0] for line in (TRAIN_01 + TEST_01).splitlines()]
    for rel in paths:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    assert write_ucf101_lists(split_dir, 1, tmp_path / "o", video_root=root).num_test == 3

    for rel in paths[:3]:
        (root / rel).unlink()
    with pytest.raises(split_files.MissingVideosError) as info:
        write_ucf101_lists(split_dir, 1, tmp_path / "o2", video_root=root)
    assert "3 of 7 listed videos are missing" in str(info.value)
    assert paths[0] in str(info.value)
    assert not (tmp_path / "o2").exists()

    with pytest.raises(split_files.MissingVideosError, match="does not exist"):
        write_ucf101_lists(split_dir, 1, tmp_path / "o3", video_root=tmp_path / "nowhere")


def test_read_list_rejects_bad_lines(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("A/v_A_g01_c01.avi 0\nA/v_A_g01_c02.avi\n")
    with pytest.raises(listfiles.ListFileError, match=r"train.txt:2"):
        listfiles.read_list(path)
    with pytest.raises(listfiles.ListFileError, match="not found"):
        listfiles.read_list(tmp_path / "nope.txt")


# ------------------------------------------------------------------ full-size fake


def fake_ucf101_class_names() -> list[str]:
    names = [f"Action{i:03d}" for i in range(101)]
    names[36] = "HandstandPushups"  # the real index of the quirky class is 37 (1-based)
    return sorted(names, key=str.lower)


def fake_full_split(root: Path) -> tuple[int, int]:
    """Official-format split 1 with the real UCF-101 sizes: 9,537 train and 3,783 test videos."""
    classes = fake_ucf101_class_names()
    num_train, num_test = 9537, 3783
    test_cells = [(c, g) for c in range(101) for g in range(1, 8)]
    train_cells = [(c, g) for c in range(101) for g in range(8, 26)]

    def clips_per_cell(cells, total):
        base, extra = divmod(total, len(cells))
        return {cell: base + (1 if i < extra else 0) for i, cell in enumerate(cells)}

    test_clips = clips_per_cell(test_cells, num_test)
    train_clips = clips_per_cell(train_cells, num_train)

    def path(c: int, g: int, k: int) -> str:
        folder = classes[c]
        in_name = "HandStandPushups" if folder == "HandstandPushups" else folder
        return f"{folder}/v_{in_name}_g{g:02d}_c{k:02d}.avi"

    class_ind = "".join(f"{i + 1} {name}\r\n" for i, name in enumerate(classes))
    train = "".join(
        f"{path(c, g, k)} {c + 1}\r\n" for c in range(101) for g in range(8, 26)
        for k in range(1, train_clips[(c, g)] + 1)
    )
    test = "".join(
        f"{path(c, g, k)}\r\n" for c in range(101) for g in range(1, 8)
        for k in range(1, test_clips[(c, g)] + 1)
    )
    write_split(root, class_ind, train, test)
    return num_train, num_test


def test_full_size_fake_split(tmp_path):
    num_train, num_test = fake_full_split(tmp_path / "ucfTrainTestlist")
    out = tmp_path / "lists" / "split1"
    summary = write_ucf101_lists(tmp_path / "ucfTrainTestlist", 1, out, expected_num_classes=101)
    assert (summary.num_classes, summary.num_train, summary.num_test) == (101, 9537, 3783)
    assert summary.to_dict()["num_val"] == 3783
    train = listfiles.read_list(out / "train.txt")
    test = listfiles.read_list(out / "test.txt")
    assert (len(train), len(test)) == (num_train, num_test)
    labels = {label for _, label in train + test}
    assert labels == set(range(101))
    classes = listfiles.read_classes(out / "classes.txt")
    assert len(classes) == 101
    # every label matches the folder in its path, including the HandstandPushups quirk
    assert all(classes[label] == rel.split("/")[0] for rel, label in train + test)
    quirky = classes.index("HandstandPushups")
    assert any("v_HandStandPushups_" in rel and label == quirky for rel, label in train)
    train_groups = {(rel.split("/")[0], rel.split("_g")[-1][:2]) for rel, _ in train}
    test_groups = {(rel.split("/")[0], rel.split("_g")[-1][:2]) for rel, _ in test}
    assert not train_groups & test_groups


def test_our_list_files_round_trip_and_bad_lines_name_file_and_line(tmp_path):
    entries = [("A/v_A_g01_c01.avi", 0), ("B b/v_B_g02_c03.avi", 12)]
    path = tmp_path / "list.txt"
    path.write_text(listfiles.format_list(entries))
    assert listfiles.read_list(path) == entries
    path.write_text("A/v_A_g01_c01.avi 0\nB/v_B_g01_c01.avi one\n")
    with pytest.raises(listfiles.ListFileError, match=r"list.txt:2"):
        listfiles.read_list(path)
    with pytest.raises(listfiles.ListFileError, match="not found"):
        listfiles.read_list(tmp_path / "missing.txt")
