"""The seeded, shuffled, repeated training list (the original's ``shuffle_rep`` step).

List files are read and written with ``nlflow.lists.listfiles.read_list`` / ``format_list``.

The original wrote the training list several times over, each copy shuffled, so that reading the
training LMDB front to back gives epochs of freshly ordered samples. Here each repetition is a
permutation drawn from one ``numpy.random.Generator(seed)``: the same inputs give the same list.
"""

from __future__ import annotations

from typing import Sequence, TypeVar

import numpy as np

T = TypeVar("T")


def shuffle_repeat(entries: Sequence[T], repeats: int, seed: int) -> list[T]:
    """``entries`` repeated ``repeats`` times, each repetition independently shuffled (deterministic)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    rng = np.random.default_rng(seed)
    shuffled: list[T] = []
    for _ in range(repeats):
        shuffled.extend(entries[i] for i in rng.permutation(len(entries)))
    return shuffled

