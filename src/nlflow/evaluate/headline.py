"""The few numbers a reader of the HTML report wants first, read from a finished evaluation.

Snakemake renders the report's front page (``workflow/report/workflow.rst``) without any job's
outputs, so the report and compare rules read these numbers when the DAG is built and hand them to
the page in their params (``ReportOnly``, which never makes a job run again).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping


def percent(value: Any) -> str:
    """A fraction as a percentage with two decimals; "n/a" for anything that is not a finite number."""
    return f"{100.0 * value:.2f} %" if isinstance(value, (int, float)) and math.isfinite(value) else "n/a"


def shows_top5(evaluation: dict) -> bool:
    """Top-5 says something only with more than 5 classes (with 5 or fewer it is always 100 %)."""
    return len(evaluation.get("classes") or []) > 5


def classes_scored(evaluation: dict) -> tuple[int, int]:
    """(classes with at least one scored test video, all classes): what the mean class accuracy is over."""
    per_class = evaluation.get("per_class") or []
    return sum(row.get("accuracy") is not None for row in per_class), len(per_class)


def headline_numbers(metrics_json: str | os.PathLike, config: Mapping[str, Any],
                     lists: Mapping[str, str | os.PathLike] | None = None,
                     manifest: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """Video top-1 (and top-5 with more than 5 classes), mean class accuracy and over how many
    classes, clip top-1, test-video counts, model, dataset and split, as display strings; with the
    lists and the downscale manifest, also the data problems (undecodable videos, classes without
    test videos). None when the evaluation has not run yet (or its file cannot be read)."""
    try:
        with open(metrics_json) as handle:
            metrics = json.load(handle)
    except (OSError, ValueError):
        return None
    if not isinstance(metrics, dict):  # damaged: the report rule says so; the front page just lacks numbers
        return None
    model = config.get("model", {})
    nonlocal_part = " non-local" if model.get("use_nonlocal") else ""
    scored, total = classes_scored(metrics)
    numbers = {
        "top1": percent(metrics.get("top1")),
        "top5": percent(metrics.get("top5")) if shows_top5(metrics) else None,
        "mean_class_accuracy": percent(metrics.get("mean_class_accuracy")),
        "classes_scored": f"{scored} of {total}" if scored < total else f"all {total}",
        "clip_top1": percent(metrics.get("clip_top1")),
        "num_listed": metrics.get("num_listed", metrics.get("num_videos", "n/a")),
        "num_videos": metrics.get("num_videos", "n/a"),
        "num_views": metrics.get("num_views", "n/a"),
        "aggregate": metrics.get("aggregate", "n/a"),
        "model": f"{str(model.get('arch', '?')).upper()}{nonlocal_part} ResNet-{model.get('depth', '?')}, "
        f"{model.get('video_length', '?')} x {model.get('sample_rate', '?')} frames",
        "dataset": config.get("dataset", {}).get("name", "?"),
        "split": config.get("dataset", {}).get("split", "?"),
    }
    if lists is not None and manifest is not None:
        numbers.update(_data_problems(lists, manifest))
    return numbers


def _data_problems(lists: Mapping[str, str | os.PathLike], manifest: str | os.PathLike) -> dict[str, Any]:
    """The front page's data lines; nothing when the lists or the manifest cannot be read (the
    report job says why)."""
    from nlflow.errors import NlflowError
    from nlflow.evaluate.data_overview import read_data_overview

    try:
        data = read_data_overview(lists=lists, manifest=manifest)
    except (NlflowError, OSError, ValueError):
        return {}
    return {
        "excluded": [f"{row['video']} ({row['list']}, {row['reason']})" for row in data.excluded.to_dict("records")],
        "no_test_classes": data.classes_without_test_videos,
    }


def comparison_headline(summary_csv: str | os.PathLike) -> list[dict[str, Any]] | None:
    """Each experiment's video top-1 / top-5 from ``compare/summary.csv``, as display strings;
    None until the comparison exists (or when it cannot be read)."""
    import csv

    try:
        with open(summary_csv, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, csv.Error, UnicodeDecodeError):
        return None

    def pct(text: str) -> str:
        try:
            return percent(float(text))
        except ValueError:
            return "n/a"

    return [{"experiment": row.get("experiment", "?"), "top1": pct(row.get("top1", "")),
             "top5": pct(row.get("top5", ""))} for row in rows]
