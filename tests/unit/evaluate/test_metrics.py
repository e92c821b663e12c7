"""Metrics on hand-made arrays whose answers are known."""

import math

import numpy as np
import pytest

from nlflow.evaluate.metrics import (
    MetricsError,
    aggregate_scores,
    clip_top1,
    compute_metrics,
    confusion_matrix,
    mean_class_accuracy,
    per_class_accuracy,
    softmax,
    top_k,
    topk_accuracy,
    view_subset_indices,
)


def test_topk_accuracy_known_answers():
    scores = np.array(
        [
            [0.1, 0.7, 0.2],  # label 1: top-1 hit
            [0.5, 0.3, 0.2],  # label 1: second best
            [0.6, 0.3, 0.1],  # label 2: last
            [0.2, 0.2, 0.6],  # label 2: hit
        ]
    )
    labels = np.array([1, 1, 2, 2])
    assert topk_accuracy(scores, labels, 1) == pytest.approx(0.5)
    assert topk_accuracy(scores, labels, 2) == pytest.approx(0.75)
    # k at least the number of classes: everything is in the top-k
    assert topk_accuracy(scores, labels, 5) == pytest.approx(1.0)
    assert top_k(scores, 2).tolist() == [[1, 2], [0, 1], [0, 1], [2, 0]]


def test_confusion_and_class_accuracy():
    labels = np.array([0, 0, 0, 1, 2, 2])
    predicted = np.array([0, 0, 1, 1, 0, 2])
    matrix = confusion_matrix(labels, predicted, 4)
    assert matrix.tolist() == [[2, 1, 0, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    acc = per_class_accuracy(matrix)
    assert acc[:3].tolist() == pytest.approx([2 / 3, 1.0, 0.5])
    assert math.isnan(acc[3])  # no videos of class 3: left out of the mean
    assert mean_class_accuracy(matrix) == pytest.approx((2 / 3 + 1.0 + 0.5) / 3)


def test_aggregation_rules_differ_where_they_should():
    # One video, 2 views, 2 classes. View 0 is very sure of class 0, view 1 mildly prefers class 1 twice.
    logits = np.array([[[4.0, 0.0], [0.0, 1.0]]])
    probs = softmax(logits)
    mean_soft = aggregate_scores(probs, logits, "mean_softmax")
    assert mean_soft[0].tolist() == pytest.approx(probs[0].mean(axis=0).tolist())
    assert mean_soft[0].argmax() == 0
    mean_logit = aggregate_scores(probs, logits, "mean_logits")
    assert mean_logit[0].tolist() == pytest.approx(softmax(np.array([2.0, 0.5])).tolist())
    max_soft = aggregate_scores(probs, logits, "max_softmax")
    assert max_soft[0].tolist() == pytest.approx(probs[0].max(axis=0).tolist())
    # Only view 1: class 1 wins
    assert aggregate_scores(probs, logits, "mean_softmax", views=[1])[0].argmax() == 1
    with pytest.raises(MetricsError, match="unknown aggregation"):
        aggregate_scores(probs, logits, "median")


def test_clip_top1_counts_every_view():
    probs = np.array(
        [
            [[0.9, 0.1], [0.4, 0.6], [0.8, 0.2]],  # label 0: 2 of 3 views right
            [[0.3, 0.7], [0.2, 0.8], [0.6, 0.4]],  # label 1: 2 of 3 views right
        ]
    )
    assert clip_top1(probs, np.array([0, 1])) == pytest.approx(4 / 6)
    assert clip_top1(probs, np.array([0, 1]), views=[0]) == pytest.approx(1.0)


def test_view_subsets():
    assert view_subset_indices(10, 3, None) == list(range(30))
    assert view_subset_indices(10, 3, "center_crop") == [c * 3 + 1 for c in range(10)]
    assert view_subset_indices(10, 1, "center_crop") == list(range(10))
    assert view_subset_indices(10, 3, "clips:1,center_crop") == [16]  # clip 5, centre crop
    assert view_subset_indices(10, 3, "clips:2") == [0, 1, 2, 27, 28, 29]
    assert view_subset_indices(10, 3, "clips:10") == list(range(30))
    assert view_subset_indices(10, 3, [0, 4]) == [0, 4]
    for bad in ("clips:0", "clips:11", "clips:x", "corners", [30]):
        with pytest.raises(MetricsError):
            view_subset_indices(10, 3, bad)


def test_compute_metrics_end_to_end():
    classes = ["a", "b", "c", "d", "e", "f"]
    rng = np.random.default_rng(0)
    labels = np.array([0, 1, 2, 3, 4, 5, 0, 1])
    logits = rng.normal(size=(8, 4, 6))
    logits[np.arange(8), :, labels] += 5.0  # every view right ...
    logits[7, :, 2] += 10.0  # ... except video 7 (label 1), predicted as c
    probs = softmax(logits)
    m = compute_metrics(probs, logits, labels, classes)
    assert m["top1"] == pytest.approx(7 / 8)
    assert m["clip_top1"] == pytest.approx(7 / 8)
    assert m["top5"] == pytest.approx(1.0)  # label is the second-best of video 7
    assert m["num_videos"] == 8 and m["num_views"] == 4 and m["aggregate"] == "mean_softmax"
    assert m["confusion_matrix"][1][2] == 1 and m["confusion_matrix"][1][1] == 1
    by_class = {row["class"]: row for row in m["per_class"]}
    assert by_class["b"]["accuracy"] == pytest.approx(0.5) and by_class["b"]["videos"] == 2
    assert m["mean_class_accuracy"] == pytest.approx((5 + 0.5) / 6)
    assert (m["top1_decoded"], m["num_listed"]) == (m["top1"], 8)
    # Two more listed videos that have no scores (failed or left out) count as wrong.
    listed = compute_metrics(probs, logits, labels, classes, num_listed=10)
    assert listed["top1"] == pytest.approx(7 / 10) and listed["top5"] == pytest.approx(8 / 10)
    assert listed["top1_decoded"] == pytest.approx(7 / 8) and listed["num_videos"] == 8
    with pytest.raises(MetricsError, match="listed"):
        compute_metrics(probs, logits, labels, classes, num_listed=7)
    with pytest.raises(MetricsError):
        compute_metrics(probs, logits, labels, classes[:5])
