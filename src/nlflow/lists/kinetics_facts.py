"""Kinetics-400 facts from the original (video-nonlocal-net at commit c253ed5), shipped as data:

- ``data/kinetics400_classes.csv``: ``process_data/kinetics/classids.json`` as ``label,name``,
  the 400 outputs of every released model in order (ids 0..399 are the names in alphabetical
  order; multi-word names carry spaces, as in the official annotations, and may hold parentheses
  and apostrophes: ``passing American football (in game)``, ``massaging person's head``);
- ``data/kinetics400_val_original.csv``: ``process_data/kinetics/vallist.txt`` as
  ``youtube_id,label``, the 19,761 validation videos behind the README's top-1 / top-5
  (``TEST.DATASET_SIZE: 19761``). The ids are the first 11 characters of each file name there
  (``abseiling/0wR5jVB-WPk.mp4``; some names carry a second suffix, ``9EnSwbXxu5g.mp4.webm``).
"""

from __future__ import annotations

import csv
import functools
import io
from importlib import resources

ORIGINAL_VAL_COUNT = 19761
NUM_CLASSES = 400


def _rows(name: str) -> list[list[str]]:
    text = resources.files("nlflow.lists").joinpath("data", name).read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    return rows[1:]  # the header


@functools.cache
def kinetics400_classes() -> tuple[str, ...]:
    """The 400 class names of classids.json, index = label."""
    rows = _rows("kinetics400_classes.csv")
    names = tuple(name for _, name in rows)
    assert [int(label) for label, _ in rows] == list(range(NUM_CLASSES)), "kinetics400_classes.csv is out of order"
    return names


@functools.cache
def original_val_list() -> tuple[tuple[str, int], ...]:
    """(youtube id, label) of every video of the original's vallist.txt, in its order."""
    return tuple((youtube_id, int(label)) for youtube_id, label in _rows("kinetics400_val_original.csv"))
