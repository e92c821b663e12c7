"""Resize, crops, normalisation and the training augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nlflow.video.transforms import (
    MEAN,
    STD,
    crop_offsets,
    normalize_channels_last,
    resize_short_side,
    scaled_size,
    train_augment_frames,
)


def normalize(frames):
    return normalize_channels_last(torch.as_tensor(frames))


def train_augment(frames, scale_range, crop_size, rng):
    """The training path end to end: uint8 augmentation in the loader, normalisation after the transfer."""
    return normalize(train_augment_frames(frames, scale_range, crop_size, rng))


def _ramp_clip(t=4, h=60, w=80):
    """Frames whose red channel is the column number and green the frame number: flips and crops show."""
    clip = np.zeros((t, h, w, 3), np.uint8)
    clip[..., 0] = np.arange(w, dtype=np.uint8)[None, None, :]
    clip[..., 1] = (np.arange(t, dtype=np.uint8) * 10)[:, None, None]
    clip[..., 2] = 200
    return clip


def test_normalize_layout_and_values():
    clip = _ramp_clip()
    out = normalize(clip)
    assert out.shape == (3, 4, 60, 80) and out.dtype == torch.float32
    assert torch.allclose(out[0, 2, 5, 7], torch.tensor((7 - MEAN) / STD))
    assert torch.allclose(out[1, 3, 0, 0], torch.tensor((30 - MEAN) / STD))
    assert clip[0, 0, 7, 0] == 7  # input untouched


def test_resize_short_side_keeps_aspect_and_type():
    clip = _ramp_clip(h=60, w=80)
    out = resize_short_side(clip, 30)
    assert isinstance(out, np.ndarray) and out.shape == (4, 30, 40, 3) and out.dtype == np.uint8
    tall = resize_short_side(torch.from_numpy(clip).transpose(1, 2).contiguous(), 120)
    assert isinstance(tall, torch.Tensor) and tuple(tall.shape) == (4, 160, 120, 3)
    assert resize_short_side(clip, 60) is clip  # already there: no work


def test_crops_cover_the_long_side():
    clip = _ramp_clip(h=60, w=80)
    offsets = crop_offsets(60, 80, 60, 3)
    assert [int(clip[0, top, left, 0]) for top, left in offsets] == [0, 10, 20]
    ((top, left),) = crop_offsets(60, 80, 40, 1)
    assert clip[:, top : top + 40, left : left + 40].shape == (4, 40, 40, 3) and int(clip[0, top, left, 0]) == 20
    assert [top for top, _ in crop_offsets(80, 60, 60, 3)] == [0, 10, 20]
    with pytest.raises(ValueError):
        crop_offsets(60, 80, 61, 1)


def test_test_crops_and_scale_follow_the_original():
    # ClipTransformFlex: offsets (H - crop) / 2 and (W - crop) / 2; crop p of 3 multiplies the height
    # offset by p when it is positive, else the width offset (so an odd margin leaves a pixel).
    assert crop_offsets(256, 341, 256, 3) == [(0, 0), (0, 42), (0, 84)]
    assert crop_offsets(341, 256, 256, 3) == [(0, 0), (42, 0), (84, 0)]
    assert crop_offsets(260, 341, 256, 3) == [(0, 42), (2, 42), (4, 42)]
    assert crop_offsets(256, 341, 256, 1) == [(0, 42)]
    # ScaleTransform: ratio = side / short side in float, long side = (int)(long * ratio).
    assert scaled_size(240, 320, 256) == (256, 341)
    assert scaled_size(320, 240, 256) == (341, 256)
    assert scaled_size(90, 160, 256) == (256, 455)


def test_train_augment_shape_range_and_flip():
    clip = _ramp_clip(t=3, h=60, w=80)
    rng = np.random.default_rng(0)
    flips = 0
    for _ in range(40):
        out = train_augment(clip, scale_range=(48, 64), crop_size=40, rng=rng)
        assert out.shape == (3, 3, 40, 40) and out.dtype == torch.float32
        assert float(out.min()) >= (0 - MEAN) / STD - 1e-4 and float(out.max()) <= (255 - MEAN) / STD + 1e-4
        # time order and the green frame number survive; blue is constant
        green = out[1, :, 20, 20] * STD + MEAN
        assert torch.allclose(green, torch.tensor([0.0, 10.0, 20.0]), atol=0.5)
        assert torch.allclose(out[2] * STD + MEAN, torch.tensor(200.0), atol=0.5)
        red_row = out[0, 0, 20] * STD + MEAN
        flips += bool(red_row[0] > red_row[-1])  # columns decrease after a flip
    assert 5 < flips < 35


def test_train_augment_is_reproducible_and_scale_jitters():
    clip = _ramp_clip(t=2, h=60, w=80)
    a = train_augment(clip, (40, 120), 40, np.random.default_rng(7))
    b = train_augment(clip, (40, 120), 40, np.random.default_rng(7))
    assert torch.equal(a, b)
    # red step between neighbouring columns = 80 / scaled width: jitter shows as different slopes
    slopes = {
        round(float((train_augment(clip, (40, 120), 40, np.random.default_rng(s))[0, 0, 5]).diff().abs().mean() * STD), 2)
        for s in range(10)
    }
    assert len(slopes) > 3
    with pytest.raises(ValueError):
        train_augment(clip, (32, 64), 40, np.random.default_rng(0))
