"""Evaluation, resumable: the original's multi-view test (10 clips x 3 crops, fully convolutional)
over every video of the test store, and the metrics of a finished score cache under another
aggregation rule or view subset.

Per video, every view goes through ``model.forward_map`` (:mod:`nlflow.evaluate.scorer`); its
per-view scores go into the cache (:mod:`nlflow.evaluate.view_cache`) as soon as they are done,
and only the aggregated scores and the per-view hit count stay in memory (:func:`reduce_video`).
"""

from __future__ import annotations

import functools
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence, TypeVar

import numpy as np
import torch
from tqdm import tqdm

from nlflow.errors import EvaluationError, NlflowError, one_line
from nlflow.evaluate.metrics import (
    AGGREGATES,
    MetricsError,
    aggregate_scores,
    clip_hits,
    metrics_from_video_scores,
    view_subset_indices,
)
from nlflow.evaluate.predictions import prediction_rows, write_predictions_csv
from nlflow.evaluate.scorer import ViewRunner, ViewScorer
from nlflow.evaluate.view_cache import (
    CACHE_FORMAT,
    SCORE_ARRAYS,
    CachedVideo,
    ViewCache,
    cache_identity,
    videos_fingerprint,
)
from nlflow.evaluate.testset import TestSet, load_model, read_test_set
from nlflow.fileio import write_json_atomic
from nlflow.store.lmdb_store import LmdbStoreError
from nlflow.video.views import ViewSpec

log = logging.getLogger(__name__)

Result = TypeVar("Result")


def score_widths(num_classes: int) -> dict[str, int]:
    """What each evaluation cache entry holds: probs and logits, [V, C] each."""
    return {name: num_classes for name in SCORE_ARRAYS}


@dataclass(frozen=True)
class VideoResult:
    """What the metrics keep of one test video: its views' scores aggregated (C floats) and how many
    of its views alone were right. Evaluation holds one per test video, never every view's scores
    (30 x C x 2 floats a video, several GB for a Kinetics-size test set)."""

    index: int
    video: str
    label: int
    scores: np.ndarray | None  # [C] float64; None when the video failed to decode
    clip_hits: int
    error: str


def reduce_video(item: CachedVideo, aggregate: str, views: Sequence[int]) -> VideoResult:
    if item.error:
        return VideoResult(item.index, item.video, item.label, None, 0, item.error)
    scores = aggregate_scores(item.probs[None], item.logits[None], aggregate, views)[0]
    return VideoResult(item.index, item.video, item.label, scores, clip_hits(item.probs[None], [item.label], views), "")


