"""Datasets over LMDB stores, fed with small real mpeg4 AVIs made here with PyAV."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from nlflow.demo.dataset import write_video
from nlflow.store.lmdb_store import write_store
from nlflow.store.torch_datasets import SampleLoadError, TestVideoDataset, TrainClipDataset, ValClipDataset
from nlflow.video.transforms import MEAN, STD
from nlflow.video.views import ViewSpec, normalize_views

WIDTH, HEIGHT, FRAMES = 64, 48, 80
GREEN, BLUE = 180, 60
CLASSES = ["Up", "Down"]


def _level(t: int) -> int:
    """Red level of frame t: the frame index can be read back from a decoded clip."""
    return 20 + 2 * t


def _write_video(path, frames: int = FRAMES) -> None:
    """Uniform-colour frames (red = 20 + 2t, green 180, blue 60), mpeg4 AVI, keyframe every 12."""
    path.parent.mkdir(parents=True, exist_ok=True)
    images = (np.full((HEIGHT, WIDTH, 3), (_level(t), GREEN, BLUE), np.uint8) for t in range(frames))
    write_video(path, images, keyframe_interval=12, qscale=2)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    entries = []
    for i in range(4):
        rel = f"{CLASSES[i % 2]}/v_{CLASSES[i % 2]}_g{i:02d}_c01.avi"
        _write_video(root / rel)
        entries.append((rel, i % 2))
    (root / "Down/v_Down_g99_c01.avi").write_bytes(b"RIFF not really a video" * 40)
    return root, entries


def _store(tmp_path, videos, kind="train", embed=True, corrupt=False, entries=None):
    root, good = videos
    entries = list(good if entries is None else entries)
    if corrupt:
        entries.insert(1, ("Down/v_Down_g99_c01.avi", 1))
    frames = {rel: FRAMES for rel, _ in entries}
    path = tmp_path / f"{kind}.lmdb"
    write_store(path, entries, root, kind, CLASSES, {}, frames, embed=embed)
    return path, entries


def _pixels(clip: torch.Tensor) -> torch.Tensor:
    """Undo the normalisation: per-frame mean colour [3, T] on the 0-255 scale."""
    return (clip * STD + MEAN).mean(dim=(-2, -1))


def _frame_of(red: torch.Tensor) -> torch.Tensor:
    return (red - 20) / 2


def test_train_clip_shape_normalisation_and_stride(tmp_path, videos):
    path, entries = _store(tmp_path, videos)
    dataset = TrainClipDataset(path, video_length=4, sample_rate=4, scale_range=(48, 56), crop_size=40, seed=0)
    assert len(dataset) == len(entries)
    for index in range(len(dataset)):
        clip, label = dataset[index]
        assert clip.shape == (4, 40, 40, 3) and clip.dtype == torch.uint8  # normalised on the device
        assert label == entries[index][1]
        colour = _pixels(normalize_views(clip))
        frames = _frame_of(colour[0])
        # Consecutive clip frames are sample_rate frames apart, inside the video.
        assert torch.allclose(frames[1:] - frames[:-1], torch.full((3,), 4.0), atol=1.0)
        assert frames[0] >= -0.6 and frames[-1] <= FRAMES - 1 + 0.6
        assert torch.allclose(colour[1], torch.full((4,), float(GREEN)), atol=4)  # RGB order kept
        assert torch.allclose(colour[2], torch.full((4,), float(BLUE)), atol=4)
    assert dataset.failures == 0


def test_train_randomness_is_reproducible_and_worker_independent(tmp_path, videos):
    path, _ = _store(tmp_path, videos)
    dataset = TrainClipDataset(path, 4, 4, (48, 64), 40, seed=3)
    first = [dataset[i][0] for i in range(len(dataset))]
    assert all(torch.equal(a, dataset[i][0]) for i, a in enumerate(first))

    loader = DataLoader(dataset, batch_size=2, num_workers=2, persistent_workers=True)
    from_workers = torch.cat([clips for clips, _ in loader])
    # The same uint8 clips (workers resize with 1 thread, this process with more).
    assert torch.equal(from_workers, torch.stack(first))

    dataset.set_epoch(1)
    assert dataset.epoch == 1
    second = [dataset[i][0] for i in range(len(dataset))]
    assert not all(torch.equal(a, b) for a, b in zip(first, second))
    # Persistent workers see the new epoch (it lives in shared memory).
    from_workers = torch.cat([clips for clips, _ in loader])
    assert torch.equal(from_workers, torch.stack(second))
    del loader
    other_seed = TrainClipDataset(path, 4, 4, (48, 64), 40, seed=4)
    assert not all(torch.equal(a, other_seed[i][0]) for i, a in enumerate(first))


def test_train_replaces_a_corrupt_record_and_counts_it(tmp_path, videos, caplog):
    path, entries = _store(tmp_path, videos, corrupt=True)
    dataset = TrainClipDataset(path, 4, 4, (48, 56), 40, seed=0)
    with caplog.at_level("WARNING", logger="nlflow.store.torch_datasets"):
        clip, label = dataset[1]  # the corrupt one
        dataset[1]
    assert clip.shape == (4, 40, 40, 3) and clip.dtype == torch.uint8
    assert dataset.failures == 2
    assert dataset.failed_videos() == ["Down/v_Down_g99_c01.avi"]
    warnings = [r for r in caplog.records if "v_Down_g99_c01.avi" in r.getMessage()]
    assert len(warnings) == 1  # once per video

    # Counted across DataLoader workers too.
    fresh = TrainClipDataset(path, 4, 4, (48, 56), 40, seed=0)
    batches = list(DataLoader(fresh, batch_size=1, num_workers=2))
    assert len(batches) == len(entries)
    assert fresh.failures == 1 and fresh.failed_videos() == ["Down/v_Down_g99_c01.avi"]


def test_train_gives_up_with_a_clear_error(tmp_path, videos):
    path, _ = _store(tmp_path, videos, entries=[("Down/v_Down_g99_c01.avi", 1)])
    dataset = TrainClipDataset(path, 4, 4, (48, 56), 40, seed=0, max_attempts=3)
    with pytest.raises(SampleLoadError, match="3 training videos in a row failed"):
        dataset[0]
    assert dataset.failures == 3


def test_train_rejects_bad_scale_range(tmp_path, videos):
    path, _ = _store(tmp_path, videos)
    with pytest.raises(SampleLoadError, match="scale range"):
        TrainClipDataset(path, 4, 4, (32, 36), 40, seed=0)


def test_val_is_one_clip_centre_crop(tmp_path, videos):
    path, entries = _store(tmp_path, videos, kind="val", embed=False)
    spec = ViewSpec(video_length=4, sample_rate=4, num_clips=10, num_crops=3, scale=48, crop_size=40)
    dataset = ValClipDataset(path, spec)
    clip, label = dataset[2]
    assert clip.shape == (4, 40, 40, 3) and clip.dtype == torch.uint8 and label == entries[2][1]
    # One clip by the original's test rule (start int(N / 1 * 0) = 0), every 4th frame.
    frames = _frame_of(_pixels(normalize_views(clip))[0])
    assert torch.allclose(frames, torch.tensor([0.0, 4.0, 8.0, 12.0]), atol=1.0)


def test_test_views_shape_and_order(tmp_path, videos):
    path, entries = _store(tmp_path, videos, kind="test")
    spec = ViewSpec(video_length=4, sample_rate=4, num_clips=3, num_crops=3, scale=48, crop_size=40)
    dataset = TestVideoDataset(path, spec)
    views, label, index = dataset[3]
    assert views.shape == (9, 4, 40, 40, 3) and views.dtype == torch.uint8  # normalised on the device
    assert (label, index) == (entries[3][1], 3)
    starts = _frame_of(_pixels(normalize_views(views))[:, 0, 0])  # first frame of each view
    # Clip-major order: three crops of clip 0 (start 0), then clip 1 (start int(80 / 3 * 1) = 26),
    # clip 2 (start int(80 / 3 * 2) = 53).
    expected = torch.tensor([0.0] * 3 + [26.0] * 3 + [53.0] * 3)
    assert torch.allclose(starts, expected, atol=1.0)

    batch = next(iter(DataLoader(dataset, batch_size=2, num_workers=0)))
    assert batch[0].shape == (2, 9, 4, 40, 40, 3) and batch[2].tolist() == [0, 1]


def test_test_dataset_names_the_bad_video(tmp_path, videos):
    path, _ = _store(tmp_path, videos, kind="test", corrupt=True)
    dataset = TestVideoDataset(path, ViewSpec(4, 4, num_clips=2, num_crops=1, scale=48, crop_size=40))
    with pytest.raises(SampleLoadError, match="v_Down_g99_c01.avi"):
        dataset[1]
