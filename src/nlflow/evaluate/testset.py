"""What evaluation reads: the network of a checkpoint and the test store's videos, with the class
names of both checked against each other before any video is scored."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from nlflow.errors import EvaluationError


@dataclass(frozen=True)
class TestSet:
    """What evaluation scores: the stored videos in order, the listed ones left out of the store,
    and the class names (checked against the network's)."""

    videos: list[str]
    labels: list[int]
    excluded: list[dict]  # {"video", "label", "reason"}: listed, not in the store, counted as wrong
    classes: list[str]


def load_model(checkpoint: str | os.PathLike) -> nn.Module:
    """The network of an nlflow checkpoint, with a one-line error for a missing or foreign file."""
    from nlflow.models import load_checkpoint

    path = Path(checkpoint)
    if not path.is_file():
        raise EvaluationError(f"checkpoint not found: {path}")
    model = load_checkpoint(path)  # raises CheckpointError (an NlflowError) on a bad file
    if not hasattr(model, "forward_map"):
        raise EvaluationError(f"{path}: the model has no forward_map (not a fully-convolutional nlflow network)")
    return model


def read_test_set(test_lmdb: str | os.PathLike, model: nn.Module, checkpoint: Path) -> TestSet:
    from nlflow.store.lmdb_store import LmdbReader

    reader = LmdbReader(test_lmdb)
    entries = reader.entries()  # headers only: embedded records carry the whole file
    return TestSet(
        videos=[video for video, _ in entries],
        labels=[label for _, label in entries],
        excluded=[{"video": video, "label": label, "reason": reason} for video, label, reason in reader.excluded],
        classes=_scored_classes(model, reader.classes, checkpoint),
    )


def _scored_classes(model: nn.Module, store_classes: list[str], checkpoint: Path) -> list[str]:
    """The class names the scores are for: the network's, which must be the store's when both are known."""
    num_classes = model.config.num_classes
    model_classes = list(getattr(model, "classes", None) or [])
    if model_classes and store_classes and model_classes != store_classes:
        differ = [(a, b) for a, b in zip(model_classes, store_classes) if a != b] or [(len(model_classes), len(store_classes))]
        raise EvaluationError(
            f"{checkpoint} was trained on other classes than the test set (first difference: {differ[0][0]!r} vs {differ[0][1]!r})"
        )
    classes = model_classes or store_classes
    if len(classes) != num_classes:
        raise EvaluationError(f"the model has {num_classes} outputs but the test set has {len(classes)} classes")
    return classes
