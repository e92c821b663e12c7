"""The seeded, shuffled, repeated training list (the original's ``shuffle_rep`` step).

The original wrote the training list several times over, each copy shuffled, so that reading the
training LMDB front to back gives epochs of freshly ordered samples. Here each repetition is a
permutation drawn from one ``numpy.random.Generator(seed)``: the same inputs give the same list.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence, TypeVar

import numpy as np

from nlflow.errors import NlflowError
from nlflow.fileio import write_text_atomic

log = logging.getLogger(__name__)

T = TypeVar("T")


class ListFileError(NlflowError):
    """A list file is malformed (each line must be ``<relative path> <label>``)."""


def shuffle_repeat(entries: Sequence[T], repeats: int, seed: int) -> list[T]:
    """``entries`` repeated ``repeats`` times, each repetition independently shuffled (deterministic)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    rng = np.random.default_rng(seed)
    shuffled: list[T] = []
    for _ in range(repeats):
        shuffled.extend(entries[i] for i in rng.permutation(len(entries)))
    return shuffled


def format_list(entries: Sequence[tuple[str, int]]) -> str:
    """Text of a list file: one ``<relative path> <label>`` line per entry."""
    lines = []
    for video, label in entries:
        if not video or any(c in video for c in "\n\r"):
            raise ListFileError(f"cannot write video path {video!r} to a list file")
        lines.append(f"{video} {int(label)}\n")
    return "".join(lines)


def parse_list(text: str, source: str = "<list>") -> list[tuple[str, int]]:
    """Parse list-file text; the label is the last space-separated field."""
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        video, sep, label = line.rstrip().rpartition(" ")
        if not sep or not video:
            raise ListFileError(f"{source}:{number}: expected '<relative path> <label>', got {line!r}")
        try:
            entries.append((video, int(label)))
        except ValueError:
            raise ListFileError(f"{source}:{number}: label {label!r} is not an integer") from None
    return entries


def write_list_file(path: str | os.PathLike, entries: Sequence[tuple[str, int]]) -> None:
    """Write a list file atomically."""
    write_text_atomic(path, format_list(entries))


def read_list_file(path: str | os.PathLike) -> list[tuple[str, int]]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ListFileError(f"list file not found: {path}") from None
    return parse_list(text, str(path))


def write_shuffled_list(src: str | os.PathLike, dst: str | os.PathLike, repeats: int, seed: int) -> int:
    """Read list ``src``, write its :func:`shuffle_repeat` to ``dst``; returns the number of lines."""
    entries = read_list_file(src)
    if not entries:
        raise ListFileError(f"list file {src} is empty: nothing to train on")
    shuffled = shuffle_repeat(entries, repeats, seed)
    write_list_file(dst, shuffled)
    log.info("wrote %d entries (%d videos x %d repeats, seed %d) to %s", len(shuffled), len(entries), repeats, seed, dst)
    return len(shuffled)
