"""Seeded, stratified, group-preserving hold-outs, and where each kind's validation list comes from."""

from __future__ import annotations

import pytest

from nlflow.lists.holdout import HoldoutError, attach_validation, hold_out, validation_source
from nlflow.lists.listfiles import DatasetLists, ListedVideo

CLASSES = ["a", "b", "c", "d"]


def ucf_like(groups=18, clips=4) -> list[ListedVideo]:
    """UCF-101's shape: every group number in every class, a few clips each."""
    return [
        ListedVideo(f"{name}/v_{name}_g{g:02d}_c{k:02d}.avi", label, f"g{g:02d}", "test")
        for label, name in enumerate(CLASSES) for g in range(8, 8 + groups) for k in range(1, clips + 1)
    ]


def test_whole_groups_move_and_every_class_gets_its_share():
    videos = ucf_like()
    kept, held = hold_out(videos, 0.1, seed=0, classes=CLASSES, what="validation")
    assert sorted(kept + held, key=lambda v: v.path) == sorted(videos, key=lambda v: v.path)
    assert not {v.group for v in kept} & {v.group for v in held}
    # 72 videos per class, target 7.2: two groups of 4 clips hold 8 of each class
    assert [sum(v.label == label for v in held) for label in range(4)] == [8, 8, 8, 8]


def test_same_seed_same_split_and_input_order_does_not_matter():
    videos = ucf_like()
    first = hold_out(videos, 0.25, 3, CLASSES, "test")
    again = hold_out(list(reversed(videos)), 0.25, 3, CLASSES, "test")
    assert first == again
    assert hold_out(videos, 0.25, 4, CLASSES, "test")[1] != first[1]


def test_fraction_out_of_range_is_refused():
    with pytest.raises(HoldoutError, match="between 0 and 1"):
        hold_out(ucf_like(), 1.0, 0, CLASSES, "test")


def lists(val=None) -> DatasetLists:
    videos = ucf_like(groups=10, clips=2)
    train = [v for v in videos if v.group != "g08"]
    test = [v for v in videos if v.group == "g08"]
    return DatasetLists(CLASSES, train, val, test, {"dataset": "ucf101"})


def test_validation_is_the_test_list_when_the_fraction_is_zero():
    result = attach_validation(lists(), 0, 0)
    assert result.val == result.test and result.about["validation"] == "test"
    assert result.summary()["num_val"] == result.summary()["num_test"] == 8


def test_validation_held_out_of_training_groups():
    result = attach_validation(lists(), 0.2, 5)
    assert result.about["validation"] == "held_out" and result.about["val_fraction"] == 0.2
    assert not {v.group for v in result.train} & {v.group for v in result.val}
    assert len(result.train) + len(result.val) == 72 and result.test == lists().test


def test_own_validation_list_is_kept_and_may_not_be_combined_with_a_fraction():
    own = lists().test[:2]
    assert attach_validation(lists(val=own), 0, 0).val == own
    with pytest.raises(HoldoutError, match="choose one"):
        attach_validation(lists(val=own), 0.1, 0)


def test_validation_source_in_words():
    assert "test list" in validation_source({"val_fraction": 0})
    assert "held out" in validation_source({"val_fraction": 0.1})
    assert "its own list" in validation_source({"val_fraction": 0, "lists": {"val": "v.txt"}})
