"""Strip a Caffe2 checkpoint down to what a fine-tuning run may start from.

``model_iter``, ``lr`` and the ``*_momentum`` solver buffers must go: with them a Kinetics
checkpoint resumes at iteration 400k and "ends training at once". The classifier goes when the
class count changes (or on request); BN running statistics stay unless asked otherwise
(the original ``modify_blob_rm.py`` deleted them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

TRAINING_STATE = ("model_iter", "lr")
_SCOPE = re.compile(r"^(?:gpu|cpu)_\d+/")  # Caffe2 device scopes, e.g. "gpu_0/conv1_w"


@dataclass
class CleanReport:
    """What ``clean_blobs`` removed and why."""

    training_state: list[str] = field(default_factory=list)
    head: list[str] = field(default_factory=list)
    bn_stats: list[str] = field(default_factory=list)
    unscoped: int = 0
    head_classes: int | None = None  # rows of pred_w in the source, if it had one
    head_reason: str = ""

    @property
    def dropped(self) -> list[str]:
        return self.training_state + self.head + self.bn_stats

    def summary(self) -> str:
        parts = [f"dropped {len(self.training_state)} solver-state blobs (iteration, lr, momentum)"]
        if self.head:
            parts.append(f"dropped the classifier ({self.head_reason})")
        if self.bn_stats:
            parts.append(f"dropped {len(self.bn_stats)} BN running statistics")
        if self.unscoped:
            parts.append(f"removed the device scope from {self.unscoped} names")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "training_state": list(self.training_state),
            "head": list(self.head),
            "bn_stats": list(self.bn_stats),
            "unscoped": self.unscoped,
            "head_classes": self.head_classes,
            "head_reason": self.head_reason,
        }


def is_training_state(name: str) -> bool:
    return name in TRAINING_STATE or name.endswith("_momentum")


def is_bn_stat(name: str) -> bool:
    return name.endswith(("_bn_rm", "_bn_riv"))


def head_classes(blobs: Mapping[str, Any]) -> int | None:
    """Number of classes of the source classifier (rows of ``pred_w``), if any."""
    if "pred_w" in blobs:
        return int(np.shape(blobs["pred_w"])[0])
    if "pred_b" in blobs:
        return int(np.shape(blobs["pred_b"])[0])
    return None


def clean_blobs(
    blobs: Mapping[str, Any],
    num_classes: int | None,
    drop_head: bool = False,
    keep_bn_stats: bool = True,
) -> tuple[dict[str, Any], CleanReport]:
    """Return (kept blobs, report). ``num_classes`` None keeps the head whatever its size."""
    report = CleanReport()
    unscoped: dict[str, Any] = {}
    for name, value in blobs.items():
        bare = _SCOPE.sub("", name)
        report.unscoped += bare != name
        unscoped[bare] = value

    report.head_classes = head_classes(unscoped)
    if report.head_classes is not None:
        if drop_head:
            report.head_reason = "requested"
        elif num_classes is not None and report.head_classes != num_classes:
            report.head_reason = f"{report.head_classes} classes in the file, {num_classes} wanted"

    kept: dict[str, Any] = {}
    for name, value in unscoped.items():
        if is_training_state(name):
            report.training_state.append(name)
        elif name in ("pred_w", "pred_b") and report.head_reason:
            report.head.append(name)
        elif is_bn_stat(name) and not keep_bn_stats:
            report.bn_stats.append(name)
        else:
            kept[name] = value
    return kept, report
