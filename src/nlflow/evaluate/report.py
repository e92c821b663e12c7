"""Plots and a short Markdown summary of a training run and its multi-view evaluation.

Figures are drawn on ``matplotlib.figure.Figure`` objects with the Agg canvas, never through
pyplot, so importing this module changes no global backend and leaks no open figures.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from nlflow.errors import NlflowError
from nlflow.evaluate.data_overview import DataOverview
from nlflow.evaluate.headline import classes_scored, percent, shows_top5
from nlflow.fileio import atomic_path, rebuild_hint, write_text_atomic
from nlflow.lists.holdout import validation_source

log = logging.getLogger(__name__)


class ReportError(NlflowError):
    """An input of the report is missing or unreadable."""


def read_metrics_jsonl(path: str | os.PathLike) -> list[dict]:
    """The trainer's JSON lines; blank lines are ignored, and damaged ones (a run killed mid-write,
    a file cut short or with changed bytes) are skipped with one warning that counts them."""
    records, damaged = [], []
    for number, raw in enumerate(Path(path).read_bytes().splitlines(), 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except ValueError:  # JSON and UTF-8 errors alike
            record = None
        if isinstance(record, dict):
            records.append(record)
        else:
            damaged.append(number)
    if damaged:
        log.warning("%s: skipped %d damaged line(s) (first: line %d); the training curves lack those points",
                    path, len(damaged), damaged[0])
    return records


def _series(records: Iterable[dict], key: str) -> tuple[list[float], list[float]]:
    """(iter, value) pairs of the records that carry both as finite numbers."""
    xs, ys = [], []
    for record in records:
        x, y = record.get("iter"), record.get(key)
        if isinstance(x, (int, float)) and isinstance(y, (int, float)) and math.isfinite(y):
            xs.append(float(x))
            ys.append(float(y))
    return xs, ys


def _save_png(fig: Figure, path: Path, dpi: int = 100) -> Path:
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    return path


def plot_training_curves(records: Sequence[dict], path: str | os.PathLike) -> Path:
    """Loss, learning rate and training/validation top-1 against the iteration."""
    fig = Figure(figsize=(12, 3.6))
    panels = (
        ("loss", [("loss", "train loss")], False),
        ("learning rate", [("lr", "lr")], True),
        ("top-1", [("top1", "train clip top-1"), ("val_top1", "val clip top-1")], False),
    )
    for i, (title, keys, log_y) in enumerate(panels):
        ax = fig.add_subplot(1, 3, i + 1)
        drawn = False
        for key, label in keys:
            xs, ys = _series(records, key)
            if xs:
                marker = "o" if key == "val_top1" else None
                ax.plot(xs, ys, label=label, marker=marker, markersize=3)
                drawn = True
        if drawn:
            if log_y and all(y > 0 for y in _series(records, keys[0][0])[1]):
                ax.set_yscale("log")
            if len(keys) > 1:
                ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    return _save_png(fig, Path(path))


def confusion_figure(matrix: Sequence[Sequence[int]], classes: Sequence[str]) -> Figure:
    """Row-normalised confusion matrix (true class on the y axis) with class names on both axes."""
    counts = np.asarray(matrix, dtype=np.float64)
    n = len(classes)
    rows = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    side = min(max(4.0, 0.16 * n + 2.5), 24.0)
    fontsize = max(3.0, min(9.0, 650.0 / max(n, 1)))  # about 60 % of a cell
    fig = Figure(figsize=(side + 1.0, side))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(classes, rotation=90, fontsize=fontsize)
    ax.set_yticklabels(classes, fontsize=fontsize)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("confusion matrix (video level)")
    return fig


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], classes: Sequence[str], path: str | os.PathLike) -> Path:
    """:func:`confusion_figure` as a PNG at ``path``."""
    return _save_png(confusion_figure(matrix, classes), Path(path), dpi=confusion_dpi(len(classes)))


def confusion_dpi(num_classes: int) -> int:
    return 150 if num_classes > 40 else 100  # 101 class names stay legible


def plot_per_class_accuracy(per_class: Sequence[dict], path: str | os.PathLike) -> Path:
    """Horizontal bars of video-level accuracy per class, worst at the top; classes without videos omitted."""
    rows = [r for r in per_class if r.get("accuracy") is not None]
    rows.sort(key=lambda r: (r["accuracy"], r["class"]))
    n = max(len(rows), 1)
    fig = Figure(figsize=(7, min(max(2.5, 0.2 * n + 1.2), 30.0)))
    ax = fig.add_subplot(1, 1, 1)
    if rows:
        ax.barh(range(len(rows)), [r["accuracy"] for r in rows], color="tab:blue")
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels([f'{r["class"]} ({r["videos"]})' for r in rows], fontsize=max(4.0, min(9.0, 600.0 / n)))
        ax.set_ylim(len(rows) - 0.5, -0.5)  # worst first, no empty margins
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlim(0, 1)
    ax.set_xlabel("video-level accuracy (number of test videos in brackets)")
    ax.set_title("per-class accuracy")
    ax.grid(axis="x", alpha=0.3)
    return _save_png(fig, Path(path))


def summary_markdown(evaluation: dict, records: Sequence[dict], settings: dict, figures: Sequence[str],
                     data: DataOverview | None = None) -> str:
    """The text of report.md; ``data`` adds what the numbers rest on (per-class counts, left-out
    videos, classes without test videos)."""
    lines = ["# nlflow report", "", "## Test results", "", *_results_table(evaluation)]
    failed = evaluation.get("failed_videos") or []
    excluded = evaluation.get("excluded_videos") or []
    if failed or excluded:
        lines += ["", "Listed test videos without scores (counted as wrong in the all-listed figures, as the original does):", ""]
        lines += [f"- `{v['video']}`: not in the test store ({v['reason']})" for v in excluded]
        lines += [f"- `{v['video']}`: failed to decode ({v['error']})" for v in failed]
    if data is not None:
        lines += ["", *data_markdown(data, evaluation)]
    iterations, losses = _series(records, "loss")
    _, val = _series(records, "val_top1")
    if records:
        lines += ["", "## Training", ""]
        if iterations:
            lines.append(f"- logged iterations: {len(iterations)}, last: {int(iterations[-1])}")
            lines.append(f"- final training loss: {losses[-1]:.4f}")
        if val:
            lines.append(f"- last validation clip top-1: {percent(val[-1])} (best {percent(max(val))})")
        if "dataset" in settings:
            lines.append(f"- {validation_source(settings['dataset'])}")
    lines += ["", "## Settings", ""]
    if settings:
        for key in sorted(settings):
            lines.append(f"- `{key}`: `{json.dumps(settings[key], sort_keys=True, default=str)}`")
    else:
        lines.append("- (none recorded)")
    lines += ["", "## Figures", ""]
    lines += [f"![{Path(name).stem}]({name})" for name in figures]
    return "\n".join(lines) + "\n"


def _results_table(evaluation: dict) -> list[str]:
    scored, total = classes_scored(evaluation)
    over = f"over {scored} of {total} classes" if scored < total else f"over all {total} classes"
    top5 = shows_top5(evaluation)
    views = evaluation.get("num_views", "?")
    decoded = percent(evaluation.get("top1_decoded")) + (f" / {percent(evaluation.get('top5_decoded'))}" if top5 else "")
    rows = [
        ("video top-1 ({} view{}, {}), all listed test videos".format(
            views, "" if views == 1 else "s", evaluation.get("aggregate", "?")), percent(evaluation.get("top1"))),
        *([("video top-5, all listed test videos", percent(evaluation.get("top5")))] if top5 else []),
        (f"video top-1{' / top-5' if top5 else ''}, decoded videos only", decoded),
        (f"mean class accuracy (video level, decoded videos), {over}", percent(evaluation.get("mean_class_accuracy"))),
        ("clip-level top-1 (single view, not aggregated)", percent(evaluation.get("clip_top1"))),
        ("test videos listed / decoded and scored",
         f"{evaluation.get('num_listed', 'n/a')} / {evaluation.get('num_videos', 'n/a')}"),
    ]
    table = ["| metric | value |", "| --- | --- |", *(f"| {name} | {value} |" for name, value in rows)]
    if not top5:
        table += ["", f"Top-5 is left out: with {total} classes every video has its class among its 5 best."]
    return table


def data_markdown(data: DataOverview, evaluation: dict) -> list[str]:
    """The report's Data section: per-class counts and test accuracy, left-out videos, classes
    without test videos."""
    accuracy = {row["class"]: row.get("accuracy") for row in evaluation.get("per_class") or []}
    columns = ["train", *(["val"] if data.separate_val else []), "test", "excluded"]
    lines = ["## Data", "", f"| class | {' | '.join(columns)} | test accuracy |",
             f"| --- | {' | '.join('---:' for _ in columns)} | ---: |"]
    for row in data.per_class.to_dict("records"):
        counts = " | ".join(str(row[column]) for column in columns)
        lines.append(f"| {row['class']} | {counts} | {percent(accuracy.get(row['class']))} |")
    lines += ["", "Counts are usable videos; `excluded` are listed videos that cannot be decoded, left out of "
              "training and testing (a left-out test video counts as wrong in the all-listed figures)."]
    missing = data.classes_without_test_videos
    if missing:
        lines += ["", f"**Classes without test videos** ({len(missing)} of {data.num_classes}): "
                  + ", ".join(f"`{name}`" for name in missing)
                  + ". Their accuracy is unknown (n/a above) and the mean class accuracy leaves them out; "
                  "give each class more videos (or a test list that holds some)."]
    if len(data.excluded):
        lines += ["", f"**Excluded videos** ({len(data.excluded)}, undecodable; from the downscale manifest):", ""]
        lines += [f"- `{row['video']}` ({row['list']}, class `{row['class']}`): {row['reason']}"
                  + (f" ({row['error']})" if row["error"] else "") for row in data.excluded.to_dict("records")]
    return lines


def read_evaluation(path: str | os.PathLike) -> dict:
    """The evaluation's metrics.json, checked for what the report uses; one clear error if damaged."""
    try:
        evaluation = json.loads(Path(path).read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise ReportError(f"evaluation metrics not found: {path} (run the evaluate step first)") from None
    except ValueError as exc:  # JSON and UTF-8 errors: a file cut short or with changed bytes
        raise ReportError(f"{path} is damaged ({type(exc).__name__}: {exc}); {rebuild_hint(path)}") from None
    problem = _evaluation_problem(evaluation)
    if problem:
        raise ReportError(f"{path} is damaged ({problem}); {rebuild_hint(path)}")
    return evaluation


def _evaluation_problem(evaluation: object) -> str | None:
    """What in a parsed metrics.json is not what evaluate writes (valid JSON can still be damaged), or None."""
    if not isinstance(evaluation, dict):
        return "not a JSON object"
    checks = {
        "classes": lambda names: _list_of(names, lambda name: isinstance(name, str)),
        "confusion_matrix": lambda rows: _list_of(
            rows, lambda row: _list_of(row, lambda n: type(n) is int) and len(row) == len(evaluation["classes"])
        ) and len(rows) == len(evaluation["classes"]),
        "per_class": lambda rows: _list_of(rows, lambda row: isinstance(row, dict) and isinstance(row.get("class"), str)
                                           and type(row.get("videos")) is int
                                           and isinstance(row.get("accuracy"), (int, float, type(None)))),
        "failed_videos": lambda rows: _list_of(rows, lambda row: isinstance(row, dict) and {"video", "error"} <= set(row)),
        "excluded_videos": lambda rows: _list_of(rows, lambda row: isinstance(row, dict) and {"video", "reason"} <= set(row)),
    }
    optional = ("failed_videos", "excluded_videos")
    for key, fits in checks.items():
        if key not in evaluation:
            if key in optional:
                continue
            return f"no {key!r}"
        if not fits(evaluation[key]):
            return f"bad {key!r}"
    return None


def _list_of(value: object, fits) -> bool:
    return isinstance(value, list) and all(fits(item) for item in value)


def write_report(
    train_metrics_jsonl: str | os.PathLike | None,
    eval_metrics_json: str | os.PathLike,
    out_dir: str | os.PathLike,
    settings: dict | None = None,
    data: DataOverview | None = None,
) -> list[Path]:
    """Write training_curves.png, confusion_matrix.png, per_class_accuracy.png and report.md.

    ``train_metrics_jsonl`` may be None or missing (e.g. evaluating a downloaded checkpoint): the
    curves panel then says "no data". ``data`` adds report.md's Data section. Returns the written
    paths, report.md last.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    evaluation = read_evaluation(eval_metrics_json)
    records: list[dict] = []
    if train_metrics_jsonl is not None and Path(train_metrics_jsonl).is_file():
        records = read_metrics_jsonl(train_metrics_jsonl)
    elif train_metrics_jsonl is not None:
        log.warning("training metrics %s not found; the curves will be empty", train_metrics_jsonl)

    classes = evaluation.get("classes") or [str(i) for i in range(len(evaluation.get("confusion_matrix", [])))]
    written = [plot_training_curves(records, out / "training_curves.png")]
    if evaluation.get("confusion_matrix"):
        written.append(plot_confusion_matrix(evaluation["confusion_matrix"], classes, out / "confusion_matrix.png"))
    if evaluation.get("per_class"):
        written.append(plot_per_class_accuracy(evaluation["per_class"], out / "per_class_accuracy.png"))
    report = out / "report.md"
    write_text_atomic(report, summary_markdown(evaluation, records, settings or {}, [p.name for p in written], data))
    written.append(report)
    return written
