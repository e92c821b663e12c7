"""Re-encode videos to a fixed short side with short, fixed keyframe spacing, plus a manifest.

Output: MPEG-4 Part 2 (XviD-compatible) in AVI, short side ``short_side`` (even dimensions,
aspect kept), a keyframe exactly every ``keyframe_interval`` frames (cheap frame-exact seeking),
fixed quantiser ``qscale``, frames numbered 0..N-1 (raw XviD with packed B-frames yields
non-monotonic timestamps the encoder refuses), same frame rate, no audio.

Everything runs in-process with PyAV: one decoder thread, one reused swscale context per video
and one encoder thread; parallelism comes from ``n_jobs`` worker processes.

Damaged inputs: FFmpeg conceals most bitstream damage and a truncated file simply ends early;
such files are kept with the frames that decoded. A file that raises an error while opening or
decoding is ``corrupt`` and gets no output (a partial clip of an unknown part of the video would
silently train on less than the labelled action); a file with no frames is ``empty``.
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import math
import os
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

import av
import av.error
from av.video.reformatter import VideoReformatter

from nlflow.diskspace import check_free_space, format_bytes, storage_fault
from nlflow.fileio import atomic_path, write_json_atomic
from nlflow.video.manifest import STATUSES, ManifestRow, write_manifest

log = logging.getLogger(__name__)

SETTINGS_STAMP = ".downscale-settings.json"
# Bump when the encoding recipe changes so existing outputs are redone (the downscale rule passes
# it as a param, so Snakemake re-runs the job too). 2: the long side truncated as the original's filter.
RECIPE_VERSION = 2


def output_size(width: int, height: int, short_side: int, upsample: bool) -> tuple[int, int]:
    """(width, height) with the short side at ``short_side`` (or kept when smaller and not upsampling), even.

    The long side follows the original's ``ffmpeg -filter:v scale="trunc(oh*a/2)*2:256"``: the
    exact long side, in double precision as FFmpeg's expression evaluator computes it, truncated
    down to an even number (320x240 -> 340x256). The original fixed the height at 256 whatever
    the orientation; here the short side is fixed, so a portrait video keeps its width at
    ``short_side`` and its height is truncated the same way (docs/fidelity.md).
    """
    short = min(width, height)
    if short > short_side or (upsample and short < short_side):
        if width <= height:
            return short_side, _truncated_even(short_side * (height / width))
        return _truncated_even(short_side * (width / height)), short_side
    return max(2, width - width % 2), max(2, height - height % 2)


def _truncated_even(length: float) -> int:
    """FFmpeg's ``trunc(x/2)*2`` of a computed side, at least 2."""
    return max(2, math.trunc(length / 2) * 2)


def _failed(video: str, status: str, error: str, fps: float = 0.0, width: int = 0, height: int = 0) -> ManifestRow:
    return ManifestRow(video, status, 0, fps, width, height, 0, " ".join(error.split()))


def _encode(src_container, src_stream, dst_tmp: Path, fps: Fraction, size: tuple[int, int],
            keyframe_interval: int, qscale: int) -> int:
    width, height = size
    frames = 0
    with av.open(str(dst_tmp), mode="w", format="avi") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_tag = "XVID"  # the fourcc of the UCF-101 originals; any MPEG-4 Part 2 player reads it
        context = stream.codec_context
        context.thread_count = 1
        context.gop_size = keyframe_interval
        context.max_b_frames = 0
        # fixed quantiser: the frame's lambda is unset (0), so qmin = qmax pins it to qscale
        context.qscale = True
        context.global_quality = qscale
        context.qmin = qscale
        context.qmax = qscale
        # no extra keyframes at scene cuts: spacing must stay exactly keyframe_interval
        stream.options = {"sc_threshold": "1000000000"}
        time_base = Fraction(1) / fps
        scaler = VideoReformatter()
        for frame in src_container.decode(src_stream):
            scaled = scaler.reformat(frame, width=width, height=height, format="yuv420p",
                                     interpolation="BICUBIC", threads=1)
            scaled.pts = frames
            scaled.time_base = time_base
            # a source I-frame would otherwise force an extra keyframe and break the spacing
            scaled.pict_type = av.video.frame.PictureType.NONE
            for packet in stream.encode(scaled):
                out.mux(packet)
            frames += 1
        for packet in stream.encode(None):
            out.mux(packet)
    return frames


