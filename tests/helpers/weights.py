"""Caffe2 weight files as the original released them, made from a network with non-trivial tensors."""

from __future__ import annotations

import numpy as np
import torch

from nlflow.models import ModelConfig, build_model
from nlflow.weights.caffe2_pickle import write_caffe2_pickle
from nlflow.weights.name_map import BN_STAT_ROLES, state_dict_to_blobs, tensor_names


def trained_model(cfg: ModelConfig, seed: int = 0) -> torch.nn.Module:
    """A network whose every tensor (zero-initialised gammas, BN statistics) is non-trivial."""
    torch.manual_seed(seed)
    model = build_model(cfg)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                noise = torch.rand_like(tensor) + 0.5 if "running_var" in name else torch.randn_like(tensor) * 0.1
                tensor.copy_(noise if "running" in name else tensor + noise)
    return model.eval()


def write_official_pickle(path, model) -> dict:
    """The model as a released checkpoint: official names, momentum buffers, iteration, lr."""
    blobs = state_dict_to_blobs(model)
    for name in tensor_names(model.config):
        if name.role not in BN_STAT_ROLES:
            blobs[name.blob + "_momentum"] = np.full_like(blobs[name.blob], 0.5)
    blobs["model_iter"] = np.array([400000], dtype=np.int64)
    blobs["lr"] = np.array([1e-4], dtype=np.float32)
    write_caffe2_pickle(path, blobs, protocol=2)
    return blobs
