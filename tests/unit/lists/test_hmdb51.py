"""HMDB-51: an archive pair in the official format (a RAR of per-class RARs, split files with codes
1 / 2 / 0 and trailing spaces, names full of special characters) -> exact lists for splits 1-3."""

from __future__ import annotations

from pathlib import Path

import pytest
import rars

from nlflow.errors import NlflowError
from nlflow.lists.datasets import KINDS, dataset_spec
from nlflow.lists.hmdb51 import hmdb51_lists, source_film
from nlflow.lists.listfiles import list_paths, read_classes, read_list
from nlflow.lists.split_files import (
    ClassCountError,
    DuplicateEntryError,
    MalformedLineError,
    MissingSplitFileError,
    MissingVideosError,
    UnknownClassError,
)
from nlflow.workflow import stages

# class -> [(video name, (code in split 1, split 2, split 3))], in split-file order
VIDEOS = {
    "brush_hair": [
        ("April_09_brush_hair_u_nm_np1_ba_goo_0.avi", (1, 2, 1)),
        ("April_09_brush_hair_u_nm_np1_ba_goo_1.avi", (1, 2, 1)),
        ("#437_How_To_Brush_Your_Hair!_brush_hair_h_cm_np1_fr_med_0.avi", (2, 1, 1)),
        ("Blonde_(Film),_Part_2;_Don't_brush_hair_f_nm_np2_le_bad_3.avi", (0, 1, 2)),
        ("Prelinger_&_Co_brush_hair_u_nm_np1_ri_goo_0.avi", (1, 0, 2)),
    ],
    "pick": [
        ("Ab_Workout_pick_f_cm_np1_fr_goo_0.avi", (2, 1, 0)),
        ("Tom_&_Jerry's_#1_(Best!)_pick_u_nm_np1_le_med_2.avi", (1, 1, 2)),
        ("Veoh_Alpha_Dog_1_pick_f_nm_np1_ba_bad_0.avi", (1, 2, 1)),
    ],
    "ride_bike": [
        ("Bike_Tricks;_Vol_1_ride_bike_f_cm_np1_ba_goo_0.avi", (1, 1, 2)),
        ("Bike_Tricks;_Vol_1_ride_bike_f_cm_np1_ba_goo_1.avi", (1, 1, 2)),
        ("(Film)_Ab_Workout_ride_bike_u_cm_np2_fr_med_4.avi", (2, 2, 1)),
    ],
}
CLASSES = sorted(VIDEOS)


def rar_bytes(files: dict[str, bytes], folders=()) -> bytes:
    builder = rars.RarBuilder(format="rar50")
    for folder in folders:
        builder.add_directory(folder)
    for name, data in files.items():
        builder.add_bytes(data, name)
    return builder.to_bytes()


def split_text(class_name: str, split: int, line_end: str = " \n") -> str:
    return "".join(f"{name} {codes[split - 1]}{line_end}" for name, codes in VIDEOS[class_name])


@pytest.fixture(scope="module")
def archive_pair(tmp_path_factory) -> tuple[Path, Path]:
    """``hmdb51_org.rar`` (one RAR per class) and ``test_train_splits.rar``, as published."""
    out = tmp_path_factory.mktemp("hmdb_archives")
    inner = {
        f"{name}.rar": rar_bytes({f"{name}/{video}": f"{name}/{video}".encode() for video, _ in videos}, [name])
        for name, videos in VIDEOS.items()
    }
    (out / "hmdb51_org.rar").write_bytes(rar_bytes(inner))
    splits = {
        f"testTrainMulti_7030_splits/{name}_test_split{split}.txt":
            split_text(name, split, " \r\n" if name == "pick" else " \n").encode()
        for name in VIDEOS for split in (1, 2, 3)
    }
    (out / "test_train_splits.rar").write_bytes(rar_bytes(splits, ["testTrainMulti_7030_splits"]))
    return out / "hmdb51_org.rar", out / "test_train_splits.rar"


