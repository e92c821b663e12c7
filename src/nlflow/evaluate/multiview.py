"""Multi-view test evaluation (the original's 10 clips x 3 crops, fully convolutional), resumable.

Per video, every view goes through ``model.forward_map``; per view we keep the softmax over classes
averaged over the output positions (what the original averaged) and the position-averaged logits.
These per-view scores are cached per video, so a killed run resumes where it stopped and other
aggregation rules (:func:`reaggregate`) never run the network again.

Cache layout (a directory)::

    identity.json         checkpoint SHA-256, view spec, test-set fingerprint, classes, precision
    videos/00000012.npz   probs [V, C], logits [V, C] (float32), video, label, error ("" when fine)

A cache whose identity differs from the current run is emptied before use: stale scores are never
mixed in. Damage is recomputed, never fatal: an unreadable ``identity.json`` empties the cache like a
stale one, and an entry that does not load (truncated, a flipped bit: the zip's CRC-32 catches it)
or does not match its index (video, label, shape) is logged once and computed again.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import logging
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from nlflow.device_memory import MemoryProbe, OutOfMemoryError
from nlflow.errors import NlflowError
from nlflow.evaluate.metrics import (
    AGGREGATES,
    MetricsError,
    aggregate_scores,
    clip_hits,
    metrics_from_video_scores,
    top_k,
    view_subset_indices,
)
from nlflow.fileio import atomic_path, write_json_atomic
from nlflow.store.lmdb_store import LmdbStoreError
from nlflow.video.views import ViewSpec, to_network_input

log = logging.getLogger(__name__)

CACHE_FORMAT = "nlflow-eval-cache"
TEST_AMP_MODES = ("none", "bf16")
CACHE_VERSION = 1


class EvaluationError(NlflowError):
    """Evaluation cannot run or its cache cannot be used."""


# ------------------------------------------------------------------ views -> per-view scores


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def logit_map_to_view_scores(logit_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[N, C, t, h, w] logits -> (probs [N, C], logits [N, C]) in float32.

    probs = softmax over classes at every position, then the mean over positions (the original's
    fully-convolutional test); logits = the position-averaged logits.
    """
    flat = logit_map.float().flatten(2)
    return torch.softmax(flat, dim=1).mean(dim=2), flat.mean(dim=2)


