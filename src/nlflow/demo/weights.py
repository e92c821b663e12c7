"""A stand-in "Kinetics-pretrained" file for the demo: official Caffe2 format, fresh weights.

It carries everything a real released checkpoint carries (a 400-class ``pred``, ``model_iter``,
``lr`` and a ``_momentum`` buffer per parameter), so the demo exercises the same cleaning and
conversion path as the real weights.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from nlflow.models.builder import ModelConfig, build_model
from nlflow.weights.caffe2_pickle import write_caffe2_pickle
from nlflow.weights.name_map import BN_STAT_ROLES, state_dict_to_blobs, tensor_names

DEMO_MODEL_ITER = 400000
DEMO_LR = 1e-4


def write_demo_pretrained(
    path: str | os.PathLike, model_cfg: ModelConfig, num_pretrain_classes: int = 400, seed: int = 0
) -> Path:
    """Write a freshly initialised ``model_cfg`` network with a ``num_pretrain_classes`` head."""
    cfg = model_cfg.replace(num_classes=num_pretrain_classes)
    torch.manual_seed(seed)
    blobs = state_dict_to_blobs(build_model(cfg))
    rng = np.random.default_rng(seed)
    for name in tensor_names(cfg):
        if name.role not in BN_STAT_ROLES:  # running statistics are not solver parameters
            value = blobs[name.blob]
            blobs[f"{name.blob}_momentum"] = (rng.standard_normal(value.shape) * 1e-4).astype(np.float32)
    blobs["model_iter"] = np.array([DEMO_MODEL_ITER], dtype=np.int64)
    blobs["lr"] = np.array([DEMO_LR], dtype=np.float32)
    return write_caffe2_pickle(path, blobs, protocol=2)
