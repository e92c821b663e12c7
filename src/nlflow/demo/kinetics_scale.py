"""A Kinetics-400-shaped copy at a chosen fraction of the real size, for rehearsing the pipeline at scale.

Written as a ``dataset.root`` copy in the CVDF mirror's layout, no archive:
``annotations/train.csv`` and ``annotations/val.csv`` (``label,youtube_id,time_start,time_end,split,is_cc``,
rows sorted by class as in the official files) and flat ``train/``, ``val/`` folders of
``<youtube_id>_<start:06d>_<end:06d>.mp4``. What list making, downscale and evaluation read is
real in shape; the pictures are :mod:`nlflow.demo.scale`'s scene (a pan over a texture, a moving
textured object, sensor noise) with smoother textures, rendered in YUV (see ``TEXTURE_SLOPE``).

Shape of the full (fraction 1) set, drawn once per seed (facts with their source, assumptions
marked as such):

* rows: 246,535 in train.csv (Kinetics-400's annotation file, the figure
  ``tests/unit/lists/test_kinetics.py`` cites) and 19,882 in val.csv (the val videos of the CVDF
  copy reported in cvdfoundation/kinetics-dataset#15, docs/datasets.md);
* classes: the 400 of ``classids.json``. Training videos per class uniform in [250, 1000] before
  scaling to the total: the Kinetics paper (Kay et al. 2017) gives 400-1150 clips per class, 50 of
  them for val and 100 for test. Val: 50 per class, less a random few to hit the total;
* clips: 10 s at 30 fps (300 frames). An assumption: 5% are shorter, 2-10 s uniform (a clip ends
  early when its YouTube video does);
* frame sizes, an assumption (no published distribution; the CVDF copy keeps the original
  resolutions, some 720p, cvdfoundation/kinetics-dataset#8): 640x360 60%, 480x360 30%, 1280x720 10%;
* H.264 (libx264) in MP4 at a bit rate proportional to the pixels, chosen so that the mean file is
  1.5 MB: the CVDF copy is 443 GB extracted for 299,758 videos (cvdfoundation/kinetics-dataset#15),
  1.48 MB a video; Kinetics-600's train split 604 GB for 392k clips (activitynet/ActivityNet#28),
  1.54 MB. Encoded with x264's fastest preset plus CABAC, B-frames and the deblocking filter, so
  that decoding costs what YouTube's Main/High-profile files cost, at a third of the encoding time;
* missing: 5% of the listed videos have no file (every real copy lacks about that many).

A fraction keeps, per split, round(fraction x rows): first one video of every class (the
lowest-ranked of a random ranking; fewer classes when the split keeps fewer than 400), then the
others by rank. So a class never vanishes from train, and a smaller fraction is a subset of a
larger one. Every 20th video in that order is the missing kind: exactly 5% at any fraction. A
video's content depends on the seed and the video alone, so the same video is the same file at
every fraction, and ``resume`` keeps the files of an earlier, smaller run in the same folder.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import logging
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np
from joblib import Parallel, delayed
from tqdm import tqdm

from nlflow.demo.dataset import H264Encoding, write_video
from nlflow.demo.kinetics_copy import MISSING_EVERY
from nlflow.demo.scale import OBJECT_SIZE, SIZE, render_scale_frames_yuv420
from nlflow.errors import NlflowError
from nlflow.fileio import atomic_path, write_json_atomic
from nlflow.lists.kinetics_facts import NUM_CLASSES, kinetics400_classes

log = logging.getLogger(__name__)

MANIFEST_NAME = "scale_manifest.json"
SPLITS = ("train", "val")
FULL_ROWS = {"train": 246_535, "val": 19_882}
TRAIN_PER_CLASS = (250, 1000)
VAL_PER_CLASS = 50
FPS = 30
CLIP_SECONDS = 10
SHORT_SHARE = 0.05  # assumption
SHORT_SECONDS = (2.0, 10.0)
FRAME_SIZES = ((640, 360), (480, 360), (1280, 720))  # assumption, see the module docstring
FRAME_SIZE_WEIGHTS = (0.6, 0.3, 0.1)
MEAN_FILE_BYTES = 1.5e6
START_SECONDS = (0, 290)  # where a clip starts in its YouTube video (whole seconds, as the CSVs)
YOUTUBE_ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))
KEYFRAME_INTERVAL = 250  # x264's default
# Smoother textures than the UCF rehearsal's (0.9-1.3): downscaled to height 256 at qscale 2, six
# 300-frame clips averaged 0.55 MB, near the original's downscaled copy (132 GB for 234,643 + 19,761
# videos, DATASET.md: 0.52 MB a video); at 0.9-1.3 they were 8 MB, 15 times too large for the disk
# figures this rehearsal is for (measured 2026-12-03 with nlflow.video.downscale).
TEXTURE_SLOPE = (2.2, 2.6)
# ultrafast, made to decode like YouTube's files: CABAC, up to 3 B-frames, the deblocking filter
X264_PRESET = "ultrafast"
X264_PARAMS = "cabac=1:bframes=3:deblock=1,0,0:weightb=1"


def _mean_pixels() -> float:
    return float(sum(w * h * share for (w, h), share in zip(FRAME_SIZES, FRAME_SIZE_WEIGHTS)))


def _mean_frames() -> float:
    short = FPS * (SHORT_SECONDS[0] + SHORT_SECONDS[1]) / 2
    return (1 - SHORT_SHARE) * FPS * CLIP_SECONDS + SHORT_SHARE * short


# bits per pixel and frame that give MEAN_FILE_BYTES over the frame-size mix and clip lengths
BITS_PER_PIXEL = MEAN_FILE_BYTES * 8 / (_mean_pixels() * _mean_frames())


class KineticsScaleError(NlflowError):
    pass


@dataclasses.dataclass(frozen=True)
class KineticsVideo:
    split: str
    row: int  # index in the split's full inventory: keys the content
    label: int
    youtube_id: str
    start: int  # seconds, as the CSV writes them; the clip is [start, start + 10)
    frames: int
    width: int
    height: int
    missing: bool  # listed in the CSV, no file

    @property
    def relpath(self) -> str:
        return f"{self.split}/{self.youtube_id}_{self.start:06d}_{self.start + CLIP_SECONDS:06d}.mp4"

    @property
    def bit_rate(self) -> int:
        return int(round(BITS_PER_PIXEL * self.width * self.height * FPS))


@dataclasses.dataclass(frozen=True)
class KineticsScaleSummary:
    root: str
    fraction: float
    seed: int
    rows: dict[str, int]  # listed per split
    missing: dict[str, int]
    files: int  # videos on disk
    rendered: int  # written by this call (the others were kept from an earlier one: resume)
    num_frames: int
    video_bytes: int
    seconds: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- the inventory


def class_sizes(rng: np.random.Generator, split: str) -> np.ndarray:
    """Videos per class (400 counts) adding up to the split's full row count."""
    total = FULL_ROWS[split]
    if split == "val":
        sizes = np.full(NUM_CLASSES, VAL_PER_CLASS)
        surplus = int(sizes.sum()) - total
        np.subtract.at(sizes, rng.choice(NUM_CLASSES, size=surplus, replace=False), 1)
        return sizes
    drawn = rng.uniform(*TRAIN_PER_CLASS, size=NUM_CLASSES)
    sizes = np.floor(drawn * total / drawn.sum()).astype(int)
    remainder = total - int(sizes.sum())  # the floors' shortfall, one each to random classes
    np.add.at(sizes, rng.choice(NUM_CLASSES, size=remainder, replace=False), 1)
    return sizes


