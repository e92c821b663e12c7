"""nlflow model checkpoints: one self-describing model file, loadable with ``torch.load(weights_only=True)``
(a training run's resumable state is a snapshot: :mod:`nlflow.train.snapshots`).

Content: ``{"format": "nlflow-model", "version": 1, "model_config": dict, "classes": list | None,
"state_dict": {name: tensor}, "extra": dict}`` — plain types and tensors only, so loading never
runs code from the file.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nlflow.errors import NlflowError, one_line
from nlflow.fileio import atomic_path, rebuild_hint, zip_damage
from nlflow.models.builder import ModelConfig, build_model

FORMAT = "nlflow-model"
VERSION = 1
DEFAULT_TEST_SCALE = 256
_PLAIN = (str, int, float, bool, type(None))


class CheckpointError(NlflowError):
    """A checkpoint file is missing, unreadable or not an nlflow model checkpoint."""


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare network behind DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def _check_plain(value: Any, where: str) -> None:
    """Reject anything ``torch.load(weights_only=True)`` could not read back."""
    if isinstance(value, _PLAIN) or isinstance(value, torch.Tensor):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise CheckpointError(f"checkpoint {where} has a non-string key {key!r}")
            _check_plain(item, f"{where}.{key}")
        return
    raise CheckpointError(f"checkpoint {where} holds a {type(value).__name__}; only plain types and tensors may be saved")


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    classes: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` (with its ``config``) atomically to ``path``; returns the path."""
    model = unwrap_model(model)
    config = getattr(model, "config", None)
    if not isinstance(config, ModelConfig):
        raise CheckpointError("model has no ModelConfig in .config; build it with nlflow.models.build_model")
    if classes is not None:
        classes = [str(name) for name in classes]
        if len(classes) != config.num_classes:
            raise CheckpointError(f"{len(classes)} class names given for a model with {config.num_classes} classes")
    extra = dict(extra or {})
    _check_plain(extra, "extra")
    state_dict = {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model_config": config.to_dict(),
        "classes": classes,
        "state_dict": state_dict,
        "extra": extra,
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw checkpoint dictionary (safe load), after checking its format."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    damage = zip_damage(path)  # torch.load does not check the CRC-32s: a flipped bit would load
    if damage:
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is damaged ({damage}); copy it again, or if nlflow wrote it, {rebuild_hint(path)}"
        )
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        if found:  # torch's weights_only loader met a class or function to import and call
            raise CheckpointError(
                f"{path} is not a plain weights file: it holds pickled Python objects ({found.group(1)}),"
                " which nlflow never runs (convert Caffe2 .pkl files with `nlflow weights convert`)"
            ) from None
        raise CheckpointError(f"cannot read checkpoint {path}: not a PyTorch file, or damaged") from None
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        raise CheckpointError(f"cannot read checkpoint {path}: {type(exc).__name__}: {one_line(exc)}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an nlflow model checkpoint (a Caffe2 .pkl must be converted first: nlflow weights)")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: unsupported checkpoint version {payload.get('version')!r} (expected {VERSION})")
    for key in ("model_config", "state_dict"):
        if not isinstance(payload.get(key), dict):
            raise CheckpointError(f"{path}: checkpoint lacks {key!r}")
    return payload


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the network stored in ``path``; returned in eval mode with ``.classes`` set."""
    payload = read_checkpoint(path, map_location=map_location)
    config = ModelConfig.from_dict(payload["model_config"])
    model = build_model(config)
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the stored model config: {one_line(exc)}") from exc
    model.to(map_location)
    model.classes = payload.get("classes")
    model.eval()
    return model


def checkpoint_test_scale(extra: dict[str, Any]) -> int:
    """The short side and crop of a checkpoint's test views: the original's convention, test scale =
    crop = the low end of the training scale jitter (256 for [256, 320]), read from the trainer's
    ``extra["settings"]["scale_range"]``; 256 for a checkpoint without training settings."""
    settings = extra.get("settings")
    scale_range = settings.get("scale_range") if isinstance(settings, dict) else None
    if isinstance(scale_range, (list, tuple)) and scale_range:
        return int(scale_range[0])
    return DEFAULT_TEST_SCALE
