"""Training-clip decoding: seek-to-keyframe ``decode_frames`` vs decoding the whole video.

Input: a 256p MPEG-4 AVI with a keyframe every 12 frames, made by our downscale from a generated
320x240 video, held in memory as bytes (as the LMDB store hands it over). Each clip is 8 frames
every 8 frames at a random start (``train_clip_indices``). The baseline is the fair one: decode
every frame and convert only the 8 used ones to RGB (what a plain decoder loop does); the headline
ratio is against it. ``decode_all`` then pick (converts every frame too) is printed for reference.
Run: ``python benchmarks/bench_clip_decode.py``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from nlflow.demo.dataset import render_class_frames, write_video
from nlflow.video import decode
from nlflow.video.downscale import downscale_video
from nlflow.video.views import train_clip_indices
from baselines import decode_all


def decode_everything_convert_used(data: bytes, indices: list[int], counters: decode.DecodeCounters) -> np.ndarray:
    import io

    wanted = set(indices)
    scaler = VideoReformatter()
    picked: dict[int, np.ndarray] = {}
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        for number, frame in enumerate(container.decode(stream)):
            counters.frames_decoded += 1
            if number in wanted:
                picked[number] = scaler.reformat(frame, format="rgb24", threads=1).to_ndarray()
    return np.stack([picked[i] for i in indices])


def decode_all_then_pick(data: bytes, indices: list[int], counters: decode.DecodeCounters) -> np.ndarray:
    return decode_all(data, counters)[indices]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--clips", type=int, default=150)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        raw, small = Path(tmp) / "raw.avi", Path(tmp) / "small.avi"
        write_video(raw, render_class_frames("Grow", np.random.default_rng(0), args.frames), keyframe_interval=250, qscale=5)
        row = downscale_video(raw, small, 256, True, 12, 2)
        data = small.read_bytes()
    rng = np.random.default_rng(0)
    clips = [train_clip_indices(row.frames, 8, 8, rng) for _ in range(args.clips)]
    for clip in clips[:10]:  # all three agree frame for frame
        expected = decode_all(data)[clip]
        assert np.array_equal(decode.decode_frames(data, clip), expected)
        assert np.array_equal(decode_everything_convert_used(data, clip, decode.DecodeCounters()), expected)

    methods = {
        "decode all frames, convert the 8 used": decode_everything_convert_used,  # the baseline
        "decode_all (convert all), then pick 8": decode_all_then_pick,
        "decode_frames (seek + reused scaler)": lambda data, clip, counters: decode.decode_frames(data, clip, counters=counters),
    }
    results = []
    for name, method in methods.items():
        counters = decode.DecodeCounters()
        cpu, wall = time.process_time(), time.perf_counter()
        for clip in clips:
            method(data, clip, counters)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        results.append((name, wall, cpu, counters.frames_decoded / (8 * len(clips))))
    print(f"{args.clips} clips of 8 x stride 8 from a {row.width}x{row.height} video of {row.frames} frames, keyframe every 12")
    print(f"{'method':40s} {'clips/s':>8s} {'clips/CPU-s':>11s} {'decoded/used':>12s} {'x wall':>7s} {'x CPU':>6s}")
    base_wall, base_cpu = results[0][1], results[0][2]
    for name, wall, cpu, ratio in results:
        print(f"{name:40s} {len(clips) / wall:8.1f} {len(clips) / cpu:11.1f} {ratio:12.1f}"
              f" {base_wall / wall:7.2f} {base_cpu / cpu:6.2f}")
    _, wall, cpu, _ = results[-1]
    print(f"headline: decode_frames is {base_wall / wall:.2f}x wall, {base_cpu / cpu:.2f}x CPU the baseline "
          "(decode every frame, convert the 8 used)")


if __name__ == "__main__":
    main()
