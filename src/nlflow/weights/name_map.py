"""The one-to-one map between our state_dict keys and video-nonlocal-net's Caffe2 blob names.

Blob naming of the original: ``conv1_w`` + ``res_conv1_bn_{s,b,rm,riv}`` (stem),
``res{stage}_{block}_branch2{a,b,c}_w`` + ``..._bn_*``, ``res{stage}_0_branch1_w`` + ``_bn_*``
(projection shortcut), ``nonlocal_conv{stage}_{block}_{theta,phi,g,out}_{w,b}`` +
``nonlocal_conv{stage}_{block}_bn_*`` (the block index is the residual block it follows; no
``_bn_*`` in the affine configs, whose non-local blocks have no norm), and
``pred_w`` / ``pred_b``. BN: ``_s`` gamma, ``_b`` beta, ``_rm`` running mean, ``_riv`` running
variance; an affine layer (Caffe2 ``AffineNd``) has only ``_s`` and ``_b``. Conv weights are
[out, in, t, h, w] in both frameworks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np
import torch
from torch import nn

from nlflow.errors import NlflowError
from nlflow.models.builder import ModelConfig, stage_layout
from nlflow.models.checkpoint import unwrap_model


class WeightMismatchError(NlflowError):
    """Blobs and network do not fit (missing tensors, wrong shapes)."""


@dataclass(frozen=True)
class TensorName:
    """One tensor: our state_dict key, its Caffe2 blob and what kind of tensor it is."""

    key: str
    blob: str
    role: str  # conv | bias | bn_s | bn_b | bn_rm | bn_riv | fc_w | fc_b


BN_STAT_ROLES = ("bn_rm", "bn_riv")
HEAD_BLOBS = ("pred_w", "pred_b")


def _norm(module: str, blob: str, frozen_bn: bool) -> list[TensorName]:
    names = [TensorName(f"{module}.weight", f"{blob}_s", "bn_s"), TensorName(f"{module}.bias", f"{blob}_b", "bn_b")]
    if not frozen_bn:
        names += [
            TensorName(f"{module}.running_mean", f"{blob}_rm", "bn_rm"),
            TensorName(f"{module}.running_var", f"{blob}_riv", "bn_riv"),
        ]
    return names


def tensor_names(cfg: ModelConfig) -> list[TensorName]:
    """Every tensor of ``build_model(cfg)`` (except ``num_batches_tracked``), in network order."""
    names = [TensorName("stem.conv.weight", "conv1_w", "conv")]
    names += _norm("stem.bn", "res_conv1_bn", cfg.frozen_bn)
    for spec in stage_layout(cfg):
        stage_number = spec.name[len("res"):]
        for index in range(spec.num_blocks):
            module, blob = f"{spec.name}.{index}", f"{spec.name}_{index}"
            for ours, theirs in (("a", "2a"), ("b", "2b"), ("c", "2c")):
                names.append(TensorName(f"{module}.conv_{ours}.weight", f"{blob}_branch{theirs}_w", "conv"))
                names += _norm(f"{module}.bn_{ours}", f"{blob}_branch{theirs}_bn", cfg.frozen_bn)
            if index == 0:
                names.append(TensorName(f"{module}.shortcut.conv.weight", f"{blob}_branch1_w", "conv"))
                names += _norm(f"{module}.shortcut.bn", f"{blob}_branch1_bn", cfg.frozen_bn)
            if index in spec.nonlocal_after:
                nl_module, nl_blob = f"{spec.name}.nl{index}", f"nonlocal_conv{stage_number}_{index}"
                for part in ("theta", "phi", "g", "out"):
                    names.append(TensorName(f"{nl_module}.{part}.weight", f"{nl_blob}_{part}_w", "conv"))
                    names.append(TensorName(f"{nl_module}.{part}.bias", f"{nl_blob}_{part}_b", "bias"))
                if cfg.nonlocal_norm:  # the affine configs' blocks have no norm, so no _bn_* blobs
                    names += _norm(f"{nl_module}.bn", f"{nl_blob}_bn", cfg.frozen_bn)
    names.append(TensorName("head.fc.weight", "pred_w", "fc_w"))
    names.append(TensorName("head.fc.bias", "pred_b", "fc_b"))
    return names


@dataclass
class LoadReport:
    """What ``blobs_to_state_dict`` did, for logs and for the convert report."""

    loaded: list[str] = field(default_factory=list)  # blob names copied into the network
    inflated: list[str] = field(default_factory=list)  # 2-D kernels inflated to 3-D
    folded_bn: list[str] = field(default_factory=list)  # BN prefixes folded into affine layers
    defaults: list[str] = field(default_factory=list)  # our keys left at their initial values
    leftover: list[str] = field(default_factory=list)  # blobs no tensor used

    def summary(self) -> str:
        parts = [f"{len(self.loaded)} blobs loaded"]
        if self.inflated:
            parts.append(f"{len(self.inflated)} kernels inflated 2-D -> 3-D")
        if self.folded_bn:
            parts.append(f"{len(self.folded_bn)} BN layers folded into affine")
        if self.defaults:
            parts.append(f"{len(self.defaults)} tensors kept at initial values")
        if self.leftover:
            shown = ", ".join(self.leftover[:5]) + (" ..." if len(self.leftover) > 5 else "")
            parts.append(f"{len(self.leftover)} blobs unused ({shown})")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "loaded": len(self.loaded),
            "inflated": list(self.inflated),
            "folded_bn": list(self.folded_bn),
            "defaults": list(self.defaults),
            "leftover": list(self.leftover),
        }


def _as_array(value: Any, blob: str) -> np.ndarray:
    array = np.asarray(value)
    if not np.issubdtype(array.dtype, np.number):
        raise WeightMismatchError(f"blob {blob!r} holds {array.dtype} data, not numbers")
    return array


def _fit(array: np.ndarray, target: torch.Tensor, name: TensorName, report: LoadReport) -> torch.Tensor:
    """``array`` reshaped to ``target``'s shape, inflating 2-D kernels over time when needed.

    The original's rule (``lib/utils/checkpoints.py``, ``initialize_master_gpu_model_params``): a
    blob with fewer dimensions than the network's is inflated when its first two and last two sizes
    match: T copies stacked along time, divided by T (a static clip gives the 2-D response); a blob
    with as many dimensions must have the same shape, so a 5-D kernel of temporal size 1 does not
    inflate into a kernel of size 3 or 5 (the original's assertion fails there).
    """
    shape = tuple(target.shape)
    if array.shape == shape:
        out = array
    elif name.role == "fc_w" and array.shape == shape + (1, 1, 1):
        out = array.reshape(shape)  # the fully-convolutional test net stores pred as a 1x1x1 conv
    elif name.role == "conv" and len(shape) == 5 and array.shape == shape[:2] + shape[3:]:
        temporal = shape[2]
        out = np.stack([array] * temporal, axis=2) / temporal
        if temporal > 1:
            report.inflated.append(name.blob)
    elif name.role == "conv" and array.ndim == len(shape) == 5 and array.shape[2] == 1:
        raise WeightMismatchError(
            f"blob {name.blob!r} has shape {list(array.shape)}, but {name.key} needs {list(shape)}: only 2-D kernels "
            "inflate over time (the original asserts that a 5-D kernel already has the network's shape)"
        )
    else:
        raise WeightMismatchError(f"blob {name.blob!r} has shape {list(array.shape)}, but {name.key} needs {list(shape)}")
    return torch.from_numpy(np.ascontiguousarray(out)).to(target.dtype)


def _group_bn(names: Iterable[TensorName]) -> dict[str, dict[str, TensorName]]:
    groups: dict[str, dict[str, TensorName]] = {}
    for name in names:
        if name.role.startswith("bn_"):
            groups.setdefault(name.blob.rsplit("_", 1)[0], {})[name.role] = name
    return groups


def blobs_to_state_dict(
    blobs: Mapping[str, Any],
    model: nn.Module,
    allow_missing_head: bool = False,
    allow_missing_nonlocal: bool = False,
) -> tuple[dict[str, torch.Tensor], LoadReport]:
    """A complete state_dict for ``model`` filled from Caffe2 ``blobs`` (strict, see module doc).

    Missing blobs are an error, except: the head when ``allow_missing_head`` (it keeps its
    initialisation), the non-local blocks when ``allow_missing_nonlocal`` and the file has none
    (a baseline network as the starting point of a non-local one, as the original allowed), and
    BN running statistics when the file has none at all (as after the original
    ``modify_blob_rm.py``; PyTorch defaults 0 / 1 stay). For a ``frozen_bn`` model,
    ``_rm``/``_riv`` present in the file are folded into the affine scale and bias;
    without them ``_s``/``_b`` are taken as the affine parameters (the "affine" configs' files).
    """
    model = unwrap_model(model)
    cfg: ModelConfig = model.config
    names = tensor_names(cfg)
    target = model.state_dict()
    state = {key: value.clone() for key, value in target.items()}
    report = LoadReport()
    used: set[str] = set()

    present_stats = [n for n in names if n.role in BN_STAT_ROLES and n.blob in blobs]
    stats_absent = not present_stats and any(n.role in BN_STAT_ROLES for n in names)
    nonlocal_absent = allow_missing_nonlocal and not any(b.startswith("nonlocal_") for b in blobs)
    missing: list[str] = []
    for name in names:
        if name.blob not in blobs:
            if name.role in ("fc_w", "fc_b") and allow_missing_head:
                report.defaults.append(name.key)
            elif name.role in BN_STAT_ROLES and stats_absent:
                report.defaults.append(name.key)
            elif name.blob.startswith("nonlocal_") and nonlocal_absent:
                report.defaults.append(name.key)
            else:
                missing.append(name.blob)
            continue
        state[name.key] = _fit(_as_array(blobs[name.blob], name.blob), target[name.key], name, report)
        used.add(name.blob)
        report.loaded.append(name.blob)
    if missing:
        shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        hint = " (the classifier is missing: convert with drop_head)" if set(missing) <= set(HEAD_BLOBS) else ""
        raise WeightMismatchError(f"{len(missing)} tensors of the {cfg.arch}-R{cfg.depth} network have no blob: {shown}{hint}")

    if cfg.frozen_bn:
        _fold_statistics(blobs, names, state, cfg.bn_eps, used, report)

    report.leftover = sorted(set(blobs) - used)
    return state, report


def _fold_statistics(
    blobs: Mapping[str, Any], names: list[TensorName], state: dict[str, torch.Tensor], eps: float, used: set[str], report: LoadReport
) -> None:
    """Turn BN (gamma, beta, mean, var) into the affine (scale, bias) that computes the same."""
    for prefix, group in _group_bn(names).items():
        mean_blob, var_blob = f"{prefix}_rm", f"{prefix}_riv"
        if mean_blob not in blobs and var_blob not in blobs:
            continue
        if mean_blob not in blobs or var_blob not in blobs:
            raise WeightMismatchError(f"{prefix}: the file has only one of {mean_blob} / {var_blob}")
        weight_key, bias_key = group["bn_s"].key, group["bn_b"].key
        mean = torch.from_numpy(_as_array(blobs[mean_blob], mean_blob).astype(np.float64))
        var = torch.from_numpy(_as_array(blobs[var_blob], var_blob).astype(np.float64))
        if mean.shape != state[weight_key].shape or var.shape != state[weight_key].shape:
            raise WeightMismatchError(f"{prefix}: running statistics have shape {list(mean.shape)}, need {list(state[weight_key].shape)}")
        scale = state[weight_key].double() / torch.sqrt(var + eps)
        bias = state[bias_key].double() - mean * scale
        state[weight_key] = scale.to(state[weight_key].dtype)
        state[bias_key] = bias.to(state[bias_key].dtype)
        used.update((mean_blob, var_blob))
        report.loaded += [mean_blob, var_blob]
        report.folded_bn.append(prefix)


def state_dict_to_blobs(model: nn.Module) -> dict[str, np.ndarray]:
    """Our network as Caffe2 blobs (official names; ``pred_w`` as [classes, features])."""
    model = unwrap_model(model)
    cfg: ModelConfig = model.config
    state = model.state_dict()
    return {name.blob: state[name.key].detach().cpu().numpy().astype(np.float32, copy=True) for name in tensor_names(cfg)}
