"""The dataset-kind registry: start-up checks of the `dataset` section, the class count, and what
make_lists depends on."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from nlflow.errors import ConfigError, NlflowError
from nlflow.lists.datasets import KINDS, dataset_spec

from helpers import REPO

ARCHIVE = {"filename": "x.rar", "urls": ["file:x.rar"]}


def section(name: str, **keys) -> dict:
    """A dataset section as the schema leaves it (defaults filled)."""
    config = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    base = {"name": name}
    if name != "folder":
        base.update(videos=dict(ARCHIVE), splits=dict(ARCHIVE))
    config["dataset"] = {**base, **keys}
    validate(config, str(REPO / "config" / "schema.yaml"))
    return config["dataset"]


def class_tree(root: Path, classes=("b", "a", "c")) -> Path:
    for name in classes:
        (root / name).mkdir(parents=True)
        (root / name / "v.avi").write_bytes(b"x")
    return root


@pytest.mark.parametrize("name, count", [("ucf101", 101), ("hmdb51", 51), ("demo", 5)])
def test_num_classes_may_be_left_out_for_official_datasets(name, count):
    spec = dataset_spec(section(name))
    assert spec.num_classes == count and spec.kind.archives == ("videos", "splits")
    assert dataset_spec(section(name, num_classes=7)).num_classes == 7


def test_only_hmdb51_nests_its_video_archive():
    assert [kind.name for kind in KINDS.values() if kind.nested_videos] == ["hmdb51"]


def test_folder_counts_its_class_folders_at_start_up(tmp_path):
    root = class_tree(tmp_path / "data")
    spec = dataset_spec(section("folder", root=str(root)))
    assert spec.num_classes == 3 and spec.kind.archives == ()
    with pytest.raises(ConfigError, match=r"dataset.num_classes is 4 but dataset.root .* holds 3 class folders \(a, b, c\)"):
        dataset_spec(section("folder", root=str(root), num_classes=4))


def test_paths_are_expanded(tmp_path):
    class_tree(tmp_path / "results" / "videos")
    spec = dataset_spec(section("folder", root="{results_dir}/videos"),
                        expand=lambda text: text.replace("{results_dir}", str(tmp_path / "results")))
    assert spec.root == str(tmp_path / "results" / "videos")


@pytest.mark.parametrize(
    "name, keys, fragment",
    [
        ("folder", {}, "dataset.root is required"),
        ("folder", {"root": "R", "videos": ARCHIVE}, "dataset.videos is not used with dataset.name folder"),
        ("ucf101", {"root": "somewhere"}, "dataset.root is only used with dataset.name folder"),
        ("hmdb51", {"group_pattern": "(x)"}, "dataset.group_pattern is only used"),
        ("folder", {"root": "R", "lists": {"train": "t.txt"}}, "needs both train and test"),
        ("folder", {"root": "R", "lists": {"train": "t", "test": "u", "val": "v"}, "val_fraction": 0.1},
         "set one"),
        ("folder", {"root": "R", "group_pattern": "g\\d+"}, "exactly one group"),
        ("folder", {"root": "nowhere"}, "does not exist"),
        ("ucf101", {"download": "cvdf", "videos": ARCHIVE, "splits": ARCHIVE}, "dataset.download is only used with"),
        ("kinetics400", {"root": "R", "keep_tarballs": True}, "only used with dataset.download: cvdf"),
        ("kinetics400", {}, "or set dataset.download: cvdf"),
    ],
)
def test_bad_combinations_stop_at_start_up(tmp_path, name, keys, fragment):
    class_tree(tmp_path / "R")
    keys = {key: (str(tmp_path / "R") if value == "R" else value) for key, value in keys.items()}
    with pytest.raises(NlflowError) as info:
        dataset_spec(section(name, **keys))
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_a_downloaded_kinetics_copy_need_not_exist_at_start_up(tmp_path):
    expand = lambda text: text.replace("{results_dir}", str(tmp_path / "results"))  # noqa: E731
    spec = dataset_spec({"name": "kinetics400", "download": "cvdf"}, expand=expand)
    assert spec.downloads_copy and spec.root == str(tmp_path / "results" / "kinetics400")
    assert spec.video_folders() == {"train": "train", "val": "val"}
    assert "inventory" not in spec.lists_settings()  # the download's records re-run make_lists instead
    assert spec.download_mirrors() == ["https://s3.amazonaws.com/kinetics/400"]
    mine = dataset_spec({"name": "kinetics400", "download": "cvdf", "root": str(tmp_path / "mine"),
                         "download_mirrors": ["file:/data/k400"]})
    assert mine.root == str(tmp_path / "mine") and mine.download_mirrors() == ["file:/data/k400"]


def test_archive_kinds_need_their_archives():
    with pytest.raises(ConfigError, match="dataset.splits is required for dataset.name hmdb51"):
        dataset_spec({"name": "hmdb51", "videos": ARCHIVE})


def test_lists_settings_hold_only_what_the_lists_depend_on(tmp_path):
    ucf = dataset_spec(section("ucf101", test_fraction=0.5)).lists_settings()
    assert ucf == {"name": "ucf101", "split": 1, "num_classes": 101, "val_fraction": 0}
    assert dataset_spec(section("ucf101", num_classes=101)).lists_settings() == ucf  # left out = official count
    assert dataset_spec(section("ucf101", val_fraction=0.1, seed=3)).lists_settings()["seed"] == 3
    root = class_tree(tmp_path / "data")
    folder = dataset_spec(section("folder", root=str(root), group_pattern="(.)")).lists_settings()
    assert {"root", "test_fraction", "seed", "group_pattern", "inventory"} <= set(folder)
    listed = dataset_spec(section("folder", root=str(root), lists={"train": "a", "test": "b"})).lists_settings()
    assert "test_fraction" not in listed and "seed" not in listed and listed["lists"]["train"] == "a"


def test_every_problem_of_the_section_is_in_one_error(tmp_path):
    """The README's first failed starts, at once: a copy of config.yaml with the folder lines merged in."""
    root = class_tree(tmp_path / "data")
    (root / "empty").mkdir()
    with pytest.raises(ConfigError) as info:
        dataset_spec(section("folder", root=str(root), num_classes=101, group_pattern=r"_g(\d+)_",
                             videos=dict(ARCHIVE), splits=dict(ARCHIVE)))
    message = str(info.value)
    assert message.startswith("5 problems in the dataset section") and "\n" not in message
    for fragment in ("(1) dataset.videos is not used with dataset.name folder",
                     "(2) dataset.splits is not used with dataset.name folder",
                     "(3) dataset.num_classes is 101 but dataset.root", "holds 4 class folders (a, b, c, empty)",
                     "(4) class folder(s) without videos in dataset.root", ": empty; every class folder is a class",
                     r"(5) dataset.group_pattern '_g(\\d+)_' matches none of the 3 videos"):
        assert fragment in message, fragment


