"""Video features: pool5 averaged over the test views, for every listed video of a store or for
raw files, cached per video and resumable; read back with pandas."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from nlflow.cli import main
from nlflow.evaluate import evaluate
from nlflow.features.extract import file_features, store_features
from nlflow.models import load_checkpoint
from nlflow.store.lmdb_store import write_store
from nlflow.video.views import layout_spec, load_test_view_frames, normalize_views

from helpers.evaluation import CLASSES, SPEC, tiny_checkpoint, tiny_test_store, tiny_videos

CORRUPT = "MoveUp/v_MoveUp_g02_c01.avi"  # in the store, does not decode
EXCLUDED = "Grow/v_Grow_g03_c01.avi"  # listed, left out of the store
WIDTH = 4 * 32  # res5 channels of the width-4 network


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("features")
    store, root, entries = tiny_test_store(tmp, corrupt=True)
    ckpt = tiny_checkpoint(tmp / "model.pt")
    summary = store_features(ckpt, store, SPEC, tmp / "cache", tmp / "test.parquet", batch_size=7)
    return tmp, store, root, entries, ckpt, summary


def pool5_by_hand(model, views: torch.Tensor) -> np.ndarray:
    """The original's pool5 (average, kernel [T/2, 7, 7] cut to the map, stride 1) on res5, averaged
    over its positions and then over the views: written here from the definition, not nlflow's head."""
    with torch.no_grad():
        res5 = model.features(normalize_views(views)).double()
    assert res5.shape[3] < 7  # the kernel is cut: the case pool5's shape-derived kernel must get right
    kernel = [min(k, size) for k, size in zip((SPEC.video_length // 2, 7, 7), res5.shape[2:])]
    return F.avg_pool3d(res5, kernel, stride=1).mean(dim=(2, 3, 4)).mean(dim=0).numpy()


def test_every_listed_video_gets_its_views_mean_pool5(setup):
    tmp, _, root, entries, ckpt, summary = setup
    frame = pd.read_parquet(tmp / "test.parquet")
    assert list(frame.columns) == ["video", "label", "class", "feature", "error"]
    assert sorted(frame.video) == sorted([rel for rel, _ in entries] + [EXCLUDED])
    failed = frame[frame.error != ""]
    assert sorted(failed.video) == sorted([CORRUPT, EXCLUDED]) and failed.feature.isna().all()
    assert "not in the store (corrupt)" in failed.set_index("video").error[EXCLUDED]
    assert summary["failed"] == sorted([CORRUPT, EXCLUDED]) and summary["rows"] == len(frame)
    good = frame[frame.error == ""]
    assert np.stack(good.feature).shape == (len(entries) - 1, WIDTH) and np.stack(good.feature).dtype == np.float32
    assert list(good["class"]) == [CLASSES[label] for label in good.label]

    model = load_checkpoint(ckpt)
    for rel, label in entries[:2]:
        row = good.set_index("video").loc[rel]
        assert row.label == label
        expected = pool5_by_hand(model, load_test_view_frames(root / rel, SPEC))
        np.testing.assert_allclose(row.feature, expected, rtol=0, atol=1e-5)


def test_the_classifier_on_a_feature_gives_evaluations_mean_logits(setup, tmp_path):
    # pred is linear, so it commutes with both means: fc(mean pool5) = the mean of the views' logits.
    tmp, store, _, _, ckpt, _ = setup
    evaluate(ckpt, store, SPEC, tmp_path / "scores", tmp_path / "m.json", tmp_path / "p.csv", batch_size=16)
    fc = load_checkpoint(ckpt).head.fc
    frame = pd.read_parquet(tmp / "test.parquet").set_index("video")
    for index in (0, 3):
        with np.load(tmp_path / "scores" / "videos" / f"{index:08d}.npz") as cached:
            video, logits = str(cached["video"]), cached["logits"]
        with torch.no_grad():
            from_feature = fc(torch.tensor(frame.loc[video].feature)).numpy()
        np.testing.assert_allclose(from_feature, logits.mean(axis=0), atol=1e-4)


def test_a_second_run_and_per_clip_rows_come_from_the_cache(setup):
    tmp, store, _, entries, ckpt, first = setup
    assert first["run"]["computed"] == len(entries)
    again = store_features(ckpt, store, SPEC, tmp / "cache", tmp / "again.parquet")
    assert again["run"]["computed"] == 0 and again["run"]["forward_calls"] == 0
    per_clip = store_features(ckpt, store, SPEC, tmp / "cache", tmp / "clips.parquet", per_clip=True)
    assert per_clip["run"]["computed"] == 0
    clips = pd.read_parquet(tmp / "clips.parquet")
    assert list(clips.columns) == ["video", "label", "class", "clip", "feature", "error"]
    videos = pd.read_parquet(tmp / "test.parquet").set_index("video")
    rel = entries[0][0]
    mine = clips[clips.video == rel]
    assert list(mine["clip"]) == list(range(SPEC.num_clips))
    np.testing.assert_allclose(np.stack(mine.feature).mean(axis=0), videos.loc[rel].feature, atol=1e-6)
    assert clips[clips.video == CORRUPT]["clip"].isna().all()

    # A killed run: the videos whose entries are missing are computed again, the others reused.
    (tmp / "cache" / "videos" / "00000002.npz").unlink()
    resumed = store_features(ckpt, store, SPEC, tmp / "cache", tmp / "resumed.parquet")
    assert (resumed["run"]["computed"], resumed["run"]["reused"]) == (1, len(entries) - 1)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp / "resumed.parquet"), pd.read_parquet(tmp / "test.parquet"))


def test_a_training_store_repeats_each_video_but_gets_one_row(tmp_path):
    root = tmp_path / "videos"
    entries, counts = tiny_videos(root, per_class=1)
    repeated = entries + entries[::-1]  # shuffle_rep with 2 repetitions
    write_store(tmp_path / "train.lmdb", repeated, root, "train", CLASSES, {}, counts)
    ckpt = tiny_checkpoint(tmp_path / "model.pt")
    summary = store_features(ckpt, tmp_path / "train.lmdb", SPEC, tmp_path / "cache", tmp_path / "train.parquet")
    frame = pd.read_parquet(tmp_path / "train.parquet")
    assert sorted(frame.video) == sorted(rel for rel, _ in entries)
    assert summary["run"]["computed"] == len(entries)


def test_cli_features_of_files(setup, tmp_path, capsys):
    tmp, _, root, entries, ckpt, _ = setup
    good = [str(root / rel) for rel, _ in entries[:2]]
    out = tmp_path / "files.parquet"
    assert main(["features", *good, str(tmp_path / "missing.avi"), "--checkpoint", str(ckpt), "-o", str(out)]) == 1
    assert "1 of 3 videos have no features" in capsys.readouterr().err
    frame = pd.read_parquet(out)
    assert list(frame.video) == [*good, str(tmp_path / "missing.avi")]
    assert frame.label.isna().all() and frame["class"].isna().all()
    assert frame.error.iloc[2].startswith("no such file")
    # predict's 30 views of the checkpoint: short side = crop = the low end of its training scale jitter
    views = layout_spec(video_length=SPEC.video_length, sample_rate=SPEC.sample_rate, scale=SPEC.scale, views=30)
    expected = pool5_by_hand(load_checkpoint(ckpt), load_test_view_frames(good[0], views))
    np.testing.assert_allclose(frame.feature.iloc[0], expected, rtol=0, atol=1e-5)

    again = file_features([*good, tmp_path / "missing.avi"], ckpt, out)
    assert again["run"] == {"computed": 0, "reused": 3}
    os.utime(good[0], ns=(0, 0))  # a file replaced since: nothing cached is trusted
    assert file_features([*good, tmp_path / "missing.avi"], ckpt, out)["run"]["computed"] == 3


def test_a_features_file_must_be_parquet(setup, tmp_path, capsys):
    _, _, root, entries, ckpt, _ = setup
    assert main(["features", str(root / entries[0][0]), "--checkpoint", str(ckpt), "-o", str(tmp_path / "f.csv")]) == 2
    error = capsys.readouterr().err.strip()
    assert error == f"nlflow features: the features file must end in .parquet, got {tmp_path / 'f.csv'}"
