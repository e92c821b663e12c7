"""The embedded demo dataset: a tiny synthetic UCF-101 look-alike that a small network learns in minutes.

Five classes differ only in motion (never in appearance) and survive a horizontal flip: an object
moves up or down, grows or shrinks, or stands still. MoveDown is MoveUp played backwards and Shrink
is Grow played backwards, from the same parameter distributions, so a single frame carries no label
and a model must use time. The output mimics the real downloads byte for byte in layout:
``UCF101.rar`` (``UCF-101/<Class>/v_<Class>_gGG_cCC.avi``, MPEG-4 Part 2 in AVI, 320x240, 25 fps) and
``UCF101TrainTestSplits-RecognitionTask.zip`` (``ucfTrainTestlist/classInd.txt``, train/test lists
for 3 splits). One truncated video exercises the error path downstream; two videos shorter than one
clip (one in a training group, one in a test group of split 1) exercise periodic clip sampling.
The same videos can be packaged as HMDB-51's downloads or as a plain folder instead
(``nlflow.demo.layouts``), so every dataset kind runs with no network.
"""

from __future__ import annotations

import colorsys
import dataclasses
import functools
import logging
import os
import time
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import av
import numpy as np
from joblib import Parallel, delayed
from tqdm import tqdm

from nlflow.demo.layouts import (
    DEFAULT_NUM_FRAMES,
    FORMATS,
    NUM_GROUPS,
    PACKAGE,
    RELPATH,
    layout_class_name,
)
from nlflow.errors import NlflowError
from nlflow.fileio import atomic_path, scratch_dir, write_json_atomic

log = logging.getLogger(__name__)

DEMO_CLASSES = ("Grow", "MoveDown", "MoveUp", "Shrink", "StandStill")  # classInd order (sorted, like UCF)
MANIFEST_NAME = "demo_manifest.json"
# Train group in every split (splits test groups 1-21), so the undecodable video never reaches a test set.
BAD_VIDEO_GROUP = 25
CORRUPT_VIDEO = ("Shrink", BAD_VIDEO_GROUP, 1)
# Shorter than one demo clip (8 frames x stride 8 = 64): kept and sampled periodically, as the
# original does. Group 25 trains in every split; group 3 is a test group of split 1.
SHORT_VIDEOS = (("MoveUp", BAD_VIDEO_GROUP, 1), ("Grow", 3, 1))
SHORT_VIDEO_FRAMES = 30
VIDEO_QSCALE = 4  # fixed mpeg4 quantiser: clean frames at ~170 kb/s for the demo content

# Frame-index code: CODE_BITS black/white blocks across the top CODE_BAND_FRACTION of the frame.
CODE_BITS = 10
CODE_BAND_FRACTION = 0.1

# Motion parameters in pixels of a 112-pixel-high frame, the size the network sees in the demo, scaled
# to the rendered height: a bright object on a grey background at these speeds learned on every seed
# tried, where a cluttered, saturated background kept every run at chance (measured). A moving
# object crosses the frame once over the video, at MOVE_SPEED_PX unless the video is too long for
# that; a growing one grows at GROW_RATE_PX per frame up to MAX_RADIUS_PX.
REFERENCE_HEIGHT = 112
MOVE_SPEED_PX = (0.5, 0.85)
MOVE_RADIUS_PX = (16.0, 24.0)
# Growing objects use nearly the whole frame height: at the 80-frame demo's rates (0.12-0.26 px per
# frame, up to a radius of 40) a 144-frame video grew too little per clip, and in every run measured
# most test errors were Grow or Shrink called StandStill (docs/demo.md).
GROW_START_RADIUS_PX = (5.0, 8.0)
GROW_RATE_PX = (0.25, 0.34)
MAX_RADIUS_PX = 52.0
STILL_RADIUS_PX = (10.0, 28.0)
NOISE_BANK = 6


class DemoError(NlflowError):
    pass


@dataclasses.dataclass(frozen=True)
class DemoSummary:
    out_dir: str
    layout: str  # one of demo_layouts.FORMATS
    videos_path: str  # the video archive, or the folder of the folder and Kinetics layouts
    splits_path: str | None  # the split archive; None for the folder and Kinetics layouts
    manifest_path: str
    classes: list[str]  # the class names as the layout spells them
    num_videos: int
    corrupt_videos: list[str]  # relative paths (<class>/<video>) as the layout names them
    short_videos: list[str]
    seed: int
    num_frames: int
    seconds: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- frame-index code


