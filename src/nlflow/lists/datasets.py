"""The dataset kinds that `dataset.name` selects, in one place: which archives each downloads,
whether its video archive nests one archive per class, how its lists are made, and how many
classes it has.

The workflow asks this module at start-up (`nlflow.workflow.startup`: :func:`check_dataset`), so a
bad combination of `dataset` keys stops Snakemake before any job runs, with every problem in one
error, and the class count that sizes the network's head is known at parse time (for `folder`, by
listing the class folders, whose videos and grouping are checked then too).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Callable, Mapping

from nlflow.errors import ConfigError, NlflowError, problems_message
from nlflow.lists.folder import check_folder, folder_inventory, folder_lists
from nlflow.lists.hmdb51 import hmdb51_lists
from nlflow.lists.holdout import attach_validation
from nlflow.lists.kinetics import copy_inventory, find_layout, kinetics_lists, label_set, video_folders
from nlflow.lists.listfiles import DatasetLists
from nlflow.lists.ucf101 import ucf101_lists
from nlflow.lists.video_tree import video_root

log = logging.getLogger(__name__)

ARCHIVE_PARTS = ("videos", "splits")
DEMO_NUM_CLASSES = 5  # len(nlflow.demo.dataset.DEMO_CLASSES); not imported here to keep start-up light
# Keys only some kinds read: set for another kind they are a mistake, not something to ignore.
KEYS_OF_KINDS = {"root": ("folder", "kinetics400"), "lists": ("folder",), "group_pattern": ("folder",),
                 "test_list": ("kinetics400",), "classes": ("kinetics400",), "download": ("kinetics400",),
                 "download_mirrors": ("kinetics400",), "keep_tarballs": ("kinetics400",)}
# dataset.download: cvdf without dataset.root: the copy is made here (under results_dir).
DOWNLOADED_ROOT = "{results_dir}/kinetics400"
# The kinds whose videos are a folder the user points at (dataset.root), not an extracted archive.
ROOT_KINDS = ("folder", "kinetics400")


def _ucf101(settings: Mapping[str, Any], videos_dir: str, splits_dir: str | None) -> DatasetLists:
    return ucf101_lists(splits_dir, settings["split"], video_root(videos_dir), settings["num_classes"],
                        KINDS[settings["name"]].count_origin)


def _hmdb51(settings: Mapping[str, Any], videos_dir: str, splits_dir: str | None) -> DatasetLists:
    return hmdb51_lists(splits_dir, settings["split"], video_root(videos_dir), settings["num_classes"],
                        KINDS[settings["name"]].count_origin)


def _folder(settings: Mapping[str, Any], videos_dir: str, splits_dir: str | None) -> DatasetLists:
    return folder_lists(videos_dir, settings.get("lists"), settings.get("test_fraction", 0.3),
                        settings.get("seed", 0), settings.get("group_pattern"), settings["num_classes"],
                        KINDS["folder"].count_origin)


def _kinetics(settings: Mapping[str, Any], videos_dir: str, splits_dir: str | None) -> DatasetLists:
    return kinetics_lists(videos_dir, settings.get("test_list") or "val", settings.get("classes"),
                          settings["num_classes"], KINDS["kinetics400"].count_origin)


@dataclasses.dataclass(frozen=True)
class DatasetKind:
    name: str
    title: str  # for messages
    archives: tuple[str, ...]  # `dataset` sections that are downloaded and extracted
    nested_videos: bool  # the video archive holds one archive per class (HMDB-51)
    official_num_classes: int | None  # None: only the data tells
    list_keys: tuple[str, ...]  # the `dataset` keys its lists depend on (besides the common ones)
    make_lists: Callable[[Mapping[str, Any], str, str | None], DatasetLists]

    @property
    def count_origin(self) -> str:
        """Where the expected class count comes from, for the mismatch error."""
        if self.official_num_classes is None:
            return "dataset.num_classes, or the class folders when Snakemake started"
        return f"dataset.num_classes, or {self.title}'s {self.official_num_classes} when it is left out"


KINDS = {
    kind.name: kind
    for kind in (
        DatasetKind("ucf101", "UCF-101", ARCHIVE_PARTS, False, 101, ("split",), _ucf101),
        # The embedded demo is UCF-101 in layout; only its archives are generated locally.
        DatasetKind("demo", "the demo", ARCHIVE_PARTS, False, DEMO_NUM_CLASSES, ("split",), _ucf101),
        DatasetKind("hmdb51", "HMDB-51", ARCHIVE_PARTS, True, 51, ("split",), _hmdb51),
        DatasetKind("folder", "your folder", (), False, None, ("root", "lists", "group_pattern"), _folder),
        # A copy the user has (dataset.root); labels are the original's classids.json ids.
        DatasetKind("kinetics400", "Kinetics-400", (), False, 400, ("root", "test_list", "classes"), _kinetics),
    )
}


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """The checked `dataset` section: its kind and its class count."""

    kind: DatasetKind
    settings: Mapping[str, Any]  # the `dataset` section, with `root` and `lists` paths expanded
    num_classes: int  # configured, or the kind's official count, or the class folders of `folder`

    @property
    def root(self) -> str | None:
        return self.settings.get("root")

    @property
    def downloads_copy(self) -> bool:
        """The copy at ``root`` is made by the workflow (``dataset.download: cvdf``), not found there."""
        return self.settings.get("download") == "cvdf"

    def download_mirrors(self) -> list[str]:
        """Where the CVDF download looks, in order (``dataset.download_mirrors``, else the CVDF mirror)."""
        from nlflow.archives.cvdf import CVDF_BASE_URL

        return list(self.settings.get("download_mirrors") or [CVDF_BASE_URL])

    def user_lists(self) -> dict[str, str]:
        """The user's list files by name (train, test, val), those that are set."""
        return {name: path for name, path in (self.settings.get("lists") or {}).items() if path}

    def uses_random_test_split(self) -> bool:
        return self.kind.name == "folder" and not self.user_lists()

    def lists_settings(self) -> dict[str, Any]:
        """Exactly what make_lists reads, so a change to anything else does not re-make the lists.

        ``num_classes`` is the resolved count: leaving out a value equal to it changes nothing.
        """
        settings = {key: self.settings.get(key) for key in self.kind.list_keys}
        settings.update(name=self.kind.name, num_classes=self.num_classes,
                        val_fraction=self.settings.get("val_fraction", 0))
        if self.uses_random_test_split():
            settings["test_fraction"] = self.settings.get("test_fraction", 0.3)
        if self.uses_random_test_split() or settings["val_fraction"]:
            settings["seed"] = self.settings.get("seed", 0)
        if self.kind.name == "folder":
            # The folder is not an output of any rule: its content must reach Snakemake another way.
            settings["inventory"] = folder_inventory(self.root)
        if self.kind.name == "kinetics400" and not self.downloads_copy:
            # A downloaded copy is the download rules' output: their markers re-run make_lists instead.
            settings["inventory"] = copy_inventory(self.root)
        return settings

    @property
    def class_names(self) -> tuple[str, ...] | None:
        """The class names when the configuration fixes them (Kinetics: classids.json or
        dataset.classes); None where only the data tells."""
        return label_set(self.settings.get("classes")).names if self.kind.name == "kinetics400" else None

    def video_folders(self) -> dict[str, str] | None:
        """The top folders of the video source that hold the dataset's videos (None: all of it).
        A Kinetics copy's test/ split and anything else beside train/ and val/ is not downscaled."""
        if self.kind.name != "kinetics400":
            return None
        # A downloaded copy is the CVDF mirror's layout, and need not exist before its download runs.
        return {split: split for split in ("train", "val")} if self.downloads_copy else video_folders(self.root)


