"""Which val-store videos validation during training scores (train.val_videos): every one by
default, or a seeded subset stratified by class, so the last classes of the class-sorted store are
validated too (the old cap of val_batches x batch_size clips never reached them)."""

from __future__ import annotations

import json
from collections import Counter

from nlflow.train import train
from nlflow.train.measure import validation_videos

from helpers.training import CLASSES, tiny_data, tiny_settings  # noqa: F401 (tiny_data is a fixture)

# A class-sorted store: 5 videos of class 0, 3 of class 1, 2 of class 2.
LABELS = [0] * 5 + [1] * 3 + [2] * 2


def test_no_limit_or_a_limit_past_the_store_takes_every_video():
    assert validation_videos(LABELS, None, seed=0) == list(range(10))
    assert validation_videos(LABELS, 10, seed=0) == list(range(10))
    assert validation_videos(LABELS, 25, seed=3) == list(range(10))


def test_a_subset_takes_each_class_in_proportion_by_largest_remainder():
    # 4 of 10 by hand: shares 4 x 5/10 = 2.0, 4 x 3/10 = 1.2, 4 x 2/10 = 0.8; floors 2, 1, 0 (3 videos),
    # the one left goes to the largest remainder, class 2 (0.8): counts 2, 1, 1.
    for seed in range(5):
        chosen = validation_videos(LABELS, 4, seed=seed)
        assert chosen == sorted(chosen) and len(set(chosen)) == 4
        assert Counter(LABELS[i] for i in chosen) == {0: 2, 1: 1, 2: 1}


def test_the_subset_is_seeded():
    assert validation_videos(LABELS, 4, seed=7) == validation_videos(LABELS, 4, seed=7)
    assert len({tuple(validation_videos(LABELS, 4, seed=seed)) for seed in range(10)}) > 1


def test_ucf101_sized_store_the_last_classes_are_validated():
    """101 classes of 37 videos in class order and 3200 videos (the old cap: 50 batches of 64):
    3200 x 37 / 3737 = 31.68 per class, so every class gets 31 or 32, the last ones included."""
    labels = [label for label in range(101) for _ in range(37)]
    counts = Counter(labels[i] for i in validation_videos(labels, 3200, seed=0))
    assert sum(counts.values()) == 3200
    assert set(counts) == set(range(101)) and set(counts.values()) <= {31, 32}


def _validated_clips(out) -> list[int]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [m["val_clips"] for m in map(json.loads, lines) if "val_clips" in m]


def test_training_validates_every_video_or_the_subset(tiny_data, tmp_path):  # noqa: F811
    """The tiny val store holds one video per class (5), validated in batches of 4 clips: every
    video is scored by default, across the batches; val_videos 3 scores 3."""
    every = tmp_path / "every"
    train(tiny_settings(max_iter=2, val_period=0, precise_bn_iters=0), tiny_data["train"], tiny_data["val"],
          tiny_data["init"], every, CLASSES)
    assert _validated_clips(every) == [len(CLASSES)]
    subset = tmp_path / "subset"
    train(tiny_settings(max_iter=2, val_period=0, precise_bn_iters=0, val_videos=3), tiny_data["train"],
          tiny_data["val"], tiny_data["init"], subset, CLASSES)
    assert _validated_clips(subset) == [3]
