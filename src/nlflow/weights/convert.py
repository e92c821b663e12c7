"""Caffe2 ``.pkl`` -> nlflow checkpoint, and a human-readable listing of weight files."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from nlflow.errors import NlflowError
from nlflow.models.builder import BLOCKS_PER_STAGE, ModelConfig, build_model
from nlflow.models.checkpoint import read_checkpoint, save_model_checkpoint
from nlflow.weights.caffe2_pickle import read_caffe2_pickle
from nlflow.weights.clean import CleanReport, clean_blobs
from nlflow.weights.name_map import LoadReport, blobs_to_state_dict

log = logging.getLogger(__name__)

_RES4_BLOCK = re.compile(r"^res4_(\d+)_")


class ConvertError(NlflowError):
    """The weights cannot become the requested model."""


@dataclass
class ConvertReport:
    model_config: ModelConfig
    clean: CleanReport
    load: LoadReport
    source_classes: int | None
    head_reinitialised: bool
    destination: Path
    inferred: bool = False
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        cfg = self.model_config
        head = "new classifier (std 0.01)" if self.head_reinitialised else "classifier kept"
        return (
            f"{cfg.arch}-R{cfg.depth}{'-NL' if cfg.use_nonlocal else ''} width {cfg.width}, "
            f"{cfg.num_classes} classes, {head}; {self.clean.summary()}; {self.load.summary()} -> {self.destination}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_config": self.model_config.to_dict(),
            "clean": self.clean.to_dict(),
            "load": self.load.to_dict(),
            "source_classes": self.source_classes,
            "head_reinitialised": self.head_reinitialised,
            "inferred": self.inferred,
            "notes": list(self.notes),
        }


def infer_model_config(blobs: Mapping[str, Any], num_classes: int | None = None) -> ModelConfig:
    """Architecture from blob shapes: conv1 temporal size (5 i3d, 1 c2d), res4 block count
    (6 -> R50, 23 -> R101), non-local blobs, conv1 width; classes from ``pred_w`` unless given.

    Not recoverable from the file and left at defaults: clip length, pool1 padding, frozen BN
    (a file without running statistics may come from either kind of network).
    """
    if "conv1_w" not in blobs:
        raise ConvertError("cannot infer the architecture: no conv1_w blob (pass a model config)")
    conv1 = np.shape(blobs["conv1_w"])
    if len(conv1) != 5:
        raise ConvertError(f"conv1_w has shape {list(conv1)} (2-D ImageNet weights?): pass a model config to inflate them")
    arch = {5: "i3d", 1: "c2d"}.get(conv1[2])
    if arch is None:
        raise ConvertError(f"conv1_w temporal size {conv1[2]} matches neither i3d (5) nor c2d (1)")
    res4_blocks = {int(m.group(1)) for name in blobs if (m := _RES4_BLOCK.match(name))}
    depth = next((d for d, counts in BLOCKS_PER_STAGE.items() if counts[2] == len(res4_blocks)), None)
    if depth is None:
        raise ConvertError(f"found {len(res4_blocks)} res4 blocks; expected 6 (R50) or 23 (R101)")
    if num_classes is None:
        if "pred_w" not in blobs:
            raise ConvertError("the file has no classifier (pred_w): give the number of classes")
        num_classes = int(np.shape(blobs["pred_w"])[0])
    return ModelConfig(
        arch=arch,
        depth=depth,
        use_nonlocal=any(name.startswith("nonlocal_") for name in blobs),
        num_classes=num_classes,
        width=int(conv1[0]),
    )


def convert_caffe2_to_checkpoint(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    model_cfg: ModelConfig | None = None,
    num_classes: int | None = None,
    drop_head: bool = False,
    keep_bn_stats: bool = True,
    classes: list[str] | None = None,
    seed: int = 0,
    init_missing_nonlocal: bool = False,
) -> ConvertReport:
    """Clean a Caffe2 pickle and write it as our checkpoint (``models.checkpoint`` format).

    The target class count is, in order: ``num_classes``, ``len(classes)``,
    ``model_cfg.num_classes``, the file's classifier. A classifier that does not fit (or
    ``drop_head``) is replaced by a new one, normal std 0.01 and bias 0, seeded by ``seed``.
    ``init_missing_nonlocal`` lets a file without non-local blocks start a non-local network
    (its blocks keep their identity initialisation).
    """
    if classes is not None:
        if num_classes is not None and num_classes != len(classes):
            raise ConvertError(f"num_classes {num_classes} but {len(classes)} class names given")
        num_classes = len(classes)
    if num_classes is None and model_cfg is not None:
        num_classes = model_cfg.num_classes

    raw = read_caffe2_pickle(src)
    blobs, clean_report = clean_blobs(raw, num_classes=num_classes, drop_head=drop_head, keep_bn_stats=keep_bn_stats)
    inferred = model_cfg is None
    if model_cfg is None:
        if num_classes is None and clean_report.head:
            raise ConvertError("the classifier was dropped: give num_classes (or classes)")
        model_cfg = infer_model_config(blobs, num_classes)
    elif num_classes is not None and model_cfg.num_classes != num_classes:
        model_cfg = model_cfg.replace(num_classes=num_classes)

    head_missing = "pred_w" not in blobs and "pred_b" not in blobs
    torch.manual_seed(seed)
    model = build_model(model_cfg)
    try:
        state, load_report = blobs_to_state_dict(
            blobs, model, allow_missing_head=head_missing, allow_missing_nonlocal=init_missing_nonlocal
        )
    except NlflowError as exc:
        raise ConvertError(f"{src}: {exc}") from None
    model.load_state_dict(state, strict=True)

    notes = []
    if load_report.leftover:
        notes.append(f"{len(load_report.leftover)} blobs did not match any tensor of the network")
        log.warning("%s: unused blobs: %s", src, ", ".join(load_report.leftover[:10]))
    report = ConvertReport(
        model_config=model_cfg,
        clean=clean_report,
        load=load_report,
        source_classes=clean_report.head_classes,
        head_reinitialised=head_missing,
        destination=Path(dst),
        inferred=inferred,
        notes=notes,
    )
    save_model_checkpoint(dst, model, classes=classes, extra={"source": str(src), "convert": report.to_dict()})
    log.info("%s", report.summary())
    return report


def inspect_weights(path: str | os.PathLike) -> str:
    """A listing of a Caffe2 ``.pkl`` (blobs, shapes, what cleaning drops) or an nlflow ``.pt``."""
    path = Path(path)
    if path.suffix in (".pt", ".pth"):
        return _inspect_checkpoint(path)
    return _inspect_pickle(path)


def _shape(value: Any) -> str:
    shape = np.shape(value)
    return "x".join(str(d) for d in shape) if shape else "scalar"


def _inspect_pickle(path: Path) -> str:
    blobs = read_caffe2_pickle(path)
    _, report = clean_blobs(blobs, num_classes=None)
    dropped = set(report.training_state)
    lines = [f"{path}: Caffe2 weights, {len(blobs)} blobs"]
    try:
        cfg = infer_model_config(blobs)
        lines.append(
            f"looks like: {cfg.arch}-R{cfg.depth}{' non-local' if cfg.use_nonlocal else ''}, width {cfg.width}, {cfg.num_classes} classes"
        )
    except NlflowError as exc:
        lines.append(f"architecture not inferred: {exc}")
    if report.training_state:
        lines.append(f"cleaning drops {len(report.training_state)} solver-state blobs (model_iter, lr, *_momentum)")
    if report.head_classes is not None:
        lines.append(f"classifier pred_w: {report.head_classes} classes (dropped when fine-tuning on another class count)")
    has_stats = any(name.endswith(("_bn_rm", "_bn_riv")) for name in blobs)
    lines.append("BN running statistics: " + ("present (kept by default)" if has_stats else "absent"))
    lines.append("")
    for name in sorted(blobs):
        mark = "  [dropped]" if name in dropped else ""
        lines.append(f"  {name:<48} {_shape(blobs[name])}{mark}")
    return "\n".join(lines)


def _inspect_checkpoint(path: Path) -> str:
    payload = read_checkpoint(path)
    cfg = payload["model_config"]
    classes = payload.get("classes")
    state = payload["state_dict"]
    lines = [f"{path}: nlflow model checkpoint, {len(state)} tensors"]
    lines.append("model config: " + ", ".join(f"{k}={v}" for k, v in sorted(cfg.items())))
    lines.append(f"classes: {len(classes)} named" if classes else "classes: not named")
    extra = payload.get("extra") or {}
    if extra:
        lines.append("extra: " + ", ".join(sorted(extra)))
    lines.append("")
    for key, tensor in state.items():
        lines.append(f"  {key:<48} {'x'.join(str(d) for d in tensor.shape) or 'scalar'}")
    return "\n".join(lines)
