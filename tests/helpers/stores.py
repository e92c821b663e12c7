"""Fake video files for store tests (an LMDB store does not decode what it holds)."""

from __future__ import annotations

import hashlib

CLASSES = ["Alpha", "Beta", "Gamma"]


def fake_videos(root, count: int) -> tuple[list[tuple[str, int]], dict[str, int], dict[str, bytes]]:
    """Fake 'video files' of different sizes (the store does not decode them)."""
    entries, frames, content = [], {}, {}
    for i in range(count):
        rel = f"{CLASSES[i % 3]}/v_{CLASSES[i % 3]}_g{i:02d}_c01.avi"
        data = hashlib.sha256(str(i).encode()).digest() * (50 + 37 * i)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        entries.append((rel, i % 3))
        frames[rel] = 60 + i
        content[rel] = data
    return entries, frames, content
