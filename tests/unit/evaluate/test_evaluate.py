"""Multi-view evaluation on a tiny real network and a tiny real test LMDB of PyAV-made videos."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nlflow.errors import NlflowError
from nlflow.evaluate import EvaluationError, ViewScorer, evaluate, reaggregate
from nlflow.evaluate.metrics import aggregate_scores, topk_accuracy
from nlflow.models import ModelConfig, build_model
from nlflow.video.views import ViewSpec

from helpers.evaluation import CLASSES, SPEC, tiny_checkpoint, tiny_test_store


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mv")
    store, root, entries = tiny_test_store(tmp, corrupt=True)
    ckpt = tiny_checkpoint(tmp / "model.pt")
    return tmp, store, root, entries, ckpt


def _run(tmp: Path, store: Path, ckpt: Path, name: str = "run", **kwargs) -> dict:
    return evaluate(
        ckpt, store, SPEC, tmp / "cache", tmp / name / "metrics.json", tmp / name / "predictions.csv",
        batch_size=kwargs.pop("batch_size", 16), **kwargs,
    )


def _cache_state(cache: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted((cache / "videos").glob("*.npz"))}


def test_evaluate_metrics_cache_and_resume(setup):
    tmp, store, root, entries, ckpt = setup
    first = _run(tmp, store, ckpt, "first")
    good = len(entries) - 1
    assert first["run"]["computed"] == len(entries) and first["run"]["reused"] == 0
    assert first["run"]["forward_calls"] >= good * SPEC.num_views // 16
    assert first["num_videos"] == good and first["num_views"] == SPEC.num_views
    assert [f["video"] for f in first["failed_videos"]] == ["MoveUp/v_MoveUp_g02_c01.avi"]
    assert first["excluded_videos"] == [{"video": "Grow/v_Grow_g03_c01.avi", "label": 0, "reason": "corrupt"}]
    for key in ("top1", "top5", "top1_decoded", "mean_class_accuracy", "clip_top1"):
        assert 0.0 <= first[key] <= 1.0
    # Every listed video is in the denominator (the original's TEST.DATASET_SIZE): the failed and
    # the excluded one count as wrong; the decoded-only figures stand beside them.
    listed = len(entries) + 1
    assert first["num_listed"] == listed
    assert first["top5_decoded"] == 1.0 and first["top5"] == pytest.approx(good / listed)  # 3 classes
    assert first["top1"] == pytest.approx(first["top1_decoded"] * good / listed)
    assert first["aggregate"] == "mean_softmax" and first["classes"] == CLASSES
    assert np.asarray(first["confusion_matrix"]).sum() == good
    on_disk = json.loads((tmp / "first" / "metrics.json").read_text())
    assert on_disk["top1"] == first["top1"] and on_disk["per_class"] == first["per_class"]
    with open(tmp / "first" / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == good
    assert {r["video"] for r in rows} == {rel for rel, _ in entries[:-1]}
    for r in rows:
        assert r["predicted_name"] == CLASSES[int(r["predicted"])] and r["top5"].split()[0] == r["predicted"]
        assert 0 < float(r["probability"]) <= 1
    assert np.mean([r["predicted"] == r["label"] for r in rows]) == pytest.approx(first["top1_decoded"])

    # A second run reuses every cached video: no forward pass, cache files untouched, same numbers.
    before = _cache_state(tmp / "cache")
    second = _run(tmp, store, ckpt, "second")
    assert (second["run"]["computed"], second["run"]["reused"], second["run"]["forward_calls"]) == (0, len(entries), 0)
    assert _cache_state(tmp / "cache") == before
    for key in ("top1", "top5", "clip_top1", "confusion_matrix"):
        assert second[key] == first[key]

    # A killed run: only the missing videos are computed, with a worker process decoding.
    for name in sorted(before)[:2]:
        (tmp / "cache" / "videos" / name).unlink()
    third = _run(tmp, store, ckpt, "third", num_workers=1, batch_size=7)
    assert (third["run"]["computed"], third["run"]["reused"]) == (2, len(entries) - 2)
    assert third["top1"] == first["top1"] and third["clip_top1"] == pytest.approx(first["clip_top1"])


def test_stale_cache_is_discarded(setup, tmp_path):
    _, store, _, entries, ckpt = setup
    _run(tmp_path, store, ckpt, "a")
    other = tiny_checkpoint(tmp_path / "other.pt", seed=1)
    again = _run(tmp_path, store, other, "b")
    assert again["run"]["computed"] == len(entries) and again["run"]["reused"] == 0
    # Another view spec is stale too.
    spec = ViewSpec(4, 2, num_clips=2, num_crops=1, scale=40, crop_size=32)
    m = evaluate(other, store, spec, tmp_path / "cache", tmp_path / "c.json", tmp_path / "c.csv", batch_size=8)
    assert m["run"]["computed"] == len(entries) and m["num_views"] == 2


def test_reaggregate_matches_the_cache(setup):
    tmp, store, _, entries, ckpt = setup
    base = _run(tmp, store, ckpt, "base")
    same = reaggregate(tmp / "cache", "mean_softmax")
    for key in ("top1", "top5", "clip_top1", "mean_class_accuracy", "confusion_matrix", "num_videos"):
        assert same[key] == base[key]

    cached = [np.load(p) for p in sorted((tmp / "cache" / "videos").glob("*.npz"))]
    cached = [c for c in cached if not str(c["error"])]
    probs = np.stack([c["probs"] for c in cached])
    logits = np.stack([c["logits"] for c in cached])
    labels = np.array([int(c["label"]) for c in cached])
    assert probs.shape == (len(entries) - 1, SPEC.num_views, len(CLASSES))
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-5)
    for rule in ("mean_logits", "max_softmax"):
        m = reaggregate(tmp / "cache", rule, metrics_json=tmp / f"{rule}.json")
        expected = topk_accuracy(aggregate_scores(probs, logits, rule), labels, 1)
        assert m["top1_decoded"] == pytest.approx(expected) and m["aggregate"] == rule
        assert m["top1"] == pytest.approx(expected * len(labels) / m["num_listed"])
        assert json.loads((tmp / f"{rule}.json").read_text())["aggregate"] == rule
    centre = reaggregate(tmp / "cache", "mean_softmax", "center_crop")
    assert centre["num_views"] == SPEC.num_clips and centre["views"] == [1, 4, 7, 10]
    expected = topk_accuracy(probs[:, 1::3].mean(axis=1), labels, 1)
    assert centre["top1_decoded"] == pytest.approx(expected)
    assert centre["clip_top1"] == pytest.approx(float((probs[:, 1::3].argmax(-1) == labels[:, None]).mean()))
    with pytest.raises(NlflowError):
        reaggregate(tmp / "cache", "median")


def test_reaggregate_refuses_an_incomplete_cache(setup, tmp_path):
    _, store, _, _, ckpt = setup
    _run(tmp_path, store, ckpt)
    next(iter((tmp_path / "cache" / "videos").glob("*.npz"))).unlink()
    with pytest.raises(EvaluationError, match="lacks 1"):
        reaggregate(tmp_path / "cache")
    with pytest.raises(EvaluationError, match="not an evaluation cache"):
        reaggregate(tmp_path / "nothing")


def test_bad_checkpoints_give_clear_errors(setup, tmp_path):
    _, store, _, _, _ = setup
    with pytest.raises(EvaluationError, match="checkpoint not found"):
        evaluate(tmp_path / "missing.pt", store, SPEC, tmp_path / "c", tmp_path / "m.json", tmp_path / "p.csv")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(NlflowError, match="junk.pt"):
        evaluate(junk, store, SPEC, tmp_path / "c", tmp_path / "m.json", tmp_path / "p.csv")
    assert not (tmp_path / "m.json").exists()
    with pytest.raises(NlflowError, match="unknown aggregation"):  # refused before any work
        evaluate(junk, store, SPEC, tmp_path / "c", tmp_path / "m.json", tmp_path / "p.csv", aggregate="median")


def test_scorer_batches_across_videos_without_changing_scores():
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=3, width=4, video_length=4, sample_rate=2))
    videos = [torch.randn(n, 3, 4, 32, 32) for n in (5, 2, 9, 1)]
    one_by_one = ViewScorer(model, batch_size=1)
    reference = [one_by_one.score(v) for v in videos]
    assert one_by_one.forward_calls == sum(len(v) for v in videos)
    packed = ViewScorer(model, batch_size=4)
    results = list(packed.stream(enumerate(videos)))
    assert packed.forward_calls == 5  # ceil(17 / 4): batches span video boundaries
    assert [key for key, _, _ in results] == [0, 1, 2, 3]
    for (key, probs, logits), (ref_probs, ref_logits) in zip(results, reference):
        assert probs.shape == (len(videos[key]), 3)
        np.testing.assert_allclose(probs, ref_probs, atol=1e-5)
        np.testing.assert_allclose(logits, ref_logits, atol=1e-4)


def _synthetic_cache(path: Path, videos: int, classes: int = 101, views: int = 30) -> None:
    from nlflow.evaluate.view_cache import CACHE_FORMAT, CACHE_VERSION, CachedVideo, ViewCache, videos_fingerprint

    rng = np.random.default_rng(0)
    names, labels = [f"c/v{i:05d}.avi" for i in range(videos)], [i % classes for i in range(videos)]
    spec = ViewSpec(video_length=8, sample_rate=8, num_clips=views // 3, num_crops=3, scale=16, crop_size=16)
    cache = ViewCache(path)
    cache.open({"format": CACHE_FORMAT, "version": CACHE_VERSION, "checkpoint_sha256": "0" * 64,
                "spec": spec.to_dict(), "classes": [f"k{c}" for c in range(classes)], "precision": "fp32",
                "test_set": {"count": videos, "videos_sha256": videos_fingerprint(names, labels), "excluded": []}})
    for index, (name, label) in enumerate(zip(names, labels)):
        logits = rng.normal(size=(views, classes)).astype(np.float32)
        probs = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)
        cache.put(CachedVideo(index, name, label, {"probs": probs, "logits": logits}, ""))


def test_metrics_keep_a_few_floats_per_video_not_every_views_scores(tmp_path):
    # 30 views x 101 classes x (softmax + logits) is 24 KB a video in float32; the metrics step once
    # held that and float64 copies of it for every test video at once (143 KB a video, measured
    # by benchmarks/bench_eval_memory.py): half a GB for UCF-101's test list, GBs for Kinetics'.
    import tracemalloc

    peaks = {}
    for videos in (40, 400):
        _synthetic_cache(tmp_path / f"cache{videos}", videos)
        tracemalloc.start()
        reaggregate(tmp_path / f"cache{videos}", "mean_softmax")
        peaks[videos] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert (peaks[400] - peaks[40]) / 360 < 8 * 1024
