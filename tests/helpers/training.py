"""A tiny real training set-up: synthetic videos in train/val LMDB stores, an I3D-NL width-4 init
checkpoint, and settings that train it in seconds. ``tiny_data`` is a module-scoped fixture: import
it into a test module to use it there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nlflow.demo.dataset import DEMO_CLASSES, make_class_video
from nlflow.models import ModelConfig, build_model, save_checkpoint
from nlflow.store.lmdb_store import write_store
from nlflow.train import TrainSettings

CLASSES = list(DEMO_CLASSES)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train_data")
    videos = root / "videos"
    entries, frames = [], {}
    for label, name in enumerate(CLASSES):
        for k in range(2):
            rel = f"{name}/v_{name}_g01_c{k + 1:02d}.avi"
            (videos / name).mkdir(parents=True, exist_ok=True)
            frames[rel] = make_class_video(videos / rel, name, np.random.default_rng([label, k]),
                                           num_frames=20, size=(128, 96))
            entries.append((rel, label))
    write_store(root / "train.lmdb", entries, videos, "train", CLASSES, {}, frames)
    write_store(root / "val.lmdb", entries[::2], videos, "val", CLASSES, {}, frames)
    (root / "classes.txt").write_text("".join(c + "\n" for c in CLASSES))
    torch.manual_seed(0)
    model = build_model(ModelConfig(width=4, num_classes=len(CLASSES), video_length=4, sample_rate=2))
    save_checkpoint(root / "init.pt", model, CLASSES)
    return {"train": root / "train.lmdb", "val": root / "val.lmdb", "init": root / "init.pt",
            "classes": root / "classes.txt"}


def tiny_settings(**kw) -> TrainSettings:
    base = dict(batch_size=4, max_iter=6, base_lr=0.05, lr_steps=[0, 4], lr_relative=[1, 0.1], warmup_iters=2,
                crop_size=32, scale_range=(32, 40), video_length=4, sample_rate=2, num_workers=0, seed=1,
                checkpoint_period=2, keep_checkpoints=2, log_period=2, val_period=3,
                precise_bn_iters=2, deterministic=True, threads=1)
    base.update(kw)
    return TrainSettings(**base)
