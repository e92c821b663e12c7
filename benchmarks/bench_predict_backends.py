"""``nlflow predict`` with each backend: the ``.pt`` checkpoint (PyTorch eager), the exported
``.onnx`` (onnxruntime) and ``.pt2`` (torch.export), on the same videos in one run.

Input: a freshly initialised network with every residual branch on (the demo's I3D non-local R50
at width 8 and 112-pixel views by default; ``--width 64 --scale 256`` is the released network's size), saved as a
checkpoint and exported with ``nlflow export``; generated videos of ``--frames`` frames. Each
backend first predicts once (warm-up), then ``--rounds`` times over all videos. Two timings:
``predict`` end to end (decoding included) and the network alone (the views decoded once
beforehand, run through the same ViewScorer). Baseline: the ``.pt``. Every backend's
probabilities are compared with the ``.pt``'s (largest difference printed).
Run: ``python benchmarks/bench_predict_backends.py`` (needs the export extra).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from nlflow.demo.dataset import make_class_video
from nlflow.evaluate.scorer import ViewScorer
from nlflow.export.exporter import export_checkpoint
from nlflow.models import ModelConfig, build_model, save_checkpoint
from nlflow.predict import load_prediction_network, predict_videos
from nlflow.video.views import load_test_view_frames


def timed(function, rounds: int) -> float:
    function()  # warm-up: session creation, first-call allocations
    started = time.perf_counter()
    for _ in range(rounds):
        function()
    return (time.perf_counter() - started) / rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--scale", type=int, default=112, help="test short side = crop")
    parser.add_argument("--views", type=int, choices=(30, 3, 1), default=30)
    parser.add_argument("--videos", type=int, default=2)
    parser.add_argument("--frames", type=int, default=144)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch and onnxruntime threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    classes = [f"class_{i}" for i in range(5)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        # Residual branches on from the start (no zero-initialised gammas): the outputs are not flat.
        model = build_model(ModelConfig(num_classes=len(classes), width=args.width, zero_init_final_bn=False)).eval()
        checkpoint = save_checkpoint(tmp / "model.pt", model, classes,
                                     extra={"settings": {"scale_range": [args.scale, args.scale + 28]}})
        export_checkpoint(checkpoint, tmp / "model")
        videos = []
        for index in range(args.videos):
            videos.append(tmp / f"video{index}.avi")
            make_class_video(videos[-1], "MoveUp", np.random.default_rng(index), num_frames=args.frames, size=(160, 120))
        backends = {"pt (eager)": checkpoint, "onnx (onnxruntime)": tmp / "model.onnx", "pt2 (torch.export)": tmp / "model.pt2"}
        reference = {p.video: dict(p.top) for p in predict_videos(videos, checkpoint, topk=5, views=args.views)}
        views = [load_test_view_frames(video, load_prediction_network(checkpoint).spec(args.views)) for video in videos]
        rows = []
        for name, path in backends.items():
            predictions = predict_videos(videos, path, topk=5, views=args.views)
            difference = max(abs(dict(p.top)[c] - reference[p.video][c]) for p in predictions for c in classes)
            end_to_end = timed(lambda: predict_videos(videos, path, topk=5, views=args.views), args.rounds)
            scorer = ViewScorer(load_prediction_network(path).network, batch_size=args.views, device="cpu")
            network = timed(lambda: [scorer.score(v) for v in views], args.rounds)
            rows.append((name, end_to_end / len(videos), network / len(videos), difference))
    print(f"width {args.width}, {args.views} views of {args.scale} pixels, {args.videos} videos of {args.frames} frames, "
          f"{args.threads} threads, {args.rounds} rounds, torch {torch.__version__}, load {os.getloadavg()[0]:.1f}")
    print(f"{'backend':22s} {'predict s/video':>15s} {'x':>6s} {'network s/video':>15s} {'x':>6s} {'max |dp|':>9s}")
    base_predict, base_network = rows[0][1], rows[0][2]
    for name, predict_s, network_s, difference in rows:
        print(f"{name:22s} {predict_s:15.3f} {base_predict / predict_s:6.2f} {network_s:15.3f} "
              f"{base_network / network_s:6.2f} {difference:9.1e}")


if __name__ == "__main__":
    main()
