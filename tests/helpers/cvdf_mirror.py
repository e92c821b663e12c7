"""A small CVDF mirror of Kinetics-400 for the download tests: the demo's CVDF-layout copy of
empty files (nlflow.demo.kinetics_copy) packed into .tar.gz parts, with the mirror's path lists and
annotations, as files for helpers.http_server (paths as served, contents as bytes)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from nlflow.demo.kinetics_copy import write_cvdf_copy

TRAIN_ROWS = 60
VAL_ROWS = 40


def tar_gz(members: dict[str, bytes], *, root_entry: bool = False) -> bytes:
    """A .tar.gz of plain files (``root_entry``: with the ``./`` entry `tar -C dir .` writes first)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        if root_entry:
            info = tarfile.TarInfo("./")
            info.type = tarfile.DIRTYPE
            archive.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def tar_with(info: tarfile.TarInfo) -> bytes:
    """A .tar.gz of one member as given (a link, a folder, a name with '..'); a file holds zeros."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.addfile(info, io.BytesIO(bytes(info.size)) if info.isreg() else None)
    return buffer.getvalue()


def mirror_files(source: Path, base: str, train_parts: int = 2) -> dict[str, bytes]:
    """Write the demo's copy to ``source`` and return the mirror serving it under ``base``: train in
    ``train_parts`` parts, val in one (with a ``./`` root entry, as `tar -C val .` makes)."""
    write_cvdf_copy(source, TRAIN_ROWS, VAL_ROWS)
    files: dict[str, bytes] = {}
    for split, parts in (("train", train_parts), ("val", 1)):
        videos = sorted(path.name for path in (source / split).iterdir())
        urls = []
        for number in range(parts):
            prefix = "./" if split == "val" else ""
            members = {prefix + name: (source / split / name).read_bytes() for name in videos[number::parts]}
            files[f"/{split}/part_{number}.tar.gz"] = tar_gz(members, root_entry=split == "val")
            urls.append(f"{base}/{split}/part_{number}.tar.gz")
        files[f"/{split}/k400_{split}_path.txt"] = "".join(url + "\n" for url in urls).encode()
        files[f"/annotations/{split}.csv"] = (source / "annotations" / f"{split}.csv").read_bytes()
    return files