def _code_blocks(width: int, height: int) -> tuple[int, list[tuple[int, int]]]:
    band = max(2, int(round(height * CODE_BAND_FRACTION)))
    edges = [round(i * width / CODE_BITS) for i in range(CODE_BITS + 1)]
    return band, list(zip(edges[:-1], edges[1:]))


def stamp_frame_index(frame: np.ndarray, index: int) -> None:
    """Draw ``index`` (MSB first) as black/white blocks across the top band of an RGB frame, in place."""
    if not 0 <= index < 2**CODE_BITS:
        raise DemoError(f"frame index {index} does not fit the {CODE_BITS}-bit code")
    height, width = frame.shape[:2]
    band, blocks = _code_blocks(width, height)
    for bit, (x0, x1) in enumerate(blocks):
        on = (index >> (CODE_BITS - 1 - bit)) & 1
        frame[:band, x0:x1] = 255 if on else 0


# ---------------------------------------------------------------- rendering


@dataclasses.dataclass(frozen=True)
class _Scene:
    """Everything random about one video, drawn once from its rng."""

    backgrounds: np.ndarray  # uint8 [NOISE_BANK, H, W, 3]: the background under NOISE_BANK noise draws
    noise: np.ndarray  # int16 [NOISE_BANK, H, W, 1]: the same noise, added to the object too
    colour_a: np.ndarray  # float32 [3]
    colour_b: np.ndarray
    stripe_angle: float
    stripe_freq: float
    stripe_phase: float
    cx: np.ndarray  # float [T]
    cy: np.ndarray
    radius: np.ndarray


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Grey with a mild low-frequency shading and fixed fine noise, so the object stands out."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    grey = np.full((height, width), rng.uniform(100, 140), np.float32)
    for _ in range(3):
        fx, fy = rng.uniform(-1.5, 1.5, size=2)
        phase = rng.uniform(0, 2 * np.pi)
        grey += rng.uniform(4, 10) * np.cos(2 * np.pi * (fx * x / width + fy * y / height) + phase)
    grey += rng.normal(0, 3, size=grey.shape).astype(np.float32)
    tint = rng.uniform(-5, 5, size=3).astype(np.float32)
    return np.round(grey[:, :, None] + tint).astype(np.int16)


def _saturated_colour(hue: float, saturation: float, value: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, saturation, value), np.float32) * 255


def _trajectory(class_name: str, rng: np.random.Generator, num_frames: int, width: int, height: int,
                code_band: bool):
    """Per-frame centre and radius. Backward classes reuse the forward ones reversed in time."""
    # The object never covers the frame-index code; without one it may use the whole height.
    top = int(round(height * CODE_BAND_FRACTION)) + 2 if code_band else 0
    margin = 2.0
    px = height / REFERENCE_HEIGHT
    t = np.arange(num_frames, dtype=np.float64)
    if class_name in ("MoveUp", "MoveDown"):
        radius = px * rng.uniform(*MOVE_RADIUS_PX)
        lo, hi = top + radius + margin, height - radius - margin
        # One pass across the frame over the whole video: slower in long videos. (A conveyor that
        # let the object leave and come back at any speed did not learn: docs/demo.md.)
        speed = min(px * rng.uniform(*MOVE_SPEED_PX), (hi - lo) / max(num_frames - 1, 1))
        travel = speed * (num_frames - 1)
        start = rng.uniform(min(lo + travel, hi), hi)
        cy = start - speed * t  # up: y decreases
        cx = np.full(num_frames, rng.uniform(radius + margin, width - radius - margin))
        r = np.full(num_frames, radius)
    elif class_name in ("Grow", "Shrink"):
        r0 = px * rng.uniform(*GROW_START_RADIUS_PX)
        r_max = min(px * MAX_RADIUS_PX, (height - top) / 2 - margin)
        rate = min(px * rng.uniform(*GROW_RATE_PX), (r_max - r0) / max(num_frames - 1, 1))
        r = r0 + rate * t
        r1 = float(r[-1])
        cx = np.full(num_frames, rng.uniform(r1 + margin, width - r1 - margin))
        cy = np.full(num_frames, rng.uniform(top + r1 + margin, height - r1 - margin))
    elif class_name == "StandStill":
        radius = px * rng.uniform(*STILL_RADIUS_PX)
        cx = np.full(num_frames, rng.uniform(radius + margin, width - radius - margin))
        cy = np.full(num_frames, rng.uniform(top + radius + margin, height - radius - margin))
        r = np.full(num_frames, radius)
    else:
        raise DemoError(f"unknown demo class {class_name!r}; choose from {', '.join(DEMO_CLASSES)}")
    if class_name in ("MoveDown", "Shrink"):
        cx, cy, r = cx[::-1], cy[::-1], r[::-1]
    return cx, cy, r


