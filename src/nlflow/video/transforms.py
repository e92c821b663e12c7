"""Clip transforms: short-side resize, crops, flip and the original's normalisation.

Inputs are RGB uint8 frames ``[T, H, W, 3]`` (numpy or torch); network inputs are float32
``[3, T, H, W]`` with ``(x - MEAN) / STD`` on 0-255 values, as in video-nonlocal-net.
Resizing runs once per clip through ``F.interpolate`` (bilinear), never per frame in Python:
this code runs in DataLoader workers.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

MEAN = 114.75
STD = 57.375


def _as_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(np.ascontiguousarray(frames))
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames [T, H, W, 3], got shape {tuple(frames.shape)}")
    return frames


def scaled_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(height, width) with the short side equal to ``short_side`` and the long side scaled by the
    same single-precision ratio and truncated, as the original's ``ScaleTransform`` computes it."""
    ratio = np.float32(short_side) / np.float32(min(height, width))
    if height <= width:
        return short_side, max(1, int(np.float32(width) * ratio))
    return max(1, int(np.float32(height) * ratio)), short_side


def _resize_bilinear(clip: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``[T, 3, H, W]`` (float, or uint8 rounded); a no-op when the size already matches."""
    if tuple(clip.shape[-2:]) == size:
        return clip
    return F.interpolate(clip, size=size, mode="bilinear", align_corners=False, antialias=False)


def normalize_channels_last(frames: torch.Tensor) -> torch.Tensor:
    """Pixels ``[..., T, H, W, 3]`` (any leading dimensions, any device) -> a new float32
    contiguous ``[..., 3, T, H, W]`` tensor as ``(x - 114.75) / 57.375``."""
    channels_first = frames.movedim(-1, -4)
    return channels_first.to(torch.float32, memory_format=torch.contiguous_format, copy=True).sub_(MEAN).div_(STD)


def resize_short_side(frames: np.ndarray | torch.Tensor, size: int) -> np.ndarray | torch.Tensor:
    """Resize uint8 ``[T, H, W, 3]`` so the short side is ``size``; same type out as in."""
    tensor = _as_tensor(frames)
    target = scaled_size(tensor.shape[1], tensor.shape[2], size)
    if tuple(tensor.shape[1:3]) == target:
        return frames
    clip = _resize_bilinear(tensor.permute(0, 3, 1, 2).float(), target)
    out = clip.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    return out.numpy() if isinstance(frames, np.ndarray) else out


def crop_offsets(height: int, width: int, crop: int, count: int) -> list[tuple[int, int]]:
    """(top, left) of ``count`` (1 or 3) test crops, as the original's ``ClipTransformFlex``:
    the centre, or the centre offset times 0, 1 and 2 along the height when the height leaves room
    to move (more than one pixel), else along the width."""
    if crop > height or crop > width:
        raise ValueError(f"crop {crop} larger than frames {height}x{width}")
    top, left = (height - crop) // 2, (width - crop) // 2
    if count == 1:
        return [(top, left)]
    if count != 3:
        raise ValueError(f"number of crops must be 1 or 3, got {count}")
    if top > 0:
        return [(top * position, left) for position in range(3)]
    return [(top, left * position) for position in range(3)]


def train_augment_frames(
    frames: np.ndarray | torch.Tensor,
    scale_range: tuple[int, int] = (256, 320),
    crop_size: int = 224,
    rng: np.random.Generator | None = None,
) -> torch.Tensor:
    """Short side jittered in ``scale_range`` (inclusive), random crop, random flip, still uint8.

    Returns uint8 frames ``[T, crop_size, crop_size, 3]``: the DataLoader hands a quarter of the
    float bytes to the device, which normalises them (``nlflow.video.views.to_network_input``).
    The resize runs on uint8 (bilinear, rounded), several times cheaper than in float.
    """
    rng = rng if rng is not None else np.random.default_rng()
    low, high = scale_range
    if low > high or low < crop_size:
        raise ValueError(f"scale range {scale_range} must be ordered and not below crop {crop_size}")
    clip = _as_tensor(frames)
    short_side = int(rng.integers(low, high + 1))
    height, width = scaled_size(clip.shape[1], clip.shape[2], short_side)
    top = int(rng.integers(0, height - crop_size + 1))
    left = int(rng.integers(0, width - crop_size + 1))
    flip = bool(rng.random() < 0.5)
    # [T, 3, H, W] viewed over the frames' own (channels-last) memory: no copy before the resize
    clip = _resize_bilinear(clip.permute(0, 3, 1, 2), (height, width)).permute(0, 2, 3, 1)
    clip = clip[:, top : top + crop_size, left : left + crop_size]
    if flip:
        clip = clip.flip(2)
    return clip.contiguous()

