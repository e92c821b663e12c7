"""The data behind a run's numbers, for the reports: per class, how many videos trained and how many
were tested; which listed videos were left out because they cannot be decoded (the downscale
manifest's corrupt, empty and missing videos); which classes have no test video, so that their
accuracy is unknown and the mean class accuracy leaves them out.

Read from the lists (``lists/split<k>/``) and the downscale manifest, the files the stores were
built from: the report says what the stores hold without opening them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import pandas as pd

from nlflow.lists.listfiles import read_classes, read_list
from nlflow.video.manifest import exclusion_reason, read_manifest

# The lists a run uses, in the order the report shows them.
LISTS = ("train", "val", "test")


@dataclass(frozen=True)
class DataOverview:
    """``per_class``: one row per class in label order (``class``, ``train``, ``val``, ``test``:
    usable videos in each list, ``excluded``: listed but undecodable); ``excluded``: one row per
    left-out list entry (``list``, ``video``, ``class``, ``reason``, ``error``); ``separate_val``:
    the validation list is not the test list."""

    per_class: pd.DataFrame
    excluded: pd.DataFrame
    separate_val: bool

    @property
    def classes_without_test_videos(self) -> list[str]:
        return self.per_class.loc[self.per_class["test"] == 0, "class"].tolist()

    @property
    def num_classes(self) -> int:
        return len(self.per_class)


def read_data_overview(*, lists: Mapping[str, str | os.PathLike], manifest: str | os.PathLike) -> DataOverview:
    """The overview of one run's data; ``lists`` maps ``train``, ``val``, ``test``, ``classes``
    and ``summary`` (lists.json) to make_lists' outputs."""
    classes = read_classes(lists["classes"])
    rows = read_manifest(manifest)
    validation = json.loads(Path(lists["summary"]).read_text(encoding="utf-8")).get("validation", "test")
    separate_val = validation != "test"
    counts = pd.DataFrame(0, index=range(len(classes)), columns=[*LISTS, "excluded"])
    excluded = []
    for name in LISTS:
        if name == "val" and not separate_val:
            continue  # the test list again: its videos are counted once, as test videos
        for video, label in read_list(lists[name], num_classes=len(classes)):
            row = rows.get(video)
            reason = exclusion_reason(row)
            if reason is None:
                counts.loc[label, name] += 1
                continue
            counts.loc[label, "excluded"] += 1
            excluded.append({"list": name, "video": video, "class": classes[label], "reason": reason,
                             "error": row.error if row is not None else "not in the downscale manifest"})
    per_class = pd.concat([pd.DataFrame({"class": classes}), counts], axis=1)
    return DataOverview(
        per_class=per_class,
        excluded=pd.DataFrame(excluded, columns=["list", "video", "class", "reason", "error"]),
        separate_val=separate_val,
    )
