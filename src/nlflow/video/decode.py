"""Frame-exact video decoding with PyAV: probe, decode chosen frames by index.

Sources are a path or the whole file as ``bytes`` (e.g. a record from LMDB). Frames come back as
RGB uint8 arrays ``[T, H, W, 3]``. One decoder thread per call: parallelism comes from DataLoader
workers, and codec threads only add CPU on short clips.

Frame index = 0-based position in decode (display) order. On files with regular timestamps
(our downscaled videos: pts 0..N-1) ``decode_frames`` seeks to the keyframe before the first
wanted frame and derives each frame's index from its pts; on anything irregular (missing or
non-monotonic pts, e.g. XviD packed B-frames) it falls back to decoding from the start and
counting frames, which is always exact.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, Sequence

import av
import av.error
import numpy as np
from av.video.reformatter import VideoReformatter

from nlflow.errors import NlflowError

log = logging.getLogger(__name__)

class VideoDecodeError(NlflowError):
    """A video cannot be opened or decoded, or the requested frames do not exist."""


class FramesPastEndError(VideoDecodeError):
    """Requested frames lie past the last decodable frame; ``available`` = frames found."""

    def __init__(self, message: str, available: int) -> None:
        super().__init__(message)
        self.available = available


@dataclass(frozen=True)
class VideoInfo:
    frames: int
    fps: float
    width: int
    height: int


@dataclass
class DecodeCounters:
    """How much work decoding did: pass one to :func:`decode_frames` (or a caller of it) to see it;
    without one, a call counts into a throwaway."""

    opens: int = 0
    decode_passes: int = 0
    frames_decoded: int = 0
    frames_converted: int = 0
    fallbacks: int = 0


def _describe(source: str | os.PathLike[str] | bytes) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes in memory>"
    return os.fspath(source)


def open_container(source: str | os.PathLike[str] | bytes,
                   counters: DecodeCounters | None = None) -> av.container.InputContainer:
    """Open ``source`` for reading; bad data becomes a ``VideoDecodeError`` with the source named."""
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            container = av.open(io.BytesIO(source), mode="r")
        else:
            container = av.open(os.fspath(source), mode="r")
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise VideoDecodeError(f"cannot open video {_describe(source)}: {err}") from err
    if counters is not None:
        counters.opens += 1
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(f"no video stream in {_describe(source)}")
    return container


def _video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    stream = container.streams.video[0]
    stream.codec_context.thread_count = 1
    return stream


def _stream_fps(stream: av.video.stream.VideoStream) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return Fraction(rate) if rate else Fraction(25)


def _count_packets(container: av.container.InputContainer, stream) -> int:
    # Demuxing without decoding is cheap; empty packets (AVI "dropped frame" chunks) yield no frame.
    count = sum(1 for packet in container.demux(stream) if packet.size)
    container.seek(0)
    return count


def _probe_open(container: av.container.InputContainer, source_name: str) -> VideoInfo:
    stream = _video_stream(container)
    # AVI headers carry an exact frame count; other containers often estimate or omit it.
    frames = stream.frames if container.format.name == "avi" else 0
    if frames <= 0:
        frames = _count_packets(container, stream)
    width, height = stream.codec_context.width, stream.codec_context.height
    if width <= 0 or height <= 0:
        raise VideoDecodeError(f"video stream of {source_name} has no frame size")
    return VideoInfo(frames=int(frames), fps=float(_stream_fps(stream)), width=width, height=height)


def probe(source: str | os.PathLike[str] | bytes) -> VideoInfo:
    """Frame count, frame rate and size of the first video stream, without decoding."""
    with open_container(source) as container:
        try:
            return _probe_open(container, _describe(source))
        except av.error.FFmpegError as err:
            raise VideoDecodeError(f"cannot probe {_describe(source)}: {err}") from err


class _Converter:
    """RGB conversion with one reused swscale context (a new one per frame costs ~2x)."""

    def __init__(self, counters: DecodeCounters) -> None:
        self._reformatter = VideoReformatter()
        self._counters = counters

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        self._counters.frames_converted += 1
        rgb = self._reformatter.reformat(frame, format="rgb24", threads=1)
        return rgb.to_ndarray()


class _Irregular(Exception):
    """Timestamps cannot be trusted for indexing: decode from the start instead."""


def _positions(indices: Sequence[int]) -> dict[int, list[int]]:
    wanted: dict[int, list[int]] = {}
    for position, index in enumerate(indices):
        wanted.setdefault(index, []).append(position)
    return wanted


def _store(out: list, positions: list[int], array: np.ndarray) -> None:
    for position in positions:
        out[position] = array


def _decode_by_timestamp(container, stream, wanted: dict[int, list[int]], out: list, counters: DecodeCounters) -> int:
    """Seek to the keyframe before min(wanted), decode to max(wanted), index frames by pts.

    Returns the number of frames the video has up to the last one decoded.
    """
    lo, hi = min(wanted), max(wanted)
    time_base = stream.time_base
    fps = _stream_fps(stream)
    start_pts = stream.start_time or 0
    if time_base is None:
        raise _Irregular("stream has no time base")
    pts_per_frame = 1 / (fps * time_base)
    # A timestamp gap before the window would shift pts-derived indices against decode order and
    # cannot be seen after a seek: seek only when the header's frame count matches its duration.
    # With B-frames, AVI timestamps are reconstructed from decode order and shift by the delay.
    if stream.codec_context.has_b_frames:
        raise _Irregular("stream has B-frames")
    if not stream.frames or stream.duration is None:
        raise _Irregular("no frame count or duration in the header")
    if abs(stream.duration / pts_per_frame - stream.frames) > 1:
        raise _Irregular(f"duration covers {float(stream.duration / pts_per_frame):.1f} frames, header says {stream.frames}")
    if lo > 0:
        target = start_pts + int(round(lo * pts_per_frame))
        container.seek(target, stream=stream, backward=True, any_frame=False)
    convert = _Converter(counters)
    counters.decode_passes += 1
    previous: int | None = None
    for frame in container.decode(stream):
        counters.frames_decoded += 1
        if frame.pts is None:
            raise _Irregular("frame without pts")
        index = int(round((frame.pts - start_pts) * time_base * fps))
        if previous is None:
            if stream.codec_context.has_b_frames:  # learnt from an in-band header
                raise _Irregular("stream has B-frames")
            if index > lo:
                raise _Irregular(f"seek landed on frame {index}, after {lo}")
        elif index != previous + 1:
            raise _Irregular(f"frame {index} follows {previous}")
        previous = index
        if index in wanted:
            _store(out, wanted[index], convert(frame))
        if index >= hi:
            break
    return 0 if previous is None else previous + 1


def _decode_by_counting(container, stream, wanted: dict[int, list[int]], out: list, counters: DecodeCounters) -> int:
    """Decode from the first frame and count; returns how many frames were decoded."""
    hi = max(wanted)
    convert = _Converter(counters)
    counters.decode_passes += 1
    count = 0
    for frame in container.decode(stream):
        counters.frames_decoded += 1
        if count in wanted:
            _store(out, wanted[count], convert(frame))
        count += 1
        if count > hi:
            break
    return count


def _check_indices(indices: Iterable[int]) -> list[int]:
    result = []
    for index in indices:
        value = int(index)
        if value != index or value < 0:
            raise VideoDecodeError(f"frame indices must be non-negative integers, got {index!r}")
        result.append(value)
    return result


def _decode_open(container, source_name: str, indices: list[int], counters: DecodeCounters) -> np.ndarray:
    stream = _video_stream(container)
    if not indices:
        return np.empty((0, stream.codec_context.height, stream.codec_context.width, 3), np.uint8)
    wanted = _positions(indices)
    out: list = [None] * len(indices)
    try:
        try:
            available = _decode_by_timestamp(container, stream, wanted, out, counters)
        except _Irregular as why:
            log.debug("decoding %s from the start: %s", source_name, why)
            counters.fallbacks += 1
            out = [None] * len(indices)
            container.seek(0)
            available = _decode_by_counting(container, stream, wanted, out, counters)
    except av.error.FFmpegError as err:
        raise VideoDecodeError(f"cannot decode {source_name}: {err}") from err
    missing = sorted({indices[i] for i, frame in enumerate(out) if frame is None})
    if missing:
        raise FramesPastEndError(
            f"{source_name} has {available} frames, no frame {missing[0]}"
            f" ({len(missing)} requested frames past its end)",
            available,
        )
    return np.stack(out)


def decode_frames(source: str | os.PathLike[str] | bytes, indices: Sequence[int], *,
                  counters: DecodeCounters | None = None) -> np.ndarray:
    """RGB frames ``[len(indices), H, W, 3]`` for 0-based frame ``indices`` (repeats allowed)."""
    checked = _check_indices(indices)
    counters = counters if counters is not None else DecodeCounters()
    with open_container(source, counters) as container:
        return _decode_open(container, _describe(source), checked, counters)