def _scene(class_name: str, rng: np.random.Generator, num_frames: int, width: int, height: int,
           code_band: bool) -> _Scene:
    cx, cy, r = _trajectory(class_name, rng, num_frames, width, height, code_band)
    hue = rng.uniform()
    colour_a = _saturated_colour(hue, rng.uniform(0.8, 1.0), 1.0)
    colour_b = _saturated_colour(hue + rng.uniform(0.08, 0.2), rng.uniform(0.7, 1.0), rng.uniform(0.55, 0.8))
    background = _background(rng, width, height)
    # A small bank of temporal noise, reused in random order: per-frame noise at a fraction of the cost.
    noise = np.round(rng.normal(0, 2.0, size=(NOISE_BANK, height, width, 1))).astype(np.int16)
    backgrounds = np.clip(background[None] + noise, 0, 255).astype(np.uint8)
    return _Scene(
        backgrounds=backgrounds, noise=noise, colour_a=colour_a, colour_b=colour_b,
        stripe_angle=rng.uniform(0, np.pi), stripe_freq=rng.uniform(4.0, 8.0),
        stripe_phase=rng.uniform(0, 2 * np.pi), cx=cx, cy=cy, radius=r,
    )


def _draw_object(frame: np.ndarray, noise: np.ndarray, scene: _Scene, cx: float, cy: float, r: float) -> None:
    """Anti-aliased striped disc, in place; the texture lives in object coordinates so it moves and scales with it."""
    height, width = frame.shape[:2]
    x0, x1 = max(int(cx - r - 1), 0), min(int(cx + r + 2), width)
    y0, y1 = max(int(cy - r - 1), 0), min(int(cy + r + 2), height)
    ys = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(cy)
    xs = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(cx)
    alpha = np.clip(r - np.sqrt(xs * xs + ys * ys) + 0.5, 0, 1)[..., None]
    along = (xs * np.cos(scene.stripe_angle) + ys * np.sin(scene.stripe_angle)) / r
    stripes = np.sin(scene.stripe_freq * along + scene.stripe_phase)
    texture = np.where((stripes > 0)[..., None], scene.colour_a, scene.colour_b) + noise[y0:y1, x0:x1]
    region = frame[y0:y1, x0:x1]
    region[...] = np.clip(np.round(region * (1 - alpha) + texture * alpha), 0, 255).astype(np.uint8)


def render_class_frames(
    class_name: str,
    rng: np.random.Generator,
    num_frames: int,
    size: tuple[int, int] = (320, 240),
    draw_frame_index: bool = False,
) -> Iterator[np.ndarray]:
    """Yield the RGB uint8 frames [H, W, 3] of one synthetic video of ``class_name``."""
    width, height = size
    if num_frames < 1:
        raise DemoError(f"num_frames must be >= 1, got {num_frames}")
    if draw_frame_index and num_frames > 2**CODE_BITS:
        raise DemoError(f"draw_frame_index supports at most {2**CODE_BITS} frames, got {num_frames}")
    scene = _scene(class_name, rng, num_frames, width, height, draw_frame_index)
    noise_order = rng.integers(0, NOISE_BANK, size=num_frames)
    for i in range(num_frames):
        frame = scene.backgrounds[noise_order[i]].copy()
        _draw_object(frame, scene.noise[noise_order[i]], scene, scene.cx[i], scene.cy[i], scene.radius[i])
        if draw_frame_index:
            stamp_frame_index(frame, i)
        yield frame


# ---------------------------------------------------------------- encoding


@dataclasses.dataclass(frozen=True)
class H264Encoding:
    """libx264 at an average bit rate, instead of write_video's fixed MPEG-4 quantiser: a raw
    YouTube clip's size is set by its bit rate, whatever the content. ``preset`` trades encoding
    time for compression (x264's names)."""

    bit_rate: int  # bits per second
    preset: str = "superfast"
    x264_params: str | None = None  # options on top of the preset, x264's "key=value:..." syntax


