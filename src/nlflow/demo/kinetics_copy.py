"""A Kinetics-400 copy of empty files in the CVDF mirror's layout, at any size: what list making
reads (annotation CSVs and file names; nothing is decoded), for measuring it at 246k rows
(``benchmarks/bench_kinetics_lists.py``) and bounding its memory in the tests."""

from __future__ import annotations

import csv
from pathlib import Path

from nlflow.lists.kinetics_facts import kinetics400_classes

MISSING_EVERY = 20  # 5% of the listed videos are not on disk
VAL_ROWS = 400


def youtube_id(index: int) -> str:
    """A distinct 11-character id of YouTube's alphabet."""
    return f"{index:011d}".replace("0", "a")


def write_cvdf_copy(root: Path, train_rows: int, val_rows: int = VAL_ROWS) -> None:
    """``annotations/{train,val}.csv`` rows over the 400 classes in turn, 10 s clips; every
    ``MISSING_EVERY``-th listed video has no file."""
    classes = kinetics400_classes()
    (root / "annotations").mkdir(parents=True)
    for split, rows, offset in (("train", train_rows, 0), ("val", val_rows, train_rows)):
        folder = root / split
        folder.mkdir()
        with open(root / "annotations" / f"{split}.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["label", "youtube_id", "time_start", "time_end", "split", "is_cc"])
            for row in range(rows):
                video = youtube_id(offset + row)
                start = row % 300
                writer.writerow([classes[row % len(classes)], video, start, start + 10, split, 0])
                if row % MISSING_EVERY != MISSING_EVERY - 1:
                    (folder / f"{video}_{start:06d}_{start + 10:06d}.mp4").touch()
