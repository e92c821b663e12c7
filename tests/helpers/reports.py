"""Inputs of the report: an evaluation's metrics as evaluate writes them."""

from __future__ import annotations

import json

import numpy as np

from nlflow.evaluate.metrics import compute_metrics, softmax


def write_eval_metrics(path):
    """An evaluation's metrics.json for three classes and six videos, written to ``path``; returns it."""
    rng = np.random.default_rng(1)
    classes = ["Jump", "Run", "Swim"]
    labels = np.array([0, 1, 2, 0, 1, 2])
    logits = rng.normal(size=(6, 3, 3))
    logits[np.arange(6), :, labels] += 2.0
    metrics = compute_metrics(softmax(logits), logits, labels, classes)
    path.write_text(json.dumps(metrics))
    return metrics