class ViewScorer:
    """Runs a network over test views in batches of ``batch_size`` views: the one code path from
    views to per-view scores, shared by :func:`evaluate` and :mod:`nlflow.predict`.

    ``amp``: "none" (float32, the original's precision and the default) or "bf16" (autocast, on any
    device; the scores are computed in float32 from the bf16 logits, and differ from float32 ones
    by more than float noise). ``forward_calls`` counts network invocations (tests use it to prove
    a resumed run computes nothing).
    """

    def __init__(self, model: nn.Module, batch_size: int = 30, device: torch.device | str | None = None, amp: str = "none"):
        if batch_size < 1:
            raise EvaluationError(f"batch_size must be at least 1, got {batch_size}")
        if amp not in TEST_AMP_MODES:
            raise EvaluationError(f"test precision must be one of {', '.join(TEST_AMP_MODES)}, got {amp!r}")
        self.device = torch.device(device) if device is not None else default_device()
        self.model = model.to(self.device).eval()
        self.batch_size = int(batch_size)
        self.amp = amp == "bf16"
        self.forward_calls = 0
        self.memory = MemoryProbe.start(self.device)

    @property
    def precision(self) -> str:
        return "bf16-autocast" if self.amp else "fp32"

    @torch.inference_mode()
    def _forward(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        batch = to_network_input(batch, self.device)
        self.forward_calls += 1
        try:
            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                logit_map = self.model.forward_map(batch)
        except OutOfMemoryError as exc:
            raise EvaluationError(self._out_of_memory_message(len(batch), exc)) from None
        probs, logits = logit_map_to_view_scores(logit_map)
        return probs.cpu().numpy(), logits.cpu().numpy()

    def _out_of_memory_message(self, views: int, error: BaseException) -> str:
        head = f"{self.device.type.upper()} out of memory with {views} views per forward pass (test.batch_size {self.batch_size})"
        fits = self.memory.fitting_batch(views, error)
        if fits is None or fits >= views:
            return f"{head}: set test.batch_size lower"
        if fits < 1:
            return f"{head}: not even one view fits next to the weights; use a GPU with more memory"
        return f"{head}: set test.batch_size to {fits} or lower (estimated from the memory this pass needed)"

    def score(self, views: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Views of one video -> (probs [V, C], logits [V, C]).

        Views are uint8 frames [V, T, S, S, 3] (normalised on the device) or network input [V, 3, T, S, S].
        """
        ((_, probs, logits),) = self.stream([(None, views)])
        return probs, logits

    def stream(self, items: Iterable[tuple[object, torch.Tensor]]) -> Iterator[tuple[object, np.ndarray, np.ndarray]]:
        """Score ``(key, views)`` pairs, packing views of several videos into each forward batch.

        Yields ``(key, probs [V, C], logits [V, C])`` in input order as soon as a video's views are done.
        """
        pending: list[torch.Tensor] = []  # views not yet forwarded, in order
        pending_count = 0
        owners: list[list] = []  # [key, views still to come back, list of result parts]

        def run(count: int) -> Iterator[tuple[object, np.ndarray, np.ndarray]]:
            nonlocal pending_count
            parts, needed = [], count
            while needed:  # slices, not copies, of the pending views; only the batch is joined
                head = pending[0]
                parts.append(head[:needed])
                if len(head) > needed:
                    pending[0] = head[needed:]
                    needed = 0
                else:
                    pending.pop(0)
                    needed -= len(head)
            pending_count -= count
            probs, logits = self._forward(torch.cat(parts) if len(parts) > 1 else parts[0])
            row = 0
            while row < len(probs):
                owner = owners[0]
                take = min(owner[1], len(probs) - row)
                owner[2].append((probs[row : row + take], logits[row : row + take]))
                owner[1] -= take
                row += take
                if owner[1] == 0:
                    owners.pop(0)
                    yield owner[0], np.concatenate([p for p, _ in owner[2]]), np.concatenate([l for _, l in owner[2]])

        for key, views in items:
            if views.ndim != 5 or len(views) == 0:
                raise EvaluationError(f"views must be uint8 [V, T, S, S, 3] or float [V, 3, T, S, S] with V >= 1, got {tuple(views.shape)}")
            owners.append([key, len(views), []])
            pending.append(views)
            pending_count += len(views)
            while pending_count >= self.batch_size:
                yield from run(self.batch_size)
        while pending_count:
            yield from run(min(pending_count, self.batch_size))


# ------------------------------------------------------------------ the cache


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _videos_fingerprint(videos: Sequence[str], labels: Sequence[int]) -> str:
    digest = hashlib.sha256()
    for video, label in zip(videos, labels):
        digest.update(f"{video}\t{label}\n".encode("utf-8"))
    return digest.hexdigest()


@dataclass
class CachedVideo:
    index: int
    video: str
    label: int
    probs: np.ndarray  # [V, C] float32 ([0, C] when the video failed)
    logits: np.ndarray
    error: str


# identity.json's fields and their JSON types (a changed byte can leave valid JSON behind).
_IDENTITY_FIELDS = {"format": str, "version": int, "checkpoint_sha256": str, "spec": dict, "test_set": dict,
                    "classes": list, "precision": str}
# What a damaged .npz raises inside np.load (measured by truncating and flipping bits of entries).
_UNREADABLE_NPZ = (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError)


def _identity_problem(identity: object) -> str | None:
    """What in a parsed identity.json is not what :func:`evaluate` writes, or None."""
    if not isinstance(identity, dict):
        return "not a JSON object"
    bad = [key for key, kind in _IDENTITY_FIELDS.items() if not isinstance(identity.get(key), kind)]
    if not bad and not isinstance(identity["test_set"].get("count"), int):
        bad = ["test_set.count"]
    return f"missing or bad {', '.join(bad)}" if bad else None


class ScoreCache:
    """The per-video score directory described in the module docstring."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.videos_dir = self.path / "videos"
        self.identity_path = self.path / "identity.json"

    def identity(self) -> dict | None:
        """What the cache was made for; None when nothing was; EvaluationError when identity.json is damaged."""
        try:
            identity = json.loads(self.identity_path.read_bytes().decode("utf-8"))
        except FileNotFoundError:
            return None
        except ValueError as exc:  # JSON or UTF-8 errors: a truncated or changed file
            raise EvaluationError(f"{self.identity_path} is damaged ({type(exc).__name__}: {exc})") from None
        problem = _identity_problem(identity)
        if problem:
            raise EvaluationError(f"{self.identity_path} is damaged ({problem})")
        return identity

    def open(self, identity: dict) -> None:
        """Use the cache for ``identity``; a cache made for anything else, or of unknown identity, is emptied first."""
        if self.path.exists() and not self.path.is_dir():
            raise EvaluationError(f"evaluation cache {self.path} exists and is not a directory")
        try:
            current, damage = self.identity(), None
        except EvaluationError as exc:
            current, damage = {}, exc
        if current != identity:
            stale = sorted(self.videos_dir.glob("*.npz")) if self.videos_dir.is_dir() else []
            if damage is not None:
                log.warning("%s; recomputing every video (discarding %d cached)", damage, len(stale))
            elif current is not None:
                log.warning("evaluation cache %s was made for another checkpoint/spec/test set; discarding %d videos", self.path, len(stale))
            for path in stale:
                path.unlink()
            self.path.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.identity_path, identity)
        self.videos_dir.mkdir(parents=True, exist_ok=True)
        for leftover in self.videos_dir.glob(".*.tmp"):  # a write cut short by a kill
            leftover.unlink()

    def _file(self, index: int) -> Path:
        return self.videos_dir / f"{index:08d}.npz"

    def done(self) -> set[int]:
        if not self.videos_dir.is_dir():
            return set()
        return {int(p.stem) for p in self.videos_dir.glob("*.npz") if p.stem.isdigit()}

    def put(self, item: CachedVideo) -> None:
        with atomic_path(self._file(item.index)) as tmp, open(tmp, "wb") as f:
            np.savez(
                f,
                probs=item.probs.astype(np.float32),
                logits=item.logits.astype(np.float32),
                video=np.array(item.video),
                label=np.array(item.label),
                error=np.array(item.error),
            )

    def get(self, index: int) -> CachedVideo:
        """Entry ``index`` as stored; raises EvaluationError when its file does not load."""
        path = self._file(index)
        try:
            with np.load(path, allow_pickle=False) as data:
                return CachedVideo(
                    index, str(data["video"]), int(data["label"]), data["probs"], data["logits"], str(data["error"])
                )
        except _UNREADABLE_NPZ as exc:
            raise EvaluationError(f"{path} is damaged ({type(exc).__name__}: {exc})") from None

    def checked(self, index: int, shape: tuple[int, int], video: tuple[str, int] | None = None) -> CachedVideo:
        """Entry ``index`` if it loads, has scores of ``shape`` ([V, C]; [0, C] for a video that
        failed to decode) and, when given, belongs to ``video`` (name, label); else EvaluationError
        saying what is wrong."""
        item = self.get(index)
        expected_shape = (0, shape[1]) if item.error else shape
        problems = []
        if video is not None and (item.video, item.label) != video:
            problems.append(f"holds {item.video!r} label {item.label}, not {video[0]!r} label {video[1]}")
        for name, scores in (("probs", item.probs), ("logits", item.logits)):
            if scores.shape != expected_shape or scores.dtype != np.float32 or not np.isfinite(scores).all():
                problems.append(f"{name} {scores.dtype}{list(scores.shape)} instead of finite float32{list(expected_shape)}")
        if problems:
            raise EvaluationError(f"{self._file(index)} does not match this test set: {'; '.join(problems)}")
        return item

    def valid_entries(self, videos: Sequence[str], labels: Sequence[int], shape: tuple[int, int]) -> Iterator[CachedVideo]:
        """The usable cached entries, one at a time (all of them together could fill the memory); each
        damaged or inconsistent one is logged once and deleted, so that it is computed again."""
        for index in sorted(self.done() & set(range(len(videos)))):
            try:
                item = self.checked(index, shape, (videos[index], labels[index]))
            except EvaluationError as exc:
                log.warning("evaluation cache: %s; recomputing %s", exc, videos[index])
                self._file(index).unlink(missing_ok=True)
                continue
            yield item


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


# ------------------------------------------------------------------ evaluation


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
            return index, None, str(exc).splitlines()[0] if str(exc) else type(exc).__name__, ""
        return index, views, "", ""


def load_model(checkpoint: str | os.PathLike) -> nn.Module:
    """The network of an nlflow checkpoint, with a one-line error for a missing or foreign file."""
    from nlflow.models import load_checkpoint

    path = Path(checkpoint)
    if not path.is_file():
        raise EvaluationError(f"checkpoint not found: {path}")
    model = load_checkpoint(path)  # raises CheckpointError (an NlflowError) on a bad file
    if not hasattr(model, "forward_map"):
        raise EvaluationError(f"{path}: the model has no forward_map (not a fully-convolutional nlflow network)")
    return model


def _check_classes(model: nn.Module, store_classes: list[str], checkpoint: Path) -> list[str]:
    num_classes = model.config.num_classes
    model_classes = list(getattr(model, "classes", None) or [])
    if model_classes and store_classes and model_classes != store_classes:
        differ = [(a, b) for a, b in zip(model_classes, store_classes) if a != b] or [(len(model_classes), len(store_classes))]
        raise EvaluationError(
            f"{checkpoint} was trained on other classes than the test set (first difference: {differ[0][0]!r} vs {differ[0][1]!r})"
        )
    classes = model_classes or store_classes
    if len(classes) != num_classes:
        raise EvaluationError(f"the model has {num_classes} outputs but the test set has {len(classes)} classes")
    return classes


def _prediction_rows(
    videos: Sequence[str], labels: Sequence[int], scores: np.ndarray, classes: Sequence[str]
) -> list[list]:
    rows = []
    best = top_k(scores, 5)
    for video, label, row_scores, top in zip(videos, labels, scores, best):
        predicted = int(top[0])
        rows.append(
            [
                video,
                int(label),
                classes[int(label)],
                predicted,
                classes[predicted],
                f"{float(row_scores[predicted]):.6f}",
                " ".join(str(int(c)) for c in top),
                "|".join(classes[int(c)] for c in top),  # "|": a class name may contain spaces
            ]
        )
    return rows


PREDICTION_COLUMNS = ["video", "label", "label_name", "predicted", "predicted_name", "probability", "top5", "top5_names"]


def write_predictions_csv(path: str | os.PathLike, rows: Sequence[Sequence]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(PREDICTION_COLUMNS)
        writer.writerows(rows)


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
    rows = _prediction_rows([result.video for result in good], labels, scores, classes)
    return metrics, rows


@dataclass(frozen=True)
class TestSet:
    """What evaluation scores: the stored videos in order, the listed ones left out of the store,
    and the class names (checked against the network's)."""

    __test__ = False  # not a pytest test class, despite the name

    videos: list[str]
    labels: list[int]
    excluded: list[dict]  # {"video", "label", "reason"}: listed, not in the store, counted as wrong
    classes: list[str]


def read_test_set(test_lmdb: str | os.PathLike, model: nn.Module, checkpoint: Path) -> TestSet:
    from nlflow.store.lmdb_store import LmdbReader

    reader = LmdbReader(test_lmdb)
    entries = reader.entries()  # headers only: embedded records carry the whole file
    return TestSet(
        videos=[video for video, _ in entries],
        labels=[label for _, label in entries],
        excluded=[{"video": video, "label": label, "reason": reason} for video, label, reason in reader.excluded],
        classes=_check_classes(model, reader.classes, checkpoint),
    )


def cache_identity(checkpoint: Path, spec: ViewSpec, test_set: TestSet, precision: str) -> dict:
    """What cached scores are valid for: another checkpoint, view spec, test set or precision empties the cache."""
    return {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "checkpoint_sha256": file_sha256(checkpoint),
        "spec": spec.to_dict(),
        "test_set": {"count": len(test_set.videos), "videos_sha256": _videos_fingerprint(test_set.videos, test_set.labels),
                     "excluded": test_set.excluded},
        "classes": test_set.classes,
        "precision": precision,
    }


def score_videos(todo: Sequence[int], test_lmdb: str | os.PathLike, spec: ViewSpec, test_set: TestSet,
                 scorer: ViewScorer, cache: ScoreCache, num_workers: int,
                 reduce: Callable[[CachedVideo], VideoResult]) -> dict[int, VideoResult]:
    """Decode and score the videos at ``todo`` (DataLoader workers decode, the scorer packs views of
    several videos into each forward pass); each is cached as soon as it is done, and only what
    ``reduce`` keeps of it stays in memory."""
    from nlflow.store.torch_datasets import TestVideoDataset

    videos, labels = test_set.videos, test_set.labels
    scored: dict[int, VideoResult] = {}
    loader = torch.utils.data.DataLoader(
        _SafeViews(TestVideoDataset(str(test_lmdb), spec)), batch_size=None, sampler=list(todo),
        num_workers=num_workers, pin_memory=scorer.device.type == "cuda",
    )
    empty = np.zeros((0, len(test_set.classes)), np.float32)
    with tqdm(total=len(todo), unit="video", desc="evaluate", disable=None) as bar:

        def keep(item: CachedVideo) -> None:
            cache.put(item)
            scored[item.index] = reduce(item)
            bar.update(1)

        def decoded_views() -> Iterator[tuple[int, torch.Tensor]]:
            for index, views, error, store_damage in loader:
                if store_damage:
                    raise LmdbStoreError(store_damage)
                if error:
                    # Recorded in the cache too, so a resumed run does not retry it.
                    log.warning("test video %s failed: %s", videos[index], error)
                    keep(CachedVideo(index, videos[index], labels[index], empty, empty, error))
                else:
                    yield index, views

        for index, probs, logits in scorer.stream(decoded_views()):
            keep(CachedVideo(index, videos[index], labels[index], probs, logits, ""))
    return scored


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
    reduce = functools.partial(reduce_video, aggregate=aggregate, views=views)
    checkpoint = Path(checkpoint)
    model = load_model(checkpoint)
    test_set = read_test_set(test_lmdb, model, checkpoint)
    cfg = model.config
    if (cfg.video_length, cfg.sample_rate) != (spec.video_length, spec.sample_rate):
        log.warning("view spec %dx%d differs from the model's training clips %dx%d",
                    spec.video_length, spec.sample_rate, cfg.video_length, cfg.sample_rate)
    scorer = ViewScorer(model, batch_size, device, amp)
    identity = cache_identity(checkpoint, spec, test_set, scorer.precision)
    cache = ScoreCache(cache_path)
    cache.open(identity)
    shape = (spec.num_views, len(test_set.classes))
    scored = {item.index: reduce(item) for item in cache.valid_entries(test_set.videos, test_set.labels, shape)}
    todo = [i for i in range(len(test_set.videos)) if i not in scored]
    log.info("evaluating %d test videos: %d cached, %d to compute (%s, %d views each, %s)",
             len(test_set.videos), len(scored), len(todo), scorer.device, spec.num_views, scorer.precision)

    start = time.perf_counter()
    reused = len(scored)
    if todo:
        scored.update(score_videos(todo, test_lmdb, spec, test_set, scorer, cache, num_workers, reduce))
    seconds = time.perf_counter() - start
    if todo:
        log.info("computed %d videos in %.1f s (%.2f videos/s), reused %d", len(todo), seconds,
                 len(todo) / max(seconds, 1e-9), reused)

    # From memory, not read back: what was checked or computed above is what counts.
    metrics, rows = _metrics_from_results([scored[i] for i in range(len(test_set.videos))], identity, aggregate,
                                          views, views_subset)
    metrics["checkpoint"] = str(checkpoint)
    metrics["run"] = {
        "computed": len(todo),
        "reused": reused,
        "forward_calls": scorer.forward_calls,
        "seconds": round(seconds, 3),
        "videos_per_s": round(len(todo) / seconds, 3) if todo and seconds > 0 else None,
        "device": str(scorer.device),
        "precision": scorer.precision,
    }
    write_predictions_csv(predictions_csv, rows)
    write_json_atomic(metrics_json, metrics)
    log.info("video top-1 %.4f, top-5 %.4f over all %d listed test videos (%.4f / %.4f over the %d decoded); "
             "clip top-1 %.4f (%s)", metrics["top1"], metrics["top5"], metrics["num_listed"], metrics["top1_decoded"],
             metrics["top5_decoded"], metrics["num_videos"], metrics["clip_top1"], aggregate)
    for video in metrics["excluded_videos"]:
        log.warning("test video %s is not in the store (%s): counted as wrong", video["video"], video["reason"])
    return metrics


_RECOMPUTE = "run evaluate again, it recomputes what is damaged (snakemake --forcerun evaluate)"


def _checked_results(cache: ScoreCache, identity: dict, reduce: Callable[[CachedVideo], VideoResult]) -> list[VideoResult]:
    """What ``reduce`` keeps of every entry of a complete cache, each checked against the identity
    (shapes per entry; names and labels all together through the test-set fingerprint), read one
    at a time; one clear error when any is damaged."""
    shape = (ViewSpec.from_dict(identity["spec"]).num_views, len(identity["classes"]))
    try:
        results = [reduce(cache.checked(index, shape)) for index in range(identity["test_set"]["count"])]
    except EvaluationError as exc:
        raise EvaluationError(f"{exc}: {_RECOMPUTE}") from None
    fingerprint = _videos_fingerprint([result.video for result in results], [result.label for result in results])
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
    cache = ScoreCache(cache_path)
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
