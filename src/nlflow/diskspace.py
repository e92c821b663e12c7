"""Disk space: what a stage is about to write checked against the free space, and a full disk (or a
failing one) turned into one line that says where, how much is free and what to do.

A full filesystem surfaces in many shapes: ``OSError`` with ``errno`` ENOSPC from Python's own
writes, PyAV's ``av.error.OSError``, a plain ``OSError`` whose text ends in ``(os error 28)`` (the
``rars`` extractor, written in Rust), and ``lmdb.Error('mdb_txn_commit: Input/output error')``:
LMDB reports a short write as EIO, so an I/O error is reported with the free space, which tells a
full disk from a failing one. :func:`storage_fault` recognises all of them.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from nlflow.errors import NlflowError

log = logging.getLogger(__name__)

# errno -> what it means for the user. EFBIG: a file-size limit (ulimit -f, RLIMIT_FSIZE) or the
# filesystem's largest file; EIO: a failing disk, or a full one as LMDB reports it.
STORAGE_ERRNOS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large (a file-size limit or the filesystem's largest file)",
    errno.EIO: "input/output error",
}
_STRERRORS = {os.strerror(number): number for number in STORAGE_ERRNOS}
_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")
# torch.save's zip writer says only that a write failed or came up short (no errno): the free
# space tells why.
_UNSPECIFIED_WRITE_FAILURE = re.compile(r"PytorchStreamWriter failed writing file|file write failed|"
                                        r"inline_container.cc:\d+\] \. unexpected pos \d+ vs \d+")
# Below this much free space an I/O error is most likely the disk being full.
_NEARLY_FULL_BYTES = 1 << 20


class DiskSpaceError(NlflowError):
    """A stage cannot write its output: the filesystem is (or would become) full, or failed."""


@dataclass(frozen=True)
class StorageFault:
    """A write or read that failed for a reason of the storage, not of the data."""

    errno: int | None  # None: the writer did not say why its write failed
    path: str | None  # the file the failing call named, when the error says

    @property
    def reason(self) -> str:
        return "a write failed" if self.errno is None else STORAGE_ERRNOS[self.errno]


def storage_fault(error: BaseException) -> StorageFault | None:
    """The storage fault behind ``error`` (itself, or an exception it was raised from), or None."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        number = _errno_of(current)
        if number in STORAGE_ERRNOS or (number is None and _UNSPECIFIED_WRITE_FAILURE.search(str(current))):
            filename = getattr(current, "filename", None)
            return StorageFault(number, os.fsdecode(filename) if isinstance(filename, (str, bytes)) else None)
        current = current.__cause__ or current.__context__
    return None


def _errno_of(error: BaseException) -> int | None:
    number = getattr(error, "errno", None)
    if isinstance(number, int):
        return number
    text = str(error)
    match = _RUST_OS_ERROR.search(text)
    if match:
        return int(match.group(1))
    for strerror, code in _STRERRORS.items():
        if text.endswith(strerror):  # lmdb.Error('mdb_txn_commit: Input/output error')
            return code
    return None


def existing_ancestor(path: str | os.PathLike) -> Path:
    """``path`` or its nearest existing parent: where a file about to be written will live."""
    current = Path(os.path.abspath(path))
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def free_bytes(path: str | os.PathLike) -> int:
    """Bytes an unprivileged process can still write on the filesystem that holds (or will hold) ``path``."""
    return shutil.disk_usage(existing_ancestor(path)).free


def format_bytes(count: float) -> str:
    """``count`` bytes for a person: 0 B, 812 KB, 34.8 GB (powers of 1000, like df -H and docs/scale.md)."""
    count = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(count) < 1000:
            return f"{count:.0f} {unit}" if unit == "B" or abs(count) >= 100 else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


def bytes_on_disk(path: str | os.PathLike) -> int:
    """Bytes a file or a folder tree occupies (0 when absent): what deleting it would free."""
    path = Path(path)
    try:
        if path.is_file():
            return path.stat().st_blocks * 512
    except OSError:
        return 0
    total = 0
    for folder, _, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
            except OSError:
                continue
    return total


# The need the running stage announced with check_free_space (one stage per process): the line
# for a full disk repeats it.
_announced: list[tuple[int, str]] = []


def check_free_space(target: str | os.PathLike, need: int, what: str, *, enforce: bool = True) -> None:
    """Stop before writing ``need`` bytes at ``target`` when its filesystem has less free.

    ``what`` says what the bytes are, for the message. ``enforce=False`` (the config's
    ``preflight.check_disk: false``) only warns: the estimate may be too high for your data.
    """
    _announced.append((need, what))
    free = free_bytes(target)
    if need <= free:
        log.info("disk: %s needs about %s at %s; %s free", what, format_bytes(need), target, format_bytes(free))
        return
    message = (
        f"{what} needs about {format_bytes(need)} at {target} but only {format_bytes(free)} is free on "
        f"{mount_point(target)}: free {format_bytes(need - free)} (or point results_dir at a larger disk) "
        "and run the same command again"
    )
    if not enforce:
        log.warning("%s (preflight.check_disk is false: trying anyway)", message)
        return
    raise DiskSpaceError(message + "; set preflight.check_disk: false to try anyway")


def announced_need() -> tuple[int, str] | None:
    """The last need a stage announced in this process, as (bytes, what)."""
    return _announced[-1] if _announced else None


def mount_point(path: str | os.PathLike) -> Path:
    """The mount point of the filesystem holding ``path`` (for the message: which disk to free)."""
    current = existing_ancestor(path)
    while not os.path.ismount(current) and current != current.parent:
        current = current.parent
    return current


def fault_message(fault: StorageFault, output: str | os.PathLike | None) -> str:
    """One line for a storage fault: what failed where, the free space, the stage's need if it said,
    and what to do. ``output`` is the stage's output, the place to report when the error names none."""
    where = fault.path or (os.fspath(output) if output is not None else None)
    shown = where if where is not None else "its output"
    free = free_bytes(where) if where is not None else None
    parts = [f"{fault.reason} at {shown}"]
    if free is not None:
        parts.append(f"{format_bytes(free)} free on {mount_point(where)}")
    need = announced_need()
    if need is not None:
        parts.append(f"{need[1]} needs about {format_bytes(need[0])}")
    if fault.errno in (errno.EIO, None) and (free is None or free > _NEARLY_FULL_BYTES):
        # The free space is measured after the partial output was removed: a store that filled
        # the disk (LMDB says EIO) has freed its space again, so both causes stay possible.
        advice = ("either the disk filled up while writing (the partial output has been removed since) or it is "
                  "failing: check `dmesg` and the disk's health, free space (or point results_dir at a larger disk) "
                  "and run the same command again")
    elif fault.errno == errno.EFBIG:
        advice = "raise the file-size limit (`ulimit -f unlimited`) or use a filesystem that holds larger files, then run the same command again"
    else:
        advice = "free space (or point results_dir at a larger disk) and run the same command again: finished work is kept"
    return "; ".join(parts) + "; " + advice
