"""Before anything runs: how much disk and time each stage of a config will take.

The estimates scale per-video figures measured on this project's machine: UCF-101's from the
scale rehearsal (docs/scale.md, 2026-11-30: a UCF-101-shaped set at 1% and 10%), the demo's from
its own run (docs/recovery.md, 2026-12-03). A dataset kind gives how many videos there are, how
long they are and how large its archive is; the downscale settings give the output size per frame.
`nlflow plan --configfile X` prints them (:func:`format_plan`); the downscale stage checks its
estimate against the free space before it starts (`rules/downscale.smk`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from nlflow.diskspace import format_bytes, free_bytes, mount_point
from nlflow.lists.datasets import dataset_spec

# Where the estimates come from, per dataset kind. bytes_per_pixel: output bytes per pixel and
# frame of a downscaled video at qscale 2 (content-dependent: the rehearsal's noisy texture costs
# 7x the demo's flat background).
REHEARSAL = "UCF-101 scale rehearsal (docs/scale.md)"


@dataclasses.dataclass(frozen=True)
class DatasetFigures:
    videos: int
    frames_per_video: float
    width: int
    height: int
    archive_bytes_per_video: float  # the video archive as downloaded (its videos, compressed as shipped)
    bytes_per_pixel: float
    train_share: float  # of the videos, in the official (or default) training list
    test_share: float
    source: str


# UCF-101: 13,320 videos of 7.2 s at 25 fps (2.4 M frames), 320x240; split 1 trains on 9,537 and
# tests on 3,783. The rehearsal's archive was 0.483 MB a video, its downscaled copy 3,561.7 MB for
# 244,071 frames of 342x256 at qscale 2 (0.1667 bytes per pixel and frame).
UCF101 = DatasetFigures(13_320, 180.0, 320, 240, 483_000, 0.1667, 9_537 / 13_320, 3_783 / 13_320, REHEARSAL)
# HMDB-51: 6,766 videos, hmdb51_org.rar about 2 GB; splits keep 70 training and 30 test videos
# per class. Not measured here: lengths follow from the archive size at UCF-101's bytes per frame,
# and the output size per pixel is UCF-101's.
HMDB51 = DatasetFigures(6_766, 2.0e9 / 6_766 / (483_000 / 180), 320, 240, 2.0e9 / 6_766, 0.1667,
                        3_570 / 6_766, 1_530 / 6_766, "HMDB-51's counts, UCF-101's per-frame figures (not measured)")
# The demo (config/demo.yaml, 2026-12-03, with the fast-growing objects): 250 videos of 144 frames,
# 320x240; UCF101.rar 32.9 MB (915 bytes a frame), the downscaled folder 13% larger than the
# 15.1 MB (0.0251 bytes per pixel and frame at 150x112) of the slower-growing data before it;
# 18 of 25 groups train, 7 test.
DEMO_ARCHIVE_BYTES_PER_FRAME = 915.0
DEMO_BYTES_PER_PIXEL = 0.0284

# CPU seconds, from the rehearsal: extraction per archive byte, downscale per pixel and frame
# (0.124 s for a 183-frame video decoded at 320x240 and encoded at 342x256), a store per byte it
# embeds, evaluation's decoding per test video (10 clips, 30 views).
CPU_S_PER_ARCHIVE_BYTE = 0.0016 / 483_000
CPU_S_PER_PIXEL_FRAME = 0.124 / (183.2 * 0.5 * (320 * 240 + 342 * 256))
CPU_S_PER_STORE_BYTE = 118.7 / 25.05e9
CPU_S_PER_TEST_VIDEO = 40.6 / 375

# How output size changes with qscale, relative to 2 (rehearsal, docs/scale.md "is 2 worth its
# disk?": 2.93, 1.42, 0.56 MB a video; qscale 1 is 40% larger than 2).
QSCALE_SIZE = {1: 1.4, 2: 1.0, 4: 1.418 / 2.928, 8: 0.562 / 2.928}


def qscale_factor(qscale: int) -> float:
    """Output size at ``qscale`` relative to qscale 2, interpolated in log-log between the measured points."""
    points = sorted(QSCALE_SIZE.items())
    if qscale <= points[0][0]:
        return points[0][1]
    for (q0, f0), (q1, f1) in zip(points, points[1:]):
        if qscale <= q1 or (q1, f1) == points[-1]:
            slope = math.log(f1 / f0) / math.log(q1 / q0)
            return f0 * (qscale / q0) ** slope
    raise AssertionError("unreachable")


def output_frame_size(width: int, height: int, short_side: int, upsample: bool) -> tuple[int, int]:
    from nlflow.video.downscale import output_size

    return output_size(width, height, short_side, upsample)


def downscaled_bytes_per_video(figures: DatasetFigures, downscale: Mapping[str, Any]) -> float:
    width, height = output_frame_size(figures.width, figures.height, downscale["short_side"], downscale["upsample"])
    return figures.frames_per_video * width * height * figures.bytes_per_pixel * qscale_factor(downscale["qscale"])


def downscale_estimate(config: Mapping[str, Any]) -> int | None:
    """Bytes the downscale stage writes for the whole dataset (what the stage checks before it starts).

    None before a CVDF download has made the copy: figures from a report and assumed frame sizes
    are too rough to stop a job on (downscale still checks the size of the videos made so far).
    """
    if awaits_download(config):
        return None
    figures = dataset_figures(config)
    return int(figures.videos * downscaled_bytes_per_video(figures, config["downscale"]))


def demo_dataset_estimate(config: Mapping[str, Any]) -> int:
    """Bytes make_demo_dataset needs at its peak: the rendered videos, then the archive packed from
    them (MPEG-4 does not compress further: about the videos' size) while the videos still exist."""
    figures = dataset_figures(config)
    return int(2 * figures.videos * figures.archive_bytes_per_video)


def dataset_figures(config: Mapping[str, Any]) -> DatasetFigures:
    """The figures for the configured dataset (a `folder` is measured: its files are counted)."""
    dataset = config["dataset"]
    name = dataset["name"]
    if name == "ucf101":
        return UCF101
    if name == "hmdb51":
        return HMDB51
    if name == "demo":
        demo = config.get("demo", {})
        frames = demo.get("num_frames", 144)
        videos = 5 * 25 * demo.get("clips_per_group", 2)
        return DatasetFigures(videos, frames, 320, 240, DEMO_ARCHIVE_BYTES_PER_FRAME * frames, DEMO_BYTES_PER_PIXEL,
                              18 / 25, 7 / 25, "the demo's run (2026-12-03)")
    if name == "folder":
        return _folder_figures(dataset)
    if name == "kinetics400":
        return _kinetics_figures(kinetics_root(config), downloads=dataset.get("download") == "cvdf")
    raise ValueError(f"no size figures for dataset kind {name!r}")


def _folder_figures(dataset: Mapping[str, Any]) -> DatasetFigures:
    """Your own videos: counted and measured on disk (frames and size of a few, by PyAV)."""
    from nlflow.lists.video_tree import list_videos, video_root

    root = video_root(dataset["root"])
    videos = list_videos(root)
    total_bytes = sum((root / rel).stat().st_size for rel in videos)
    frames, width, height = _probe(root, _probe_sample(videos))
    test_share = dataset.get("test_fraction", 0.3)
    return DatasetFigures(len(videos), frames, width, height, total_bytes / max(1, len(videos)), UCF101.bytes_per_pixel,
                          1 - test_share, test_share, "your videos, UCF-101's output size per pixel")


def kinetics_root(config: Mapping[str, Any]) -> str:
    """The Kinetics copy's folder: dataset.root, or where `dataset.download: cvdf` puts it by default."""
    from nlflow.lists.datasets import DOWNLOADED_ROOT

    root = config["dataset"].get("root") or DOWNLOADED_ROOT
    return root.replace("{results_dir}", str(config["results_dir"]))


def awaits_download(config: Mapping[str, Any]) -> bool:
    """`dataset.download: cvdf` has yet to put videos into the copy (its figures are a report's)."""
    return config["dataset"].get("download") == "cvdf" and not _has_videos(kinetics_root(config))


def _kinetics_figures(root: str, downloads: bool) -> DatasetFigures:
    """A Kinetics copy: its split folders' videos counted and a few measured, as a folder's; a copy
    `dataset.download: cvdf` has yet to make: the sizes a user reported (:func:`cvdf_figures`)."""
    from nlflow.lists.kinetics import video_folders
    from nlflow.lists.video_tree import list_videos

    if downloads and not _has_videos(root):
        return cvdf_figures()
    root = Path(root)
    videos = {split: [f"{folder}/{rel}" for rel in list_videos(root / folder)]
              for split, folder in video_folders(root).items()}
    every = [rel for split_videos in videos.values() for rel in split_videos]
    # ~260k files: sizes from the probed sample, not a stat of each (this runs at every start).
    sample = _probe_sample(every)
    frames, width, height = _probe(root, sample)
    bytes_per_video = sum((root / rel).stat().st_size for rel in sample) / max(1, len(sample))
    test_share = len(videos.get("val", [])) / max(1, len(every))
    return DatasetFigures(len(every), frames, width, height, bytes_per_video, UCF101.bytes_per_pixel,
                          1 - test_share, test_share, "your Kinetics copy, UCF-101's output size per pixel")


def _has_videos(root: str | None) -> bool:
    """Whether a CVDF download's copy is on disk already (its val folder holds videos)."""
    if not root or not (Path(root) / "val").is_dir():
        return False
    with os.scandir(Path(root) / "val") as entries:
        return any(entry.name.endswith(".mp4") for entry in entries)


def cvdf_figures() -> DatasetFigures:
    """Kinetics-400 before its CVDF download: train + val counts and the tarball size per video from
    a user's report (nlflow.archives.cvdf, unverified); frames: 10 s clips at an assumed 30 fps;
    frame size and output bytes per pixel: UCF-101's (Kinetics' are not measured here)."""
    from nlflow.archives.cvdf import REPORTED_TARBALL_BYTES, REPORTED_VIDEOS

    videos = REPORTED_VIDEOS["train"] + REPORTED_VIDEOS["val"]
    per_video = REPORTED_TARBALL_BYTES / sum(REPORTED_VIDEOS.values())
    return DatasetFigures(videos, 300.0, UCF101.width, UCF101.height, per_video, UCF101.bytes_per_pixel,
                          REPORTED_VIDEOS["train"] / videos, REPORTED_VIDEOS["val"] / videos,
                          "a user's report of the CVDF mirror (unverified), 10 s at an assumed 30 fps, UCF-101's frame "
                          "size: an estimate until the copy is on disk")


def _probe_sample(videos: list[str]) -> list[str]:
    """Up to 8 videos spread over the sorted list: the ones measured."""
    return videos[:: max(1, len(videos) // 8)][:8]


def _probe(root: Path, sample: list[str]) -> tuple[float, int, int]:
    import av

    frames, widths, heights = [], [], []
    for rel in sample:
        try:
            with av.open(str(root / rel)) as container:
                stream = container.streams.video[0]
                count = stream.frames or int(float(stream.duration * stream.time_base) * float(stream.average_rate))
                frames.append(count)
                widths.append(stream.codec_context.width)
                heights.append(stream.codec_context.height)
        except Exception:  # an unreadable video counts in the total, not in the sample
            continue
    if not frames:
        return UCF101.frames_per_video, UCF101.width, UCF101.height
    return sum(frames) / len(frames), max(widths), max(heights)


@dataclasses.dataclass(frozen=True)
class StageEstimate:
    stage: str
    disk_bytes: float
    cpu_s: float | None  # None: depends on what this machine cannot measure (the link, the GPU)
    parallel: bool  # spreads over the job's cores
    note: str = ""


def plan_stages(config: Mapping[str, Any], *, link_bytes_per_s: float = 10e6) -> list[StageEstimate]:
    """What each stage writes and its CPU time, for ``config`` (validated, with the schema's defaults)."""
    figures = dataset_figures(config)
    num_classes = dataset_spec(config["dataset"]).num_classes
    return [*_data_stages(config, figures, link_bytes_per_s), *_model_stages(config, figures, num_classes)]


def _data_stages(config: Mapping[str, Any], figures: DatasetFigures, link_bytes_per_s: float) -> list[StageEstimate]:
    videos = figures.videos
    archive = figures.archive_bytes_per_video * videos
    downscale = config["downscale"]
    width, height = output_frame_size(figures.width, figures.height, downscale["short_side"], downscale["upsample"])
    per_video = downscaled_bytes_per_video(figures, downscale)
    train, test = figures.train_share * videos, figures.test_share * videos
    val = train * config["dataset"]["val_fraction"] if config["dataset"]["val_fraction"] else test
    embed = config["lmdb"]["embed_videos"]
    store_bytes = (train * config["shuffle_rep"]["repeats"] + val + test) * (per_video if embed else 1000)
    # Decoding costs per source pixel, encoding per output pixel: the rehearsal's 320x240 -> 342x256
    # split evenly between them.
    pixel_frames = 0.5 * (figures.width * figures.height + width * height)
    stages = []
    if config["dataset"]["name"] == "demo":
        stages.append(StageEstimate("make_demo_dataset", archive, None, False,
                                    "renders the videos; twice this while it packs them"))
    if config["dataset"].get("download") == "cvdf":
        stages.append(_cvdf_download(config, link_bytes_per_s))
    if config["dataset"]["name"] not in ("folder", "kinetics400"):
        stages += [
            StageEstimate("download", archive, archive / link_bytes_per_s, False,
                          f"at {format_bytes(link_bytes_per_s)}/s from the mirror; a local file copies in seconds"),
            StageEstimate("extract", archive, archive * CPU_S_PER_ARCHIVE_BYTE, False),
        ]
    return stages + [
        StageEstimate("downscale", per_video * videos,
                      videos * figures.frames_per_video * pixel_frames * CPU_S_PER_PIXEL_FRAME, True,
                      "assumed frames and size; not checked against the disk before the copy exists"
                      if awaits_download(config) else ""),
        StageEstimate("write_lmdb", store_bytes, store_bytes * CPU_S_PER_STORE_BYTE, False,
                      "train, val and test: the time is the three jobs' sum" if embed else "paths only"),
    ]


def _cvdf_download(config: Mapping[str, Any], link_bytes_per_s: float) -> StageEstimate:
    """download_kinetics: the splits the DAG reads, at the reported sizes (436 GB of .tar.gz for
    train, val and test, 443 GB extracted), shared out by video count; the tarballs stay only with
    dataset.keep_tarballs (otherwise one part at a time)."""
    from nlflow.archives.cvdf import REPORTED_EXTRACTED_BYTES, REPORTED_TARBALL_BYTES, REPORTED_VIDEOS

    splits = ("train", "val") if config["train"].get("enabled", True) else ("val",)
    share = sum(REPORTED_VIDEOS[split] for split in splits) / sum(REPORTED_VIDEOS.values())
    tarballs = REPORTED_TARBALL_BYTES * share
    disk = REPORTED_EXTRACTED_BYTES * share + (tarballs if config["dataset"].get("keep_tarballs") else 0)
    return StageEstimate("download_kinetics", disk, tarballs / link_bytes_per_s + tarballs * CPU_S_PER_ARCHIVE_BYTE,
                         False, f"{' + '.join(splits)}: {format_bytes(tarballs)} of .tar.gz at "
                         f"{format_bytes(link_bytes_per_s)}/s (estimate; sizes from a user's report, unverified)")


def _model_stages(config: Mapping[str, Any], figures: DatasetFigures, num_classes: int) -> list[StageEstimate]:
    from nlflow.train.job import checkpoint_bytes  # imports torch: not at the workflow's start-up

    model_bytes = 4 * _parameter_count(config, num_classes)
    test_videos = figures.test_share * figures.videos
    views = config["test"]["num_clips"] * config["test"]["num_crops"]
    return [
        StageEstimate("clean_weights", model_bytes, 2.0, False),
        StageEstimate("train", checkpoint_bytes(model_bytes, config["train"]["keep_checkpoints"]), None, False,
                      "time: the GPU's clips/s (docs/cluster.md)"),
        # The score cache: probabilities and logits (float32) per view and class.
        StageEstimate("evaluate", test_videos * views * num_classes * 2 * 4, test_videos * CPU_S_PER_TEST_VIDEO, True,
                      "decoding only; the network runs on the GPU"),
    ]


def _parameter_count(config: Mapping[str, Any], num_classes: int) -> int:
    from nlflow.models.builder import ModelConfig, build_model
    from nlflow.weights.zoo import resolve_pretrained

    model = dict(resolve_pretrained(config["model"], config["pretrained"]).model, num_classes=num_classes)
    return sum(parameter.numel() for parameter in build_model(ModelConfig.from_dict(model)).parameters())


def plan_table(stages: list[StageEstimate], cores: int) -> pd.DataFrame:
    rows = []
    for stage in stages:
        wall = None if stage.cpu_s is None else stage.cpu_s / (cores if stage.parallel else 1)
        rows.append({"stage": stage.stage, "disk": format_bytes(stage.disk_bytes),
                     "time": "-" if wall is None else _format_duration(wall), "note": stage.note})
    return pd.DataFrame(rows)


def _format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def format_plan(config: Mapping[str, Any], *, cores: int, link_bytes_per_s: float = 10e6) -> str:
    """The plan as a person reads it: a table per stage, the total, the free space and a verdict."""
    figures = dataset_figures(config)
    stages = plan_stages(config, link_bytes_per_s=link_bytes_per_s)
    total = sum(stage.disk_bytes for stage in stages)
    results = Path(config["results_dir"])
    free = free_bytes(results)
    lines = [
        f"{config['dataset']['name']}: {figures.videos:,} videos of about {figures.frames_per_video:.0f} frames "
        f"(figures: {figures.source}); times on {cores} core(s)",
        "",
        plan_table(stages, cores).to_string(index=False),
        "",
        f"total: about {format_bytes(total)} under {os.path.abspath(results)}; "
        f"{format_bytes(free)} free on {mount_point(results)}",
    ]
    lines.append("make_lists, shuffle_rep and report write under a few MB each, in seconds")
    if total > free:
        lines.append(f"not enough space: free {format_bytes(total - free)} more, or point results_dir at a larger disk "
                     "(the big stages stop before they start when theirs does not fit)")
    else:
        lines.append("fits")
    return "\n".join(lines)
