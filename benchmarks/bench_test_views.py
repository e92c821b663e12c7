"""Test-time input: ``load_test_view_frames`` (one decode for 10 clips x 3 crops) vs 30 separate decodes.

Input: a 256p MPEG-4 AVI with a keyframe every 12 frames (our downscale of a generated 320x240
video), as bytes. Baseline: for each of the 30 views, decode the whole video, take the clip's 8
frames (stride 8) and the view's crop. Both produce the same uint8 ``[30, 8, 256, 256, 3]``
tensor (checked): what the evaluation loader hands over; the device normalises it.
The last two rows add the float normalisation on the CPU (``normalize_views``, the 189 MB float
tensor, as the original built its input), whose memory traffic costs both methods the same.
Run: ``python benchmarks/bench_test_views.py``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from nlflow.demo.dataset import render_class_frames, write_video
from nlflow.video import decode
from nlflow.video.downscale import downscale_video
from nlflow.video.transforms import crop_offsets, resize_short_side
from nlflow.video.views import ViewSpec, load_test_view_frames, normalize_views, test_clip_indices
from baselines import decode_all


def thirty_decodes(data: bytes, spec: ViewSpec, num_frames: int,
                   counters: decode.DecodeCounters | None = None) -> torch.Tensor:
    """Each view from its own full decode: uint8 ``[V, T, S, S, 3]``."""
    clips = test_clip_indices(num_frames, spec)
    views = []
    for view in range(spec.num_views):
        frames = resize_short_side(decode_all(data, counters), spec.scale)
        top, left = crop_offsets(frames.shape[1], frames.shape[2], spec.crop_size, spec.num_crops)[view % spec.num_crops]
        clip = frames[clips[view // spec.num_crops], top : top + spec.crop_size, left : left + spec.crop_size]
        views.append(torch.from_numpy(np.ascontiguousarray(clip)))
    return torch.stack(views)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=180)
    parser.add_argument("--videos", type=int, default=3, help="timed repetitions of each method")
    args = parser.parse_args()
    torch.set_num_threads(1)  # one DataLoader worker's view of the machine
    with tempfile.TemporaryDirectory() as tmp:
        raw, small = Path(tmp) / "raw.avi", Path(tmp) / "small.avi"
        write_video(raw, render_class_frames("MoveUp", np.random.default_rng(0), args.frames), keyframe_interval=250, qscale=5)
        row = downscale_video(raw, small, 256, True, 12, 2)
        data = small.read_bytes()
    spec = ViewSpec(video_length=8, sample_rate=8, num_clips=10, num_crops=3, scale=256, crop_size=256)
    assert torch.equal(load_test_view_frames(data, spec, num_frames=row.frames), thirty_decodes(data, spec, row.frames))

    methods = {
        "30 separate decodes": lambda counters: thirty_decodes(data, spec, row.frames, counters),
        "load_test_view_frames (one)": lambda counters: load_test_view_frames(
            data, spec, num_frames=row.frames, counters=counters),
        "+ CPU float: 30 decodes": lambda counters: normalize_views(thirty_decodes(data, spec, row.frames, counters)),
        "+ CPU float: one decode": lambda counters: normalize_views(load_test_view_frames(
            data, spec, num_frames=row.frames, counters=counters)),
    }
    results = []
    for name, method in methods.items():
        counters = decode.DecodeCounters()
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(args.videos):
            method(counters)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        results.append((name, wall / args.videos, cpu / args.videos, counters.frames_decoded / args.videos))
    print(f"10 clips x 3 crops of 8 x stride 8 from a {row.width}x{row.height} video of {row.frames} frames")
    print(f"{'method':32s} {'s/video':>8s} {'CPU-s/video':>11s} {'frames decoded':>14s} {'x wall':>7s} {'x CPU':>6s}")
    for number, (name, wall, cpu, decoded) in enumerate(results):
        # each "one decode" row is compared with the "30 decodes" row above it
        base_wall, base_cpu = results[number - number % 2][1:3]
        print(f"{name:32s} {wall:8.3f} {cpu:11.3f} {decoded:14.0f} {base_wall / wall:7.2f} {base_cpu / cpu:6.2f}")


if __name__ == "__main__":
    main()