def downscale_video(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    short_side: int,
    upsample: bool,
    keyframe_interval: int,
    qscale: int,
    *,
    name: str | None = None,
) -> ManifestRow:
    """Re-encode ``src`` to ``dst`` (atomically); never raises on bad video data, always on a
    full or failing disk (which is no property of the video: the manifest must not record it).

    ``name`` is the row's ``video`` field (default: ``src`` as given).
    """
    video = name if name is not None else os.fspath(src)
    dst = Path(dst)
    if not Path(src).is_file():
        _remove_stale(dst)
        return _failed(video, "corrupt", f"missing input: {os.fspath(src)}")
    fps = 0.0
    width = height = 0
    try:
        with av.open(os.fspath(src), mode="r") as container:
            if not container.streams.video:
                raise ValueError("no video stream")
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            if not rate:
                raise ValueError("unknown frame rate")
            rate = Fraction(rate).limit_denominator(1001 * 1000)
            fps = float(rate)
            width, height = stream.codec_context.width, stream.codec_context.height
            if width <= 0 or height <= 0:
                raise ValueError("video stream has no frame size")
            size = output_size(width, height, short_side, upsample)
            with atomic_path(dst) as tmp:
                frames = _encode(container, stream, tmp, rate, size, keyframe_interval, qscale)
                if frames == 0:
                    raise _Empty()
    except _Empty:
        _remove_stale(dst)
        return _failed(video, "empty", "no decodable frames", fps, width, height)
    except Exception as err:  # one bad video among thousands must not stop the stage
        if _storage_failed(err, Path(src), dst):
            raise
        _remove_stale(dst)
        log.warning("downscale: %s is corrupt: %s", video, err)
        return _failed(video, "corrupt", f"{type(err).__name__}: {err}", fps, width, height)
    return ManifestRow(video, "ok", frames, fps, size[0], size[1], dst.stat().st_size, "")


class _Empty(Exception):
    pass


