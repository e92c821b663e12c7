"""Top-k classes for arbitrary video files with a trained checkpoint (the ``nlflow predict`` command).

Preprocessing is exactly the test path: :func:`nlflow.video.views.load_test_view_frames` with a
:class:`ViewSpec` built from the checkpoint (clip length and stride from its model config; test
scale and crop from its training settings, see
:func:`nlflow.models.checkpoint.checkpoint_test_scale`), and scores from the same
:class:`nlflow.evaluate.scorer.ViewScorer` that ``evaluate`` uses; views are combined by the
original's rule (mean of the per-view softmax) unless ``aggregate`` names another of evaluation's
rules. The checkpoint may also be an exported network (``nlflow export``'s ``.onnx``, run by
onnxruntime, or ``.pt2``), which carries the same model config, classes and view size.

``views``: 30 = 10 clips x 3 crops (the original's test); 3 = 3 clips spread along time x the
centre crop (time matters more than the overlapping side crops for action classes); 1 = one clip
from frame 0, centre crop (:data:`nlflow.video.views.VIEW_LAYOUTS`).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from nlflow.errors import NlflowError, one_line
from nlflow.evaluate.metrics import AGGREGATES, aggregate_scores, top_k
from nlflow.evaluate.scorer import ViewScorer
from nlflow.models.checkpoint import checkpoint_test_scale
from nlflow.video.views import VIEW_LAYOUTS, ViewSpec, layout_spec, load_test_view_frames

log = logging.getLogger(__name__)



class PredictError(NlflowError):
    """Prediction cannot start (bad checkpoint or arguments); per-file problems go into Prediction.error."""


@dataclass
class Prediction:
    """The result for one file: ``top`` is [(class name, probability)] best first, ``labels`` the
    matching class indices; or ``error``, one line, when the file could not be classified."""

    video: str  # the path as given
    top: list[tuple[str, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    num_views: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["top"] = [{"class": name, "label": label, "probability": prob} for (name, prob), label in zip(self.top, self.labels)]
        del data["labels"]
        return data


def view_spec(model_config: dict[str, Any], scale: int, views: int = 30) -> ViewSpec:
    """The ViewSpec that predict uses: the model's clips, ``views`` as :data:`VIEW_LAYOUTS` says, at ``scale``."""
    if views not in VIEW_LAYOUTS:
        raise PredictError(f"--views must be one of {sorted(VIEW_LAYOUTS, reverse=True)}, got {views}")
    return layout_spec(video_length=model_config["video_length"], sample_rate=model_config["sample_rate"],
                       scale=scale, views=views)


def spec_from_checkpoint(payload: dict[str, Any], views: int = 30) -> ViewSpec:
    """The ViewSpec that predict uses for a checkpoint dictionary (see the module docstring)."""
    return view_spec(payload["model_config"], checkpoint_test_scale(payload.get("extra") or {}), views)


@dataclass(frozen=True)
class PredictionNetwork:
    """What predict runs: a ``.pt`` checkpoint's network or an exported one, and what it was trained for."""

    network: Any  # a ResNet3D, or an exported view network (nlflow.export.backends)
    model_config: dict[str, Any]
    classes: list[str]
    scale: int  # test short side and crop

    def spec(self, views: int = 30) -> ViewSpec:
        return view_spec(self.model_config, self.scale, views)


def load_prediction_network(checkpoint: str | os.PathLike) -> PredictionNetwork:
    """A ``.pt`` checkpoint, or an ``.onnx`` / ``.pt2`` file made by ``nlflow export``."""
    from nlflow.export.backends import is_exported, load_exported
    from nlflow.models import load_checkpoint, read_checkpoint

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise PredictError(f"checkpoint not found: {checkpoint}")
    if is_exported(checkpoint):
        exported = load_exported(checkpoint)
        config, classes, scale = exported.info.model_config, exported.info.classes, exported.info.view_size
        network: Any = exported
    else:
        payload = read_checkpoint(checkpoint)
        network = load_checkpoint(checkpoint)
        config, classes = payload["model_config"], network.classes
        scale = checkpoint_test_scale(payload.get("extra") or {})
    num_classes = int(config["num_classes"])
    return PredictionNetwork(network, dict(config), list(classes or [f"class_{i}" for i in range(num_classes)]), scale)


def score_video(source: str | os.PathLike | bytes, scorer: ViewScorer, spec: ViewSpec) -> tuple[np.ndarray, np.ndarray]:
    """Per-view (probs [V, C], logits [V, C]) of one video: the test views + the shared scorer."""
    return scorer.score(load_test_view_frames(source, spec))


def predict_videos(
    paths: Sequence[str | os.PathLike],
    checkpoint: str | os.PathLike,
    topk: int = 5,
    views: int = 30,
    batch_size: int = 30,
    device: str | torch.device | None = None,
    aggregate: str = "mean_softmax",
    amp: str = "none",
) -> list[Prediction]:
    """One Prediction per path, in order; a file that cannot be read or is too short gets ``error``.

    ``aggregate`` combines the views as evaluation's ``test.aggregate`` does (pass the same rule
    to get evaluation's scores; the default is the original's mean of the per-view softmax).
    """
    if topk < 1:
        raise PredictError(f"--topk must be at least 1, got {topk}")
    if aggregate not in AGGREGATES:
        raise PredictError(f"--aggregate must be one of {', '.join(AGGREGATES)}, got {aggregate!r}")
    loaded = load_prediction_network(checkpoint)
    spec = loaded.spec(views)
    classes = loaded.classes
    scorer = ViewScorer(loaded.network, batch_size, device, amp)

    predictions = []
    for path in paths:
        name = str(path)
        try:
            if not Path(path).is_file():
                raise PredictError(f"no such file: {name}")
            probs, logits = score_video(path, scorer, spec)
        except Exception as exc:  # per-file isolation: one bad file must not stop the others
            if not isinstance(exc, NlflowError):
                log.debug("prediction for %s failed", name, exc_info=True)
            message = one_line(exc) if isinstance(exc, NlflowError) else f"{type(exc).__name__}: {one_line(exc)}"
            predictions.append(Prediction(name, error=message))
            continue
        scores = aggregate_scores(probs[None], logits[None], aggregate)[0]
        best = [int(c) for c in top_k(scores[None], topk)[0]]
        predictions.append(
            Prediction(name, [(classes[c], float(scores[c])) for c in best], best, num_views=len(probs))
        )
    return predictions


def format_predictions(preds: Sequence[Prediction], as_json: bool = False) -> str:
    """Human-readable lines (or a JSON list) for the CLI; errors say ``ERROR`` on one line."""
    if as_json:
        return json.dumps([p.to_dict() for p in preds], indent=2)
    lines = []
    for pred in preds:
        if pred.error is not None:
            lines.append(f"{pred.video}: ERROR {pred.error}")
            continue
        lines.append(f"{pred.video} ({pred.num_views} view{'' if pred.num_views == 1 else 's'}):")
        width = max(len(name) for name, _ in pred.top)
        for rank, (name, prob) in enumerate(pred.top, 1):
            lines.append(f"  {rank}. {name:<{width}}  {prob:.4f}")
    return "\n".join(lines)
