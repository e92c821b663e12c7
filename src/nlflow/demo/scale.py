"""A UCF-101-shaped dataset at a chosen fraction of the real size, for rehearsing the pipeline at scale.

Accuracy does not matter here; counts, lengths, file sizes and the on-disk layout do. The output is
what the real downloads hold: ``UCF101.rar`` (``UCF-101/<Class>/v_<Class>_gGG_cCC.avi``, MPEG-4 Part 2
with B-frames in AVI, 320x240, 25 fps) and ``UCF101TrainTestSplits-RecognitionTask.zip``
(``ucfTrainTestlist/classInd.txt``, ``trainlist0k.txt``, ``testlist0k.txt``, CRLF, 1-based labels).

Shape of the full (fraction 1) set, drawn once per seed:

* the 101 UCF-101 class names in ``classInd.txt`` order, with the official spelling quirk
  (folder ``HandstandPushups``, files ``v_HandStandPushups_...``);
* 25 groups per class, 4-7 clips per group, weighted so that the total is UCF-101's 13,320 videos
  (5.27 clips per group on average); a few groups are nudged by one clip to hit the count exactly;
* clip lengths from a log-normal distribution with UCF-101's published mean (7.21 s) and spread
  sigma 0.6, cut to UCF-101's published range [1.06 s, 71.04 s]. Log-normal because durations
  are positive and right-skewed (a long tail of long clips) and two numbers fix it; sigma 0.6 puts
  about 0.4 % of clips (some 50 of 13,320) over 30 s and the median near 6 s.

A fraction ``f`` keeps all 101 classes and, across classes, all 25 groups: each class keeps
``round(f x its clips)`` (at least one), taken round-robin over its groups (clip 1 of every group
first) in an order rotated per class, so that small fractions still spread over every group and the
splits' test share (7 of 25 groups) holds. A smaller fraction is a subset of a larger one.

Content: a camera pan over a random 1/f ("pink") colour texture, a textured object moving across it
and per-frame sensor noise, encoded at a fixed quantiser; chosen so that the mean file size is
close to UCF-101's (6.5 GB / 13,320 = 0.49 MB, about 68 KB per second of video; measured numbers
in docs/scale.md).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import time
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from joblib import Parallel, delayed
from tqdm import tqdm

from nlflow.demo.dataset import write_video
from nlflow.demo.layouts import (
    ARCHIVE_MTIME,
    NUM_GROUPS,
    NUM_SPLITS,
    UCF_ARCHIVE_ROOT,
    UCF_RAR_NAME,
    UCF_SPLITS_ROOT,
    UCF_SPLITS_ZIP_NAME,
    groups_tested_in_split,
    write_splits_zip,
)
from nlflow.errors import NlflowError
from nlflow.fileio import atomic_path, scratch_dir, write_json_atomic

log = logging.getLogger(__name__)

MANIFEST_NAME = "scale_manifest.json"

UCF101_CLASSES = (
    "ApplyEyeMakeup", "ApplyLipstick", "Archery", "BabyCrawling", "BalanceBeam", "BandMarching",
    "BaseballPitch", "Basketball", "BasketballDunk", "BenchPress", "Biking", "Billiards", "BlowDryHair",
    "BlowingCandles", "BodyWeightSquats", "Bowling", "BoxingPunchingBag", "BoxingSpeedBag",
    "BreastStroke", "BrushingTeeth", "CleanAndJerk", "CliffDiving", "CricketBowling", "CricketShot",
    "CuttingInKitchen", "Diving", "Drumming", "Fencing", "FieldHockeyPenalty", "FloorGymnastics",
    "FrisbeeCatch", "FrontCrawl", "GolfSwing", "Haircut", "Hammering", "HammerThrow",
    "HandstandPushups", "HandstandWalking", "HeadMassage", "HighJump", "HorseRace", "HorseRiding",
    "HulaHoop", "IceDancing", "JavelinThrow", "JugglingBalls", "JumpingJack", "JumpRope", "Kayaking",
    "Knitting", "LongJump", "Lunges", "MilitaryParade", "Mixing", "MoppingFloor", "Nunchucks",
    "ParallelBars", "PizzaTossing", "PlayingCello", "PlayingDaf", "PlayingDhol", "PlayingFlute",
    "PlayingGuitar", "PlayingPiano", "PlayingSitar", "PlayingTabla", "PlayingViolin", "PoleVault",
    "PommelHorse", "PullUps", "Punch", "PushUps", "Rafting", "RockClimbingIndoor", "RopeClimbing",
    "Rowing", "SalsaSpin", "ShavingBeard", "Shotput", "SkateBoarding", "Skiing", "Skijet", "SkyDiving",
    "SoccerJuggling", "SoccerPenalty", "StillRings", "SumoWrestling", "Surfing", "Swing",
    "TableTennisShot", "TaiChi", "TennisSwing", "ThrowDiscus", "TrampolineJumping", "Typing",
    "UnevenBars", "VolleyballSpiking", "WalkingWithDog", "WallPushups", "WritingOnBoard", "YoYo",
)
# The official files spell this class differently from its folder (see nlflow.lists.ucf101).
FILE_SPELLING = {"HandstandPushups": "HandStandPushups"}

FULL_VIDEOS = 13_320
CLIPS_PER_GROUP = (4, 5, 6, 7)
CLIPS_PER_GROUP_WEIGHTS = (0.34, 0.27, 0.17, 0.22)  # mean 5.27 = 13,320 / (101 x 25)
FPS = 25
SIZE = (320, 240)
MEAN_SECONDS = 7.21  # UCF-101 paper (Soomro et al. 2012): mean clip length
MIN_SECONDS, MAX_SECONDS = 1.06, 71.04  # ... shortest and longest clip
LOG_SIGMA = 0.6

# Rendering and encoding: measured to give about UCF-101's mean file size (docs/scale.md).
SOURCE_QSCALE = 5
SOURCE_KEYFRAME_INTERVAL = 250  # XviD's default maximum is 300: long spacing, like the originals
SOURCE_B_FRAMES = 2  # XviD's default
PAN_MARGIN = 48  # the texture is this much larger than the frame on every side
OBJECT_SIZE = (96, 72)  # width, height of the moving object's box
NOISE_BANK = 8  # per-frame noise fields, reused in random order (fresh noise per frame costs more)
TEXTURE_SLOPE = (0.9, 1.3)  # amplitude ~ 1 / frequency^slope: natural images sit near 1
NOISE_SIGMA = (2.0, 4.5)  # sensor noise, grey levels
PAN_SPEED = 1.5  # pixels per frame, at most, per axis
OBJECT_SPEED = 3.0


class ScaleDemoError(NlflowError):
    pass


@dataclasses.dataclass(frozen=True)
class ScaleVideo:
    class_name: str  # the folder, as classInd.txt spells it
    label: int  # 0-based classInd order
    group: int
    clip: int
    frames: int

    @property
    def relpath(self) -> str:
        """``<Class>/v_<Class>_gGG_cCC.avi`` with the official file-name spelling."""
        spelled = FILE_SPELLING.get(self.class_name, self.class_name)
        return f"{self.class_name}/v_{spelled}_g{self.group:02d}_c{self.clip:02d}.avi"


@dataclasses.dataclass(frozen=True)
class ScaleSummary:
    out_dir: str
    videos_path: str
    splits_path: str
    manifest_path: str
    fraction: float
    num_videos: int
    num_frames: int
    video_bytes: int  # sum of the AVI files
    archive_bytes: int
    solid: bool
    seconds: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- the inventory


def clips_per_group_counts(rng: np.random.Generator, num_classes: int = len(UCF101_CLASSES),
                           total: int = FULL_VIDEOS) -> np.ndarray:
    """[classes, groups] clip counts in 4..7 that add up to ``total`` exactly."""
    counts = rng.choice(CLIPS_PER_GROUP, size=(num_classes, NUM_GROUPS), p=CLIPS_PER_GROUP_WEIGHTS)
    low, high = CLIPS_PER_GROUP[0], CLIPS_PER_GROUP[-1]
    if not low * counts.size <= total <= high * counts.size:
        raise ScaleDemoError(f"{total} videos do not fit {counts.size} groups of {low}-{high} clips")
    flat = counts.reshape(-1)  # a view: nudging it nudges counts
    for cell in rng.permutation(flat.size):  # one clip more or less in random groups until exact
        gap = total - int(flat.sum())
        if gap == 0:
            break
        step = 1 if gap > 0 else -1
        if low <= flat[cell] + step <= high:
            flat[cell] += step
    return counts


def clip_frames(rng: np.random.Generator, count: int) -> np.ndarray:
    """Frame counts of ``count`` clips: log-normal seconds (mean MEAN_SECONDS), cut to UCF-101's range."""
    mu = np.log(MEAN_SECONDS) - LOG_SIGMA**2 / 2  # the log-normal's mean is exp(mu + sigma^2 / 2)
    frames = np.round(rng.lognormal(mu, LOG_SIGMA, size=count) * FPS).astype(int)
    return np.clip(frames, int(np.ceil(MIN_SECONDS * FPS)), int(MAX_SECONDS * FPS))


