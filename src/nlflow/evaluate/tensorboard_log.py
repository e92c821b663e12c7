"""Evaluation's part of a run's TensorBoard events (``train.tensorboard: true``): the video-level
confusion matrix as an image, and video top-1 / top-5, at the run's last iteration, next to the
training curves in ``<run folder>/tensorboard/`` (:mod:`nlflow.train.tensorboard`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from nlflow.evaluate.report import confusion_figure
from nlflow.train.tensorboard import open_writer

CONFUSION_TAG = "evaluate/confusion_matrix"
SCALARS = {"top1": "evaluate/video_top1", "top5": "evaluate/video_top5"}


def log_evaluation(run_dir: str | os.PathLike, metrics: Mapping[str, Any], step: int) -> Path:
    """Add ``metrics`` (evaluation's metrics.json) to the run's event files; returns their folder."""
    writer = open_writer(run_dir)
    try:
        writer.add_figure(CONFUSION_TAG, confusion_figure(metrics["confusion_matrix"], metrics["classes"]),
                          global_step=step)
        for key, tag in SCALARS.items():
            writer.add_scalar(tag, float(metrics[key]), global_step=step)
    finally:
        writer.close()
    return Path(writer.log_dir)
