"""Memory of evaluation's metrics step against the number of test videos, up to UCF-101's full test list.

Evaluation caches 30 views x C classes of scores (softmax and logits, float32) per video; the
metrics come from those. This fills a score cache with N synthetic videos and measures
``reaggregate`` (the metrics step on its own, the same code evaluate ends with) by tracemalloc's
peak (numpy's arrays are traced) and time, for growing N. The baseline is the smallest N in the
same run: the printed ratio is the memory per extra video. UCF-101 split 1 lists 3,783 test
videos; Kinetics-400's validation set has about 19,800 videos of 400 classes.
Run: ``python benchmarks/bench_eval_memory.py [--videos 100 1000 3783] [--classes 101]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from nlflow.evaluate.run import reaggregate
from nlflow.evaluate.view_cache import CACHE_FORMAT, CACHE_VERSION, CachedVideo, ViewCache, videos_fingerprint
from nlflow.video.views import ViewSpec

SPEC = ViewSpec(video_length=8, sample_rate=8, num_clips=10, num_crops=3, scale=256, crop_size=256)


def fill_cache(path: Path, videos: int, classes: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    names = [f"Class{i % classes:03d}/v_{i:05d}.avi" for i in range(videos)]
    labels = [i % classes for i in range(videos)]
    cache = ViewCache(path)
    identity = {
        "format": CACHE_FORMAT, "version": CACHE_VERSION, "checkpoint_sha256": "0" * 64, "spec": SPEC.to_dict(),
        "test_set": {"count": videos, "videos_sha256": videos_fingerprint(names, labels), "excluded": []},
        "classes": [f"Class{c:03d}" for c in range(classes)], "precision": "fp32",
    }
    cache.open(identity)
    for index, (name, label) in enumerate(zip(names, labels)):
        logits = rng.normal(size=(SPEC.num_views, classes)).astype(np.float32)
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        cache.put(CachedVideo(index, name, label, {"probs": probs.astype(np.float32), "logits": logits}, ""))


def measure(videos: int, classes: int) -> tuple[float, float]:
    """(peak traced MB, seconds) of reaggregate over a cache of ``videos`` videos."""
    with tempfile.TemporaryDirectory() as tmp:
        fill_cache(Path(tmp) / "cache", videos, classes)
        tracemalloc.start()
        started = time.perf_counter()
        reaggregate(Path(tmp) / "cache", "mean_softmax", metrics_json=Path(tmp) / "m.json",
                    predictions_csv=Path(tmp) / "p.csv")
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak / 2**20, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, nargs="+", default=[100, 1000, 3783])
    parser.add_argument("--classes", type=int, default=101)
    args = parser.parse_args()
    rows = [(n, *measure(n, args.classes)) for n in args.videos]
    base_n, base_mb, _ = rows[0]
    print(f"{'videos':>7s} {'peak MB':>8s} {'seconds':>8s} {'KB per extra video':>19s}")
    for n, mb, seconds in rows:
        per_video = (mb - base_mb) * 1024 / (n - base_n) if n != base_n else float("nan")
        print(f"{n:7d} {mb:8.1f} {seconds:8.2f} {per_video:19.1f}")
    n, mb, _ = rows[-1]
    print(f"headline: {(mb - base_mb) * 1024 / (n - base_n):.1f} KB of metrics-step memory per test video "
          f"({args.classes} classes, {SPEC.num_views} views)")


if __name__ == "__main__":
    main()