@pytest.fixture(scope="module")
def extracted(archive_pair, tmp_path_factory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("hmdb_extracted")
    stages.extract(str(archive_pair[0]), str(work / "videos"), nested=True)
    stages.extract(str(archive_pair[1]), str(work / "splits"))
    assert sorted(p.name for p in work.iterdir()) == ["splits", "videos"]  # no scratch left behind
    return work / "videos", work / "splits"


def test_nested_extraction_gives_one_folder_per_class_with_names_intact(extracted):
    videos, _ = extracted
    assert sorted(p.name for p in videos.iterdir()) == CLASSES
    for name, listed in VIDEOS.items():
        assert sorted(p.name for p in (videos / name).iterdir()) == sorted(video for video, _ in listed)
        for video, _ in listed:
            assert (videos / name / video).read_bytes() == f"{name}/{video}".encode()


@pytest.mark.parametrize("split", [1, 2, 3])
def test_exact_lists_for_every_split(extracted, tmp_path, split):
    videos, splits = extracted
    archive = {"filename": "x.rar", "urls": ["file:x.rar"]}
    settings = dataset_spec({"name": "hmdb51", "split": split, "num_classes": 3, "videos": archive,
                             "splits": archive, "val_fraction": 0}).lists_settings()
    out = list_paths(tmp_path / "lists")
    stages.make_lists(str(videos), str(splits), settings, {key: str(path) for key, path in out.items()})

    def expected(code: int) -> list[tuple[str, int]]:
        return [(f"{name}/{video}", label) for label, name in enumerate(CLASSES)
                for video, codes in VIDEOS[name] if codes[split - 1] == code]

    assert read_classes(out["classes"]) == CLASSES  # class folders sorted by name: labels 0, 1, 2
    assert read_list(out["train"]) == expected(1)
    assert read_list(out["test"]) == expected(2)
    assert read_list(out["val"]) == expected(2)  # val_fraction 0: validation uses the test list
    unused = {f"{name}/{video}" for name in CLASSES for video, codes in VIDEOS[name] if codes[split - 1] == 0}
    listed = {path for path, _ in read_list(out["train"]) + read_list(out["test"])}
    assert unused and not unused & listed


def test_held_out_validation_keeps_films_together(extracted):
    videos, splits = extracted
    lists = hmdb51_lists(splits, 1, videos)
    assert {v.group for v in lists.train if v.path.startswith("brush_hair/April")} == {"April_09"}


def test_source_film():
    assert source_film("April_09_brush_hair_u_nm_np1_ba_goo_0.avi", "brush_hair") == "April_09"
    assert source_film("Tom_&_Jerry's_#1_(Best!)_pick_u_nm_np1_le_med_2.avi", "pick") == "Tom_&_Jerry's_#1_(Best!)"
    assert source_film("my_own_clip_3.avi", "pick") == "my_own_clip"  # not the official naming


# ---------------------------------------------------------------- errors name the file and line


def split_tree(root: Path, texts: dict[str, str] | None = None, classes=CLASSES) -> tuple[Path, Path]:
    videos, splits = root / "videos", root / "splits" / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True)
    for name in classes:
        (videos / name).mkdir(parents=True)
        for video, _ in VIDEOS[name]:
            (videos / name / video).write_bytes(b"x")
    for name in classes:
        (splits / f"{name}_test_split1.txt").write_text(split_text(name, 1))
    for filename, text in (texts or {}).items():
        (splits / filename).write_text(text)
    return videos, splits.parent


@pytest.mark.parametrize(
    "filename, text, error, fragment",
    [
        ("pick_test_split1.txt", split_text("pick", 1) + "Extra_pick_u_nm_np1_fr_goo_0.avi 3 \n",
         MalformedLineError, "pick_test_split1.txt:4: expected '<video>.avi <1|2|0>'"),
        ("pick_test_split1.txt", split_text("pick", 1) + "Extra_pick_u_nm_np1_fr_goo_0.avi\n",
         MalformedLineError, "pick_test_split1.txt:4"),
        ("pick_test_split1.txt", split_text("pick", 1) + "Ab_Workout_pick_f_cm_np1_fr_goo_0.avi 1 \n",
         DuplicateEntryError, "pick_test_split1.txt:4: Ab_Workout_pick_f_cm_np1_fr_goo_0.avi already listed at"),
        ("pick_test_split1.txt", split_text("pick", 1) + "Gone_pick_u_nm_np1_fr_goo_0.avi 2 \n",
         MissingVideosError, "pick/Gone_pick_u_nm_np1_fr_goo_0.avi"),
        ("wave_test_split1.txt", "Hello_wave_u_nm_np1_fr_goo_0.avi 1 \n",
         UnknownClassError, "wave_test_split1.txt: class 'wave' has no folder"),
    ],
)
def test_bad_split_files_are_one_line_errors(tmp_path, filename, text, error, fragment):
    videos, splits = split_tree(tmp_path, {filename: text})
    with pytest.raises(error) as info:
        hmdb51_lists(splits, 1, videos)
    assert isinstance(info.value, NlflowError) and "\n" not in str(info.value)
    assert fragment in str(info.value), str(info.value)


def test_a_class_without_split_file_and_a_wrong_class_count(tmp_path):
    videos, splits = split_tree(tmp_path)
    (splits / "testTrainMulti_7030_splits" / "pick_test_split1.txt").unlink()
    with pytest.raises(MissingSplitFileError, match=r"pick_test_split1.txt \(class folder 'pick'\)"):
        hmdb51_lists(splits, 1, videos)
    with pytest.raises(ClassCountError, match=r"3 classes, expected 51 \(dataset.num_classes, or HMDB-51's 51"):
        hmdb51_lists(splits, 1, videos, 51, KINDS["hmdb51"].count_origin)
