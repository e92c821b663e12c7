"""Which network a Caffe2 weight file holds: what its blobs show, and what only the zoo knows.

From the blobs: the architecture (conv1's temporal size: 5 i3d, 1 c2d), the depth (res4 block
count), the width (conv1's channels), non-local blocks, the classes (``pred_w``), and the
affine variant when it leaves a trace: no BN running statistics anywhere and non-local blocks
without ``_bn_*`` blobs is the affine configuration (frozen BN, norm-free non-local blocks,
res3 attention in groups of 4 frames).

Not in the blobs: the clip shape (frames, sampling rate), the stem's temporal stride
(``resnet_video_org``), and whether a statistics-free baseline was trained affine or is a BN
file cleaned by the original's ``modify_blob_rm.py``. Those come from the zoo entry the file is
named after, or stay at the defaults (8 x 8, ``resnet_video``, BN) with a note saying so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from nlflow.errors import NlflowError
from nlflow.models.builder import BLOCKS_PER_STAGE, ModelConfig
from nlflow.weights.clean import is_bn_stat
from nlflow.weights.zoo import AFFINE_NONLOCAL_GROUP, PretrainedStart, ZooModel

_RES4_BLOCK = re.compile(r"^res4_(\d+)_")
_NONLOCAL_NORM = re.compile(r"^nonlocal_conv\d+_\d+_bn_")
# Keys the blobs decide; a zoo entry that disagrees on one of them is not this file.
_CHECKED_AGAINST_ZOO = ("arch", "depth", "use_nonlocal", "nonlocal_norm", "frozen_bn")


class ConvertError(NlflowError):
    """The weights cannot become the requested model."""


@dataclass(frozen=True)
class Inference:
    """The network a file holds, and one line per setting that had to be assumed."""

    config: ModelConfig
    notes: tuple[str, ...] = ()


def infer_network(blobs: Mapping[str, Any], num_classes: int | None = None,
                  zoo_entry: ZooModel | PretrainedStart | None = None) -> Inference:
    """The network of ``blobs`` (cleaned or not); ``zoo_entry`` supplies what blobs cannot show
    (a released model all of it; a starting point of the recipes its variant, not its clips)."""
    settings = _architecture(blobs)
    variant, notes = _variant(blobs, settings["use_nonlocal"])
    settings.update(variant)
    if zoo_entry is not None:
        settings = _with_zoo(settings, zoo_entry)
        notes = []  # the zoo entry settles every guess
    if not isinstance(zoo_entry, ZooModel):
        notes.append(
            "the clip shape is not in the file: assuming 8x8 clips and the resnet_video stem "
            "(pass a model config or name the file after its zoo model for 32x2, 128x1 or 32x4 weights)"
        )
    return Inference(ModelConfig(num_classes=_classes(blobs, num_classes), **settings), tuple(notes))


def infer_model_config(blobs: Mapping[str, Any], num_classes: int | None = None, zoo_entry: ZooModel | None = None) -> ModelConfig:
    """Just the config of :func:`infer_network`."""
    return infer_network(blobs, num_classes, zoo_entry).config


def _architecture(blobs: Mapping[str, Any]) -> dict[str, Any]:
    if "conv1_w" not in blobs:
        raise ConvertError("cannot infer the architecture: no conv1_w blob (pass a model config)")
    conv1 = np.shape(blobs["conv1_w"])
    if len(conv1) != 5:
        raise ConvertError(f"conv1_w has shape {list(conv1)} (2-D ImageNet weights?): name the network to inflate them "
                           "into (nlflow weights convert --network <released model> or --config <config.yaml>)")
    arch = {5: "i3d", 1: "c2d"}.get(conv1[2])
    if arch is None:
        raise ConvertError(f"conv1_w temporal size {conv1[2]} matches neither i3d (5) nor c2d (1)")
    res4_blocks = {int(m.group(1)) for name in blobs if (m := _RES4_BLOCK.match(name))}
    depth = next((d for d, counts in BLOCKS_PER_STAGE.items() if counts[2] == len(res4_blocks)), None)
    if depth is None:
        raise ConvertError(f"found {len(res4_blocks)} res4 blocks; expected 6 (R50) or 23 (R101)")
    use_nonlocal = any(name.startswith("nonlocal_") for name in blobs)
    return {"arch": arch, "depth": depth, "use_nonlocal": use_nonlocal, "width": int(conv1[0])}


def _variant(blobs: Mapping[str, Any], use_nonlocal: bool) -> tuple[dict[str, Any], list[str]]:
    """BN or affine, and the non-local block's form, as far as the blobs show them."""
    has_statistics = any(is_bn_stat(name) for name in blobs)
    if not use_nonlocal:
        if has_statistics:
            return {}, []
        return {}, [
            "no BN statistics and no non-local blocks: assuming BN layers whose statistics were removed "
            "(modify_blob_rm.py), not an affine-trained network (pass frozen_bn in a model config for one)"
        ]
    if any(_NONLOCAL_NORM.match(name) for name in blobs):
        return {"nonlocal_norm": True}, []
    if not has_statistics:  # the affine config: AffineNd everywhere, NONLOCAL.USE_BN False, grouped res3
        return {"frozen_bn": True, "nonlocal_norm": False, "nonlocal_temporal_group": AFFINE_NONLOCAL_GROUP}, []
    return {"nonlocal_norm": False}, [
        "non-local blocks without a norm next to BN statistics (not a released configuration): "
        "assuming attention over the whole clip"
    ]


def _with_zoo(settings: dict[str, Any], entry: ZooModel | PretrainedStart) -> dict[str, Any]:
    zoo = entry.model_settings()
    for key in _CHECKED_AGAINST_ZOO:
        if key in settings and key in zoo and settings[key] != zoo[key]:
            raise ConvertError(
                f"the file is named like the zoo model {entry.name} but its blobs show {key} {settings[key]!r} "
                f"(the zoo model has {zoo[key]!r})"
            )
    # The file's own shapes win for the width (a narrow test network may carry a zoo name).
    return {**zoo, **settings}


def _classes(blobs: Mapping[str, Any], num_classes: int | None) -> int:
    if num_classes is not None:
        return num_classes
    if "pred_w" not in blobs:
        raise ConvertError("the file has no classifier (pred_w): give the number of classes")
    return int(np.shape(blobs["pred_w"])[0])
