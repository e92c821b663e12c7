"""Caffe2 ``.pkl`` -> nlflow checkpoint, and a human-readable listing of weight files."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nlflow.errors import NlflowError
from nlflow.lists.kinetics_facts import kinetics400_classes
from nlflow.models.builder import ModelConfig, build_model
from nlflow.models.checkpoint import read_checkpoint, save_checkpoint
from nlflow.weights.caffe2_pickle import read_caffe2_pickle
from nlflow.weights.clean import CleanReport, clean_blobs
from nlflow.weights.infer import ConvertError, infer_model_config, infer_network
from nlflow.weights.name_map import LoadReport, blobs_to_state_dict
from nlflow.weights.zoo import PretrainedStart, ZooModel, zoo_entry, zoo_entry_for_file

log = logging.getLogger(__name__)

__all__ = ["ConvertError", "ConvertReport", "convert_caffe2_to_checkpoint", "infer_model_config", "inspect_weights"]


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
        variant = ", affine" if cfg.frozen_bn else ""
        stem = ", resnet_video_org stem" if cfg.stem_temporal_stride == 2 else ""
        return (
            f"{cfg.arch}-R{cfg.depth}{'-NL' if cfg.use_nonlocal else ''} width {cfg.width}, "
            f"{cfg.video_length}x{cfg.sample_rate} clips{stem}{variant}, "
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
    zoo_name: str | None = None,
    require_head: bool = False,
) -> ConvertReport:
    """Clean a Caffe2 pickle and write it as our checkpoint (``models.checkpoint`` format).

    The target class count is, in order: ``num_classes``, ``len(classes)``,
    ``model_cfg.num_classes``, the file's classifier. A classifier that does not fit (or
    ``drop_head``) is replaced by a new one, normal std 0.01 and bias 0, seeded by ``seed``.
    ``init_missing_nonlocal`` lets a file without non-local blocks start a non-local network
    (its blocks keep their identity initialisation).

    Without ``model_cfg`` the network is inferred from the blobs (:mod:`nlflow.weights.infer`);
    the zoo entry ``zoo_name``, or else the one whose file name ``src`` carries, supplies the
    clip shape and stem. With ``model_cfg``, settings that differ from that entry are logged.

    ``require_head``: the file's classifier must be kept (the network is evaluated as converted),
    else nothing is written. A released Kinetics model whose classifier is kept is saved with the
    names of its 400 outputs (classids.json) unless ``classes`` names them.
    """
    num_classes = _target_classes(num_classes, classes, model_cfg)
    raw = read_caffe2_pickle(src)
    blobs, clean_report = clean_blobs(raw, num_classes=num_classes, drop_head=drop_head, keep_bn_stats=keep_bn_stats)
    inferred = model_cfg is None
    entry = zoo_entry(zoo_name) if zoo_name else zoo_entry_for_file(src)
    if model_cfg is None:
        if num_classes is None and clean_report.head:
            raise ConvertError("the classifier was dropped: give num_classes (or classes)")
        # Statistics dropped on request still tell a BN file from an affine one.
        evidence = blobs if keep_bn_stats else clean_blobs(raw, num_classes=num_classes, drop_head=drop_head)[0]
        inference = infer_network(evidence, num_classes, entry)
        model_cfg, notes = inference.config, list(inference.notes)
    else:
        if num_classes is not None and model_cfg.num_classes != num_classes:
            model_cfg = model_cfg.replace(num_classes=num_classes)
        notes = _zoo_disagreements(model_cfg, entry) if entry is not None else []
    for note in notes:
        log.warning("%s: %s", src, note)

    head_missing = "pred_w" not in blobs and "pred_b" not in blobs
    if require_head and head_missing:
        reason = clean_report.head_reason or "the file has none"
        raise ConvertError(f"{src}: a network evaluated as converted keeps its own classifier, but it was dropped ({reason})")
    released = isinstance(entry, ZooModel)
    if classes is None and not head_missing and released and model_cfg.num_classes == len(kinetics400_classes()):
        classes = list(kinetics400_classes())  # the released models' outputs, in classids.json order
    model, load_report = _network_from_blobs(blobs, model_cfg, seed, head_missing, init_missing_nonlocal, src)
    new_blocks = [key for key in load_report.defaults if ".nl" in key]
    if new_blocks:
        # The original's rule for blobs a file lacks: logged, the network's own initialisation kept.
        log.warning("%s has no non-local blocks: the network's %d non-local tensors keep their initialisation "
                    "(each new block starts as the identity)", src, len(new_blocks))
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
    save_checkpoint(dst, model, classes=classes, extra={"source": str(src), "convert": report.to_dict()})
    log.info("%s", report.summary())
    return report


def _target_classes(num_classes: int | None, classes: list[str] | None, model_cfg: ModelConfig | None) -> int | None:
    """The class count of the converted network: ``num_classes``, ``len(classes)``, the model
    config's; None leaves it to the file's classifier."""
    if classes is not None:
        if num_classes is not None and num_classes != len(classes):
            raise ConvertError(f"num_classes {num_classes} but {len(classes)} class names given")
        return len(classes)
    if num_classes is None and model_cfg is not None:
        return model_cfg.num_classes
    return num_classes


def _network_from_blobs(blobs: dict[str, np.ndarray], model_cfg: ModelConfig, seed: int, head_missing: bool,
                        init_missing_nonlocal: bool, src: str | os.PathLike) -> tuple[torch.nn.Module, LoadReport]:
    """A ``model_cfg`` network holding the blobs; what the file lacks keeps its seeded initialisation."""
    torch.manual_seed(seed)
    model = build_model(model_cfg)
    try:
        state, load_report = blobs_to_state_dict(
            blobs, model, allow_missing_head=head_missing, allow_missing_nonlocal=init_missing_nonlocal
        )
    except NlflowError as exc:
        raise ConvertError(f"{src}: {exc}") from None
    model.load_state_dict(state, strict=True)
    return model, load_report


def _zoo_disagreements(cfg: ModelConfig, entry: ZooModel | PretrainedStart) -> list[str]:
    """One note per setting of an explicit config that differs from the file's zoo entry (the
    width aside: a mismatch there fails the loading itself)."""
    actual = cfg.to_dict()
    return [
        f"model {key} is {actual[key]!r} but the zoo model {entry.name} was trained with {value!r}"
        for key, value in entry.model_settings().items()
        if key != "width" and actual[key] != value
    ]


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
    entry = zoo_entry_for_file(path)
    try:
        inference = infer_network(blobs, zoo_entry=entry)
        cfg = inference.config
        lines.append(
            f"looks like: {cfg.arch}-R{cfg.depth}{' non-local' if cfg.use_nonlocal else ''}, width {cfg.width}, "
            f"{cfg.num_classes} classes{', affine' if cfg.frozen_bn else ''}"
        )
        if isinstance(entry, ZooModel):
            lines.append(f"zoo model {entry.name}: {entry.clip} clips, {entry.model_name}, published top-1 {entry.top1}")
        elif entry is not None:
            lines.append(f"{entry.name}: {entry.what}")
        lines += [f"note: {note}" for note in inference.notes]
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
