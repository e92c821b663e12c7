"""Baselines the benchmarks measure nlflow against: decoding every frame of a video, the way a
plain decoder loop does (one decoder thread, one reused RGB converter, as nlflow's own decoder)."""

from __future__ import annotations

import io
import os

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from nlflow.video import decode


def decode_all(source: str | os.PathLike | bytes, counters: decode.DecodeCounters | None = None) -> np.ndarray:
    """Every frame as RGB ``[N, H, W, 3]``; counted in ``counters`` when given."""
    counters = counters if counters is not None else decode.DecodeCounters()
    handle = io.BytesIO(source) if isinstance(source, bytes) else os.fspath(source)
    converter = VideoReformatter()
    frames = []
    with av.open(handle) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        counters.decode_passes += 1
        for frame in container.decode(stream):
            counters.frames_decoded += 1
            frames.append(converter.reformat(frame, format="rgb24", threads=1).to_ndarray())
    return np.stack(frames)
