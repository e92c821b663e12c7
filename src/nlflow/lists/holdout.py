"""Seeded, stratified, group-preserving splits: the test split of a `folder` dataset and the
validation list held out of any kind's training list.

Whole groups move (clips cut from one recording, one UCF-101 group, one HMDB-51 source film), so no
group has videos on both sides; within that constraint each class gets as close as possible to the
requested fraction. The same videos, fraction and seed always give the same split: videos are
sorted before the groups are shuffled with ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter, defaultdict
from typing import Any, Mapping, Sequence

import numpy as np

from nlflow.errors import NlflowError
from nlflow.lists.listfiles import DatasetLists, ListedVideo

log = logging.getLogger(__name__)


class HoldoutError(NlflowError):
    """A split would leave a class without training videos."""


def hold_out(
    videos: Sequence[ListedVideo], fraction: float, seed: int, classes: Sequence[str], what: str
) -> tuple[list[ListedVideo], list[ListedVideo]]:
    """Split ``videos`` into (kept, held out) with about ``fraction`` of every class held out.

    Groups are visited in a seeded random order, again and again: a group changes sides when that
    brings its classes' held-out counts closer to their targets (``fraction x`` the class size, in
    summed squares) and leaves each class at least one kept video. Every move lowers that error, so
    the passes end. ``what`` names the held-out side in messages ("test", "validation").
    """
    if not 0 < fraction < 1:
        raise HoldoutError(f"the {what} fraction must be between 0 and 1, got {fraction}")
    ordered = sorted(videos, key=lambda video: (video.label, video.path))
    members: dict[str, list[ListedVideo]] = defaultdict(list)
    for video in ordered:
        members[video.group].append(video)
    class_size = Counter(video.label for video in ordered)
    target = {label: fraction * size for label, size in class_size.items()}
    names = sorted(members)
    counts = {group: Counter(video.label for video in members[group]) for group in names}
    visit = [names[index] for index in np.random.default_rng(seed).permutation(len(names))]
    held_count: Counter = Counter()
    held_groups: set[str] = set()
    moved = True
    while moved:
        moved = False
        for group in visit:
            sign = -1 if group in held_groups else 1
            if sign > 0 and any(held_count[label] + n >= class_size[label] for label, n in counts[group].items()):
                continue  # it would hold out every video of a class
            before = sum((held_count[label] - target[label]) ** 2 for label in counts[group])
            after = sum((held_count[label] + sign * n - target[label]) ** 2 for label, n in counts[group].items())
            if after < before - 1e-9:
                held_groups.symmetric_difference_update({group})
                held_count.update({label: sign * n for label, n in counts[group].items()})
                moved = True
    kept = [video for video in ordered if video.group not in held_groups]
    held = [video for video in ordered if video.group in held_groups]
    empty = sorted(classes[label] for label in class_size if held_count[label] == 0)
    if empty:
        log.warning(
            "%d class(es) have no %s videos (too few videos or groups for a fraction of %g): %s",
            len(empty), what, fraction, ", ".join(empty),
        )
    return kept, held


def attach_validation(lists: DatasetLists, val_fraction: float, seed: int) -> DatasetLists:
    """Give ``lists`` its validation list: its own (kept), held out of train, or the test list."""
    if lists.val is not None:
        if val_fraction:
            raise HoldoutError("a validation list is given and dataset.val_fraction is not 0: choose one")
        return dataclasses.replace(lists, about={**lists.about, "validation": "list"})
    if val_fraction:
        train, val = hold_out(lists.train, val_fraction, seed, lists.classes, "validation")
        about = {**lists.about, "validation": "held_out", "val_fraction": val_fraction, "seed": seed}
        return dataclasses.replace(lists, train=train, val=val, about=about)
    return dataclasses.replace(lists, val=list(lists.test), about={**lists.about, "validation": "test"})


VALIDATION_TEXT = {
    "list": "validation uses its own list",
    "held_out": "validation is held out of the training videos (whole groups, seeded)",
    "test": "validation uses the test list (dataset.val_fraction is 0)",
}


def validation_source(section: Mapping[str, Any]) -> str:
    """Where a run's validation list comes from, in words, from its `dataset` config section."""
    if (section.get("lists") or {}).get("val"):
        return VALIDATION_TEXT["list"]
    return VALIDATION_TEXT["held_out" if section.get("val_fraction") else "test"]
