"""Video embeddings from a trained network: the pool5 output of every test view, averaged over the views.

Each video is decoded once into its test views (the same :class:`~nlflow.video.views.ViewSpec` and
code path as evaluation), every view goes through :class:`~nlflow.models.test_mode.ViewEmbeddings`
(views of several videos share a forward pass), and the per-view embeddings [V, D] go into a
:class:`~nlflow.evaluate.view_cache.ViewCache` as soon as a video is done: a killed run resumes
there, and another reduction (per clip instead of per video) reuses it without the network.

Per video, the embedding is the mean over all views; per clip, the mean over that clip's crops.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from tqdm import tqdm

from nlflow.errors import NlflowError, one_line
from nlflow.evaluate.run import compute_store
from nlflow.evaluate.scorer import ViewRunner
from nlflow.evaluate.testset import TestSet, load_model, read_test_set
from nlflow.evaluate.view_cache import CachedVideo, ViewCache, cache_identity
from nlflow.features.table import FeaturesError, features_frame, require_parquet, write_features
from nlflow.models.builder import feature_dim
from nlflow.models.checkpoint import checkpoint_test_scale, read_checkpoint
from nlflow.models.test_mode import ViewEmbeddings
from nlflow.video.views import ViewSpec, layout_spec, load_test_view_frames

log = logging.getLogger(__name__)

CACHE_FORMAT = "nlflow-feature-cache"
ARRAYS = ("embeddings",)
NO_LABEL = -1  # raw files: in the cache's index; missing in the features file


def embedding_rows(item: CachedVideo, num_crops: int, classes: Sequence[str], per_clip: bool) -> list[dict[str, Any]]:
    """The features file's rows of one cached video: one (all views' mean), or one per clip (its crops' mean)."""
    label = None if item.label == NO_LABEL else item.label
    base = {"video": item.video, "label": label, "class": classes[label] if label is not None else None}
    if item.error:
        return [dict(base, clip=None, feature=None, error=item.error)]
    embeddings = item.arrays["embeddings"]
    if not per_clip:
        return [dict(base, feature=embeddings.mean(axis=0, dtype=np.float64).astype(np.float32), error="")]
    clips = embeddings.reshape(-1, num_crops, embeddings.shape[1]).mean(axis=1, dtype=np.float64).astype(np.float32)
    return [dict(base, clip=k, feature=clip, error="") for k, clip in enumerate(clips)]


def _first_of_each_video(videos: Sequence[str]) -> list[int]:
    """A training store lists a video once per shuffle_rep repetition: embed it once."""
    seen: set[str] = set()
    return [index for index, video in enumerate(videos) if not (video in seen or seen.add(video))]


def _runner(model: torch.nn.Module, batch_size: int, device: str | torch.device | None) -> ViewRunner:
    return ViewRunner(ViewEmbeddings(model), batch_size, device)


def store_features(checkpoint: str | os.PathLike, store: str | os.PathLike, spec: ViewSpec,
                   cache_path: str | os.PathLike, out: str | os.PathLike, *, per_clip: bool = False,
                   batch_size: int = 30, num_workers: int = 0, device: str | torch.device | None = None) -> dict:
    """Embed every video listed for an LMDB store (test, val or train) and write ``out`` (parquet).

    Videos listed but left out of the store (undecodable when downscaled) and videos that fail to
    decode now get a row with ``error`` set. Returns a summary: rows, videos, failed, the run record.
    """
    out = require_parquet(out)
    checkpoint = Path(checkpoint)
    model = load_model(checkpoint)
    videos = read_test_set(store, model, checkpoint)
    runner = _runner(model, batch_size, device)
    cache = ViewCache(cache_path, ARRAYS, name="feature cache")
    cache.open(cache_identity(checkpoint, spec, videos, runner.precision, cache_format=CACHE_FORMAT))
    reduce = functools.partial(embedding_rows, num_crops=spec.num_crops, classes=videos.classes, per_clip=per_clip)
    results, run = compute_store(store, spec, videos, runner, cache, num_workers=num_workers,
                                 widths={"embeddings": feature_dim(model.config)}, reduce=reduce,
                                 indices=_first_of_each_video(videos.videos), desc="features")
    rows = [row for video_rows in results for row in video_rows]
    rows += [{"video": e["video"], "label": e["label"], "class": videos.classes[e["label"]], "clip": None,
              "feature": None, "error": f"not in the store ({e['reason']})"} for e in videos.excluded]
    return _write(rows, per_clip, out, run)


def _write(rows: list[dict[str, Any]], per_clip: bool, out: Path, run: dict) -> dict:
    write_features(features_frame(rows, per_clip), out)
    failed = sorted({row["video"] for row in rows if row["error"]})
    for video in failed:
        log.warning("no features for %s", video)
    log.info("features: %d rows for %d videos (%d without features) -> %s", len(rows),
             len({row["video"] for row in rows}), len(failed), out)
    return {"rows": len(rows), "videos": len({row["video"] for row in rows}), "failed": failed, "run": run}


def files_fingerprint(paths: Sequence[Path]) -> str:
    """Names, sizes and modification times: an edited or replaced file invalidates the cache."""
    digest = hashlib.sha256()
    for path in paths:
        stat = path.stat() if path.is_file() else None
        digest.update(f"{path}\t{stat.st_size if stat else -1}\t{stat.st_mtime_ns if stat else -1}\n".encode())
    return digest.hexdigest()


def file_features(paths: Sequence[str | os.PathLike], checkpoint: str | os.PathLike, out: str | os.PathLike, *,
                  per_clip: bool = False, views: int = 30, batch_size: int = 30,
                  cache_path: str | os.PathLike | None = None, device: str | torch.device | None = None) -> dict:
    """Embed raw video files (any container PyAV reads) with predict's views of the checkpoint and
    write ``out``; a file that cannot be read gets a row with ``error``. The per-view embeddings
    are cached in ``cache_path`` (default: ``OUT.views/`` next to ``out``), so a killed run resumes."""
    out = require_parquet(out)
    checkpoint = Path(checkpoint)
    payload = read_checkpoint(checkpoint)
    model = load_model(checkpoint)
    config = model.config
    spec = layout_spec(video_length=config.video_length, sample_rate=config.sample_rate,
                       scale=checkpoint_test_scale(payload.get("extra") or {}), views=views)
    files = [Path(path) for path in paths]
    classes = list(model.classes or [f"class_{i}" for i in range(config.num_classes)])
    videos = TestSet([str(path) for path in files], [NO_LABEL] * len(files), [], classes)
    runner = _runner(model, batch_size, device)
    cache = ViewCache(cache_path or out.with_name(out.name + ".views"), ARRAYS, name="feature cache")
    identity = cache_identity(checkpoint, spec, videos, runner.precision, cache_format=CACHE_FORMAT)
    cache.open(dict(identity, files_sha256=files_fingerprint(files)))
    reduce = functools.partial(embedding_rows, num_crops=spec.num_crops, classes=classes, per_clip=per_clip)
    width = feature_dim(config)
    done = {item.index: reduce(item) for item in cache.valid_entries(videos.videos, videos.labels, spec.num_views,
                                                                      {"embeddings": width})}
    todo = [index for index in range(len(files)) if index not in done]
    log.info("features: %d files, %d cached, %d to compute", len(files), len(done), len(todo))

    def keep(index: int, arrays: dict[str, np.ndarray], error: str) -> None:
        item = CachedVideo(index, videos.videos[index], NO_LABEL, arrays, error)
        cache.put(item)
        done[index] = reduce(item)

    def decoded() -> Iterator[tuple[int, torch.Tensor]]:
        for index in todo:
            try:
                if not files[index].is_file():
                    raise FeaturesError(f"no such file: {files[index]}")
                views = load_test_view_frames(files[index], spec)
            except Exception as exc:  # per-file isolation: one bad file must not stop the others
                message = one_line(exc) if isinstance(exc, NlflowError) else f"{type(exc).__name__}: {one_line(exc)}"
                keep(index, {"embeddings": np.zeros((0, width), np.float32)}, message)
                bar.update(1)
                continue
            yield index, views

    with tqdm(total=len(todo), unit="video", desc="features", disable=None) as bar:
        for index, embeddings in runner.stream(decoded()):
            keep(index, {"embeddings": embeddings}, "")
            bar.update(1)
    rows = [row for index in range(len(files)) for row in done[index]]
    return _write(rows, per_clip, out, {"computed": len(todo), "reused": len(files) - len(todo)})