def full_inventory(seed: int = 0) -> list[ScaleVideo]:
    """Every video of the fraction-1 set, class by class, group by group."""
    rng = np.random.default_rng([seed, 101])
    counts = clips_per_group_counts(rng)
    frames = iter(clip_frames(rng, int(counts.sum())))
    return [
        ScaleVideo(name, label, group, clip, int(next(frames)))
        for label, name in enumerate(UCF101_CLASSES)
        for group in range(1, NUM_GROUPS + 1)
        for clip in range(1, int(counts[label, group - 1]) + 1)
    ]


def _round_robin(videos: Sequence[ScaleVideo], rotation: int) -> list[ScaleVideo]:
    """One class's videos in the order a fraction takes them: clip 1 of every group, then clip 2,
    ...; groups start at ``rotation`` so that classes keeping one or two videos use other groups."""
    def order(video: ScaleVideo) -> tuple[int, int]:
        return video.clip, (video.group - 1 - rotation) % NUM_GROUPS

    return sorted(videos, key=order)


def class_quotas(class_sizes: Sequence[int], fraction: float) -> list[int]:
    """How many videos each class keeps: ``fraction`` of the total, shared in proportion to the
    class sizes (largest remainders first), at least one per class, at most all of it."""
    if not 0 < fraction <= 1:
        raise ScaleDemoError(f"fraction must be in (0, 1], got {fraction}")
    wanted = [fraction * size for size in class_sizes]
    quotas = [max(1, int(share)) for share in wanted]
    extra = int(round(fraction * sum(class_sizes))) - sum(quotas)
    by_remainder = sorted(range(len(wanted)), key=lambda i: (-(wanted[i] - int(wanted[i])), i))
    for index in by_remainder[: max(0, extra)]:
        quotas[index] = min(class_sizes[index], quotas[index] + 1)
    return quotas


