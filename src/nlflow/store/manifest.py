"""Which list entries can go into a store, judged from the downscale manifest."""

from __future__ import annotations

from collections import Counter
from typing import Any, Mapping, Sequence

from nlflow.errors import NlflowError

# Reasons in the order they are reported.
REASONS = ("missing", "corrupt", "empty", "too_short")


class ManifestError(NlflowError):
    """A manifest row has a status this code does not know."""


def exclusion_reason(row: Any | None, min_frames: int) -> str | None:
    """Why a video with manifest ``row`` (None: not in the manifest) is unusable, or None if usable."""
    if row is None:
        return "missing"
    status = row.status
    if status in ("corrupt", "empty"):
        return status
    if status != "ok":
        raise ManifestError(f"manifest row for {getattr(row, 'video', '?')} has unknown status {status!r}")
    frames = int(row.frames)
    if frames <= 0:
        return "empty"
    if frames < min_frames:
        return "too_short"
    return None


def usable_entries(
    entries: Sequence[tuple[str, int]], manifest_rows: Mapping[str, Any], min_frames: int
) -> tuple[list[tuple[str, int]], list[tuple[str, str]]]:
    """Split ``entries`` into (kept, excluded); excluded holds ``(video, reason)``.

    ``manifest_rows`` maps video -> an object with ``.status`` and ``.frames`` (a ManifestRow);
    reason is one of ``missing``, ``corrupt``, ``empty``, ``too_short`` (fewer than ``min_frames``).
    """
    kept: list[tuple[str, int]] = []
    excluded: list[tuple[str, str]] = []
    for video, label in entries:
        reason = exclusion_reason(manifest_rows.get(video), min_frames)
        if reason is None:
            kept.append((video, label))
        else:
            excluded.append((video, reason))
    return kept, excluded


def summarize_exclusions(
    excluded: Sequence[tuple[str, str]], total: int | None = None, min_frames: int | None = None
) -> str:
    """One log line, e.g. ``excluded 2 of 250 videos: 1 corrupt, 1 too_short (< 64 frames)``."""
    of_total = f" of {total}" if total is not None else ""
    head = f"excluded {len(excluded)}{of_total} videos"
    if not excluded:
        return head
    counts = Counter(reason for _, reason in excluded)
    parts = []
    for reason in REASONS + tuple(sorted(set(counts) - set(REASONS))):
        if counts.get(reason):
            part = f"{counts[reason]} {reason}"
            if reason == "too_short" and min_frames is not None:
                part += f" (< {min_frames} frames)"
            parts.append(part)
    return f"{head}: {', '.join(parts)}"
