"""Decoding every frame of a video: the tests' reference for nlflow's frame-exact ``decode_frames``."""

from __future__ import annotations

import io
import os

import av
import numpy as np


def decode_all(source: str | os.PathLike | bytes) -> np.ndarray:
    """Every frame of the first video stream as RGB ``[N, H, W, 3]``, in decode order."""
    handle = io.BytesIO(source) if isinstance(source, bytes) else os.fspath(source)
    with av.open(handle) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