def dataset_spec(section: Mapping[str, Any], expand: Callable[[str], str] = lambda text: text) -> DatasetSpec:
    """Check the `dataset` section (after schema validation) and resolve its class count; one
    ConfigError listing every problem found (see :func:`check_dataset`)."""
    spec, problems = check_dataset(section, expand)
    if problems:
        raise ConfigError(problems_message(problems, "the dataset section"))
    assert spec is not None
    return spec


def check_dataset(
    section: Mapping[str, Any], expand: Callable[[str], str] = lambda text: text
) -> tuple[DatasetSpec | None, list[str]]:
    """The checked `dataset` section and every problem with it, all at once (a user fixes them in
    one edit, not one per start); the spec is None when there is any problem.

    ``expand`` rewrites configured paths (the workflow replaces ``{results_dir}``).
    """
    kind = KINDS.get(section.get("name"))
    if kind is None:
        return None, [f"dataset.name must be one of {', '.join(KINDS)}, got {section.get('name')!r}"]
    settings = dict(section)
    if kind.name == "kinetics400" and settings.get("download") == "cvdf" and not settings.get("root"):
        settings["root"] = DOWNLOADED_ROOT
    if settings.get("root") is not None:
        settings["root"] = expand(settings["root"])
    if isinstance(settings.get("classes"), str):
        settings["classes"] = read_class_names(expand(settings["classes"]))
    if settings.get("lists"):
        settings["lists"] = {name: expand(path) if path else path for name, path in settings["lists"].items()}
    problems = _key_problems(kind, settings)
    num_classes = settings.get("num_classes")
    if kind.name == "folder" and settings.get("root"):
        num_classes, folder_problems = check_folder(settings["root"], settings.get("group_pattern"), num_classes)
        problems += folder_problems
    elif kind.name == "kinetics400":
        num_classes, kinetics_problems = _kinetics_num_classes(settings, num_classes)
        problems += kinetics_problems
    if kind.name != "folder" and num_classes is None:
        num_classes = kind.official_num_classes
    if problems:
        return None, problems
    return DatasetSpec(kind, settings, num_classes), []