def test_an_empty_class_folder_is_refused_at_start_up_hidden_files_do_not_count(tmp_path):
    root = class_tree(tmp_path / "data")
    (root / "d").mkdir()
    (root / "d" / ".DS_Store").write_bytes(b"")
    (root / "d" / "notes.txt").write_text("not a video")
    with pytest.raises(ConfigError, match=r"class folder\(s\) without videos in dataset.root .*: d; every class"):
        dataset_spec(section("folder", root=str(root)))
    (root / "d" / "clip.mp4").write_bytes(b"x")
    assert dataset_spec(section("folder", root=str(root))).num_classes == 4


def test_group_pattern_is_checked_against_the_file_names_at_start_up(tmp_path):
    root = tmp_path / "data"
    for name in ("v_Clap_g01_c01.avi", "v_Clap_g02_c01.avi", "clap at home.mp4", "Клап_2.mp4"):
        (root / "Clap").mkdir(parents=True, exist_ok=True)
        (root / "Clap" / name).write_bytes(b"x")
    (root / "Jump").mkdir()
    (root / "Jump" / "v_Jump_g01_c01.avi").write_bytes(b"x")
    with pytest.raises(ConfigError) as info:
        dataset_spec(section("folder", root=str(root), group_pattern=r"_g(\d+)_"))
    message = str(info.value)
    assert r"dataset.group_pattern '_g(\\d+)_' finds no group in 2 of the 5 videos" in message
    assert "(e.g. 'Clap/clap at home.mp4', 'Clap/Клап_2.mp4'; it is searched in <class>/<file> paths)" in message
    assert "or leave group_pattern out" in message
    # a pattern that finds a group in every name passes
    assert dataset_spec(section("folder", root=str(root), group_pattern=r"^([^/]+)/")).num_classes == 2


def test_a_relative_root_is_taken_from_the_working_directory_and_errors_show_the_absolute_path(tmp_path, monkeypatch):
    class_tree(tmp_path / "my_videos")
    monkeypatch.chdir(tmp_path)
    assert dataset_spec(section("folder", root="my_videos")).num_classes == 3
    monkeypatch.chdir(tmp_path / "my_videos")
    with pytest.raises(ConfigError, match=rf"dataset.root my_videos \(= {tmp_path}/my_videos/my_videos\) does not "
                                          "exist .*taken from the working directory"):
        dataset_spec(section("folder", root="my_videos"))
