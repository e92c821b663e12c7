"""Video-level and clip-level accuracy from per-view scores (pure numpy, no model, no files).

Scores arrive as one array per kind, shaped ``[videos, views, classes]``:
``view_probs`` (softmax over classes at every position of the fully-convolutional output, averaged
over positions: what the original averaged) and ``view_logits`` (the position-averaged logits).
A rule in :data:`AGGREGATES` turns the views of one video into one score vector.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from nlflow.errors import NlflowError


class MetricsError(NlflowError):
    """Scores, labels or an aggregation request do not fit together."""


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = logits - np.max(logits, axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / np.sum(exp, axis=axis, keepdims=True)


def _mean_softmax(probs: np.ndarray, logits: np.ndarray) -> np.ndarray:
    return probs.mean(axis=1)


def _mean_logits(probs: np.ndarray, logits: np.ndarray) -> np.ndarray:
    # Softmax afterwards so the result is still a probability (same ranking as the mean logits).
    return softmax(logits.mean(axis=1), axis=-1)


def _max_softmax(probs: np.ndarray, logits: np.ndarray) -> np.ndarray:
    # Not normalised: the score of a class is its most confident view.
    return probs.max(axis=1)


AGGREGATES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "mean_softmax": _mean_softmax,  # the original's rule
    "mean_logits": _mean_logits,
    "max_softmax": _max_softmax,
}


def view_subset_indices(num_clips: int, num_crops: int, subset: str | Sequence[int] | None) -> list[int]:
    """View indices (clip-major: view = clip * num_crops + crop) selected by ``subset``.

    ``None`` / ``"all"``: every view. ``"center_crop"``: the centre crop of every clip.
    ``"clips:N"``: N clips spread evenly over the ``num_clips`` (all their crops).
    ``"center_crop,clips:N"``: both. A sequence of ints: those view indices.
    """
    num_views = num_clips * num_crops
    if subset is None or subset == "all":
        return list(range(num_views))
    if not isinstance(subset, str):
        views = [int(v) for v in subset]
        bad = [v for v in views if not 0 <= v < num_views]
        if bad or not views:
            raise MetricsError(f"view subset {views} must be non-empty indices in 0..{num_views - 1}")
        return views
    crops = list(range(num_crops))
    clips = list(range(num_clips))
    for part in (p.strip() for p in subset.split(",") if p.strip()):
        if part == "center_crop":
            crops = [num_crops // 2]  # three_crops order is left/top, centre, right/bottom
        elif part.startswith("clips:"):
            try:
                n = int(part.split(":", 1)[1])
            except ValueError:
                raise MetricsError(f"bad view subset {part!r}: expected clips:N with an integer N") from None
            if not 1 <= n <= num_clips:
                raise MetricsError(f"view subset {part!r}: N must be in 1..{num_clips}")
            clips = _spread(num_clips, n)
        else:
            raise MetricsError(f"unknown view subset {part!r}: use all, center_crop, clips:N or a list of view indices")
    return [c * num_crops + k for c in clips for k in crops]


def _spread(num_clips: int, n: int) -> list[int]:
    """n clip indices spread evenly over 0..num_clips-1 (n = 1: the middle clip)."""
    if n == 1:
        return [num_clips // 2]
    return [int(round(x)) for x in np.linspace(0, num_clips - 1, n)]


def aggregate_scores(
    view_probs: np.ndarray,
    view_logits: np.ndarray,
    rule: str = "mean_softmax",
    views: Sequence[int] | None = None,
) -> np.ndarray:
    """[videos, views, C] per-view scores -> [videos, C] video scores by ``rule`` over ``views``."""
    if rule not in AGGREGATES:
        raise MetricsError(f"unknown aggregation {rule!r}; choose one of {', '.join(AGGREGATES)}")
    probs = np.asarray(view_probs, dtype=np.float64)
    logits = np.asarray(view_logits, dtype=np.float64)
    if probs.ndim != 3 or probs.shape != logits.shape:
        raise MetricsError(f"per-view scores must be [videos, views, classes], got {probs.shape} and {logits.shape}")
    if views is not None:
        probs, logits = probs[:, list(views)], logits[:, list(views)]
    return AGGREGATES[rule](probs, logits)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best classes per row, best first (ties: lower class index first)."""
    k = min(k, scores.shape[-1])
    return np.argsort(-scores, axis=-1, kind="stable")[..., :k]


def topk_hits(scores: np.ndarray, labels: np.ndarray, k: int) -> int:
    """Number of rows whose label is among the k best scores."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        return 0
    return int((top_k(scores, k) == labels[:, None]).any(axis=1).sum())


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows whose label is among the k best scores (k >= classes gives 1.0)."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        return float("nan")
    return topk_hits(scores, labels, k) / len(labels)


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """[C, C] counts: row = true class, column = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
    return matrix


def per_class_accuracy(matrix: np.ndarray) -> np.ndarray:
    """Accuracy of each true class from a confusion matrix; NaN for classes with no videos."""
    counts = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, np.diag(matrix) / np.maximum(counts, 1), np.nan)


def mean_class_accuracy(matrix: np.ndarray) -> float:
    """Mean of the per-class accuracies over the classes that have at least one video."""
    acc = per_class_accuracy(matrix)
    present = ~np.isnan(acc)
    return float(acc[present].mean()) if present.any() else float("nan")