def _storage_failed(error: Exception, src: Path, dst: Path) -> bool:
    """Whether ``error`` is the disk's fault rather than the video's: a full disk, a quota or a
    file-size limit always; an I/O error when the source cannot be read back or the output folder
    cannot be written (FFmpeg also reports some damaged data as EIO, and a damaged video must not
    stop the stage, nor a failing disk be recorded as a corrupt video)."""
    fault = storage_fault(error)
    if fault is None:
        return False
    if fault.errno != errno.EIO:
        return True
    try:
        with open(src, "rb") as handle:
            while handle.read(1 << 20):
                pass
        with tempfile.TemporaryFile(dir=dst.parent) as probe:
            probe.write(b"\0" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError:
        return True
    return False


def _remove_stale(dst: Path) -> None:
    # an output left from an earlier run must not outlive a failed re-encode
    if dst.exists():
        dst.unlink()


def _settings(short_side: int, upsample: bool, keyframe_interval: int, qscale: int) -> dict:
    return {"recipe": RECIPE_VERSION, "short_side": int(short_side), "upsample": bool(upsample),
            "keyframe_interval": int(keyframe_interval), "qscale": int(qscale)}


def _read_stamp(out_root: Path) -> dict | None:
    try:
        return json.loads((out_root / SETTINGS_STAMP).read_text())
    except (OSError, ValueError):
        return None


def _reuse_row(src: Path, dst: Path, rel: str) -> ManifestRow | None:
    """A row for an existing output newer than its input, read from the output itself."""
    try:
        if not dst.is_file() or dst.stat().st_mtime < src.stat().st_mtime:
            return None
        with av.open(str(dst), mode="r") as container:
            stream = container.streams.video[0]
            frames = stream.frames
            if frames <= 0:
                return None
            return ManifestRow(rel, "ok", frames, float(stream.average_rate), stream.codec_context.width,
                               stream.codec_context.height, dst.stat().st_size, "")
    except (av.error.FFmpegError, OSError, IndexError, TypeError):
        return None


def _job(src: str, dst: str, rel: str, short_side: int, upsample: bool,
         keyframe_interval: int, qscale: int) -> ManifestRow:
    return downscale_video(src, dst, short_side, upsample, keyframe_interval, qscale, name=rel)


def _stamp_settings(out_root: Path, settings: dict, rel_paths: Sequence[str]) -> bool:
    """Whether ``out_root`` was made with ``settings``; if not, its outputs of ``rel_paths`` are
    removed and the new settings stamped."""
    if _read_stamp(out_root) == settings:
        return True
    # Outputs of other (or unknown) settings go before the new stamp is written, so that the
    # stamp vouches for every output in the folder even if this run is killed halfway.
    for rel in rel_paths:
        _remove_stale(out_root / rel)
    write_json_atomic(out_root / SETTINGS_STAMP, settings)
    return False


def _encode_all(encode, video_root: Path, out_root: Path, todo: Sequence[str], n_jobs: int,
                backend: str) -> Iterator[ManifestRow]:
    """``encode(src, dst, rel)`` for every video of ``todo`` in ``n_jobs`` workers; rows in the order they finish."""
    from joblib import Parallel, delayed
    from tqdm import tqdm

    if not todo:
        return
    jobs = (delayed(encode)(str(video_root / rel), str(out_root / rel), rel) for rel in todo)
    results = Parallel(n_jobs=n_jobs, backend=backend, return_as="generator_unordered")(jobs)
    with tqdm(total=len(todo), unit="video", desc="downscale", disable=None) as bar:
        for row in results:
            yield row
            bar.update(1)


def downscale_all(
    video_root: str | os.PathLike[str],
    rel_paths: Sequence[str],
    out_root: str | os.PathLike[str],
    manifest_path: str | os.PathLike[str],
    short_side: int = 256,
    upsample: bool = True,
    keyframe_interval: int = 12,
    qscale: int = 2,
    n_jobs: int = 1,
    backend: str = "threading",
    estimate_bytes: int | None = None,
    check_disk: bool = True,
) -> list[ManifestRow]:
    """Downscale every ``rel_paths`` video from ``video_root`` into ``out_root`` and write the manifest.

    Incremental: an output newer than its input, made with the same settings (a stamp file in
    ``out_root``, written before the first video), is kept, also after a run that was killed. Rows come back in ``rel_paths`` order. Threads are the default
    backend: PyAV releases the GIL in the codec and scaler calls, and threads skip the worker
    start-up and pickling of ``loky`` (measured in benchmarks/bench_downscale.py).

    Disk: ``estimate_bytes`` (the output of all ``rel_paths``, e.g. from nlflow.workflow.plan) is
    checked against the free space before the first video, and the size measured on the videos
    encoded so far while they are made: the stage stops early when the rest will not fit
    (``check_disk=False``: a warning instead).
    """
    video_root, out_root = Path(video_root), Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    same_settings = _stamp_settings(out_root, _settings(short_side, upsample, keyframe_interval, qscale), rel_paths)
    rows: dict[str, ManifestRow] = {}
    todo: list[str] = []
    for rel in rel_paths:
        reused = _reuse_row(video_root / rel, out_root / rel, rel) if same_settings else None
        if reused is not None:
            rows[rel] = reused
        else:
            todo.append(rel)
    log.info("downscale: %d videos, %d up to date, %d to encode with %d jobs",
             len(rel_paths), len(rows), len(todo), n_jobs)

    if todo and estimate_bytes:
        check_free_space(out_root, estimate_bytes * len(todo) // len(rel_paths),
                         f"downscale ({len(todo)} videos, estimated)", enforce=check_disk)
    started = time.monotonic()
    encode = functools.partial(_job, short_side=short_side, upsample=upsample, keyframe_interval=keyframe_interval,
                               qscale=qscale)
    check_every = max(8, len(todo) // 20)
    written = 0
    for done, row in enumerate(_encode_all(encode, video_root, out_root, todo, n_jobs, backend), start=1):
        rows[row.video] = row
        written += row.bytes
        if done % check_every == 0 and done < len(todo):
            per_video = written / done
            check_free_space(out_root, int(per_video * (len(todo) - done)),
                             f"downscale's other {len(todo) - done} videos (at {format_bytes(per_video)} a video so far)",
                             enforce=check_disk)
    elapsed = time.monotonic() - started

    ordered = [rows[rel] for rel in rel_paths]
    write_manifest(manifest_path, ordered)
    counts = {status: sum(1 for row in ordered if row.status == status) for status in STATUSES}
    rate = len(todo) / elapsed if todo and elapsed > 0 else 0.0
    log.info("downscale done: %d ok, %d corrupt, %d empty (%d encoded, %.1f videos/s)",
             counts["ok"], counts["corrupt"], counts["empty"], len(todo), rate)
    return ordered
