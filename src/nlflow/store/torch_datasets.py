"""PyTorch datasets over nlflow LMDB stores: random training clips, centre validation clips, test views.

The datasets need no ``worker_init_fn``: the LMDB handle opens lazily in whichever process reads
(see :class:`~nlflow.store.lmdb_store.LmdbReader`), and training randomness comes from
``(seed, epoch, index)``, not from process-global generators, so a run gives the same clips with
0, 2 or 8 DataLoader workers.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from nlflow.errors import NlflowError
from nlflow.store.lmdb_store import LmdbReader, Record
from nlflow.video.decode import FramesPastEndError, decode_frames
from nlflow.video.transforms import train_augment_frames
from nlflow.video.views import ViewSpec, load_test_view_frames, train_clip_indices

log = logging.getLogger(__name__)

# Failure-counter slots: 0 for the main process, 1.. for DataLoader workers (by worker id).
_COUNTER_SLOTS = 257


class SampleLoadError(NlflowError):
    """A stored video could not be turned into network input."""


def _worker_slot() -> int:
    info = get_worker_info()
    return 0 if info is None else 1 + info.id % (_COUNTER_SLOTS - 1)


class TrainClipDataset(Dataset):
    """Random training clips ``(clip uint8 [T, crop, crop, 3], label)`` from a train LMDB.

    Clips stay uint8 frames; the training loop normalises them on its device (``nlflow.video.views.to_network_input``).

    Randomness for item ``index`` comes from ``np.random.default_rng([seed, epoch, index])``
    (window, scale jitter, crop, flip and any replacement index), so training is reproducible
    whatever the number of workers. Call :meth:`set_epoch` before iterating each epoch; the epoch
    lives in shared memory, so persistent workers see it too.

    A record that fails to decode is logged (once per video per process), counted and replaced
    by another index drawn from the same generator; after ``max_attempts`` failures in a row a
    :class:`SampleLoadError` is raised. Failure counts from all workers are gathered in a
    shared-memory tensor (one slot per worker, so no locking): read :attr:`failures` and
    :meth:`failed_videos` in the main process at any time.
    """

    def __init__(
        self,
        lmdb_path: str | os.PathLike,
        video_length: int,
        sample_rate: int,
        scale_range: tuple[int, int],
        crop_size: int,
        seed: int,
        max_attempts: int = 10,
    ):
        low, high = (int(v) for v in scale_range)
        if not crop_size <= low <= high:
            raise SampleLoadError(
                f"training scale range {tuple(scale_range)} must be ordered and not below the crop size {crop_size}"
            )
        self.reader = LmdbReader(lmdb_path)
        if len(self.reader) == 0:
            raise SampleLoadError(f"training store {lmdb_path} holds no videos")
        self.video_length = int(video_length)
        self.sample_rate = int(sample_rate)
        self.scale_range = (low, high)
        self.crop_size = int(crop_size)
        self.seed = int(seed)
        self.max_attempts = int(max_attempts)
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self._failure_counts = torch.zeros(_COUNTER_SLOTS, dtype=torch.int64).share_memory_()
        self._failed_records = torch.zeros(len(self.reader), dtype=torch.uint8).share_memory_()
        self._warned: set[str] = set()

    def __len__(self) -> int:
        return len(self.reader)

    def set_epoch(self, epoch: int) -> None:
        self._epoch[0] = int(epoch)

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    @property
    def failures(self) -> int:
        """Decode failures so far, summed over the main process and all workers."""
        return int(self._failure_counts.sum())

    def failed_videos(self) -> list[str]:
        """Distinct videos (relative paths) that failed at least once, in record order."""
        names = (self.reader.header(int(i))["video"] for i in torch.nonzero(self._failed_records).flatten())
        return list(dict.fromkeys(names))

    def _clip(self, record: Record, rng: np.random.Generator) -> torch.Tensor:
        indices = train_clip_indices(record.frames, self.video_length, self.sample_rate, rng)
        try:
            frames = decode_frames(record.source, indices)
        except FramesPastEndError as err:
            # The stored count overstated the frames: sample again within what decodes.
            if not 0 < err.available < record.frames:
                raise
            indices = train_clip_indices(err.available, self.video_length, self.sample_rate, rng)
            frames = decode_frames(record.source, indices)
        return train_augment_frames(frames, self.scale_range, self.crop_size, rng)

    def _note_failure(self, index: int, video: str, error: Exception) -> None:
        self._failure_counts[_worker_slot()] += 1
        self._failed_records[index] = 1
        if video not in self._warned:
            self._warned.add(video)
            log.warning("skipping training video %s (record %d): %s", video, index, error)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        current = int(index)
        last_error: Exception | None = None
        for _ in range(self.max_attempts):
            video = f"record {current}"
            try:
                record = self.reader[current]
                video = record.video
                return self._clip(record, rng), record.label
            except (NlflowError, ValueError) as err:
                last_error = err
                self._note_failure(current, video, err)
                current = int(rng.integers(len(self.reader)))
        raise SampleLoadError(
            f"{self.max_attempts} training videos in a row failed to load from {self.reader.path}"
            f" (starting at record {index}); last error: {last_error}"
        )


def _load_views(reader: LmdbReader, index: int, spec: ViewSpec) -> tuple[torch.Tensor, int]:
    record = reader[index]
    try:
        views = load_test_view_frames(record.source, spec, num_frames=record.frames)
    except NlflowError as err:
        raise SampleLoadError(f"{reader.kind} video {record.video} (record {index} of {reader.path}): {err}") from err
    return views, record.label


class ValClipDataset(Dataset):
    """One clip per video ``(clip uint8 [T, S, S, 3], label)`` for clip accuracy during training.

    The one clip the test rule gives for K = 1 (start frame 0), short side ``spec.scale``, centre
    crop ``spec.crop_size``: the same code path as the test views (``load_test_view_frames`` with
    one clip and one crop); the training loop normalises it on its device like the training clips.
    (The original validated on 10 clips x the centre crop per video: a listed deviation, one clip
    keeps validation cheap.)
    """

    def __init__(self, lmdb_path: str | os.PathLike, spec: ViewSpec):
        self.reader = LmdbReader(lmdb_path)
        self.spec = dataclasses.replace(spec, num_clips=1, num_crops=1)

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        views, label = _load_views(self.reader, int(index), self.spec)
        return views[0], label


class TestVideoDataset(Dataset):
    """All test views of a video ``(views uint8 [V, T, S, S, 3], label, index)``, V = ``spec.num_views``.

    uint8 frames, not float network input: the views go to the device at a quarter of the size and
    :class:`~nlflow.evaluate.scorer.ViewScorer` normalises them there (``normalize_views``).
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, lmdb_path: str | os.PathLike, spec: ViewSpec):
        self.reader = LmdbReader(lmdb_path)
        self.spec = spec

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        views, label = _load_views(self.reader, int(index), self.spec)
        return views, label, int(index)