def clip_hits(view_probs: np.ndarray, labels: np.ndarray, views: Sequence[int] | None = None) -> int:
    """How many (video, view) pairs have the label as their best class."""
    probs = np.asarray(view_probs)
    if views is not None:
        probs = probs[:, list(views)]
    if probs.size == 0:
        return 0
    return int((probs.argmax(axis=-1) == np.asarray(labels)[:, None]).sum())


def clip_top1(view_probs: np.ndarray, labels: np.ndarray, views: Sequence[int] | None = None) -> float:
    """Clip-level (single view) top-1: every (video, view) pair counts as one prediction."""
    probs = np.asarray(view_probs)
    count = len(probs) * (len(views) if views is not None else (probs.shape[1] if probs.ndim > 1 else 0))
    return clip_hits(probs, labels, views) / count if count else float("nan")


def compute_metrics(
    view_probs: np.ndarray,
    view_logits: np.ndarray,
    labels: Sequence[int],
    classes: Sequence[str],
    aggregate: str = "mean_softmax",
    views: Sequence[int] | None = None,
    num_listed: int | None = None,
) -> dict:
    """All evaluation numbers as a JSON-ready dict (accuracies in 0..1), from per-view scores
    ``[videos, views, C]``; see :func:`metrics_from_video_scores`."""
    labels_arr = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(view_probs)
    if probs.ndim != 3 or probs.shape[0] != len(labels_arr):
        raise MetricsError(f"{len(labels_arr)} labels for per-view scores shaped {probs.shape}")
    if probs.shape[2] != len(classes):
        raise MetricsError(f"scores have {probs.shape[2]} classes but {len(classes)} class names were given")
    selected = list(views) if views is not None else list(range(probs.shape[1]))
    scores = aggregate_scores(probs, view_logits, aggregate, selected)
    return metrics_from_video_scores(scores, labels_arr, classes, aggregate, selected,
                                     clip_hits(probs, labels_arr, selected), num_listed)


def metrics_from_video_scores(
    scores: np.ndarray,
    labels: Sequence[int],
    classes: Sequence[str],
    aggregate: str,
    views: Sequence[int],
    clip_hit_count: int,
    num_listed: int | None = None,
) -> dict:
    """All evaluation numbers from video scores ``[videos, C]`` (views already aggregated by
    ``aggregate`` over ``views``) and the number of (video, view) pairs whose view alone was right:
    evaluation keeps only these per video, never every view's scores (memory stays C floats a video).

    ``top1``/``top5`` are video-level over ``num_listed`` videos, the whole test list as the
    original counts it (``TEST.DATASET_SIZE``): a listed video without scores (it failed to decode)
    counts as wrong. ``top1_decoded``/``top5_decoded`` and everything else (``mean_class_accuracy``,
    ``clip_top1``, per-class numbers, the confusion matrix) are over the scored videos only.
    ``num_listed`` None: every video was scored.
    """
    labels_arr = np.asarray(labels, dtype=np.int64)
    num_classes = len(classes)
    scores = np.asarray(scores)
    listed = _checked_listed(scores, labels_arr, num_classes, num_listed)
    selected = list(views)
    predicted = scores.argmax(axis=1) if len(labels_arr) else np.zeros(0, dtype=np.int64)
    matrix = confusion_matrix(labels_arr, predicted, num_classes)
    hits1, hits5 = topk_hits(scores, labels_arr, 1), topk_hits(scores, labels_arr, 5)
    clip_count = len(labels_arr) * len(selected)
    return {
        "top1": hits1 / listed if listed else float("nan"),
        "top5": hits5 / listed if listed else float("nan"),
        "top1_decoded": topk_accuracy(scores, labels_arr, 1),
        "top5_decoded": topk_accuracy(scores, labels_arr, 5),
        "mean_class_accuracy": mean_class_accuracy(matrix),
        "clip_top1": clip_hit_count / clip_count if clip_count else float("nan"),
        "num_listed": listed,
        "num_videos": int(len(labels_arr)),
        "num_views": len(selected),
        "views": selected,
        "aggregate": aggregate,
        "classes": list(classes),
        "per_class": _per_class(matrix, classes),
        "confusion_matrix": matrix.tolist(),
    }


def _checked_listed(scores: np.ndarray, labels: np.ndarray, num_classes: int, num_listed: int | None) -> int:
    """The number of listed videos, after checking that scores, labels and classes fit together."""
    if scores.ndim != 2 or scores.shape[0] != len(labels):
        raise MetricsError(f"{len(labels)} labels for video scores shaped {scores.shape}")
    if scores.shape[1] != num_classes:
        raise MetricsError(f"scores have {scores.shape[1]} classes but {num_classes} class names were given")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise MetricsError(f"labels must be in 0..{num_classes - 1}")
    listed = len(labels) if num_listed is None else int(num_listed)
    if listed < len(labels):
        raise MetricsError(f"{len(labels)} scored videos but only {listed} listed")
    return listed


def _per_class(matrix: np.ndarray, classes: Sequence[str]) -> list[dict]:
    """Videos, correct ones and accuracy of every true class (accuracy None for a class without videos)."""
    class_acc = per_class_accuracy(matrix)
    return [
        {
            "label": c,
            "class": classes[c],
            "videos": int(matrix[c].sum()),
            "correct": int(matrix[c, c]),
            "accuracy": None if np.isnan(class_acc[c]) else float(class_acc[c]),
        }
        for c in range(len(classes))
    ]
