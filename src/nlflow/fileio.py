"""Small file helpers shared by every stage: nothing half-written may look finished."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


def _put_in_place(src: Path, final: Path) -> None:
    """Rename ``src`` onto ``final``, replacing whatever is there.

    A file replaces a file in one atomic rename; a folder needs an existing folder removed first,
    and a file or link in its way (e.g. a link into Snakemake's output cache) unlinked.
    """
    if final.is_dir() and not final.is_symlink():
        shutil.rmtree(final)
    elif src.is_dir() and (final.exists() or final.is_symlink()):
        final.unlink()
    os.replace(src, final)


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``final``; rename it onto ``final`` only on success.

    The temporary name lives in the same directory so the rename is atomic on one filesystem.
    Works for files and directories (a directory target is replaced as a whole).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=suffix + ".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    try:
        yield tmp
        _put_in_place(tmp, final)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists() or tmp.is_symlink():
            tmp.unlink()


@contextlib.contextmanager
def resumable_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a work folder next to ``final`` that survives a failure; it becomes ``final`` on success.

    Unlike :func:`atomic_path`, the work folder has a fixed name and is kept when the body raises
    (or the process is killed), so the next attempt finds the work already done. Snakemake deletes
    a job's declared outputs before re-running it; this folder is not one of them.
    """
    final = Path(final)
    work = final.parent / f".{final.name}.partial"
    work.mkdir(parents=True, exist_ok=True)
    yield work
    _put_in_place(work, final)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | os.PathLike, obj: object) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
