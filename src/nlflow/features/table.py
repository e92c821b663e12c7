"""The features file: one row per video (or per clip), read back with ``pandas.read_parquet``.

Columns: ``video`` (the store's path, or the file as given), ``label`` (0-based; missing for raw
files), ``class`` (its name), ``clip`` (per-clip files only: clip k of K starts at frame
``int(N / K * k)``), ``feature`` (the embedding, a float32 list of D values: 2048 at full width)
and ``error`` (empty when the video was embedded; else why not, and ``feature`` is missing).
Parquet keeps the vector as one column: ``np.stack(frame.feature)`` is the [rows, D] matrix.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from nlflow.errors import NlflowError
from nlflow.fileio import atomic_path

SUFFIX = ".parquet"
COLUMNS = ("video", "label", "class", "clip", "feature", "error")
INSTALL_HINT = 'pip install -e ".[features]"'


class FeaturesError(NlflowError):
    """Features cannot be extracted or written."""


def require_parquet(path: str | os.PathLike) -> Path:
    """``path`` if it names a parquet file and pyarrow can write it; checked before any video is decoded."""
    path = Path(path)
    if path.suffix != SUFFIX:
        raise FeaturesError(f"the features file must end in {SUFFIX}, got {path}")
    if importlib.util.find_spec("pyarrow") is None:
        raise FeaturesError(f"writing {path} needs pyarrow (the features extra): {INSTALL_HINT}")
    return path


def features_frame(rows: Sequence[dict[str, Any]], per_clip: bool) -> pd.DataFrame:
    """The table of :data:`COLUMNS` (``clip`` only per clip), with nullable labels and clips."""
    columns = [name for name in COLUMNS if per_clip or name != "clip"]
    frame = pd.DataFrame(list(rows), columns=columns)
    frame["label"] = frame["label"].astype("Int64")
    if per_clip:
        frame["clip"] = frame["clip"].astype("Int64")
    return frame


def write_features(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    path = require_parquet(path)
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return path


def read_features(path: str | os.PathLike) -> pd.DataFrame:
    """A features file as written (``pandas.read_parquet`` does the same)."""
    return pd.read_parquet(require_parquet(path))