def select_fraction(inventory: Sequence[ScaleVideo], fraction: float) -> list[ScaleVideo]:
    """The videos a ``fraction`` of the set keeps (see :func:`class_quotas`), in inventory order."""
    by_class: dict[int, list[ScaleVideo]] = {}
    for video in inventory:
        by_class.setdefault(video.label, []).append(video)
    labels = sorted(by_class)
    quotas = class_quotas([len(by_class[label]) for label in labels], fraction)
    kept = set()
    for label, keep in zip(labels, quotas):
        kept.update(_round_robin(by_class[label], rotation=label % NUM_GROUPS)[:keep])
    return [video for video in inventory if video in kept]


# ---------------------------------------------------------------- rendering


def pink_texture(rng: np.random.Generator, height: int, width: int, slope: float) -> np.ndarray:
    """float32 [H, W, 3] colour texture whose amplitude spectrum falls as 1 / frequency^slope."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    frequency = np.hypot(fx, fy)
    frequency[0, 0] = 1.0
    shape = (3, height, width // 2 + 1)
    spectrum = (rng.normal(size=shape) + 1j * rng.normal(size=shape)) / frequency**slope
    spectrum[:, 0, 0] = 0.0
    planes = np.fft.irfft2(spectrum, s=(height, width)).astype(np.float32)
    planes /= planes.std(axis=(1, 2), keepdims=True)
    mixing = rng.uniform(0.3, 1.0, size=(3, 3)).astype(np.float32)  # correlated channels, like real colour
    texture = np.einsum("ij,jhw->hwi", mixing, planes)
    texture *= rng.uniform(30, 50) / texture.std()
    texture += rng.uniform(90, 150, size=3).astype(np.float32)
    return np.clip(texture, 0, 255)


def _bounce(position: float, speed: float, low: float, high: float) -> tuple[float, float]:
    position += speed
    if position < low or position > high:
        speed = -speed
        position = min(max(position, low), high)
    return position, speed


@dataclasses.dataclass(frozen=True)
class Scene:
    """What one rehearsal video shows: a texture larger than the frame (the camera pans over it),
    a textured ellipse moving across it, a bank of sensor-noise fields, and how they move."""

    width: int
    height: int
    background: np.ndarray  # float32 [height + 2 margin, width + 2 margin, 3]
    sprite: np.ndarray  # float32 [object height, object width, 3]
    inside: np.ndarray  # bool [object height, object width, 1]: the ellipse
    noise: np.ndarray  # float32 [NOISE_BANK, height, width, 1]
    noise_order: np.ndarray  # the noise field of each frame
    pan_velocity: tuple[float, float]
    object_start: tuple[float, float]
    object_velocity: tuple[float, float]


def draw_scene(rng: np.random.Generator, num_frames: int, size: tuple[int, int],
               object_size: tuple[int, int] = OBJECT_SIZE, texture_slope: tuple[float, float] = TEXTURE_SLOPE) -> Scene:
    """A scene drawn from ``rng`` (the draws' order is fixed: a seed gives the same video forever).
    ``texture_slope``: the range of the textures' spectral slope (larger: smoother pictures)."""
    width, height = size
    slope = rng.uniform(*texture_slope)
    background = pink_texture(rng, height + 2 * PAN_MARGIN, width + 2 * PAN_MARGIN, slope)
    object_width, object_height = object_size
    sprite = pink_texture(rng, object_height, object_width, slope)
    yy, xx = np.mgrid[0:object_height, 0:object_width]
    inside = ((xx - object_width / 2) / (object_width / 2)) ** 2 + ((yy - object_height / 2) / (object_height / 2)) ** 2 <= 1
    noise = rng.normal(0, rng.uniform(*NOISE_SIGMA), size=(NOISE_BANK, height, width, 1)).astype(np.float32)
    noise_order = rng.integers(0, NOISE_BANK, size=num_frames)
    pan_vx, pan_vy = rng.uniform(-PAN_SPEED, PAN_SPEED, size=2)
    obj_x, obj_y = rng.uniform(0, width - object_width), rng.uniform(0, height - object_height)
    obj_vx, obj_vy = rng.uniform(-OBJECT_SPEED, OBJECT_SPEED, size=2)
    return Scene(width, height, background, sprite, inside[..., None], noise, noise_order,
                 (pan_vx, pan_vy), (obj_x, obj_y), (obj_vx, obj_vy))


def scene_motion(scene: Scene, num_frames: int) -> Iterator[tuple[int, int, int, int]]:
    """Per frame: (top, left) of the frame in the background and (x, y) of the object's box; both
    bounce off their limits."""
    object_height, object_width = scene.sprite.shape[:2]
    margin = PAN_MARGIN
    pan_x, pan_y = 0.0, 0.0
    (pan_vx, pan_vy), (obj_x, obj_y), (obj_vx, obj_vy) = scene.pan_velocity, scene.object_start, scene.object_velocity
    for _ in range(num_frames):
        pan_x, pan_vx = _bounce(pan_x, pan_vx, -margin, margin)
        pan_y, pan_vy = _bounce(pan_y, pan_vy, -margin, margin)
        obj_x, obj_vx = _bounce(obj_x, obj_vx, 0, scene.width - object_width)
        obj_y, obj_vy = _bounce(obj_y, obj_vy, 0, scene.height - object_height)
        yield margin + int(round(pan_y)), margin + int(round(pan_x)), int(obj_x), int(obj_y)


def render_scale_frames(rng: np.random.Generator, num_frames: int, size: tuple[int, int] = SIZE) -> Iterator[np.ndarray]:
    """Yield RGB uint8 frames [H, W, 3]: a pan over a texture, a moving textured ellipse, sensor noise."""
    scene = draw_scene(rng, num_frames, size)
    width, height = size
    object_height, object_width = scene.sprite.shape[:2]
    motion = scene_motion(scene, num_frames)
    for index, (top, left, x0, y0) in enumerate(motion):
        frame = scene.background[top : top + height, left : left + width].copy()
        region = frame[y0 : y0 + object_height, x0 : x0 + object_width]
        region[...] = np.where(scene.inside, scene.sprite, region)
        frame += scene.noise[scene.noise_order[index]]
        yield np.clip(frame, 0, 255).astype(np.uint8)


# BT.601, limited range (what a decoder assumes of untagged yuv420p): rows give Y, Cb, Cr from RGB in 0..255.
_BT601 = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]], np.float32) / 255
_BT601_OFFSET = np.array([16.0, 128.0, 128.0], np.float32)
# Luma noise is cut at this many grey levels (3.5 sigma at the largest NOISE_SIGMA): Y stays in
# 16..235 before the noise, so adding it in uint8 never wraps.
LUMA_NOISE_LIMIT = 16


