"""Released models on first use: downloaded once (resumable; the first download's SHA-256 is
recorded and later ones verified) and converted once, into a cache shared by every command.

The cache is ``$NLFLOW_CACHE``, else ``$XDG_CACHE_HOME/nlflow``, else ``~/.cache/nlflow``; each model
keeps its Caffe2 file (``zoo/<name>.pkl``, so a newer nlflow can convert it again offline) and its
converted checkpoint (``zoo/<name>.pt``). ``$NLFLOW_ZOO_MIRROR`` replaces the download address
(``https://dl.fbaipublicfiles.com/video-nonlocal/``) by another URL or a local folder holding the
``<name>.pkl`` files, for machines without internet access.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from nlflow.archives.download import fetch
from nlflow.weights.convert import convert_caffe2_to_checkpoint
from nlflow.weights.zoo import zoo_model

log = logging.getLogger(__name__)

CACHE_ENV = "NLFLOW_CACHE"
MIRROR_ENV = "NLFLOW_ZOO_MIRROR"
LOCK_NAME = "zoo.sha256"


def cache_dir() -> Path:
    """Where released models are kept (see the module docstring)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nlflow"


def zoo_file_url(name: str, mirror: str | None = None) -> str:
    """Where ``<name>.pkl`` is fetched from: the original's address, or ``mirror`` (a URL or a folder)."""
    mirror = mirror if mirror is not None else os.environ.get(MIRROR_ENV)
    if not mirror:
        return zoo_model(name).url
    return f"{mirror.rstrip('/')}/{name}.pkl"


def released_checkpoint(name: str, cache: str | os.PathLike | None = None, mirror: str | None = None) -> Path:
    """The nlflow checkpoint of the released model ``name`` (its 400-class head, named), made on first use."""
    entry = zoo_model(name)  # a one-line error naming the closest names for a typo
    folder = Path(cache) if cache is not None else cache_dir()
    checkpoint = folder / "zoo" / f"{entry.name}.pt"
    if checkpoint.is_file():
        log.info("%s: converted before, %s", entry.name, checkpoint)
        return checkpoint
    pkl = checkpoint.with_suffix(".pkl")
    url = zoo_file_url(entry.name, mirror)
    log.warning("%s: first use, downloading %s (kept in %s)", entry.name, url, pkl.parent)
    fetch([url], pkl, lock_file=pkl.parent / LOCK_NAME)
    convert_caffe2_to_checkpoint(pkl, checkpoint, zoo_name=entry.name, require_head=True)
    return checkpoint
