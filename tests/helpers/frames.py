"""Reading back the frame-index code that ``nlflow demo --draw-frame-index`` draws into each frame,
so tests can prove which frames a decoder returned."""

from __future__ import annotations

import numpy as np

from nlflow.demo.dataset import CODE_BAND_FRACTION, CODE_BITS
from nlflow.errors import NlflowError


class FrameCodeError(NlflowError):
    """A frame carries no readable frame-index code."""


def read_frame_index(frame_rgb: np.ndarray) -> int:
    """Decode the code drawn by ``stamp_frame_index``; works after compression and any rescaling."""
    frame = np.asarray(frame_rgb)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise FrameCodeError(f"expected an RGB frame [H, W, 3], got shape {frame.shape}")
    height, width = frame.shape[:2]
    band = height * CODE_BAND_FRACTION
    # sample only the middle of each block: edges blur under compression and scaling
    y0, y1 = int(band * 0.25), max(int(band * 0.75), int(band * 0.25) + 1)
    index = 0
    for bit in range(CODE_BITS):
        bx0, bx1 = bit * width / CODE_BITS, (bit + 1) * width / CODE_BITS
        x0 = int(bx0 + (bx1 - bx0) * 0.25)
        x1 = max(int(bx0 + (bx1 - bx0) * 0.75), x0 + 1)
        level = float(frame[y0:y1, x0:x1].mean())
        if 64 < level < 192:
            raise FrameCodeError(f"frame-index block {bit} is neither black nor white (mean {level:.0f})")
        index = (index << 1) | int(level >= 192)
    return index