def _to_yuv(rgb: np.ndarray) -> np.ndarray:
    """float RGB [..., 3] in 0..255 -> uint8 Y, Cb, Cr [..., 3] (limited range)."""
    return np.clip(np.rint(rgb @ _BT601.T + _BT601_OFFSET), 16, 240).astype(np.uint8)


def render_scale_frames_yuv420(rng: np.random.Generator, num_frames: int, size: tuple[int, int],
                               object_size: tuple[int, int] = OBJECT_SIZE,
                               texture_slope: tuple[float, float] = TEXTURE_SLOPE) -> Iterator[np.ndarray]:
    """The scene of :func:`render_scale_frames` as yuv420p frames ([H * 3 / 2, W], PyAV's layout),
    composed in uint8: at Kinetics' frame sizes the float RGB frames, their clipping and the
    encoder's RGB -> YUV conversion cost several times the encoding itself. The noise is on luma
    only; the chroma planes are the texture's, subsampled. ``texture_slope``: see :func:`draw_scene`."""
    scene = draw_scene(rng, num_frames, size, object_size, texture_slope)
    width, height = size
    # planar copies: slicing a plane out of interleaved [H, W, 3] reads every third byte, which
    # made a 1280x720 frame cost 4.8 ms instead of about 3 (measured)
    background = [np.ascontiguousarray(plane) for plane in np.moveaxis(_to_yuv(scene.background), -1, 0)]
    sprite = [np.ascontiguousarray(plane) for plane in np.moveaxis(_to_yuv(scene.sprite), -1, 0)]
    object_height, object_width = sprite[0].shape
    inside = scene.inside[..., 0]
    chroma_sprite = [plane[::2, ::2] for plane in sprite]
    chroma_inside = inside[::2, ::2]
    # two's complement in uint8: adding it wraps to the signed sum, which stays inside 0..255
    noise = np.clip(np.rint(scene.noise[..., 0]), -LUMA_NOISE_LIMIT, LUMA_NOISE_LIMIT).astype(np.int8).view(np.uint8)
    luma, chroma = height * width, (height // 2) * (width // 2)
    for index, (top, left, x0, y0) in enumerate(scene_motion(scene, num_frames)):
        frame = np.empty((height * 3 // 2, width), np.uint8)
        flat = frame.reshape(-1)
        y = flat[:luma].reshape(height, width)
        y[...] = background[0][top : top + height, left : left + width]
        np.copyto(y[y0 : y0 + object_height, x0 : x0 + object_width], sprite[0], where=inside)
        np.add(y, noise[scene.noise_order[index]], out=y)
        cy, cx = y0 // 2, x0 // 2
        for plane in (1, 2):
            offset = luma + (plane - 1) * chroma
            c = flat[offset : offset + chroma].reshape(height // 2, width // 2)
            c[...] = background[plane][top : top + height : 2, left : left + width : 2]
            box = c[cy : cy + chroma_inside.shape[0], cx : cx + chroma_inside.shape[1]]
            rows, cols = box.shape
            np.copyto(box, chroma_sprite[plane - 1][:rows, :cols], where=chroma_inside[:rows, :cols])
        yield frame


def _video_rng(seed: int, video: ScaleVideo) -> np.random.Generator:
    # keyed by the video, not by generation order: a video is the same at every fraction
    return np.random.default_rng([seed, video.label, video.group, video.clip])


def _render_video(video: ScaleVideo, staging: str, seed: int) -> tuple[str, int]:
    """Write one video (runs in a worker process); returns (relative path, bytes)."""
    target = Path(staging) / video.relpath
    target.parent.mkdir(parents=True, exist_ok=True)
    frames = render_scale_frames(_video_rng(seed, video), video.frames)
    write_video(target, frames, fps=FPS, keyframe_interval=SOURCE_KEYFRAME_INTERVAL, qscale=SOURCE_QSCALE,
                b_frames=SOURCE_B_FRAMES)
    return video.relpath, target.stat().st_size


# ---------------------------------------------------------------- packaging


def ucf101_split_files(videos: Sequence[ScaleVideo]) -> dict[str, str]:
    """classInd.txt, trainlist0k.txt, testlist0k.txt for these videos, in the official format (CRLF)."""
    files = {"classInd.txt": "".join(f"{i + 1} {name}\r\n" for i, name in enumerate(UCF101_CLASSES))}
    for split in range(1, NUM_SPLITS + 1):
        tested = groups_tested_in_split(split)
        files[f"trainlist{split:02d}.txt"] = "".join(
            f"{v.relpath} {v.label + 1}\r\n" for v in videos if v.group not in tested
        )
        files[f"testlist{split:02d}.txt"] = "".join(f"{v.relpath}\r\n" for v in videos if v.group in tested)
    return files


def write_video_rar(path: Path, staging: Path, videos: Sequence[ScaleVideo], solid: bool) -> None:
    """``UCF-101/<Class>/<video>`` from the rendered tree; members are read from disk while writing,
    so memory stays flat whatever the archive's size. ``solid``: one compressed stream (fastest
    level), the kind of archive whose extraction must also keep memory flat."""
    import rars  # only the generators need it

    # Stored when not solid: AVI payloads hardly compress and rars' compressor costs seconds per MB.
    builder = rars.RarBuilder(store=not solid, solid=solid, compression=1)
    builder.add_directory(UCF_ARCHIVE_ROOT, mtime=ARCHIVE_MTIME)
    for class_name in UCF101_CLASSES:
        builder.add_directory(f"{UCF_ARCHIVE_ROOT}/{class_name}", mtime=ARCHIVE_MTIME)
    for video in videos:
        builder.add(str(staging / video.relpath), f"{UCF_ARCHIVE_ROOT}/{video.relpath}")
    with atomic_path(path) as tmp:
        builder.write(str(tmp))


# ---------------------------------------------------------------- the whole set


def generate_scale_demo(
    out_dir: str | os.PathLike,
    fraction: float,
    seed: int = 0,
    n_jobs: int | None = None,
    solid: bool = False,
    max_frames: int | None = None,
) -> ScaleSummary:
    """Write ``UCF101.rar``, the split zip and ``scale_manifest.json`` for ``fraction`` of UCF-101 into ``out_dir``.

    Rendering runs in ``n_jobs`` worker processes (None = all cores); the rendered tree is staged in
    ``out_dir`` and removed once archived (peak disk: twice the videos). ``max_frames`` caps every
    clip's length (quick tests; the counts and layout stay those of ``fraction``).
    """
    started = time.perf_counter()
    videos = select_fraction(full_inventory(seed), fraction)
    if max_frames is not None:
        videos = [dataclasses.replace(v, frames=min(v.frames, max_frames)) for v in videos]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_jobs = max(1, min(n_jobs or os.cpu_count() or 1, len(videos)))
    with scratch_dir(out / "scale-staging") as staging:
        render = functools.partial(_render_video, staging=staging, seed=seed)
        progress = functools.partial(tqdm, total=len(videos), desc="scale videos", unit="video", disable=None)
        # longest first: a 70-second clip started last would leave the other workers idle
        jobs = sorted(videos, key=lambda v: -v.frames)
        if n_jobs == 1:
            sizes = dict(progress(map(render, jobs)))
        else:
            parallel = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator_unordered", batch_size=1)
            sizes = dict(progress(parallel(delayed(render)(video) for video in jobs)))
        write_video_rar(out / UCF_RAR_NAME, Path(staging), videos, solid)
    write_splits_zip(out / UCF_SPLITS_ZIP_NAME, UCF_SPLITS_ROOT, ucf101_split_files(videos))
    manifest = {
        "format": "nlflow-scale-demo", "version": 1, "fraction": fraction, "seed": seed, "solid": solid,
        "size": list(SIZE), "fps": FPS, "source_qscale": SOURCE_QSCALE,
        "max_frames": max_frames,
        "videos": [{"video": v.relpath, "label": v.label, "group": v.group, "clip": v.clip, "frames": v.frames,
                    "bytes": sizes[v.relpath]} for v in videos],
    }
    write_json_atomic(out / MANIFEST_NAME, manifest)
    seconds = time.perf_counter() - started
    summary = ScaleSummary(
        out_dir=str(out), videos_path=str(out / UCF_RAR_NAME), splits_path=str(out / UCF_SPLITS_ZIP_NAME),
        manifest_path=str(out / MANIFEST_NAME), fraction=fraction, num_videos=len(videos),
        num_frames=sum(v.frames for v in videos), video_bytes=sum(sizes.values()),
        archive_bytes=(out / UCF_RAR_NAME).stat().st_size, solid=solid, seconds=round(seconds, 3),
    )
    log.info("scale demo: %d videos (%.1f%% of UCF-101), %d frames, %.1f MB of video in %.0f s -> %s",
             summary.num_videos, 100 * fraction, summary.num_frames, summary.video_bytes / 1e6, seconds, out)
    return summary