@dataclasses.dataclass(frozen=True)
class SplitInventory:
    """Every video of one split at fraction 1, as arrays indexed by row (rows sorted by class)."""

    split: str
    labels: np.ndarray
    order: np.ndarray  # rows in the order fractions take them
    ids: np.ndarray  # [rows, 11] characters
    starts: np.ndarray
    frames: np.ndarray
    size_index: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def video(self, row: int, position: int) -> KineticsVideo:
        width, height = FRAME_SIZES[self.size_index[row]]
        return KineticsVideo(self.split, int(row), int(self.labels[row]), "".join(self.ids[row]), int(self.starts[row]),
                             int(self.frames[row]), width, height, missing=position % MISSING_EVERY == MISSING_EVERY - 1)


def fraction_order(labels: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Rows in the order fractions take them: each class's lowest-ranked row (classes by that
    rank), then every other row by rank."""
    by_rank = np.argsort(rank, kind="stable")
    _, first_seen = np.unique(labels[by_rank], return_index=True)
    is_first = np.zeros(len(labels), bool)
    is_first[by_rank[np.sort(first_seen)]] = True
    firsts = by_rank[is_first[by_rank]]
    return np.concatenate([firsts, by_rank[~is_first[by_rank]]])


def split_inventory(seed: int, split: str) -> SplitInventory:
    rng = np.random.default_rng([seed, 400, SPLITS.index(split)])
    labels = np.repeat(np.arange(NUM_CLASSES), class_sizes(rng, split))
    rows = len(labels)
    rank = rng.permutation(rows)
    ids = YOUTUBE_ALPHABET[rng.integers(0, len(YOUTUBE_ALPHABET), size=(rows, 11))]
    starts = rng.integers(START_SECONDS[0], START_SECONDS[1] + 1, size=rows)
    short = rng.random(rows) < SHORT_SHARE
    frames = np.where(short, np.round(rng.uniform(*SHORT_SECONDS, size=rows) * FPS), FPS * CLIP_SECONDS).astype(int)
    size_index = rng.choice(len(FRAME_SIZES), size=rows, p=FRAME_SIZE_WEIGHTS)
    return SplitInventory(split, labels, fraction_order(labels, rank), ids, starts, frames, size_index)


def select_fraction(inventory: SplitInventory, fraction: float) -> list[KineticsVideo]:
    """The videos ``fraction`` keeps of one split, sorted by class and row (the CSV's order)."""
    if not 0 < fraction <= 1:
        raise KineticsScaleError(f"fraction must be in (0, 1], got {fraction}")
    keep = max(1, int(round(fraction * len(inventory))))
    videos = [inventory.video(row, position) for position, row in enumerate(inventory.order[:keep])]
    return sorted(videos, key=lambda video: video.row)


# ---------------------------------------------------------------- writing


def annotation_rows(videos: Sequence[KineticsVideo]) -> list[list]:
    names = kinetics400_classes()
    return [[names[v.label], v.youtube_id, v.start, v.start + CLIP_SECONDS, v.split, 0] for v in videos]


def write_annotations(path: Path, videos: Sequence[KineticsVideo]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["label", "youtube_id", "time_start", "time_end", "split", "is_cc"])
            writer.writerows(annotation_rows(videos))


def object_size(height: int) -> tuple[int, int]:
    """The UCF rehearsal's object box, scaled from its 240-pixel frames to ``height`` (even sizes)."""
    return tuple(max(2, round(side * height / SIZE[1] / 2) * 2) for side in OBJECT_SIZE)  # type: ignore[return-value]


def render_video(video: KineticsVideo, root: str, seed: int, max_frames: int | None,
                 frame_size: tuple[int, int] | None) -> tuple[str, int, int]:
    """Write one video (runs in a worker process); returns (relative path, frames, bytes)."""
    width, height = frame_size or (video.width, video.height)
    frames = min(video.frames, max_frames) if max_frames else video.frames
    rng = np.random.default_rng([seed, SPLITS.index(video.split), video.row])
    target = Path(root) / video.relpath
    encoding = H264Encoding(int(round(BITS_PER_PIXEL * width * height * FPS)), X264_PRESET, X264_PARAMS)
    write_video(target, render_scale_frames_yuv420(rng, frames, (width, height), object_size(height), TEXTURE_SLOPE), fps=FPS,
                keyframe_interval=KEYFRAME_INTERVAL, h264=encoding, frame_format="yuv420p")
    return video.relpath, frames, target.stat().st_size


def _settings(seed: int, max_frames: int | None, frame_size: tuple[int, int] | None) -> dict:
    """What decides a file's bytes: a resumed run keeps files only if these are the same."""
    return {"seed": seed, "max_frames": max_frames, "frame_size": list(frame_size) if frame_size else None,
            "fps": FPS, "bits_per_pixel": round(BITS_PER_PIXEL, 6), "x264_preset": X264_PRESET,
            "x264_params": X264_PARAMS, "keyframe_interval": KEYFRAME_INTERVAL, "texture_slope": list(TEXTURE_SLOPE)}


def _kept_files(root: Path, settings: dict) -> dict[str, dict]:
    """relpath -> manifest entry of the files an earlier run with the same settings left intact."""
    path = root / MANIFEST_NAME
    if not path.is_file():
        return {}
    earlier = json.loads(path.read_text())
    if earlier.get("settings") != settings:
        return {}
    return {entry["video"]: entry for entry in earlier["videos"]
            if not entry["missing"] and (root / entry["video"]).is_file()
            and (root / entry["video"]).stat().st_size == entry["bytes"]}


def generate_kinetics_scale(
    root: str | os.PathLike,
    fraction: float,
    seed: int = 0,
    n_jobs: int | None = None,
    resume: bool = False,
    max_frames: int | None = None,
    frame_size: tuple[int, int] | None = None,
) -> KineticsScaleSummary:
    """Write the ``fraction`` copy into ``root`` (see the module docstring) with ``scale_manifest.json``.

    ``resume``: keep the videos an earlier call with the same seed and settings wrote into ``root``
    (a killed run, or a smaller fraction grown into a larger one); otherwise ``root`` must not
    exist. ``max_frames`` and ``frame_size`` override every clip's length cap and size (quick
    tests; the rows, names and missing videos stay those of ``fraction``).
    """
    started = time.perf_counter()
    root = Path(root)
    if root.exists() and not resume and any(root.iterdir()):
        raise KineticsScaleError(f"{root} exists and is not empty (resume=True grows an earlier copy)")
    settings = _settings(seed, max_frames, frame_size)
    kept = _kept_files(root, settings) if resume else {}
    listed = {split: select_fraction(split_inventory(seed, split), fraction) for split in SPLITS}
    for split in SPLITS:
        (root / split).mkdir(parents=True, exist_ok=True)
    on_disk = [video for split in SPLITS for video in listed[split] if not video.missing]
    todo = [video for video in on_disk if video.relpath not in kept]
    # largest first: a 720p clip started last would leave the other workers idle
    todo.sort(key=lambda v: -v.frames * v.width * v.height)
    render = functools.partial(render_video, root=str(root), seed=seed, max_frames=max_frames, frame_size=frame_size)
    n_jobs = max(1, min(n_jobs or os.cpu_count() or 1, len(todo) or 1))
    progress = functools.partial(tqdm, total=len(todo), desc="kinetics videos", unit="video", disable=None)
    if n_jobs == 1:
        written = list(progress(map(render, todo)))
    else:
        parallel = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator_unordered", batch_size=1)
        written = list(progress(parallel(delayed(render)(video) for video in todo)))
    files = {rel: (entry["frames"], entry["bytes"]) for rel, entry in kept.items()}
    files.update({rel: (frames, size) for rel, frames, size in written})
    for split in SPLITS:
        write_annotations(root / "annotations" / f"{split}.csv", listed[split])
    entries = [{"video": v.relpath, "label": v.label, "row": v.row, "missing": v.missing,
                "size": [v.width, v.height], "frames": files.get(v.relpath, (0, 0))[0],
                "bytes": files.get(v.relpath, (0, 0))[1]} for split in SPLITS for v in listed[split]]
    write_json_atomic(root / MANIFEST_NAME, {"format": "nlflow-kinetics-scale", "version": 1, "fraction": fraction,
                                             "settings": settings, "videos": entries})
    summary = KineticsScaleSummary(
        root=str(root), fraction=fraction, seed=seed, rows={split: len(listed[split]) for split in SPLITS},
        missing={split: sum(v.missing for v in listed[split]) for split in SPLITS}, files=len(on_disk),
        rendered=len(written), num_frames=sum(files[v.relpath][0] for v in on_disk),
        video_bytes=sum(files[v.relpath][1] for v in on_disk), seconds=round(time.perf_counter() - started, 3),
    )
    log.info("kinetics scale copy: %d train + %d val rows (%.2f%% of Kinetics-400), %d files, %.1f MB in %.0f s -> %s",
             summary.rows["train"], summary.rows["val"], 100 * fraction, summary.files, summary.video_bytes / 1e6,
             summary.seconds, root)
    return summary
