"""Which frames make a clip (training and test sampling of the original) and the 30-view test input.

``load_test_view_frames`` (+ ``normalize_views``) is the single path from a video to the network's
test input: evaluate, predict and the LMDB datasets all call it, so they cannot disagree on
preprocessing.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch

from nlflow.errors import ConfigError, NlflowError, check_known_fields
from nlflow.video import decode
from nlflow.video.transforms import crop_offsets, normalize_channels_last, resize_short_side

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ViewSpec:
    """How a video becomes test views: ``num_clips`` windows along time x ``num_crops`` crops."""

    video_length: int
    sample_rate: int
    num_clips: int = 10
    num_crops: int = 3
    scale: int = 256
    crop_size: int = 256

    def __post_init__(self) -> None:
        for name in ("video_length", "sample_rate", "num_clips", "scale", "crop_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"view spec: {name} must be a positive integer, got {getattr(self, name)!r}")
        if self.num_crops not in (1, 3):
            raise ConfigError(f"view spec: num_crops must be 1 or 3, got {self.num_crops!r}")
        if self.crop_size > self.scale:
            raise ConfigError(f"view spec: crop_size {self.crop_size} exceeds scale {self.scale}")

    @property
    def num_views(self) -> int:
        return self.num_clips * self.num_crops

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ViewSpec":
        check_known_fields(cls, data, "view spec")
        return cls(**{key: int(value) for key, value in data.items()})


# predict's and features' view layouts: views -> (clips, crops). 30 = the original's 10 clips x 3
# crops; 3 = 3 clips spread along time x the centre crop; 1 = one clip (from frame 0), centre crop.
VIEW_LAYOUTS: dict[int, tuple[int, int]] = {30: (10, 3), 3: (3, 1), 1: (1, 1)}


def layout_spec(*, video_length: int, sample_rate: int, scale: int, views: int = 30) -> ViewSpec:
    """The test views of one of :data:`VIEW_LAYOUTS` at short side = crop = ``scale``."""
    if views not in VIEW_LAYOUTS:
        raise ConfigError(f"views must be one of {sorted(VIEW_LAYOUTS, reverse=True)}, got {views}")
    clips, crops = VIEW_LAYOUTS[views]
    return ViewSpec(video_length=int(video_length), sample_rate=int(sample_rate), num_clips=clips, num_crops=crops,
                    scale=int(scale), crop_size=int(scale))


def _clip_from_start(start: int, num_frames: int, video_length: int, sample_rate: int) -> list[int]:
    # Periodic sampling, as the original's decoder: a clip that runs past the end continues from
    # frame 0, so a video shorter than one clip span still gives full clips.
    return [(start + i * sample_rate) % num_frames for i in range(video_length)]


def _check_frames(num_frames: int) -> None:
    if num_frames < 1:
        raise NlflowError("a video with no frames has no clips")


def train_clip_indices(
    num_frames: int, video_length: int, sample_rate: int, rng: np.random.Generator
) -> list[int]:
    """A random clip: start uniform in ``[0, N - video_length * sample_rate]`` (0 when negative),
    then one frame every ``sample_rate``, wrapping past the end (``customized_video_io.cc``)."""
    _check_frames(num_frames)
    max_start = num_frames - video_length * sample_rate
    start = int(rng.integers(0, max_start + 1)) if max_start > 0 else 0
    return _clip_from_start(start, num_frames, video_length, sample_rate)


def test_clip_starts(num_frames: int, num_clips: int) -> list[int]:
    """Start frame of test clip k of K: ``int(N / K * k) % N``, computed in single precision as the
    original's ``DecodeClipFromVideoFileFlex`` does (``frame_gaps`` is a C++ ``float``)."""
    if num_clips < 1:
        raise ValueError("num_clips must be at least 1")
    _check_frames(num_frames)
    frame_gaps = np.float32(num_frames) / np.float32(num_clips)
    return [int(frame_gaps * np.float32(k)) % num_frames for k in range(num_clips)]


