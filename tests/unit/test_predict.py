"""predict: the same scores as evaluate, per-file errors, the view layouts and the output formats."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nlflow.demo.dataset import make_class_video, truncate_video
from nlflow.evaluate import ViewScorer, evaluate
from nlflow.models import load_checkpoint, read_checkpoint
from nlflow.predict import (
    Prediction,
    PredictError,
    format_predictions,
    predict_videos,
    score_video,
    spec_from_checkpoint,
)

from helpers.evaluation import CLASSES, SPEC, VIDEO_SIZE, tiny_checkpoint, tiny_test_store


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("predict")
    store, root, entries = tiny_test_store(tmp)
    ckpt = tiny_checkpoint(tmp / "model.pt")
    return tmp, store, root, entries, ckpt


def test_spec_comes_from_the_checkpoint(setup):
    _, _, _, _, ckpt = setup
    payload = read_checkpoint(ckpt)
    assert spec_from_checkpoint(payload, 30) == SPEC.__class__(4, 2, 10, 3, SPEC.scale, SPEC.scale)
    assert (spec_from_checkpoint(payload, 3).num_clips, spec_from_checkpoint(payload, 3).num_crops) == (3, 1)
    assert spec_from_checkpoint(payload, 1).num_views == 1
    bare = dict(payload, extra={})
    assert (spec_from_checkpoint(bare).scale, spec_from_checkpoint(bare).crop_size) == (256, 256)
    trained = dict(payload, extra={"settings": {"scale_range": [128, 160], "crop_size": 112}})
    assert (spec_from_checkpoint(trained).scale, spec_from_checkpoint(trained).crop_size) == (128, 128)
    with pytest.raises(PredictError, match="views"):
        spec_from_checkpoint(payload, 7)


def test_predict_scores_equal_evaluate_scores(setup):
    tmp, store, root, entries, ckpt = setup
    evaluate(ckpt, store, SPEC, tmp / "cache", tmp / "m.json", tmp / "p.csv", batch_size=16)
    scorer = ViewScorer(load_checkpoint(ckpt), batch_size=5)
    for index in (0, 3):
        rel, label = entries[index]
        probs, logits = score_video(root / rel, scorer, SPEC)
        with np.load(tmp / "cache" / "videos" / f"{index:08d}.npz") as cached:
            assert str(cached["video"]) == rel
            np.testing.assert_allclose(probs, cached["probs"], atol=1e-5)
            np.testing.assert_allclose(logits, cached["logits"], atol=1e-4)


def test_aggregate_rule_matches_evaluation(setup):
    tmp, store, root, entries, ckpt = setup
    rel, _ = entries[0]
    spec = spec_from_checkpoint(read_checkpoint(ckpt), 30)  # the views predict uses by default
    evaluate(ckpt, store, spec, tmp / "cache_logits", tmp / "ml.json", tmp / "pl.csv", batch_size=16,
             aggregate="mean_logits")
    with open(tmp / "pl.csv") as handle:
        row = next(line.split(",") for line in handle if line.startswith(rel + ","))
    (by_logits,) = predict_videos([root / rel], ckpt, topk=1, aggregate="mean_logits")
    assert by_logits.labels[0] == int(row[3])
    assert by_logits.top[0][1] == pytest.approx(float(row[5]), abs=1e-5)
    with pytest.raises(PredictError, match="--aggregate"):
        predict_videos([root / rel], ckpt, aggregate="median")


def test_bad_files_get_errors_and_the_others_predictions(setup, tmp_path):
    _, _, root, entries, ckpt = setup
    corrupt = tmp_path / "corrupt.avi"
    make_class_video(corrupt, "Grow", np.random.default_rng(3), num_frames=24, size=VIDEO_SIZE)
    truncate_video(corrupt)
    short = tmp_path / "short.avi"
    make_class_video(short, "Grow", np.random.default_rng(4), num_frames=5, size=VIDEO_SIZE)  # < 4 x 2 frames
    text = tmp_path / "notes.avi"
    text.write_text("not a video at all")
    good = [root / rel for rel, _ in entries[:2]]
    paths = [good[0], corrupt, short, tmp_path / "missing.avi", text, good[1]]

    preds = predict_videos(paths, ckpt, topk=2, views=3)
    # The 5-frame video is shorter than one 4 x 2 clip: its clips wrap around, as in the original.
    assert [p.ok for p in preds] == [True, False, True, False, False, True]
    for p in preds:
        if p.ok:
            assert len(p.top) == 2 and p.num_views == 3
            assert all(name in CLASSES for name, _ in p.top)
            assert p.top[0][1] >= p.top[1][1] and 0 < p.top[0][1] <= 1
        else:
            assert p.error and "\n" not in p.error
    assert [p.video for p in preds] == [str(p) for p in paths]
    assert "missing.avi" in preds[3].error
    assert preds[2].num_views == 3

    lines = format_predictions(preds).splitlines()
    assert lines[0].startswith(str(good[0])) and "(3 views)" in lines[0]
    assert lines[1].lstrip().startswith("1. ")
    assert sum("ERROR" in line for line in lines) == 3
    as_json = json.loads(format_predictions(preds, as_json=True))
    assert [d["error"] is None for d in as_json] == [p.ok for p in preds]
    assert as_json[0]["top"][0]["class"] == preds[0].top[0][0] and as_json[0]["top"][0]["label"] == preds[0].labels[0]


def test_a_30_frame_video_gets_all_30_views(setup, tmp_path):
    _, _, _, _, ckpt = setup
    spec = spec_from_checkpoint(read_checkpoint(ckpt), 30)
    short = tmp_path / "thirty.avi"
    make_class_video(short, "Grow", np.random.default_rng(5), num_frames=30, size=VIDEO_SIZE)
    (pred,) = predict_videos([short], ckpt, views=30)
    assert pred.ok and pred.num_views == 30
    # the same views as evaluation would cut: clip k starts at int(30 / 10 * k) and wraps around
    probs, _ = score_video(short, ViewScorer(load_checkpoint(ckpt), batch_size=30), spec)
    assert probs.shape == (30, len(CLASSES))


def test_view_counts_and_topk(setup):
    _, _, root, entries, ckpt = setup
    path = root / entries[0][0]
    full, single = predict_videos([path, path], ckpt, topk=5, views=30)[0], predict_videos([path], ckpt, views=1)[0]
    assert full.num_views == 30 and single.num_views == 1
    assert len(full.top) == len(CLASSES)  # topk capped at the number of classes
    assert sum(prob for _, prob in full.top) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(PredictError, match="checkpoint not found"):
        predict_videos([path], root / "nope.pt")


def test_one_view_is_said_in_the_singular():
    one = Prediction("a.mp4", [("Clap", 0.9)], [0], num_views=1)
    assert format_predictions([one]).splitlines()[0] == "a.mp4 (1 view):"
