"""Which list entries can go into a store, judged from the downscale manifest.

Only videos that cannot be decoded are left out (missing, corrupt, no frames). A video shorter than
one clip span stays: the original's decoder samples periodically (frame ``(start + j * rate) % N``),
so it still gives full clips.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Mapping, Sequence

from nlflow.errors import NlflowError

# Reasons in the order they are reported.
REASONS = ("missing", "corrupt", "empty")


class ManifestError(NlflowError):
    """A manifest row has a status this code does not know."""


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
