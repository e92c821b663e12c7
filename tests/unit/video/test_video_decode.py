"""Decoding: probe, frame-exact decode_frames (seek and fallback paths), errors."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from nlflow.demo.dataset import render_class_frames, write_video
from nlflow.video import decode
from nlflow.video.decode import FramesPastEndError, VideoDecodeError, VideoInfo

from helpers.frames import read_frame_index
from helpers.videos import decode_all


def _indexed_video(path, num_frames=100, keyframe_interval=12, size=(160, 120)):
    frames = render_class_frames("MoveUp", np.random.default_rng(1), num_frames, size, draw_frame_index=True)
    write_video(path, frames, fps=25, keyframe_interval=keyframe_interval, qscale=2)
    return path


def _write_raw(path, pts_list, fmt, max_b_frames=0, gop=12):
    """A tiny video whose frame i is flat grey 4*i, with explicit timestamps (possibly irregular)."""
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.gop_size = gop
        stream.codec_context.max_b_frames = max_b_frames
        stream.codec_context.time_base = Fraction(1, 25)
        stream.codec_context.qscale = True  # fixed quantiser 2 keeps the greys distinguishable
        stream.codec_context.qmin = stream.codec_context.qmax = 2
        for i, pts in enumerate(pts_list):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 4 * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 25)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def gop12(tmp_path_factory):
    return _indexed_video(tmp_path_factory.mktemp("dec") / "gop12.avi")


@pytest.fixture(scope="module")
def gop12_all(gop12):
    return decode_all(gop12)


def test_probe_reports_count_rate_size(gop12):
    assert decode.probe(gop12) == VideoInfo(frames=100, fps=25.0, width=160, height=120)
    assert decode.probe(gop12.read_bytes()) == decode.probe(str(gop12))


def test_probe_counts_packets_when_header_has_no_count(tmp_path):
    path = _write_raw(tmp_path / "v.mkv", list(range(37)), "matroska")
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0  # matroska has no count: packets are counted
    assert decode.probe(path).frames == 37


def test_decode_all_is_frame_exact(gop12, gop12_all):
    assert gop12_all.shape == (100, 120, 160, 3) and gop12_all.dtype == np.uint8
    assert [read_frame_index(frame) for frame in gop12_all] == list(range(100))


def test_decode_frames_matches_decode_all_at_random_indices(gop12, gop12_all):
    data = gop12.read_bytes()
    rng = np.random.default_rng(0)
    cases = [[99], [0], [11, 12, 13], [23, 23, 5], [98, 99, 50]]
    cases += [sorted(rng.choice(100, size=8, replace=False).tolist()) for _ in range(10)]
    cases += [rng.integers(0, 100, size=5).tolist() for _ in range(5)]  # unsorted, maybe repeated
    for indices in cases:
        got = decode.decode_frames(data if len(indices) % 2 else gop12, indices)
        assert got.shape == (len(indices), 120, 160, 3)
        assert np.array_equal(got, gop12_all[indices]), indices
        assert [read_frame_index(frame) for frame in got] == indices


def test_decode_frames_seeks_instead_of_decoding_from_start(gop12):
    counters = decode.DecodeCounters()
    decode.decode_frames(gop12, [40, 48, 56], counters=counters)  # keyframes every 12: seek lands on frame 36
    assert counters.fallbacks == 0
    assert counters.frames_decoded == 56 - 36 + 1
    assert counters.frames_converted == 3


def test_decode_frames_empty_request(gop12):
    assert decode.decode_frames(gop12, []).shape == (0, 120, 160, 3)


def test_indices_past_end_raise(gop12):
    with pytest.raises(FramesPastEndError) as info:
        decode.decode_frames(gop12, [5, 100])
    assert info.value.available == 100
    with pytest.raises(VideoDecodeError):
        decode.decode_frames(gop12, [-1])


@pytest.mark.parametrize(
    "name, fmt, pts, b_frames",
    [
        ("gaps.mkv", "matroska", [i if i < 20 else i + 3 for i in range(60)], 0),
        ("offset.mkv", "matroska", [i + 100 for i in range(60)], 0),
        ("bframes.avi", "avi", list(range(60)), 2),
    ],
)
def test_irregular_timestamps_fall_back_to_counting(tmp_path, name, fmt, pts, b_frames):
    path = _write_raw(tmp_path / name, pts, fmt, max_b_frames=b_frames)
    everything = decode_all(path)
    assert len(everything) == 60
    greys = [int(round(frame.mean())) for frame in everything]
    assert all(abs(g - 4 * i) <= 2 for i, g in enumerate(greys))
    for indices in ([30, 40], [5, 21, 59], [59]):
        got = decode.decode_frames(path, indices)
        assert np.array_equal(got, everything[indices]), (name, indices)


def test_garbage_raises_clear_error(tmp_path):
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"RIFF" + b"\0" * 100)
    with pytest.raises(VideoDecodeError, match="bad.avi"):
        decode.probe(bad)
    with pytest.raises(VideoDecodeError):
        decode.decode_frames(b"not a video", [0])
