"""The per-video cache of per-view arrays: evaluation's scores (a killed run resumes where it
stopped, and another aggregation rule, :func:`nlflow.evaluate.run.reaggregate`, never runs the
network again) and ``nlflow features``' embeddings.

Layout (a directory)::

    identity.json         format, checkpoint SHA-256, view spec, video-set fingerprint, classes, precision
    videos/00000012.npz   the arrays, each [V, width] float32 (evaluation: probs and logits [V, C];
                          features: embeddings [V, D]), video, label, error ("" when fine)

A cache whose identity differs from the current run is emptied before use: stale scores are never
mixed in. Damage is recomputed, never fatal: an unreadable ``identity.json`` empties the cache like a
stale one, and an entry that does not load (truncated, a flipped bit: the zip's CRC-32 catches it)
or does not match its index (video, label, shape) is logged once and computed again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np

from nlflow.errors import EvaluationError
from nlflow.evaluate.testset import TestSet
from nlflow.fileio import atomic_path, file_digest, write_json_atomic
from nlflow.video.views import ViewSpec

log = logging.getLogger(__name__)

CACHE_FORMAT = "nlflow-eval-cache"
CACHE_VERSION = 1
SCORE_ARRAYS = ("probs", "logits")


def videos_fingerprint(videos: Sequence[str], labels: Sequence[int]) -> str:
    digest = hashlib.sha256()
    for video, label in zip(videos, labels):
        digest.update(f"{video}\t{label}\n".encode("utf-8"))
    return digest.hexdigest()


@dataclass
class CachedVideo:
    index: int
    video: str
    label: int
    arrays: dict[str, np.ndarray]  # name -> [V, width] float32 ([0, width] when the video failed)
    error: str

    @property
    def probs(self) -> np.ndarray:
        return self.arrays["probs"]

    @property
    def logits(self) -> np.ndarray:
        return self.arrays["logits"]


# identity.json's fields and their JSON types (a changed byte can leave valid JSON behind).
_IDENTITY_FIELDS = {"format": str, "version": int, "checkpoint_sha256": str, "spec": dict, "test_set": dict,
                    "classes": list, "precision": str}
# What a damaged .npz raises inside np.load (measured by truncating and flipping bits of entries).
_UNREADABLE_NPZ = (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError)


def _identity_problem(identity: object) -> str | None:
    """What in a parsed identity.json is not what :func:`cache_identity` makes, or None."""
    if not isinstance(identity, dict):
        return "not a JSON object"
    bad = [key for key, kind in _IDENTITY_FIELDS.items() if not isinstance(identity.get(key), kind)]
    if not bad and not isinstance(identity["test_set"].get("count"), int):
        bad = ["test_set.count"]
    return f"missing or bad {', '.join(bad)}" if bad else None


class ViewCache:
    """The per-video directory described in the module docstring; ``arrays`` names what each entry holds."""

    def __init__(self, path: str | os.PathLike, arrays: Sequence[str] = SCORE_ARRAYS, name: str = "evaluation cache"):
        self.path = Path(path)
        self.arrays = tuple(arrays)
        self.name = name  # what messages call it
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
            raise EvaluationError(f"{self.name} {self.path} exists and is not a directory")
        try:
            current, damage = self.identity(), None
        except EvaluationError as exc:
            current, damage = {}, exc
        if current != identity:
            stale = sorted(self.videos_dir.glob("*.npz")) if self.videos_dir.is_dir() else []
            if damage is not None:
                log.warning("%s; recomputing every video (discarding %d cached)", damage, len(stale))
            elif current is not None:
                log.warning("%s %s was made for another checkpoint/spec/video set; discarding %d videos", self.name, self.path,
                            len(stale))
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
                **{name: item.arrays[name].astype(np.float32) for name in self.arrays},
                video=np.array(item.video),
                label=np.array(item.label),
                error=np.array(item.error),
            )

    def get(self, index: int) -> CachedVideo:
        """Entry ``index`` as stored; raises EvaluationError when its file does not load."""
        path = self._file(index)
        try:
            with np.load(path, allow_pickle=False) as data:
                return CachedVideo(index, str(data["video"]), int(data["label"]),
                                   {name: data[name] for name in self.arrays}, str(data["error"]))
        except _UNREADABLE_NPZ as exc:
            raise EvaluationError(f"{path} is damaged ({type(exc).__name__}: {exc})") from None

    def checked(self, index: int, num_views: int, widths: Mapping[str, int],
                video: tuple[str, int] | None = None) -> CachedVideo:
        """Entry ``index`` if it loads, holds each array of ``widths`` as [num_views, width] ([0,
        width] for a video that failed to decode) and, when given, belongs to ``video`` (name,
        label); else EvaluationError saying what is wrong."""
        item = self.get(index)
        problems = []
        if video is not None and (item.video, item.label) != video:
            problems.append(f"holds {item.video!r} label {item.label}, not {video[0]!r} label {video[1]}")
        for name, width in widths.items():
            values = item.arrays[name]
            expected_shape = (0 if item.error else num_views, width)
            if values.shape != expected_shape or values.dtype != np.float32 or not np.isfinite(values).all():
                problems.append(f"{name} {values.dtype}{list(values.shape)} instead of finite float32{list(expected_shape)}")
        if problems:
            raise EvaluationError(f"{self._file(index)} does not match this test set: {'; '.join(problems)}")
        return item

    def valid_entries(self, videos: Sequence[str], labels: Sequence[int], num_views: int,
                      widths: Mapping[str, int]) -> Iterator[CachedVideo]:
        """The usable cached entries, one at a time (all of them together could fill the memory); each
        damaged or inconsistent one is logged once and deleted, so that it is computed again."""
        for index in sorted(self.done() & set(range(len(videos)))):
            try:
                item = self.checked(index, num_views, widths, (videos[index], labels[index]))
            except EvaluationError as exc:
                log.warning("%s: %s; recomputing %s", self.name, exc, videos[index])
                self._file(index).unlink(missing_ok=True)
                continue
            yield item


def cache_identity(checkpoint: Path, spec: ViewSpec, test_set: TestSet, precision: str,
                   cache_format: str = CACHE_FORMAT) -> dict:
    """What cached arrays are valid for: another checkpoint, view spec, test set or precision empties the cache."""
    return {
        "format": cache_format,
        "version": CACHE_VERSION,
        "checkpoint_sha256": file_digest(checkpoint),
        "spec": spec.to_dict(),
        "test_set": {"count": len(test_set.videos), "videos_sha256": videos_fingerprint(test_set.videos, test_set.labels),
                     "excluded": test_set.excluded},
        "classes": test_set.classes,
        "precision": precision,
    }
