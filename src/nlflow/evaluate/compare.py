"""Experiments side by side: one row per experiment with its test accuracy, its size and its cost,
written as ``summary.csv``, ``summary.md`` and a bar chart."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch.utils.flop_counter import FlopCounterMode

from nlflow.errors import NlflowError
from nlflow.fileio import atomic_path, write_text_atomic

COLUMNS = {
    "experiment": "experiment",
    "top1": "video top-1",
    "top5": "video top-5",
    "clip_top1": "clip top-1",
    "mean_class_accuracy": "mean class accuracy",
    "parameters_m": "parameters (M)",
    "gmacs_per_view": "GMACs per view",
    "train_clips_per_s": "training clips/s",
    "wall_minutes": "wall time (min, train + evaluate)",
}


class CompareError(NlflowError):
    """An experiment's results cannot be read for the comparison."""


def _read_json(path: str | os.PathLike) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise CompareError(f"cannot read {path}: {exc}") from None


def _training_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a damaged line costs one point of the curve, not the comparison
        if isinstance(record, dict) and "loss" in record:
            records.append(record)
    return records


def view_gmacs(model: torch.nn.Module, video_length: int, size: int) -> float:
    """Multiply-accumulates of one test view through the fully-convolutional network, in billions."""
    view = torch.zeros(1, 3, video_length, size, size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval().forward_map(view)
    return counter.get_total_flops() / 2e9


def experiment_row(name: str, eval_metrics: str | os.PathLike, train_metrics: str | os.PathLike | None,
                   model_checkpoint: str | os.PathLike) -> dict[str, Any]:
    """The comparison row of one experiment from its evaluation, training log and evaluated model
    (``train_metrics`` None: the experiment evaluates its pretrained network without training)."""
    from nlflow.models import count_parameters, load_checkpoint

    metrics = _read_json(eval_metrics)
    records = _training_records(train_metrics) if train_metrics is not None else []
    model = load_checkpoint(model_checkpoint)
    spec = metrics.get("spec", {})
    # The first window holds the loader's start-up: the speed is the mean of the others.
    speeds = [r["clips_per_s"] for r in records[1:] if r.get("clips_per_s")] or \
             [r["clips_per_s"] for r in records if r.get("clips_per_s")]
    train_seconds = records[-1].get("elapsed_s", 0.0) if records else 0.0
    eval_seconds = (metrics.get("run") or {}).get("seconds") or 0.0
    return {
        "experiment": name,
        "top1": metrics.get("top1"),
        "top5": metrics.get("top5"),
        "clip_top1": metrics.get("clip_top1"),
        "mean_class_accuracy": metrics.get("mean_class_accuracy"),
        "parameters_m": count_parameters(model) / 1e6,
        "gmacs_per_view": view_gmacs(model, int(spec.get("video_length", model.config.video_length)),
                                     int(spec.get("crop_size", 256))),
        "train_clips_per_s": sum(speeds) / len(speeds) if speeds else math.nan,
        "wall_minutes": (train_seconds + eval_seconds) / 60,
    }


def summarize(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """The comparison table: one row per experiment, in the given order."""
    return pd.DataFrame(list(rows), columns=list(COLUMNS))


def comparison_markdown(frame: pd.DataFrame) -> str:
    shown = frame.rename(columns=COLUMNS)
    for column in ("video top-1", "video top-5", "clip top-1", "mean class accuracy"):
        shown[column] = shown[column].map(lambda v: f"{100 * v:.1f} %" if pd.notna(v) else "n/a")
    for column, digits in (("parameters (M)", 2), ("GMACs per view", 2), ("training clips/s", 1),
                           ("wall time (min, train + evaluate)", 1)):
        shown[column] = shown[column].map(lambda v, d=digits: f"{v:.{d}f}" if pd.notna(v) else "n/a")
    return shown.to_markdown(index=False) + "\n"


def plot_comparison(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Grouped bars: video top-1, video top-5 and clip top-1 of every experiment."""
    names = list(frame["experiment"])
    fig = Figure(figsize=(max(5.0, 1.3 * len(names) + 2), 3.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.26
    for offset, (column, label) in enumerate((("top1", "video top-1"), ("top5", "video top-5"),
                                              ("clip_top1", "clip top-1"))):
        positions = [i + (offset - 1) * width for i in range(len(names))]
        bars = ax.bar(positions, frame[column].fillna(0.0), width, label=label)
        ax.bar_label(bars, labels=[f"{100 * v:.0f}" if pd.notna(v) else "" for v in frame[column]], fontsize=7)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=20 if len(names) > 4 else 0, ha="right" if len(names) > 4 else "center")
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("accuracy")
    ax.set_title("experiments compared on the test set")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path


def write_comparison(rows: Sequence[dict[str, Any]], csv_path: str | os.PathLike, md_path: str | os.PathLike,
                     png_path: str | os.PathLike) -> pd.DataFrame:
    frame = summarize(rows)
    with atomic_path(csv_path) as tmp:
        frame.to_csv(tmp, index=False)
    write_text_atomic(md_path, comparison_markdown(frame))
    plot_comparison(frame, png_path)
    return frame
