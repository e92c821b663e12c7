"""The seeded shuffled repeated training list."""

from __future__ import annotations

from collections import Counter

import pytest

from nlflow.store.shuffle import (
    ListFileError,
    parse_list,
    read_list_file,
    shuffle_repeat,
    write_list_file,
    write_shuffled_list,
)

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


def test_list_file_round_trip(tmp_path):
    path = tmp_path / "lists" / "train_shuffled.txt"
    write_list_file(path, ENTRIES)
    assert path.read_text().splitlines()[0] == "C0/v_C0_g00_c01.avi 0"
    assert read_list_file(path) == ENTRIES
    assert [p.name for p in path.parent.iterdir()] == ["train_shuffled.txt"]


def test_write_shuffled_list(tmp_path):
    src, dst = tmp_path / "train.txt", tmp_path / "train_rep.txt"
    write_list_file(src, ENTRIES)
    assert write_shuffled_list(src, dst, repeats=2, seed=5) == 50
    assert read_list_file(dst) == shuffle_repeat(ENTRIES, 2, seed=5)
    write_list_file(src, [])
    with pytest.raises(ListFileError, match="empty"):
        write_shuffled_list(src, dst, repeats=2, seed=5)


def test_parse_errors_name_the_line():
    assert parse_list("a/b c.avi 3\n\n") == [("a/b c.avi", 3)]
    with pytest.raises(ListFileError, match="x.txt:2"):
        parse_list("a.avi 1\nb.avi one\n", "x.txt")
    with pytest.raises(ListFileError, match="x.txt:1"):
        parse_list("justapath.avi\n", "x.txt")
    with pytest.raises(ListFileError, match="not found"):
        read_list_file("/nonexistent/list.txt")