def write_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    fps: int = 25,
    keyframe_interval: int | None = None,
    qscale: int = VIDEO_QSCALE,
    b_frames: int = 0,
    h264: H264Encoding | None = None,
    frame_format: str = "rgb24",
) -> int:
    """Encode uint8 frames as MPEG-4 Part 2 (yuv420p) in AVI (fourcc XVID) or, for a ``.mp4``
    path, in MP4; atomic. Returns the frame count.

    Timestamps are 0..N-1 in a 1/fps time base. ``keyframe_interval`` None keeps the encoder default.
    ``b_frames``: most consecutive B-frames (XviD's default is 2; the demo uses none).
    ``h264``: H.264 at that bit rate instead (``qscale`` and ``b_frames`` then do not apply: the
    preset decides). ``frame_format``: ``rgb24`` ([H, W, 3] frames) or ``yuv420p`` ([H * 3 / 2, W],
    PyAV's layout: the Y plane, then U and V at half size, row after row), which skips the colour
    conversion for generators that render in YUV.
    """
    count = 0
    container_format = "mp4" if Path(path).suffix.lower() == ".mp4" else "avi"
    with atomic_path(path) as tmp:
        with av.open(str(tmp), "w", format=container_format) as container:
            stream = None
            for frame in frames:
                if stream is None:
                    height, width = frame.shape[:2]
                    if frame_format == "yuv420p":
                        height = height * 2 // 3
                    if width % 2 or height % 2:
                        raise DemoError(f"video size must be even, got {width}x{height}")
                    stream = container.add_stream("libx264" if h264 else "mpeg4", rate=fps)
                    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                    stream.time_base = Fraction(1, fps)
                    if container_format == "avi" and not h264:
                        stream.codec_tag = "XVID"
                    context = stream.codec_context
                    context.thread_count = 1  # deterministic output, and parallelism is per video
                    if keyframe_interval:
                        context.gop_size = keyframe_interval
                    if h264:
                        context.bit_rate = h264.bit_rate
                        context.options = {"preset": h264.preset,
                                           **({"x264-params": h264.x264_params} if h264.x264_params else {})}
                    else:
                        context.max_b_frames = b_frames
                        # a fixed quantiser: constant quality whatever the content
                        context.qmin = context.qmax = qscale
                video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format=frame_format)
                video_frame.pts = count
                container.mux(stream.encode(video_frame))
                count += 1
            if stream is None:
                raise DemoError(f"no frames to write to {path}")
            container.mux(stream.encode(None))
    return count


def make_class_video(
    path: str | os.PathLike,
    class_name: str,
    rng: np.random.Generator,
    num_frames: int = 80,
    size: tuple[int, int] = (320, 240),
    fps: int = 25,
    draw_frame_index: bool = False,
) -> int:
    """Write one synthetic video of ``class_name``; returns its frame count."""
    return write_video(path, render_class_frames(class_name, rng, num_frames, size, draw_frame_index), fps)


