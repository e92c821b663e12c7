"""Training-loader throughput: clips/s from a train LMDB through TrainClipDataset + DataLoader.

Builds a small store of generated videos like the demo's (short side 128, 80 frames, keyframe
every 12 frames, mpeg4 AVI), then times 8x8 clips, crop 112, batch 8, with 0 workers (the
baseline, at torch's default thread count and at 1 thread) and with 2 workers, embedded and
path-mode stores. Prints one table; ratios are against the first row, run in this process.
Run: ``python benchmarks/bench_loader.py`` (under a minute on 2 quiet cores).

``--crop 224`` measures the real network's input instead: videos with short side 256 (what the
downscale stage stores), scale jitter 256-320 like the original; its clips per CPU-second say how
many CPU cores one GPU needs for a given training speed.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler

from nlflow.store.torch_datasets import TrainClipDataset
from nlflow.store.lmdb_store import write_store

def even(x: float) -> int:
    return int(round(x / 2)) * 2


def geometry(crop: int) -> tuple[int, int, int]:
    """(width, height, largest jitter scale) of the stored 4:3 videos for ``crop``: 170x128 for 112."""
    height = even(crop * 128 / 112)
    return even(height * 4 / 3), height, even(crop * 160 / 112)


def write_video(path: Path, frames: int, seed: int, width: int, height: int) -> None:
    """A bright square drifting over a noisy grey background (roughly what the demo encodes)."""
    rng = np.random.default_rng(seed)
    background = rng.integers(90, 150, size=(height, width, 3), dtype=np.uint8)
    side = max(8, height * 24 // 128)
    start = rng.integers(10, 60, size=2)
    velocity = rng.uniform(-0.8, 0.8, size=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, 25)
        stream.codec_context.gop_size = 12
        stream.bit_rate = 1_500_000
        for t in range(frames):
            image = background.copy()
            noise = rng.integers(-6, 7, size=image.shape)
            image = np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)
            y, x = (start + velocity * t).astype(int) % (height - side, width - side)
            image[y : y + side, x : x + side] = (230, 40, 40)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = t
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def _cpu_seconds() -> float:
    """CPU time of this process plus its finished (joined) children, i.e. DataLoader workers."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def measure(store: Path, workers: int, clips: int, batch_size: int, crop: int) -> tuple[float, float, float]:
    """(seconds to the first batch, steady clips/s after it, clips per CPU-second overall).

    The CPU figure counts worker processes too and is less sensitive to other load on the machine.
    """
    _, height, top = geometry(crop)
    dataset = TrainClipDataset(store, video_length=8, sample_rate=8, scale_range=(height, top), crop_size=crop, seed=0)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=RandomSampler(dataset, replacement=True, num_samples=10**6),
                        num_workers=workers, drop_last=True)
    cpu_start = _cpu_seconds()
    started = time.perf_counter()
    batches = iter(loader)
    next(batches)
    first_batch_s = time.perf_counter() - started
    steady_start = time.perf_counter()
    seen = 0
    while seen < clips:
        clip_batch, _ = next(batches)
        assert clip_batch.shape == (batch_size, 8, crop, crop, 3)  # uint8 frames, normalised on the device
        seen += clip_batch.shape[0]
    steady_rate = seen / (time.perf_counter() - steady_start)
    del batches  # shuts the workers down and joins them, so their CPU time is counted
    gc.collect()
    cpu_rate = (seen + batch_size) / (_cpu_seconds() - cpu_start)
    if dataset.failures:
        raise RuntimeError(f"{dataset.failures} decode failures in the benchmark store")
    return first_batch_s, steady_rate, cpu_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=40)
    parser.add_argument("--frames", type=int, default=80)
    parser.add_argument("--clips", type=int, default=64, help="clips timed per configuration (after the first batch)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--crop", type=int, default=112, help="training crop; 224 = the real network's input")
    args = parser.parse_args()
    width, height, top = geometry(args.crop)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "videos"
        started = time.perf_counter()
        entries = []
        for i in range(args.videos):
            rel = f"C{i % 4}/v_C{i % 4}_g{i:02d}_c01.avi"
            write_video(root / rel, args.frames, seed=i, width=width, height=height)
            entries.append((rel, i % 4))
        frames = {rel: args.frames for rel, _ in entries}
        embedded, by_path = Path(tmp) / "train.lmdb", Path(tmp) / "train_paths.lmdb"
        write_store(embedded, entries, root, "train", [f"C{k}" for k in range(4)], {}, frames, embed=True)
        write_store(by_path, entries, root, "train", [f"C{k}" for k in range(4)], {}, frames, embed=False)
        print(f"{args.videos} videos {width}x{height}, {args.frames} frames, GOP 12; store "
              f"{embedded.stat().st_size / 2**20:.1f} MiB; built in {time.perf_counter() - started:.1f} s")
        print(f"clips 8x8, crop {args.crop}, scale jitter {height}-{top}, batch {args.batch_size}; baseline = first row")

        default_threads = torch.get_num_threads()
        rows = [("embedded", embedded, 0, default_threads), ("embedded", embedded, 0, 1),
                ("embedded", embedded, args.workers, default_threads), ("paths", by_path, args.workers, default_threads)]
        results = []
        for mode, store, workers, threads in rows:
            torch.set_num_threads(threads)  # workers always run with 1 thread (DataLoader sets it)
            results.append((mode, workers, threads if workers == 0 else 1, *measure(store, workers, args.clips, args.batch_size, args.crop)))
        torch.set_num_threads(default_threads)

    baseline = results[0][4]
    print(f"\n{'store':<9} {'workers':>7} {'threads':>7} {'first batch s':>13} {'clips/s':>8} {'x baseline':>10} {'clips/CPU-s':>11}")
    for mode, workers, threads, first, rate, cpu_rate in results:
        print(f"{mode:<9} {workers:>7} {threads:>7} {first:>13.2f} {rate:>8.1f} {rate / baseline:>10.2f} {cpu_rate:>11.1f}")
    print(f"load average during the run: {os.getloadavg()[0]:.1f} (on {os.cpu_count()} CPUs; other load skews clips/s)")


if __name__ == "__main__":
    main()
