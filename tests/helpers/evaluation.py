"""A tiny real evaluation set-up: a width-4 I3D checkpoint and a test store of PyAV-made videos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from nlflow.demo.dataset import make_class_video, truncate_video
from nlflow.models import ModelConfig, build_model, save_checkpoint
from nlflow.store.lmdb_store import write_store
from nlflow.video.views import ViewSpec

CLASSES = ["Grow", "MoveUp", "StandStill"]
VIDEO_SIZE = (128, 96)  # width, height (the demo objects need about this much room)
SPEC = ViewSpec(video_length=4, sample_rate=2, num_clips=4, num_crops=3, scale=40, crop_size=32)
TEST_EXTRA = {"settings": {"scale_range": [SPEC.scale, SPEC.scale + 8]}}  # what the trainer records


def tiny_checkpoint(path: Path, seed: int = 0) -> Path:
    """A width-4 I3D with non-local blocks, 4 frames x stride 2, saved with its class names."""
    torch.manual_seed(seed)
    cfg = ModelConfig(num_classes=len(CLASSES), width=4, video_length=4, sample_rate=2, zero_init_final_bn=False)
    model = build_model(cfg)
    # Random running statistics make the outputs differ between classes and views.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return save_checkpoint(path, model, CLASSES, extra=TEST_EXTRA)


def tiny_videos(root: Path, per_class: int = 2, frames: int = 24) -> tuple[list[tuple[str, int]], dict[str, int]]:
    entries, counts = [], {}
    for label, name in enumerate(CLASSES):
        for i in range(per_class):
            rel = f"{name}/v_{name}_g01_c{i + 1:02d}.avi"
            rng = np.random.default_rng([label, i])
            counts[rel] = make_class_video(root / rel, name, rng, num_frames=frames + i, size=VIDEO_SIZE)
            entries.append((rel, label))
    return entries, counts


def tiny_test_store(tmp_path: Path, corrupt: bool = False) -> tuple[Path, Path, list[tuple[str, int]]]:
    root = tmp_path / "videos"
    entries, counts = tiny_videos(root)
    if corrupt:
        rel = "MoveUp/v_MoveUp_g02_c01.avi"
        counts[rel] = make_class_video(root / rel, "MoveUp", np.random.default_rng(9), num_frames=24, size=VIDEO_SIZE)
        truncate_video(root / rel)
        entries.append((rel, 1))
    store = tmp_path / "test.lmdb"
    # A listed video the downscale stage could not decode: left out of the store, counted as wrong.
    excluded = [("Grow/v_Grow_g03_c01.avi", 0, "corrupt")] if corrupt else []
    write_store(store, entries, root, "test", CLASSES, {}, counts, embed=True, excluded=excluded)
    return store, root, entries
