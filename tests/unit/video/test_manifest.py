"""Filtering list entries with the downscale manifest."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from nlflow.video.manifest import ManifestError, summarize_exclusions, usable_entries


@dataclass
class Row:  # the fields usable_entries relies on (ManifestRow has more)
    video: str
    status: str
    frames: int


def test_reasons_and_order():
    rows = {
        "A/ok.avi": Row("A/ok.avi", "ok", 80),
        "A/exact.avi": Row("A/exact.avi", "ok", 64),
        "A/short.avi": Row("A/short.avi", "ok", 63),
        "B/bad.avi": Row("B/bad.avi", "corrupt", 0),
        "B/none.avi": Row("B/none.avi", "empty", 0),
        "B/zero.avi": Row("B/zero.avi", "ok", 0),
    }
    entries = [("A/ok.avi", 0), ("B/bad.avi", 1), ("A/short.avi", 0), ("A/exact.avi", 0),
               ("B/gone.avi", 1), ("B/none.avi", 1), ("B/zero.avi", 1)]
    kept, excluded = usable_entries(entries, rows)
    # A video shorter than one clip is kept: clips wrap around (periodic sampling, as the original).
    assert kept == [("A/ok.avi", 0), ("A/short.avi", 0), ("A/exact.avi", 0)]
    assert excluded == [("B/bad.avi", 1, "corrupt"), ("B/gone.avi", 1, "missing"),
                        ("B/none.avi", 1, "empty"), ("B/zero.avi", 1, "empty")]


def test_unknown_status_is_an_error():
    with pytest.raises(ManifestError, match="weird"):
        usable_entries([("a.avi", 0)], {"a.avi": Row("a.avi", "weird", 10)})


def test_summary_line():
    excluded = [("x", 0, "missing"), ("y", 3, "corrupt")]
    assert summarize_exclusions(excluded, total=250) == "excluded 2 of 250 videos: 1 missing, 1 corrupt"
    assert summarize_exclusions([], total=10) == "excluded 0 of 10 videos"
    assert summarize_exclusions([("a", 0, "missing"), ("b", 0, "missing"), ("c", 0, "empty")]) == (
        "excluded 3 videos: 2 missing, 1 empty"
    )
