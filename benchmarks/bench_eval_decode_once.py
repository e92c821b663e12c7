"""Test-time evaluation speed: decode each video once for all 30 views vs once per view.

Generates a few demo-like videos (synthetic demo classes, short side 128, 80-100 frames, mpeg4 AVI
with a keyframe every 12 frames, like the downscale output) and scores them with the demo network
(I3D R50 + non-local, width 8, 8 x 8 frames, 10 clips x 3 crops of 128) three ways:

* ``decode once``: ``load_test_view_frames`` (one decode of the union of the clips' frames, uint8
  views that the scorer normalises on its device) — nlflow;
* ``30 full decodes``: every view decodes the whole video and cuts its clip — the original's
  multi-view test, where each of the 30 entries of the test list was decoded on its own;
* ``30 seek decodes``: every view seeks and decodes only its own clip (``decode_frames``).

The network and the view-to-score code (``ViewScorer``) are the same in all three; preprocessing
alone is timed too, since the forward pass dominates on CPU. Ratios are against ``30 full
decodes`` run in this process. Run: ``python benchmarks/bench_eval_decode_once.py`` (about a
minute on 2 quiet cores; ``--videos``/``--repeats`` trade time for steadier numbers).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from nlflow.demo.dataset import DEMO_CLASSES, render_class_frames, write_video
from nlflow.evaluate.scorer import ViewScorer
from nlflow.models import ModelConfig, build_model
from nlflow.video import decode
from nlflow.video.transforms import crop_offsets, normalize_channels_last, resize_short_side
from nlflow.video.views import ViewSpec, load_test_view_frames, normalize_views, test_clip_indices
from baselines import decode_all

SIZE = (170, 128)  # width, height: short side 128 like the demo's downscaled videos
SPEC = ViewSpec(video_length=8, sample_rate=8, num_clips=10, num_crops=3, scale=128, crop_size=128)


def make_videos(root: Path, count: int) -> list[bytes]:
    videos = []
    for i in range(count):
        rng = np.random.default_rng(i)
        name = DEMO_CLASSES[i % len(DEMO_CLASSES)]
        path = root / f"{i}.avi"
        write_video(path, render_class_frames(name, rng, 80 + (i * 7) % 21, SIZE), keyframe_interval=12, qscale=2)
        videos.append(path.read_bytes())  # bytes, as from the embedded LMDB
    return videos


def _view(frames: np.ndarray, crop_number: int) -> torch.Tensor:
    """One float view from its clip's frames: the same resize/crop/normalisation as nlflow's views."""
    frames = resize_short_side(frames, SPEC.scale)
    top, left = crop_offsets(frames.shape[1], frames.shape[2], SPEC.crop_size, SPEC.num_crops)[crop_number]
    return normalize_channels_last(torch.from_numpy(np.ascontiguousarray(frames[:, top : top + SPEC.crop_size, left : left + SPEC.crop_size])))


def views_decode_once(source: bytes) -> torch.Tensor:
    return load_test_view_frames(source, SPEC)


def views_full_decode_each(source: bytes) -> torch.Tensor:
    clips = test_clip_indices(decode.probe(source).frames, SPEC)
    views = []
    for view in range(SPEC.num_views):
        frames = decode_all(source)
        views.append(_view(frames[clips[view // SPEC.num_crops]], view % SPEC.num_crops))
    return torch.stack(views)


def views_seek_decode_each(source: bytes) -> torch.Tensor:
    clips = test_clip_indices(decode.probe(source).frames, SPEC)
    views = [
        _view(decode.decode_frames(source, clips[view // SPEC.num_crops]), view % SPEC.num_crops)
        for view in range(SPEC.num_views)
    ]
    return torch.stack(views)


def time_methods(
    videos: list[bytes], methods: dict[str, Callable[[bytes], torch.Tensor]], scorer: ViewScorer, repeats: int
) -> dict[str, tuple[float, float]]:
    """Per method: (preprocessing seconds, evaluation seconds) summed over videos and repeats.

    Methods alternate video by video, so load from elsewhere on the machine hits them all alike.
    """
    totals = {name: [0.0, 0.0] for name in methods}
    for _ in range(repeats):
        for source in videos:
            for name, make_views in methods.items():
                start = time.perf_counter()
                views = make_views(source)
                prepared = time.perf_counter()
                scorer.score(views)
                totals[name][0] += prepared - start
                totals[name][1] += time.perf_counter() - start
    return {name: (prep, full) for name, (prep, full) in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=1, help="passes over the videos")
    # One thread by default: the decoders use one too, and on a shared 2-core machine a 2-thread
    # forward pass mostly waits at OpenMP barriers (measured 2-3x slower here under load).
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        videos = make_videos(Path(tmp), args.videos)
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=len(DEMO_CLASSES), width=8, video_length=8, sample_rate=8))
    scorer = ViewScorer(model, batch_size=30)

    # The baselines must do the same work: identical views.
    reference = normalize_views(views_decode_once(videos[0]))
    for make in (views_full_decode_each, views_seek_decode_each):
        torch.testing.assert_close(make(videos[0]), reference)
    scorer.score(reference)  # warm-up

    methods = {
        "30 full decodes (original)": views_full_decode_each,
        "30 seek decodes": views_seek_decode_each,
        "decode once (nlflow)": views_decode_once,
    }
    print(f"{args.videos} videos, {SIZE[0]}x{SIZE[1]}, 80-100 frames; {SPEC.num_views} views of "
          f"{SPEC.video_length}x{SPEC.sample_rate} frames at {SPEC.crop_size}px; torch threads {torch.get_num_threads()}")
    print(f"{'method':<28} {'preprocess videos/s':>20} {'x':>6} {'evaluate videos/s':>18} {'x':>6}")
    count = args.videos * args.repeats
    baseline = None
    for name, (prep, full) in time_methods(videos, methods, scorer, args.repeats).items():
        rates = (count / prep, count / full)
        baseline = baseline or rates
        print(f"{name:<28} {rates[0]:>20.2f} {rates[0] / baseline[0]:>6.2f} {rates[1]:>18.2f} {rates[1] / baseline[1]:>6.2f}")


if __name__ == "__main__":
    main()