class _SafeViews(torch.utils.data.Dataset):
    """TestVideoDataset items as ``(index, views | None, error, store_damage)``: a bad video is
    reported, not fatal. A damaged store is fatal but comes back as a message too (``store_damage``),
    raised by the main process: raised in a worker it would arrive wrapped in the worker's traceback.
    It must not be cached as a failed video, which a rebuilt store would never revisit."""

    def __init__(self, dataset: torch.utils.data.Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        try:
            views, _label, _index = self.dataset[index]
        except LmdbStoreError as exc:
            return index, None, "", str(exc)
        except NlflowError as exc:
            return index, None, one_line(exc), ""
        return index, views, "", ""


def compute_videos(todo: Sequence[int], store: str | os.PathLike, spec: ViewSpec, test_set: TestSet,
                   runner: ViewRunner, cache: ViewCache, *, num_workers: int, widths: Mapping[str, int],
                   reduce: Callable[[CachedVideo], Result], desc: str = "evaluate") -> dict[int, Result]:
    """Decode and run the videos at ``todo`` (DataLoader workers decode, the runner packs views of
    several videos into each forward pass); each is cached as soon as it is done (its arrays named
    by the cache, each [V, widths[name]]), and only what ``reduce`` keeps of it stays in memory."""
    from nlflow.store.torch_datasets import TestVideoDataset

    videos, labels = test_set.videos, test_set.labels
    done: dict[int, Result] = {}
    loader = torch.utils.data.DataLoader(
        _SafeViews(TestVideoDataset(str(store), spec)), batch_size=None, sampler=list(todo),
        num_workers=num_workers, pin_memory=runner.device.type == "cuda",
    )
    empty = {name: np.zeros((0, widths[name]), np.float32) for name in cache.arrays}
    with tqdm(total=len(todo), unit="video", desc=desc, disable=None) as bar:

        def keep(item: CachedVideo) -> None:
            cache.put(item)
            done[item.index] = reduce(item)
            bar.update(1)

        def decoded_views() -> Iterator[tuple[int, torch.Tensor]]:
            for index, views, error, store_damage in loader:
                if store_damage:
                    raise LmdbStoreError(store_damage)
                if error:
                    # Recorded in the cache too, so a resumed run does not retry it.
                    log.warning("video %s failed: %s", videos[index], error)
                    keep(CachedVideo(index, videos[index], labels[index], empty, error))
                else:
                    yield index, views

        for index, *arrays in runner.stream(decoded_views()):
            keep(CachedVideo(index, videos[index], labels[index], dict(zip(cache.arrays, arrays)), ""))
    return done


def _metrics_from_results(results: Sequence[VideoResult], identity: dict, aggregate: str,
                          views: Sequence[int], views_subset) -> tuple[dict, list[list]]:
    spec = ViewSpec.from_dict(identity["spec"])
    classes = identity["classes"]
    excluded = identity["test_set"].get("excluded", [])
    good = [result for result in results if not result.error]
    if not good:
        raise EvaluationError(f"none of the {len(results)} test videos could be evaluated (all failed to decode)")
    scores = np.stack([result.scores for result in good])
    labels = [result.label for result in good]
    # The original divides by every listed test video (TEST.DATASET_SIZE): a video that was left
    # out of the store or failed to decode counts as wrong.
    metrics = metrics_from_video_scores(scores, labels, classes, aggregate, views,
                                        sum(result.clip_hits for result in good),
                                        num_listed=len(results) + len(excluded))
    metrics["views_subset"] = views_subset if views_subset is None or isinstance(views_subset, str) else list(views_subset)
    metrics["spec"] = spec.to_dict()
    metrics["checkpoint_sha256"] = identity["checkpoint_sha256"]
    metrics["failed_videos"] = [{"video": r.video, "label": r.label, "error": r.error} for r in results if r.error]
    metrics["excluded_videos"] = excluded
    rows = prediction_rows([result.video for result in good], labels, scores, classes)
    return metrics, rows


def evaluate(
    checkpoint: str | os.PathLike,
    test_lmdb: str | os.PathLike,
    spec: ViewSpec,
    cache_path: str | os.PathLike,
    metrics_json: str | os.PathLike,
    predictions_csv: str | os.PathLike,
    batch_size: int = 30,
    num_workers: int = 0,
    aggregate: str = "mean_softmax",
    views_subset: str | Sequence[int] | None = None,
    device: str | torch.device | None = None,
    amp: str = "none",
) -> dict:
    """Score every test video with ``spec``'s views, cache per-view scores, write metrics and predictions.

    ``batch_size`` counts views (several videos share a batch when they fit). Returns the metrics
    dict written to ``metrics_json``; its ``run`` entry says how many videos were ``computed`` now
    and how many were ``reused`` from the cache.
    """
    if aggregate not in AGGREGATES:  # checked before hours of GPU time, not after
        raise MetricsError(f"unknown aggregation {aggregate!r}; choose one of {', '.join(AGGREGATES)}")
    views = view_subset_indices(spec.num_clips, spec.num_crops, views_subset)
    checkpoint = Path(checkpoint)
    model = load_model(checkpoint)
    test_set = read_test_set(test_lmdb, model, checkpoint)
    cfg = model.config
    if (cfg.video_length, cfg.sample_rate) != (spec.video_length, spec.sample_rate):
        log.warning("view spec %dx%d differs from the model's training clips %dx%d",
                    spec.video_length, spec.sample_rate, cfg.video_length, cfg.sample_rate)
    scorer = ViewScorer(model, batch_size, device, amp)
    identity = cache_identity(checkpoint, spec, test_set, scorer.precision)
    cache = ViewCache(cache_path)
    cache.open(identity)
    reduce = functools.partial(reduce_video, aggregate=aggregate, views=views)
    results, run = compute_store(test_lmdb, spec, test_set, scorer, cache, num_workers=num_workers,
                                 widths=score_widths(len(test_set.classes)), reduce=reduce)

    # From memory, not read back: what was checked or computed above is what counts.
    metrics, rows = _metrics_from_results(results, identity, aggregate, views, views_subset)
    metrics["checkpoint"] = str(checkpoint)
    metrics["run"] = run
    write_predictions_csv(predictions_csv, rows)
    write_json_atomic(metrics_json, metrics)
    log.info("video top-1 %.4f, top-5 %.4f over all %d listed test videos (%.4f / %.4f over the %d decoded); "
             "clip top-1 %.4f (%s)", metrics["top1"], metrics["top5"], metrics["num_listed"], metrics["top1_decoded"],
             metrics["top5_decoded"], metrics["num_videos"], metrics["clip_top1"], aggregate)
    for video in metrics["excluded_videos"]:
        log.warning("test video %s is not in the store (%s): counted as wrong", video["video"], video["reason"])
    return metrics


def compute_store(store: str | os.PathLike, spec: ViewSpec, test_set: TestSet, runner: ViewRunner, cache: ViewCache,
                  *, num_workers: int, widths: Mapping[str, int], reduce: Callable[[CachedVideo], Result],
                  indices: Sequence[int] | None = None, desc: str = "evaluate") -> tuple[list[Result], dict]:
    """What ``reduce`` keeps of the store's videos at ``indices`` (default: all), in that order (the
    usable cached ones reused, the others computed now), and the ``run`` record of the metrics:
    how many were computed, reused, how fast."""
    indices = list(range(len(test_set.videos))) if indices is None else list(indices)
    wanted = set(indices)
    views = spec.num_views
    done = {item.index: reduce(item) for item in cache.valid_entries(test_set.videos, test_set.labels, views, widths)
            if item.index in wanted}
    todo = [i for i in indices if i not in done]
    log.info("%s: %d videos, %d cached, %d to compute (%s, %d views each, %s)",
             desc, len(indices), len(done), len(todo), runner.device, views, runner.precision)
    start = time.perf_counter()
    reused = len(done)
    if todo:
        done.update(compute_videos(todo, store, spec, test_set, runner, cache, num_workers=num_workers, widths=widths,
                                   reduce=reduce, desc=desc))
    seconds = time.perf_counter() - start
    if todo:
        log.info("computed %d videos in %.1f s (%.2f videos/s), reused %d", len(todo), seconds,
                 len(todo) / max(seconds, 1e-9), reused)
    run = {
        "computed": len(todo),
        "reused": reused,
        "forward_calls": runner.forward_calls,
        "seconds": round(seconds, 3),
        "videos_per_s": round(len(todo) / seconds, 3) if todo and seconds > 0 else None,
        "device": str(runner.device),
        "precision": runner.precision,
    }
    return [done[i] for i in indices], run


_RECOMPUTE = "run evaluate again, it recomputes what is damaged (snakemake --forcerun evaluate)"


def _checked_results(cache: ViewCache, identity: dict, reduce: Callable[[CachedVideo], VideoResult]) -> list[VideoResult]:
    """What ``reduce`` keeps of every entry of a complete cache, each checked against the identity
    (shapes per entry; names and labels all together through the test-set fingerprint), read one
    at a time; one clear error when any is damaged."""
    num_views, widths = ViewSpec.from_dict(identity["spec"]).num_views, score_widths(len(identity["classes"]))
    try:
        results = [reduce(cache.checked(index, num_views, widths)) for index in range(identity["test_set"]["count"])]
    except EvaluationError as exc:
        raise EvaluationError(f"{exc}: {_RECOMPUTE}") from None
    fingerprint = videos_fingerprint([result.video for result in results], [result.label for result in results])
    if fingerprint != identity["test_set"].get("videos_sha256"):
        raise EvaluationError(f"evaluation cache {cache.path}: the entries' videos and labels do not match identity.json: {_RECOMPUTE}")
    return results


def reaggregate(
    cache_path: str | os.PathLike,
    aggregate: str = "mean_softmax",
    views_subset: str | Sequence[int] | None = None,
    metrics_json: str | os.PathLike | None = None,
    predictions_csv: str | os.PathLike | None = None,
) -> dict:
    """Metrics from a finished cache under another aggregation rule or view subset; never runs the network."""
    cache = ViewCache(cache_path)
    try:
        identity = cache.identity()
    except EvaluationError as exc:
        raise EvaluationError(f"{exc}: {_RECOMPUTE}") from None
    if not identity or identity.get("format") != CACHE_FORMAT:
        raise EvaluationError(f"{cache_path} is not an evaluation cache (run evaluate first)")
    count = identity["test_set"]["count"]
    done = cache.done()
    missing = count - len(done & set(range(count)))
    if missing:
        raise EvaluationError(f"evaluation cache {cache_path} lacks {missing} of {count} videos; finish evaluate first")
    spec = ViewSpec.from_dict(identity["spec"])
    views = view_subset_indices(spec.num_clips, spec.num_crops, views_subset)
    results = _checked_results(cache, identity, functools.partial(reduce_video, aggregate=aggregate, views=views))
    metrics, rows = _metrics_from_results(results, identity, aggregate, views, views_subset)
    if predictions_csv is not None:
        write_predictions_csv(predictions_csv, rows)
    if metrics_json is not None:
        write_json_atomic(metrics_json, metrics)
    return metrics