def truncate_video(path: str | os.PathLike) -> None:
    """Cut an AVI a few bytes into its first frame: the header still probes, decoding fails. An MP4
    (its index written last) is cut in half, which leaves it without an index: opening it fails."""
    path = Path(path)
    data = path.read_bytes()
    if path.suffix.lower() == ".mp4":
        path.write_bytes(data[: len(data) // 2])
        return
    movi = data.find(b"movi")
    if movi < 0:
        raise DemoError(f"{path}: no 'movi' chunk, not an AVI written by write_video")
    # 'movi' + chunk id + size + 24 bytes of the first packet: measured to make PyAV's decoder raise
    path.write_bytes(data[: movi + 4 + 8 + 24])


# ---------------------------------------------------------------- the whole set


def _video_rng(seed: int, label: int, group: int, clip: int) -> np.random.Generator:
    # keyed by the video, not by generation order: same seed -> same video whatever else changes
    return np.random.default_rng([seed, label, group, clip])


def _make_demo_video(job: dict, staging: str, seed: int, size: tuple[int, int], fps: int,
                     draw_frame_index: bool) -> dict:
    """One video of the set (runs in a worker process)."""
    target = Path(staging) / job["video"]
    target.parent.mkdir(parents=True, exist_ok=True)
    rng = _video_rng(seed, job["label"], job["group"], job["clip"])
    make_class_video(target, job["class"], rng, job["frames"], size, fps, draw_frame_index)
    if job["kind"] == "corrupt":
        truncate_video(target)
        return {**job, "frames": 0}
    return job


def _video_jobs(relpath, num_frames: int, clips_per_group: int) -> list[dict]:
    """One job per video of the set, in class, group, clip order: where it goes and what it is."""
    short_frames = SHORT_VIDEO_FRAMES if num_frames > SHORT_VIDEO_FRAMES else max(1, num_frames // 2)
    jobs = []
    for label, name in enumerate(DEMO_CLASSES):
        for group in range(1, NUM_GROUPS + 1):
            for clip in range(1, clips_per_group + 1):
                kind = ("corrupt" if (name, group, clip) == CORRUPT_VIDEO
                        else "short" if (name, group, clip) in SHORT_VIDEOS else "ok")
                jobs.append({"video": relpath(name, group, clip), "class": name, "label": label, "group": group,
                             "clip": clip, "frames": short_frames if kind == "short" else num_frames, "kind": kind})
    return jobs


def _render_all(make, jobs: list[dict], n_jobs: int | None) -> list[dict]:
    """``make(job)`` for every job, in order, in ``n_jobs`` processes (None: all cores)."""
    n_jobs = max(1, min(n_jobs or os.cpu_count() or 1, len(jobs)))
    progress = functools.partial(tqdm, total=len(jobs), desc="demo videos", unit="video", disable=None)
    if n_jobs == 1:
        return list(progress(map(make, jobs)))
    # loky workers import this module, not the caller's __main__ (a Snakemake script is not
    # import-safe), and start without the caller's torch thread settings.
    parallel = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator", batch_size=4)
    return list(progress(parallel(delayed(make)(job) for job in jobs)))


def generate_demo(
    out_dir: str | os.PathLike,
    seed: int = 0,
    num_frames: int = DEFAULT_NUM_FRAMES,
    clips_per_group: int = 2,
    size: tuple[int, int] = (320, 240),
    fps: int = 25,
    draw_frame_index: bool = False,
    n_jobs: int | None = None,
    layout: str = "ucf101",
) -> DemoSummary:
    """Write the demo dataset in ``layout`` (one of ``FORMATS``) and ``demo_manifest.json`` into ``out_dir``.

    ``ucf101``: ``UCF101.rar`` and ``UCF101TrainTestSplits-RecognitionTask.zip``; ``hmdb51``:
    ``hmdb51_org.rar`` (one RAR per class inside) and ``test_train_splits.rar``; ``folder``:
    ``videos/<class>/<video>``. Deterministic for a given seed and arguments (each video's randomness
    is keyed by its class, group and clip, so neither ``n_jobs`` nor the layout changes the pixels;
    None = all cores). The corrupt and the short videos are ordinary entries of the split files (the
    corrupt one trains in every split; see ``SHORT_VIDEOS``).
    """
    started = time.perf_counter()
    if layout not in FORMATS:
        raise DemoError(f"unknown demo format {layout!r}; choose from {', '.join(FORMATS)}")
    if clips_per_group < 1:
        raise DemoError(f"clips_per_group must be >= 1, got {clips_per_group}")
    if num_frames < 2:
        raise DemoError(f"num_frames must be >= 2, got {num_frames}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    relpath = RELPATH[layout]
    jobs = _video_jobs(relpath, num_frames, clips_per_group)
    with scratch_dir(out / "demo-staging") as staging:
        make = functools.partial(_make_demo_video, staging=staging, seed=seed, size=size, fps=fps,
                                 draw_frame_index=draw_frame_index)
        videos = _render_all(make, jobs, n_jobs)
        written = PACKAGE[layout](out, Path(staging), list(DEMO_CLASSES), [v["video"] for v in videos],
                                  clips_per_group)

    classes = [layout_class_name(layout, name) for name in DEMO_CLASSES]
    corrupt = [v["video"] for v in videos if v["kind"] == "corrupt"]
    short = [v["video"] for v in videos if v["kind"] == "short"]
    manifest = {
        "format": "nlflow-demo", "version": 2, "layout": layout, "seed": seed, "classes": classes,
        "num_frames": num_frames, "clips_per_group": clips_per_group, "groups": NUM_GROUPS,
        "size": list(size), "fps": fps, "draw_frame_index": draw_frame_index,
        "dataset_files": {part: path.name for part, path in written.items()},  # videos, splits
        "corrupt": corrupt, "short": short, "videos": videos,
    }
    write_json_atomic(out / MANIFEST_NAME, manifest)
    seconds = time.perf_counter() - started
    log.info("demo dataset (%s layout): %d videos of %d classes in %.1f s -> %s", layout, len(videos),
             len(classes), seconds, out)
    splits = written.get("splits")
    return DemoSummary(
        out_dir=str(out), layout=layout, videos_path=str(written["videos"]),
        splits_path=None if splits is None else str(splits), manifest_path=str(out / MANIFEST_NAME),
        classes=classes, num_videos=len(videos), corrupt_videos=corrupt, short_videos=short, seed=seed,
        num_frames=num_frames, seconds=round(seconds, 3),
    )
