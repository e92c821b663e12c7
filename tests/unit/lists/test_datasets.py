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
    ],
)
def test_bad_combinations_stop_at_start_up(tmp_path, name, keys, fragment):
    class_tree(tmp_path / "R")
    keys = {key: (str(tmp_path / "R") if value == "R" else value) for key, value in keys.items()}
    with pytest.raises(NlflowError) as info:
        dataset_spec(section(name, **keys))
    assert fragment in str(info.value) and "\n" not in str(info.value)


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
