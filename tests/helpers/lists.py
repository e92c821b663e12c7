"""The list files of one UCF-101 split, written as the make_lists stage writes them (validation =
the test list) from the library functions its UCF-101 path composes, for tests that start from
split files alone."""

from __future__ import annotations

import os
from types import SimpleNamespace

from nlflow.lists.holdout import attach_validation
from nlflow.lists.listfiles import list_paths, write_lists
from nlflow.lists.ucf101 import ucf101_lists


def write_ucf101_lists(split_dir: str | os.PathLike, split: int, out_dir: str | os.PathLike,
                       video_root: str | os.PathLike | None = None,
                       expected_num_classes: int | None = None) -> SimpleNamespace:
    """Write train/val/test/classes.txt and lists.json into ``out_dir``; nothing when a check fails.

    ``video_root`` None skips the check that every listed video exists. Returns lists.json's
    content as attributes (``num_train``, ``num_test``, ...), and as a dict from ``to_dict()``.
    """
    lists = attach_validation(ucf101_lists(split_dir, split, video_root, expected_num_classes), 0, 0)
    write_lists(list_paths(out_dir), lists)
    return SimpleNamespace(**lists.summary(), to_dict=lists.summary)
