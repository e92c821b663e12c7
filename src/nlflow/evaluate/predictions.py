"""``predictions.csv``: one row per scored test video, its label, its prediction and its top five."""

from __future__ import annotations

import csv
import os
from typing import Sequence

import numpy as np

from nlflow.evaluate.metrics import top_k
from nlflow.fileio import atomic_path

PREDICTION_COLUMNS = ["video", "label", "label_name", "predicted", "predicted_name", "probability", "top5", "top5_names"]


def prediction_rows(
    videos: Sequence[str], labels: Sequence[int], scores: np.ndarray, classes: Sequence[str]
) -> list[list]:
    rows = []
    best = top_k(scores, 5)
    for video, label, row_scores, top in zip(videos, labels, scores, best):
        predicted = int(top[0])
        rows.append(
            [
                video,
                int(label),
                classes[int(label)],
                predicted,
                classes[predicted],
                f"{float(row_scores[predicted]):.6f}",
                " ".join(str(int(c)) for c in top),
                "|".join(classes[int(c)] for c in top),  # "|": a class name may contain spaces
            ]
        )
    return rows


def write_predictions_csv(path: str | os.PathLike, rows: Sequence[Sequence]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(PREDICTION_COLUMNS)
        writer.writerows(rows)
