"""Is ``downscale.qscale`` worth its disk? Size, encode time, quality and decode speed per quantiser.

On a seeded sample of the rehearsal's extracted 320x240 videos, each quantiser re-encodes every
video with the real downscale recipe (short side 256, keyframe every 12 frames). Per quantiser:
bytes per video and per second of video, encode CPU time, PSNR of the stored frames against the
same frames scaled without re-encoding (the reference the quantiser can only lose against), and
the decoding the two loaders do, from the bytes as the LMDB store hands them over: random training
clips (8 frames every 8, ``decode_frames``) and the 30 test views of a video
(``load_test_view_frames``), in clips (videos) per CPU-second.
Used by ``bench_scale.py qscale``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from nlflow.video.decode import decode_frames
from nlflow.video.downscale import downscale_video, output_size
from nlflow.video.views import ViewSpec, load_test_view_frames, train_clip_indices

SHORT_SIDE = 256
KEYFRAME_INTERVAL = 12
CLIPS_PER_VIDEO = 10
PSNR_FRAMES = 12  # frames compared per video, spread over it


def sample_videos(work: Path, fraction: float, count: int, seed: int) -> list[Path]:
    root = work / f"f{fraction:g}" / "run" / "results" / "extracted" / "videos"
    videos = sorted(root.rglob("*.avi"))
    if not videos:
        raise SystemExit(f"no extracted videos under {root}: run `bench_scale.py run --fraction {fraction:g}` first")
    rng = np.random.default_rng(seed)
    return [videos[i] for i in sorted(rng.choice(len(videos), size=min(count, len(videos)), replace=False))]


def reference_frames(source: Path, indices: list[int]) -> np.ndarray:
    """Frames ``indices`` of ``source`` scaled as downscale scales them, but never re-encoded."""
    wanted, frames = set(indices), {}
    scaler = VideoReformatter()
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        width, height = output_size(stream.codec_context.width, stream.codec_context.height, SHORT_SIDE, True)
        for number, frame in enumerate(container.decode(stream)):
            if number in wanted:
                scaled = scaler.reformat(frame, width=width, height=height, format="yuv420p",
                                         interpolation="BICUBIC", threads=1)
                frames[number] = scaled.to_ndarray(format="rgb24")
    return np.stack([frames[i] for i in indices])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    error = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(error, 1e-12)))


def _cpu_time(work) -> tuple[object, float]:
    started = time.process_time()
    result = work()
    return result, time.process_time() - started


def measure_qscale(videos: list[Path], qscale: int, out: Path, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    spec = ViewSpec(video_length=8, sample_rate=8, num_clips=10, num_crops=3, scale=256, crop_size=256)
    sizes, seconds, encode_cpu, quality, train_cpu, test_cpu, clips = [], [], 0.0, [], 0.0, 0.0, 0
    for number, source in enumerate(videos):
        target = out / f"{number:04d}.avi"
        row, cpu = _cpu_time(lambda: downscale_video(source, target, SHORT_SIDE, True, KEYFRAME_INTERVAL, qscale))
        encode_cpu += cpu
        sizes.append(row.bytes)
        seconds.append(row.frames / row.fps)
        data = target.read_bytes()
        picked = sorted({int(i) for i in np.linspace(0, row.frames - 1, PSNR_FRAMES)})
        quality.append(psnr(decode_frames(data, picked), reference_frames(source, picked)))
        for _ in range(CLIPS_PER_VIDEO):
            indices = train_clip_indices(row.frames, 8, 8, rng)
            _, cpu = _cpu_time(lambda: decode_frames(data, indices))
            train_cpu += cpu
            clips += 1
        _, cpu = _cpu_time(lambda: load_test_view_frames(data, spec, num_frames=row.frames))
        test_cpu += cpu
    return {
        "qscale": qscale, "videos": len(videos),
        "mb_per_video": round(float(np.mean(sizes)) / 2**20, 3),
        "kb_per_second": round(sum(sizes) / sum(seconds) / 1000, 1),
        "full_size_gb": round(float(np.mean(sizes)) * 13_320 / 2**30, 2),
        "encode_cpu_s_per_video": round(encode_cpu / len(videos), 3),
        "psnr_db": round(float(np.mean(quality)), 2),
        "train_clips_per_cpu_s": round(clips / train_cpu, 1),
        "test_videos_per_cpu_s": round(len(videos) / test_cpu, 2),
    }


def compare_qscales(work: Path, fraction: float, count: int, qscales: list[int], seed: int) -> dict:
    videos = sample_videos(work, fraction, count, seed)
    rows = []
    for qscale in qscales:
        with tempfile.TemporaryDirectory(dir=work) as out:
            rows.append(measure_qscale(videos, qscale, Path(out), seed))
        print(rows[-1], flush=True)
    return {"fraction": fraction, "sample": len(videos), "short_side": SHORT_SIDE,
            "keyframe_interval": KEYFRAME_INTERVAL, "rows": rows}
