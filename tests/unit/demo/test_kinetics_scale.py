"""The Kinetics-400-shaped scale generator: the full inventory, what a fraction keeps, the copy it
writes (CVDF layout, read by the real list maker), missing videos, determinism and resuming."""

from __future__ import annotations

import csv
import hashlib
import re
from pathlib import Path

import av
import numpy as np
import pytest

from nlflow.demo import kinetics_scale as ks
from nlflow.lists.kinetics import kinetics_lists
from nlflow.lists.kinetics_facts import kinetics400_classes

TINY = {"frame_size": (64, 36), "max_frames": 6, "n_jobs": 1}  # layout and counts, not pictures
FILE_NAME = re.compile(r"^[A-Za-z0-9_-]{11}_\d{6}_\d{6}\.mp4$")


@pytest.fixture(scope="module")
def inventories():
    return {split: ks.split_inventory(0, split) for split in ks.SPLITS}


def digest(root: Path) -> dict[str, str]:
    """relative path -> SHA-256 of every file but the manifest (which records the fraction)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ks.MANIFEST_NAME}


def test_the_full_inventory_has_kinetics_sizes_over_all_400_classes(inventories):
    train, val = inventories["train"], inventories["val"]
    assert (len(train), len(val)) == (246_535, 19_882)
    for inventory in (train, val):
        assert set(np.unique(inventory.labels)) == set(range(400))
        assert sorted(inventory.order) == list(range(len(inventory)))  # every row, once
    train_sizes = np.bincount(train.labels)
    assert 200 <= train_sizes.min() and train_sizes.max() <= 1200  # the paper's 250-1000, rescaled
    assert np.bincount(val.labels).max() == ks.VAL_PER_CLASS
    ids = ["".join(row) for row in train.ids[:5000]]
    assert len(set(ids)) == len(ids)


def test_clip_lengths_and_frame_sizes_follow_the_stated_mix(inventories):
    train = inventories["train"]
    full = train.frames == ks.FPS * ks.CLIP_SECONDS
    assert 0.94 < full.mean() < 0.96
    assert train.frames.min() >= ks.SHORT_SECONDS[0] * ks.FPS and train.frames.max() == 300
    shares = np.bincount(train.size_index, minlength=len(ks.FRAME_SIZES)) / len(train)
    assert np.allclose(shares, ks.FRAME_SIZE_WEIGHTS, atol=0.01)
    # the bit rate is set so that the mean file is MEAN_FILE_BYTES over this very mix
    pixels = np.array([w * h for w, h in ks.FRAME_SIZES])[train.size_index]
    mean_bytes = (ks.BITS_PER_PIXEL * pixels * train.frames / 8).mean()
    assert mean_bytes == pytest.approx(ks.MEAN_FILE_BYTES, rel=0.02)


@pytest.mark.parametrize("fraction", [0.005, 0.01])
def test_a_fraction_keeps_its_share_of_rows_every_class_and_five_percent_missing(inventories, fraction):
    train = ks.select_fraction(inventories["train"], fraction)
    val = ks.select_fraction(inventories["val"], fraction)
    assert len(train) == round(fraction * 246_535) and len(val) == round(fraction * 19_882)
    assert {video.label for video in train} == set(range(400))
    for videos in (train, val):
        assert sum(video.missing for video in videos) == len(videos) // 20
        assert [video.row for video in videos] == sorted(video.row for video in videos)  # CSV order: by class


def test_a_smaller_fraction_is_a_subset_of_a_larger_one(inventories):
    for inventory in inventories.values():
        small = ks.select_fraction(inventory, 0.005)
        large = {video.row: video for video in ks.select_fraction(inventory, 0.01)}
        assert all(large[video.row] == video for video in small)  # same id, length, size, missing


def test_a_split_smaller_than_the_classes_takes_distinct_classes(inventories):
    val = ks.select_fraction(inventories["val"], 0.005)  # 99 rows
    assert len({video.label for video in val}) == len(val)
    with pytest.raises(ks.KineticsScaleError):
        ks.select_fraction(inventories["val"], 0)


def test_the_copy_has_the_cvdf_layout_and_the_list_maker_reads_it(tmp_path):
    root = tmp_path / "k400"
    summary = ks.generate_kinetics_scale(root, 0.0004, seed=0, **TINY)
    assert summary.rows == {"train": 99, "val": 8}
    assert summary.missing == {"train": 4, "val": 0}
    assert sorted(p.name for p in root.iterdir()) == ["annotations", ks.MANIFEST_NAME, "train", "val"]
    names = kinetics400_classes()
    listed = {}
    for split in ks.SPLITS:
        with open(root / "annotations" / f"{split}.csv", newline="") as handle:
            rows = list(csv.reader(handle))
        assert rows[0] == ["label", "youtube_id", "time_start", "time_end", "split", "is_cc"]
        assert all(row[0] in names and int(row[3]) - int(row[2]) == 10 and row[4] == split for row in rows[1:])
        listed[split] = {f"{row[1]}_{int(row[2]):06d}_{int(row[3]):06d}.mp4" for row in rows[1:]}
        on_disk = {p.name for p in (root / split).iterdir()}
        assert all(FILE_NAME.match(name) for name in on_disk)
        assert on_disk <= listed[split] and len(listed[split] - on_disk) == summary.missing[split]
    assert summary.files == sum(1 for _ in root.glob("*/*.mp4")) == 99 + 8 - 4
    lists = kinetics_lists(root)  # the real list maker, as the workflow's lists stage runs it
    assert len(lists.train) == 95 and len(lists.test) == 8
    assert {Path(video.path).name for video in lists.missing} == listed["train"] - {p.name for p in (root / "train").iterdir()}
    with av.open(str(next((root / "val").iterdir()))) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.width, stream.height) == ("h264", 64, 36)
        assert stream.average_rate == ks.FPS and stream.frames == TINY["max_frames"]


def test_the_same_seed_writes_the_same_bytes_and_resuming_a_smaller_fraction_gives_the_larger_one(tmp_path):
    fresh = ks.generate_kinetics_scale(tmp_path / "fresh", 0.0002, seed=3, **TINY)
    grown_root = tmp_path / "grown"
    ks.generate_kinetics_scale(grown_root, 0.0001, seed=3, **TINY)
    first = {p.name: p.stat().st_ino for p in grown_root.glob("*/*.mp4")}
    grown = ks.generate_kinetics_scale(grown_root, 0.0002, seed=3, resume=True, **TINY)
    assert digest(grown_root) == digest(tmp_path / "fresh")
    assert grown.rendered == fresh.files - len(first)  # the smaller copy's files were kept ...
    assert all(p.stat().st_ino == first[p.name] for p in grown_root.glob("*/*.mp4") if p.name in first)
    assert grown.video_bytes == fresh.video_bytes
    other = tmp_path / "other"
    ks.generate_kinetics_scale(other, 0.0002, seed=4, **TINY)
    assert set(digest(other)).isdisjoint(p for p in digest(tmp_path / "fresh") if p.endswith(".mp4"))
    with pytest.raises(ks.KineticsScaleError):
        ks.generate_kinetics_scale(other, 0.0002, seed=4, **TINY)  # not empty, no resume


def test_a_real_size_clip_is_h264_at_the_bit_rate_that_gives_kinetics_file_sizes(tmp_path):
    video = next(v for v in (ks.split_inventory(0, "val").video(row, 0) for row in range(200))
                 if (v.width, v.height) == (640, 360) and v.frames == 300)
    relpath, frames, size = ks.render_video(video, str(tmp_path), seed=0, max_frames=None, frame_size=None)
    expected = ks.BITS_PER_PIXEL * 640 * 360 * 300 / 8  # 1.25 MB
    assert frames == 300 and size == pytest.approx(expected, rel=0.15)
    with av.open(str(tmp_path / relpath)) as container:
        stream = container.streams.video[0]
        # Main profile with CABAC and B-frames: decoding costs what YouTube's files cost
        assert (stream.codec_context.name, stream.codec_context.profile) == ("h264", "Main")
        assert (stream.width, stream.height, stream.frames) == (640, 360, 300)


def test_the_yuv_renderer_draws_the_rgb_renderers_scene():
    """Same seed, same scene: the luma of the YUV frames is the RGB frames' luma, apart from the
    noise (on luma only, unscaled) and rounding. A misplaced pan, object or plane would differ by tens."""
    from nlflow.demo import scale

    size = (160, 120)
    rgb = list(scale.render_scale_frames(np.random.default_rng(7), 12, size))
    yuv = list(scale.render_scale_frames_yuv420(np.random.default_rng(7), 12, size))
    for rgb_frame, yuv_frame in zip(rgb, yuv, strict=True):
        assert yuv_frame.shape == (180, 160) and yuv_frame.dtype == np.uint8
        luma_of_rgb = scale._to_yuv(rgb_frame.astype(np.float32))[..., 0].astype(int)
        difference = np.abs(yuv_frame[:120].astype(int) - luma_of_rgb)
        assert difference.mean() < 1.5 and np.percentile(difference, 99) <= 4
