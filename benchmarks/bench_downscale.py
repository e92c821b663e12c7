"""Downscale throughput: our in-process PyAV downscale_all vs the original one-ffmpeg-per-video.

Baseline (the original's recipe): ``ffmpeg -i in.avi -vf "scale=trunc(oh*a/2)*2:256" -c:v mpeg4 -q:v 1 out.avi``,
one process per video, 2 at a time (the binary from the ``imageio-ffmpeg`` package).
Ours: ``downscale_all(..., short_side=256, upsample=True, keyframe_interval=12, qscale=2, n_jobs=2)``
with the loky (processes) and threading backends. ``-q:v 1`` in the CLI is clamped by the encoder's
default qmin of 2, so it encodes like our fixed ``qscale=2`` (file sizes are printed to compare).
Inputs: generated 320x240 MPEG-4 AVIs like UCF-101's. Run: ``python benchmarks/bench_downscale.py``.

Each method runs ``--repeats`` times, interleaved; the table shows the best wall time and the
CPU seconds of that run (this process + finished child processes; loky workers are shut down
after each run so their CPU is counted, start-up included). On a busy machine wall-clock
ratios drift with the neighbours' load: the CPU ratio is the steadier measure of work done.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from nlflow.demo.dataset import DEMO_CLASSES, render_class_frames, write_video
from nlflow.video.downscale import downscale_all


def make_inputs(root: Path, count: int, frames: int) -> list[str]:
    rel_paths = []
    for i in range(count):
        rel = f"{DEMO_CLASSES[i % len(DEMO_CLASSES)]}/v{i:03d}.avi"
        rendered = render_class_frames(DEMO_CLASSES[i % len(DEMO_CLASSES)], np.random.default_rng(i), frames)
        write_video(root / rel, rendered, fps=25, keyframe_interval=250, qscale=5)
        rel_paths.append(rel)
    return rel_paths


def ffmpeg_baseline(root: Path, rel_paths: list[str], out: Path, workers: int, one_thread: bool = False) -> None:
    import imageio_ffmpeg

    exe = imageio_ffmpeg.get_ffmpeg_exe()

    def one(rel: str) -> None:
        dst = out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        threads = ["-threads", "1", "-filter_threads", "1"] if one_thread else []
        command = [exe, "-y", "-loglevel", "error", *threads, "-i", str(root / rel), "-vf", "scale=trunc(oh*a/2)*2:256",
                   "-c:v", "mpeg4", "-q:v", "1", *threads[:2], str(dst)]
        subprocess.run(command, check=True)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, rel_paths))


def size_of(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*.avi"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    from joblib.externals.loky import get_reusable_executor

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rel_paths = make_inputs(tmp / "raw", args.videos, args.frames)
        total_frames = args.videos * args.frames

        def ours(backend):
            def run(out):
                downscale_all(tmp / "raw", rel_paths, out, out / "manifest.csv", short_side=256, upsample=True,
                              keyframe_interval=12, qscale=2, n_jobs=args.jobs, backend=backend)
                get_reusable_executor().shutdown(wait=True)
            return run

        methods = {
            "ffmpeg CLI per video (original)": lambda out: ffmpeg_baseline(tmp / "raw", rel_paths, out, args.jobs),
            "ffmpeg CLI per video, 1 thread": lambda out: ffmpeg_baseline(tmp / "raw", rel_paths, out, args.jobs, True),
            f"downscale_all n_jobs={args.jobs} loky": ours("loky"),
            f"downscale_all n_jobs={args.jobs} threading": ours("threading"),
        }
        best: dict[str, tuple[float, float, int]] = {}
        for repeat in range(args.repeats):
            for number, (name, run) in enumerate(methods.items()):
                out = tmp / f"out{repeat}_{number}"
                cpu_before = cpu_seconds()
                started = time.perf_counter()
                run(out)
                seconds = time.perf_counter() - started
                cpu = cpu_seconds() - cpu_before
                if name not in best or seconds < best[name][0]:
                    best[name] = (seconds, cpu, size_of(out))
        base_wall, base_cpu, _ = next(iter(best.values()))
        print(f"{args.videos} videos x {args.frames} frames, 320x240 -> 340x256, {args.jobs} workers, best of {args.repeats}")
        print(f"{'method':40s} {'wall s':>7s} {'frames/s':>8s} {'CPU s':>6s} {'MB out':>7s} {'x orig wall':>11s} {'x orig CPU':>10s}")
        for name, (seconds, cpu, size) in best.items():
            print(f"{name:40s} {seconds:7.2f} {total_frames / seconds:8.0f} {cpu:6.2f} {size / 1e6:7.2f}"
                  f" {base_wall / seconds:11.2f} {base_cpu / cpu:10.2f}")


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


if __name__ == "__main__":
    main()
