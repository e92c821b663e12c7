"""A real small filesystem for full-disk tests: a tmpfs mounted for the test (root only; CI runs as
root), filled up to a chosen free space by a file that is deleted again to "free space"."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

PAGE = 4096


class SmallDisk:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler.bin"

    def free(self) -> int:
        return shutil.disk_usage(self.path).free

    def fill(self, leave: int) -> None:
        """Take space until about ``leave`` bytes are free (tmpfs counts whole pages)."""
        self.free_up()
        size = max(0, self.free() - leave)
        with open(self.filler, "wb") as handle:
            handle.truncate(0)
            block = b"\0" * (1 << 20)
            while size > 0:
                handle.write(block[: min(size, len(block))])
                size -= len(block)

    def free_up(self) -> None:
        self.filler.unlink(missing_ok=True)

    def resize(self, size: int) -> None:
        """Grow (or shrink) the filesystem in place, as an administrator would."""
        _run(["mount", "-o", f"remount,size={size}", str(self.path)])


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{' '.join(command)}: {result.stderr.strip()}")


@contextlib.contextmanager
def small_disk(path: Path, size: int) -> Iterator[SmallDisk]:
    """A tmpfs of ``size`` bytes at ``path``; skips the test where mounting is impossible."""
    if os.geteuid() != 0:
        pytest.skip("a small filesystem for full-disk tests needs root to mount a tmpfs (CI runs as root)")
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                            capture_output=True, text=True)
    if result.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield SmallDisk(path)
    finally:
        subprocess.run(["umount", "--lazy", str(path)], capture_output=True)


def leftovers(folder: Path) -> list[str]:
    """Hidden temporaries (``.<name>.<pid>.<random>.tmp``, ``*.part``) below ``folder``."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name.endswith((".tmp", ".part")))
