"""The downscale manifest (``manifest.csv``): one row per source video, written by downscale, read
by the stages that build stores, and which list entries it lets into a store.

Only videos that cannot be decoded are left out (missing, corrupt, no frames). A video shorter than
one clip span stays: the original's decoder samples periodically (frame ``(start + j * rate) % N``),
so it still gives full clips.
"""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from nlflow.errors import NlflowError
from nlflow.fileio import read_text_checked, rebuild_hint, write_text_atomic

MANIFEST_FIELDS = ("video", "status", "frames", "fps", "width", "height", "bytes", "error")
STATUSES = ("ok", "corrupt", "empty")
# Reasons in the order they are reported.
REASONS = ("missing", "corrupt", "empty")


class ManifestError(NlflowError):
    """The downscale manifest is missing, malformed, or has a status this code does not know."""


@dataclass(frozen=True)
class ManifestRow:
    video: str
    status: str
    frames: int
    fps: float
    width: int
    height: int
    bytes: int
    error: str = ""


def write_manifest(path: str | os.PathLike[str], rows: Sequence[ManifestRow]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MANIFEST_FIELDS)
    for row in rows:
        writer.writerow([getattr(row, name) for name in MANIFEST_FIELDS])
    write_text_atomic(path, buffer.getvalue())


def read_manifest(path: str | os.PathLike[str], videos_dir: str | os.PathLike[str] | None = None) -> dict[str, ManifestRow]:
    """video -> ``ManifestRow`` from a manifest written by ``downscale_all``.

    A damaged manifest is a :class:`ManifestError` naming the line and the command that rebuilds
    it: one cut off mid-line, a byte that is not UTF-8, a malformed row. A manifest cut off at a
    line boundary parses, so with ``videos_dir`` (the downscaled videos it describes) every video
    there must have its row, with the file size it records.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"downscale manifest not found: {path}")
    recover = rebuild_hint(path) + " (this re-runs the downscale job)"
    reader = csv.DictReader(io.StringIO(read_text_checked(path, ManifestError, recover), newline=""))
    if tuple(reader.fieldnames or ()) != MANIFEST_FIELDS:
        raise ManifestError(f"{path}: header must be {','.join(MANIFEST_FIELDS)}; if nlflow wrote it, {recover}")
    rows: dict[str, ManifestRow] = {}
    for line, record in enumerate(reader, start=2):
        row = _manifest_row(record)
        if row is None:
            raise ManifestError(f"{path}:{line} is damaged (malformed row {','.join(map(str, record.values()))!r:.120}); {recover}")
        rows[row.video] = row
    if videos_dir is not None:
        problem = _disagreement_with_videos(rows, Path(videos_dir))
        if problem:
            raise ManifestError(f"{path} is damaged: {problem}; {recover}")
    return rows


def _manifest_row(record: dict) -> ManifestRow | None:
    """The row of one CSV record, or None when the record is not one ``write_manifest`` writes."""
    if None in record or None in record.values():  # too many or too few fields
        return None
    try:
        row = ManifestRow(
            video=record["video"], status=record["status"], frames=int(record["frames"]),
            fps=float(record["fps"]), width=int(record["width"]), height=int(record["height"]),
            bytes=int(record["bytes"]), error=record["error"],
        )
    except ValueError:
        return None
    return row if row.status in STATUSES and row.video else None


def _disagreement_with_videos(rows: dict[str, ManifestRow], videos_dir: Path) -> str | None:
    """What the manifest gets wrong about the downscaled videos next to it (a video without an ``ok``
    row, or of another size than its row records), or None."""
    on_disk = {
        p.relative_to(videos_dir).as_posix(): p.stat().st_size
        for p in videos_dir.rglob("*")
        if p.is_file() and not p.name.startswith(".")  # the settings stamp and temporary files
    }
    unlisted = sorted(video for video in on_disk if video not in rows or rows[video].status != "ok")
    if unlisted:
        return f"{len(unlisted)} downscaled video(s) lack an 'ok' row, e.g. {unlisted[0]}"
    wrong_size = sorted(video for video, size in on_disk.items() if rows[video].bytes != size)
    if wrong_size:
        return f"{len(wrong_size)} row(s) record another file size than the video has, e.g. {wrong_size[0]}"
    return None




def exclusion_reason(row: Any | None) -> str | None:
    """Why a video with manifest ``row`` (None: not in the manifest) is unusable, or None if usable."""
    if row is None:
        return "missing"
    status = row.status
    if status in ("corrupt", "empty"):
        return status
    if status != "ok":
        raise ManifestError(f"manifest row for {getattr(row, 'video', '?')} has unknown status {status!r}")
    if int(row.frames) <= 0:
        return "empty"
    return None


def usable_entries(
    entries: Sequence[tuple[str, int]], manifest_rows: Mapping[str, Any]
) -> tuple[list[tuple[str, int]], list[tuple[str, int, str]]]:
    """Split ``entries`` into (kept, excluded); excluded holds ``(video, label, reason)``.

    ``manifest_rows`` maps video -> an object with ``.status`` and ``.frames`` (a ManifestRow);
    reason is one of ``missing``, ``corrupt``, ``empty``.
    """
    kept: list[tuple[str, int]] = []
    excluded: list[tuple[str, int, str]] = []
    for video, label in entries:
        reason = exclusion_reason(manifest_rows.get(video))
        if reason is None:
            kept.append((video, label))
        else:
            excluded.append((video, label, reason))
    return kept, excluded


def summarize_exclusions(excluded: Sequence[tuple[str, int, str]], total: int | None = None) -> str:
    """One log line, e.g. ``excluded 2 of 250 videos: 1 corrupt, 1 missing``."""
    of_total = f" of {total}" if total is not None else ""
    head = f"excluded {len(excluded)}{of_total} videos"
    if not excluded:
        return head
    counts = Counter(reason for _, _, reason in excluded)
    parts = [f"{counts[reason]} {reason}" for reason in REASONS + tuple(sorted(set(counts) - set(REASONS))) if counts.get(reason)]
    return f"{head}: {', '.join(parts)}"