def _key_problems(kind: DatasetKind, settings: Mapping[str, Any]) -> list[str]:
    """Keys this kind needs and lacks, keys it does not use, and keys that contradict each other."""
    problems = []
    for part in ARCHIVE_PARTS:
        if part in kind.archives and not settings.get(part):
            problems.append(f"dataset.{part} is required for dataset.name {kind.name} (filename, urls, checksum)")
        if part not in kind.archives and settings.get(part):
            problems.append(f"dataset.{part} is not used with dataset.name {kind.name}: remove it")
    for key, kinds in KEYS_OF_KINDS.items():
        if kind.name not in kinds and settings.get(key):
            problems.append(f"dataset.{key} is only used with dataset.name {' or '.join(kinds)} (this is {kind.name})")
    if kind.name == "folder" and not settings.get("root"):
        problems.append("dataset.root is required for dataset.name folder (a folder of <class>/<video>)")
    if kind.name == "kinetics400" and settings.get("download") != "cvdf":
        if settings.get("download_mirrors") or settings.get("keep_tarballs"):
            problems.append("dataset.download_mirrors and dataset.keep_tarballs are only used with dataset.download: "
                            "cvdf")
        if not settings.get("root"):
            problems.append("dataset.root is required for dataset.name kinetics400 (the folder of your Kinetics copy, "
                            "or set dataset.download: cvdf to download one)")
        else:
            try:
                find_layout(settings["root"])  # a root that fits neither layout stops the start, before any job
            except NlflowError as error:  # KineticsError: one of the problems listed together
                problems.append(str(error))
    lists = {name: path for name, path in (settings.get("lists") or {}).items() if path}
    if lists and not {"train", "test"} <= set(lists):
        problems.append("dataset.lists needs both train and test (val is optional)")
    if lists.get("val") and settings.get("val_fraction"):
        problems.append("dataset.lists.val and dataset.val_fraction both give a validation list: set one")
    return problems


def archive_offline_hint(part: str, filename: str) -> str:
    """What a failed download of one of the dataset's archives tells the user to do instead."""
    return (f"without a network, copy {filename} onto this machine and list its folder (or the file) first in "
            f"dataset.{part}.urls")


def _kinetics_num_classes(settings: Mapping[str, Any], configured: int | None) -> tuple[int | None, list[str]]:
    """A Kinetics copy's class count: that of `dataset.classes` when given, else the configured one."""
    if settings.get("classes") is None:
        return configured, []
    classes = label_set(settings["classes"]).names
    if configured is not None and configured != len(classes):
        return configured, [f"dataset.num_classes is {configured} but dataset.classes names {len(classes)} classes"]
    return len(classes), []


def make_dataset_lists(settings: Mapping[str, Any], videos_dir: str | os.PathLike,
                       splits_dir: str | os.PathLike | None) -> DatasetLists:
    """The train, val and test lists of one configured dataset (``settings``: DatasetSpec.lists_settings)."""
    kind = KINDS[settings["name"]]
    lists = kind.make_lists(settings, str(videos_dir), None if splits_dir is None else str(splits_dir))
    return attach_validation(lists, settings.get("val_fraction", 0), settings.get("seed", 0))


def video_source_dir(spec: DatasetSpec, extracted_videos: str) -> str:
    """The folder the downscale and lists stages read videos from: the user's root or the extraction."""
    return str(Path(spec.root)) if spec.kind.name in ROOT_KINDS else extracted_videos


def read_class_names(path: str | os.PathLike) -> list[str]:
    """``dataset.classes`` given as a file: one class name per line, label = line order."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"dataset.classes: no such file {path} (a file of class names, one per line, or a list)")
    return [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
