"""Clip sampling (train and test) and the one-decode 30-view test input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nlflow.demo.dataset import render_class_frames, write_video
from nlflow.errors import ConfigError, NlflowError
from nlflow.video import decode
from nlflow.video.transforms import MEAN, STD
from nlflow.video.views import (
    ViewSpec,
    load_test_view_frames,
    normalize_views,
    test_clip_indices,
    test_clip_starts,
    train_clip_indices,
)

from helpers.frames import read_frame_index
from helpers.videos import decode_all


def _load_test_views(source, spec, *, num_frames=None, counters=None):
    return normalize_views(load_test_view_frames(source, spec, num_frames=num_frames, counters=counters))


@pytest.fixture(scope="module")
def wide_video(tmp_path_factory):
    """120 frames of 344x256 (short side already at the test scale), frame index drawn on top."""
    path = tmp_path_factory.mktemp("views") / "wide.avi"
    frames = render_class_frames("Grow", np.random.default_rng(3), 120, (344, 256), draw_frame_index=True)
    write_video(path, frames, fps=25, keyframe_interval=12, qscale=2)
    return path


def test_train_clip_indices_window_and_stride():
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(300):
        clip = train_clip_indices(100, 8, 4, rng)
        assert len(clip) == 8 and np.all(np.diff(clip) == 4)
        assert 0 <= clip[0] <= 100 - 32 and clip[-1] <= 99
        starts.add(clip[0])
    assert min(starts) == 0 and max(starts) == 68  # both ends of [0, N - T*S] are reachable


def test_train_clip_of_a_short_video_wraps_around():
    # customized_video_io.cc: start 0 when N < T * rate, frame j = (start + j * rate) % N.
    clip = train_clip_indices(10, 8, 2, np.random.default_rng(0))
    assert clip == [0, 2, 4, 6, 8, 0, 2, 4]


def test_test_clip_starts_follow_the_original_decoder():
    # DecodeClipFromVideoFileFlex: frame_gaps = (float)N / (float)K; start_k = (int)(frame_gaps * k) % N.
    assert test_clip_starts(164, 10) == [0, 16, 32, 49, 65, 82, 98, 114, 131, 147]
    assert test_clip_starts(30, 10) == [0, 3, 6, 9, 12, 15, 18, 21, 24, 27]
    assert test_clip_starts(7, 10) == [0, 0, 1, 2, 2, 3, 4, 4, 5, 6]
    assert test_clip_starts(100, 3) == [0, 33, 66]
    assert test_clip_starts(164, 1) == [0]
    with pytest.raises(NlflowError):
        test_clip_starts(0, 10)


def test_test_clips_of_a_video_shorter_than_one_clip_wrap_around():
    spec = ViewSpec(video_length=8, sample_rate=8, num_clips=10, num_crops=3)
    clips = test_clip_indices(30, spec)
    assert len(clips) == 10 and all(len(clip) == 8 for clip in clips)
    assert clips[0] == [0, 8, 16, 24, 2, 10, 18, 26]
    assert clips[9] == [27, 5, 13, 21, 29, 7, 15, 23]


def test_view_spec_round_trip_and_validation():
    spec = ViewSpec(video_length=4, sample_rate=2, num_clips=5, num_crops=1, scale=128, crop_size=112)
    assert ViewSpec.from_dict(spec.to_dict()) == spec
    assert spec.num_views == 5 and ViewSpec(8, 8).num_views == 30
    with pytest.raises(ConfigError):
        ViewSpec(8, 8, num_crops=2)
    with pytest.raises(ConfigError):
        ViewSpec(8, 8, scale=200, crop_size=224)
    with pytest.raises(ConfigError, match="unknown view spec keys: bogus"):
        ViewSpec.from_dict({"video_length": 8, "sample_rate": 8, "bogus": 1})


def test_load_test_views_shape_order_and_normalisation(wide_video):
    spec = ViewSpec(video_length=4, sample_rate=5, num_clips=4, num_crops=3, scale=256, crop_size=256)
    everything = decode_all(wide_video)
    counters = decode.DecodeCounters()
    views = _load_test_views(wide_video.read_bytes(), spec, counters=counters)
    assert counters.decode_passes == 1  # one decode for all 12 views
    assert views.shape == (12, 3, 4, 256, 256) and views.dtype == torch.float32
    clips = test_clip_indices(120, spec)
    offsets = [0, (344 - 256) // 2, 344 - 256]  # left, centre, right along the long side
    for v in range(12):
        clip, crop = clips[v // 3], offsets[v % 3]
        expected = torch.from_numpy(everything[clip][:, :, crop : crop + 256]).permute(3, 0, 1, 2).float()
        assert torch.allclose(views[v], (expected - MEAN) / STD, atol=1e-5), v
    # the planned frames are the drawn frame numbers (decode_all is frame-exact)
    assert [read_frame_index(everything[i]) for i in clips[-1]] == clips[-1]


def test_load_test_views_resizes_and_centre_crops(wide_video):
    spec = ViewSpec(video_length=2, sample_rate=3, num_clips=1, num_crops=1, scale=128, crop_size=112)
    views = _load_test_views(str(wide_video), spec, num_frames=120)
    assert views.shape == (1, 3, 2, 112, 112)
    assert -MEAN / STD - 1e-4 <= float(views.min()) and float(views.max()) <= (255 - MEAN) / STD + 1e-4


def test_a_video_shorter_than_one_clip_gives_every_view(wide_video):
    spec = ViewSpec(video_length=8, sample_rate=16, num_clips=2, num_crops=1)
    views = load_test_view_frames(wide_video, spec)
    assert views.shape == (2, 8, 256, 256, 3)
    # Clip 1 starts at frame 60 and wraps: 60, 76, 92, 108, then 4, 20, 36, 52.
    expected = [60, 76, 92, 108, 4, 20, 36, 52]
    frames = decode.decode_frames(wide_video, expected)
    assert [read_frame_index(frame) for frame in frames] == expected
    left = (344 - 256) // 2  # the centre crop of a 344 x 256 frame
    assert torch.equal(views[1], torch.from_numpy(frames[:, :, left : left + 256]))


def test_view_frames_are_the_uint8_pixels_of_the_normalised_views(wide_video):
    spec = ViewSpec(video_length=4, sample_rate=5, num_clips=2, num_crops=3, scale=128, crop_size=112)
    frames = load_test_view_frames(wide_video, spec)
    assert frames.dtype == torch.uint8 and frames.shape == (6, 4, 112, 112, 3)
    views = _load_test_views(wide_video, spec)
    assert views.shape == (6, 3, 4, 112, 112) and views.is_contiguous()
    assert torch.equal(normalize_views(frames), views)
    assert torch.equal(frames.permute(0, 4, 1, 2, 3).float(), torch.round(views * STD + MEAN))
    assert normalize_views(views) is views  # already network input: untouched


def test_load_test_views_recovers_from_overstated_frame_count(wide_video):
    spec = ViewSpec(video_length=2, sample_rate=2, num_clips=3, num_crops=1)
    views = _load_test_views(wide_video, spec, num_frames=400)  # header claims more than decodes
    assert torch.equal(views, _load_test_views(wide_video, spec, num_frames=120))