def test_clip_indices(num_frames: int, spec: ViewSpec) -> list[list[int]]:
    """Frame indices of every test clip, in clip order."""
    starts = test_clip_starts(num_frames, spec.num_clips)
    return [_clip_from_start(s, num_frames, spec.video_length, spec.sample_rate) for s in starts]


def _decode_clips(source, spec: ViewSpec, num_frames: int, counters: decode.DecodeCounters | None):
    clips = test_clip_indices(num_frames, spec)
    union = sorted({index for clip in clips for index in clip})
    return clips, union, decode.decode_frames(source, union, counters=counters)


def load_test_view_frames(
    source: str | os.PathLike[str] | bytes,
    spec: ViewSpec,
    *,
    num_frames: int | None = None,
    counters: decode.DecodeCounters | None = None,
) -> torch.Tensor:
    """Test views as uint8 frames ``[V, T, crop, crop, 3]``: view v = clip ``v // num_crops``, crop ``v % num_crops``.

    The video is decoded once (the union of all clips' frames). ``num_frames`` skips the probe
    when the caller already knows the count (e.g. from the LMDB record header); ``counters`` sees
    the decoding work (:class:`nlflow.video.decode.DecodeCounters`). The views stay
    uint8 and in the decoder's pixel layout, so a DataLoader worker only cuts crops and hands a
    quarter of the float bytes to the device, where :func:`normalize_views` makes network input.
    """
    if num_frames is None:
        num_frames = decode.probe(source).frames
    try:
        clips, union, frames = _decode_clips(source, spec, num_frames, counters)
    except decode.FramesPastEndError as err:
        # Container headers can overstate the count (raw files): plan again with what decodes.
        if err.available < 1 or err.available >= num_frames:
            raise
        log.warning("%s; using %d frames", err, err.available)
        clips, union, frames = _decode_clips(source, spec, err.available, counters)
    frames = resize_short_side(frames, spec.scale)
    row_of = {index: row for row, index in enumerate(union)}
    offsets = crop_offsets(frames.shape[1], frames.shape[2], spec.crop_size, spec.num_crops)
    source_frames = torch.from_numpy(np.ascontiguousarray(frames))
    crop = spec.crop_size
    views = torch.empty((spec.num_views, spec.video_length, crop, crop, 3), dtype=torch.uint8)
    for clip_number, clip in enumerate(clips):
        clip_frames = source_frames[[row_of[index] for index in clip]]
        for crop_number, (top, left) in enumerate(offsets):
            views[clip_number * spec.num_crops + crop_number].copy_(clip_frames[:, top : top + crop, left : left + crop])
    return views


def normalize_views(views: torch.Tensor) -> torch.Tensor:
    """uint8 frames ``[..., T, H, W, 3]`` -> float32 ``[..., 3, T, H, W]`` as ``(x - 114.75) / 57.375``.

    Float input is taken to be network input already and returned as is. Runs wherever ``views``
    lives: evaluation calls it on the device after the transfer.
    """
    return views if views.is_floating_point() else normalize_channels_last(views)


def to_network_input(batch: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """A loader batch (uint8 frames ``[N, T, H, W, 3]``, or float input) -> normalised input on ``device``.

    Normalising after the transfer moves a quarter of the bytes and keeps the float work off the
    DataLoader workers; training and evaluation both feed their networks through this.
    """
    batch = normalize_views(batch.to(device, non_blocking=True))
    if channels_last and batch.dim() == 5:
        batch = batch.contiguous(memory_format=torch.channels_last_3d)
    return batch


# These are library functions whose names start with "test": keep pytest from collecting them
# when a test module imports them.
test_clip_starts.__test__ = False  # type: ignore[attr-defined]
test_clip_indices.__test__ = False  # type: ignore[attr-defined]
