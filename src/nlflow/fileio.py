"""Small file helpers shared by every stage: nothing half-written may look finished."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

CHUNK_BYTES = 1 << 20


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
    _remove_dead_temporaries(final, suffix)
    # The writer's pid in the name lets a later writer of the same file recognise a temporary whose
    # writer was killed (SIGKILL runs no cleanup): a stale 25 GB store must not stay on the disk.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.{os.getpid()}.", suffix=suffix + ".tmp", dir=final.parent)
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
def scratch_dir(final: str | os.PathLike) -> Iterator[Path]:
    """A work folder next to ``final``, removed afterwards; one left by a killed process is removed
    by the next one that works on ``final``."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_temporaries(final, ".scratch")
    path = Path(tempfile.mkdtemp(prefix=f".{final.name}.{os.getpid()}.", suffix=".scratch.tmp", dir=final.parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _remove_dead_temporaries(final: Path, suffix: str) -> None:
    """Remove temporaries of ``final`` left by a process that no longer runs."""
    pattern = re.compile(rf"\.{re.escape(final.name)}\.(\d+)\.[a-z0-9_]{{8}}{re.escape(suffix)}\.tmp")
    for candidate in final.parent.iterdir():
        match = pattern.fullmatch(candidate.name)
        if match is None or _process_alive(int(match.group(1))):
            continue
        if candidate.is_dir() and not candidate.is_symlink():
            shutil.rmtree(candidate, ignore_errors=True)
        else:
            candidate.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


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


def hash_stream(handle: BinaryIO, hasher: "hashlib._Hash", on_chunk: Callable[[int], object] | None = None) -> int:
    """Feed the rest of ``handle`` to ``hasher`` chunk by chunk (``on_chunk`` gets each chunk's
    length, e.g. a progress bar's ``update``); returns the number of bytes read."""
    total = 0
    while chunk := handle.read(CHUNK_BYTES):
        hasher.update(chunk)
        total += len(chunk)
        if on_chunk is not None:
            on_chunk(len(chunk))
    return total


def file_digest(path: str | os.PathLike, algorithm: str = "sha256",
                on_chunk: Callable[[int], object] | None = None) -> str:
    """The hex digest of a file's content (``algorithm``: a hashlib name, sha256 or md5)."""
    hasher = hashlib.new(algorithm, usedforsecurity=algorithm != "md5")
    with open(path, "rb") as handle:
        hash_stream(handle, hasher, on_chunk)
    return hasher.hexdigest()


# ------------------------------------------------------------------ reading back what we wrote
# Files nlflow wrote earlier can still be damaged afterwards (a full disk, an interrupted copy, a bad
# sector). The readers check what they can cheaply and end in one line that says how to recover.


def rebuild_hint(path: str | os.PathLike) -> str:
    """How to make a workflow output again: force just its job (the jobs after it re-run on the
    next plain ``snakemake`` because their input is newer)."""
    return f"rebuild it with `snakemake -f {_as_target(path)}` (plus your usual --configfile/--profile)"


def _as_target(path: str | os.PathLike) -> str:
    """``path`` relative to the working directory when it lies below it: the spelling of a Snakemake target."""
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(path)


def read_text_checked(path: str | os.PathLike, error: type[Exception], recover: str) -> str:
    """The text of a UTF-8 file nlflow wrote line by line, or ``error`` saying it is damaged.

    nlflow ends every line it writes with a newline, so text that stops mid-line was cut short; a
    byte that is not UTF-8 was changed on disk. ``recover`` completes the message (e.g.
    :func:`rebuild_hint`). A missing file is the caller's to report (FileNotFoundError passes).
    """
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise error(f"{path}:{line} is damaged (a byte that is not UTF-8 text); {recover}") from None
    if text and not text.endswith("\n"):
        raise error(f"{path} is damaged: it ends in the middle of line {text.count(chr(10)) + 1} (truncated?); {recover}")
    return text


def zip_damage(path: str | os.PathLike) -> str | None:
    """Why the zip file at ``path`` (``torch.save`` and ``np.savez`` write zips) is damaged, or None.

    Reads every member and compares it with the CRC-32 the writer stored: ``torch.load`` does not,
    so a flipped bit in a tensor would otherwise load as a silently different weight. A file that
    is not a zip at all is left to its own loader's error.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            bad_member = archive.testzip()
    except zipfile.BadZipFile as exc:
        return f"not a readable zip ({exc})" if _looks_like_zip(path) else None
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if bad_member is None else f"checksum mismatch in {bad_member}"


def _looks_like_zip(path: str | os.PathLike) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) == b"PK\x03\x04"


def shown_path(path: str | os.PathLike) -> str:
    """A configured path as messages show it: a relative one with the absolute path it resolved to
    (relative paths are resolved against the working directory, as every path in the config)."""
    path = Path(path)
    return str(path) if path.is_absolute() else f"{path} (= {path.absolute()})"
