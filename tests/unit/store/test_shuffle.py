"""The seeded shuffled repeated training list."""

from __future__ import annotations

from collections import Counter

import pytest

from nlflow.store.shuffle import shuffle_repeat

ENTRIES = [(f"C{i % 4}/v_C{i % 4}_g{i:02d}_c01.avi", i % 4) for i in range(25)]


def test_each_repetition_is_a_permutation():
    repeated = shuffle_repeat(ENTRIES, repeats=4, seed=7)
    assert len(repeated) == 100
    for r in range(4):
        chunk = repeated[25 * r: 25 * (r + 1)]
        assert sorted(chunk) == sorted(ENTRIES)
    assert Counter(repeated) == Counter({e: 4 for e in ENTRIES})
    # Shuffled, and each repetition in its own order.
    assert repeated[:25] != ENTRIES
    assert repeated[:25] != repeated[25:50]


def test_deterministic_per_seed():
    assert shuffle_repeat(ENTRIES, 3, seed=1) == shuffle_repeat(ENTRIES, 3, seed=1)
    assert shuffle_repeat(ENTRIES, 3, seed=1) != shuffle_repeat(ENTRIES, 3, seed=2)
    # More repeats extend the list; the first repetitions stay as they were.
    assert shuffle_repeat(ENTRIES, 5, seed=1)[:75] == shuffle_repeat(ENTRIES, 3, seed=1)


def test_bad_repeats():
    with pytest.raises(ValueError):
        shuffle_repeat(ENTRIES, 0, seed=0)
    assert shuffle_repeat([], 2, seed=0) == []

