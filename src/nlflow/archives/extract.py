"""Safe, atomic extraction of RAR (RAR4/RAR5, solid, multi-volume), zip and tar archives.

Policy: every member name is checked before anything is written (no absolute paths, drive letters,
``..`` components or paths through a link); links are never created: a link pointing inside the
tree is skipped with a warning, one pointing outside makes the whole archive refused. Extraction
goes into a temporary sibling folder that is renamed onto the target only after every file's size
(and CRC where the format has one) was verified, so a failure never leaves a half-extracted target.
"""

from __future__ import annotations

import gzip
import logging
import os
import posixpath
import re
import stat
import tarfile
import threading
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import rars
from tqdm import tqdm

from nlflow.archives.rar_headers import RAR4_MAGIC, RAR5_MAGIC, RarListing, RarMember, Unlisted, list_rar
from nlflow.diskspace import check_free_space
from nlflow.errors import NlflowError, one_line
from nlflow.fileio import atomic_path

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
_DRIVE_RE = re.compile(r"^[A-Za-z]:")
_NEW_VOLUME_RE = re.compile(r"^(?P<stem>.*\.part)(?P<number>\d+)\.rar$", re.IGNORECASE)


class ExtractError(NlflowError):
    """An archive could not be extracted completely and correctly."""


class UnsafeArchiveError(ExtractError):
    """An archive member would be written outside the target folder (or through a link)."""


class MissingVolumeError(ExtractError):
    """A multi-volume RAR set is incomplete or was not given from its first volume."""


@dataclass(frozen=True)
class ArchiveEntry:
    name: str  # normalised relative POSIX path, checked safe
    kind: str  # "file" | "dir" | "symlink" | "hardlink" | "other"
    size: int = 0
    crc: int | None = None  # CRC-32 of the content where the archive records one
    link_target: str | None = None


@dataclass(frozen=True)
class ExtractResult:
    target: Path
    root: Path  # target / expected_top when that was given, else target
    format: str  # "rar4" | "rar5" | "zip" | "tar"
    files: int
    dirs: int
    bytes: int
    skipped: tuple[str, ...]  # links and special files that were not created
    volumes: tuple[Path, ...]


def extract_archive(
    archive: str | os.PathLike, target_dir: str | os.PathLike, expected_top: str | None = None,
    *, check_disk: bool = True, check_members: Callable[[Sequence[ArchiveEntry]], None] | None = None,
) -> ExtractResult:
    """Extract ``archive`` into ``target_dir`` (replaced as a whole, atomically) and verify it.

    ``expected_top``: every member must live under this top-level folder (e.g. ``"UCF-101"``).
    A multi-volume RAR is given by its first volume; the others must lie next to it.
    Nothing is written when the members' total size does not fit on the target's filesystem
    (``check_disk=False``: a warning, and the extraction is tried).
    ``check_members``: the caller's own rule on the listing (every member, links included), run
    after the safety checks and before anything is written; it raises to refuse the archive.
    """
    archive = Path(archive)
    target_dir = Path(target_dir)
    if not archive.is_file():
        raise ExtractError(f"archive {archive} does not exist")
    kind = detect_format(archive)
    try:
        if kind in ("rar4", "rar5"):
            volumes = rar_volume_set(archive)
            listing = _list_rar(volumes)
        elif kind == "zip":
            volumes = [archive]
            listing = _list_zip(archive)
        else:
            volumes = [archive]
            listing = _list_tar(archive)
        plan, skipped = plan_extraction(listing, expected_top)
        if check_members is not None:
            check_members(listing)
        check_free_space(target_dir, sum(entry.size for entry in plan if entry.kind == "file"),
                         f"extracting {archive.name}", enforce=check_disk)
        with atomic_path(target_dir) as staging:
            staging.mkdir()
            if kind in ("rar4", "rar5"):
                _extract_rar(volumes, plan, staging, archive.name)
                _remove_unwanted(staging, listing, plan)
                verify_tree(staging, plan, check_crc=True)
            else:
                source = _ZipSource(archive) if kind == "zip" else _TarSource(archive)
                _extract_with(source, plan, staging, archive.name)
                verify_tree(staging, plan, check_crc=False)  # zipfile checked CRCs while reading
    except rars.UnsafeArchivePath as exc:
        raise UnsafeArchiveError(f"{archive.name}: refused by the RAR reader: {one_line(exc)}") from exc
    except (rars.Error, zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as exc:
        raise ExtractError(f"{archive.name}: the archive is damaged or unreadable ({one_line(exc)})") from exc
    files = [entry for entry in plan if entry.kind == "file"]
    for name in skipped:
        log.warning("%s: skipped %s (links and special files are not created)", archive.name, name)
    log.info("%s: extracted %d files (%d bytes) into %s", archive.name, len(files), sum(e.size for e in files), target_dir)
    return ExtractResult(
        target=target_dir,
        root=target_dir / expected_top if expected_top else target_dir,
        format=kind,
        files=len(files),
        dirs=sum(1 for entry in plan if entry.kind == "dir"),
        bytes=sum(entry.size for entry in files),
        skipped=tuple(skipped),
        volumes=tuple(volumes),
    )


def detect_format(path: str | os.PathLike) -> str:
    """``rar4``, ``rar5``, ``zip`` or ``tar`` (plain or compressed), from the content."""
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head.startswith(RAR5_MAGIC):
        return "rar5"
    if head.startswith(RAR4_MAGIC):
        return "rar4"
    if zipfile.is_zipfile(path):
        return "zip"
    if tarfile.is_tarfile(path):
        return "tar"
    raise ExtractError(f"{path.name}: not a RAR, zip or tar archive (first bytes {head!r})")


# ----------------------------------------------------------------------------------------------
# names and the plan


def safe_member_path(raw_name: str) -> str:
    """Normalise a member name to a relative POSIX path; raise when it could escape the target."""
    if "\x00" in raw_name:
        raise UnsafeArchiveError(f"refusing member {raw_name!r}: NUL in name")
    name = raw_name.replace("\\", "/")  # RAR4 and Windows zips use backslashes
    if name.startswith("/") or _DRIVE_RE.match(name):
        raise UnsafeArchiveError(f"refusing member {raw_name!r}: absolute path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"refusing member {raw_name!r}: '..' in path")
    if not parts:
        raise UnsafeArchiveError(f"refusing member {raw_name!r}: empty name")
    return "/".join(parts)


def _link_escapes(entry: ArchiveEntry) -> bool:
    """Would following the link leave the tree? Hard links name an archive path, symlinks a relative one."""
    target = (entry.link_target or "").replace("\\", "/")
    if not target or target.startswith("/") or _DRIVE_RE.match(target):
        return True
    base = "" if entry.kind == "hardlink" else posixpath.dirname(entry.name)
    resolved = posixpath.normpath(posixpath.join(base, target))
    return resolved == ".." or resolved.startswith("../")


def plan_extraction(
    entries: Sequence[ArchiveEntry], expected_top: str | None = None
) -> tuple[list[ArchiveEntry], list[str]]:
    """Check all entries; return (files and folders to write, names of skipped links/specials)."""
    if not entries:
        raise ExtractError("the archive is empty")
    links = {entry.name for entry in entries if entry.kind in ("symlink", "hardlink")}
    plan: list[ArchiveEntry] = []
    skipped: list[str] = []
    seen_files: set[str] = set()
    for entry in entries:
        parents = entry.name.split("/")[:-1]
        for depth in range(1, len(parents) + 1):
            if "/".join(parents[:depth]) in links:
                raise UnsafeArchiveError(f"refusing member {entry.name!r}: its path goes through a link")
        if expected_top is not None and entry.name.split("/")[0] != expected_top:
            raise ExtractError(
                f"member {entry.name!r} is not inside {expected_top}/: is this the right archive?"
            )
        if entry.kind in ("symlink", "hardlink"):
            if _link_escapes(entry):
                raise UnsafeArchiveError(
                    f"refusing archive: link {entry.name!r} -> {entry.link_target!r} points outside the target"
                )
            skipped.append(entry.name)
        elif entry.kind == "other":
            skipped.append(entry.name)
        else:
            if entry.kind == "file":
                if entry.name in seen_files:
                    raise ExtractError(f"member {entry.name!r} appears twice; refusing to guess which one is right")
                seen_files.add(entry.name)
            plan.append(entry)
    file_names = seen_files
    for entry in plan:
        if entry.kind == "dir" and entry.name in file_names:
            raise ExtractError(f"member {entry.name!r} is both a file and a folder")
    if expected_top is not None and not file_names:
        raise ExtractError(f"the archive holds no files under {expected_top}/")
    return plan, skipped


def verify_tree(root: Path, plan: Sequence[ArchiveEntry], check_crc: bool) -> None:
    """Every planned file is a plain file of the right size (and CRC); nothing else is there."""
    expected: set[str] = set()
    for entry in plan:
        parts = entry.name.split("/")
        expected.update("/".join(parts[:depth]) for depth in range(1, len(parts) + 1))
        path = root / entry.name
        try:
            info = path.lstat()
        except FileNotFoundError:
            raise ExtractError(f"member {entry.name!r} was not extracted") from None
        if entry.kind == "dir":
            if not stat.S_ISDIR(info.st_mode):
                raise ExtractError(f"member {entry.name!r} should be a folder")
            continue
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            raise UnsafeArchiveError(f"member {entry.name!r} was not extracted as a plain file")
        if info.st_size != entry.size:
            raise ExtractError(f"member {entry.name!r}: {info.st_size} bytes extracted, archive says {entry.size}")
        if check_crc and entry.crc is not None and _crc32_of(path) != entry.crc:
            raise ExtractError(f"member {entry.name!r}: CRC mismatch after extraction")
    for folder, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(folder, name)
            relative = path.relative_to(root).as_posix()
            if path.is_symlink() or relative not in expected:
                raise UnsafeArchiveError(f"unexpected item {relative!r} appeared during extraction")


def _crc32_of(path: Path) -> int:
    crc = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            crc = zlib.crc32(chunk, crc)
    return crc


# ----------------------------------------------------------------------------------------------
# RAR: volumes, listing, extraction through the rars package


def rar_volume_set(first: str | os.PathLike) -> list[Path]:
    """All volumes of the set that starts at ``first`` (just ``[first]`` for a single archive).

    Fails loudly when ``first`` is not the first volume or a later volume is missing, because the
    decoder would otherwise stop at the last volume it has and silently truncate.
    """
    first = Path(first)
    listing = _rar_listing(first)
    infos, is_volume, has_next = listing.members, listing.is_volume, listing.has_next_volume
    if infos and infos[0].split_before:
        raise MissingVolumeError(f"{first.name} is not the first volume of its set; give the first one (part1)")
    if not is_volume and not (infos and infos[-1].split_after):
        return [first]
    volumes = [first]
    current_infos = infos
    for _ in range(100_000):  # a bound; real sets have at most a few thousand volumes
        needs_more = has_next if has_next is not None else bool(current_infos and current_infos[-1].split_after)
        if not needs_more:
            return volumes
        successor = _next_volume_name(volumes[-1], first)
        if successor is None or not successor.is_file():
            shown = successor.name if successor is not None else "the next volume"
            raise MissingVolumeError(
                f"{first.name} is volume {len(volumes)} of a multi-volume set but {shown} is missing; "
                "put all volumes next to the first one"
            )
        volumes.append(successor)
        listing = _rar_listing(successor)
        current_infos, has_next = listing.members, listing.has_next_volume
    raise MissingVolumeError(f"{first.name}: too many volumes")


def _next_volume_name(current: Path, first: Path) -> Path | None:
    match = _NEW_VOLUME_RE.match(first.name)
    if match:  # name.part01.rar, name.part02.rar, ...
        width = len(match.group("number"))
        current_number = int(_NEW_VOLUME_RE.match(current.name).group("number"))  # type: ignore[union-attr]
        return current.with_name(f"{match.group('stem')}{current_number + 1:0{width}d}.rar")
    # old style: name.rar, name.r00, name.r01, ... name.r99, name.s00, ...
    suffix = current.suffix.lower()
    if suffix == ".rar":
        return current.with_suffix(".r00")
    if len(suffix) == 4 and suffix[2:].isdigit():
        number = int(suffix[2:]) + 1
        letter = suffix[1]
        if number == 100:
            letter, number = chr(ord(letter) + 1), 0
        return current.with_suffix(f".{letter}{number:02d}")
    return None


def _rar_listing(path: Path) -> RarListing:
    """The members and volume flags of one RAR file, from its headers alone (memory does not grow
    with the archive). Archives whose headers are not read there are listed by rars, which reads
    the whole file and tells nothing of volumes: the members' split flags must then show them."""
    try:
        return list_rar(path)
    except Unlisted as reason:
        log.debug("%s: listing with rars (%s)", path.name, reason)
    with rars.RarFile(str(path)) as archive:
        members = [_member_from_rars(archive, info) for info in archive.infolist()]
    return RarListing(members, is_volume=False, has_next_volume=None)


def _member_from_rars(archive: rars.RarFile, info) -> RarMember:
    attributes = info.file_attr or 0
    unix_link = stat.S_ISLNK(attributes) and info.host_os in (1, 3)  # RAR5 Unix = 1, RAR4 Unix = 3
    try:
        target = None if info.is_dir() else archive.readlink(info)
    except rars.UnsupportedRarFeature:
        target = None
    link = target is not None or unix_link
    crc = info.crc
    # RAR5 may store a BLAKE2 hash instead of a CRC: rars then reports 0, which is no CRC at all.
    if crc == 0 and info.file_size:
        crc = None
    return RarMember(
        info.filename, info.is_dir(), info.file_size, crc, info.host_os, attributes, "symlink" if link else None,
        target.decode("utf-8", "surrogateescape") if target is not None else ("" if link else None),
        split_before=info.is_split_before, split_after=info.is_split_after,
    )


def _list_rar(volumes: Sequence[Path]) -> list[ArchiveEntry]:
    """One entry per member; members split across volumes are merged (size and CRC from the last piece)."""
    merged: dict[str, ArchiveEntry] = {}
    order: list[str] = []
    for volume in volumes:
        for member in _rar_listing(volume).members:
            entry = _rar_entry(member)
            if member.split_before and entry.name in merged:
                merged[entry.name] = entry  # the continuation carries the whole file's CRC at the end
                continue
            if member.split_before:
                raise MissingVolumeError(f"{volume.name}: member {entry.name!r} continues from a volume not given")
            if entry.name in merged and entry.kind == "file":
                raise ExtractError(f"member {entry.name!r} appears twice; refusing to guess which one is right")
            if entry.name not in merged:
                order.append(entry.name)
            merged[entry.name] = entry
    return [merged[name] for name in order]


def _rar_entry(member: RarMember) -> ArchiveEntry:
    name = safe_member_path(member.name)
    if member.is_dir:
        return ArchiveEntry(name, "dir")
    if member.link_kind is not None:
        return ArchiveEntry(name, member.link_kind, link_target=member.link_target or "")
    return ArchiveEntry(name, "file", size=member.size, crc=member.crc)


def _extract_rar(volumes: Sequence[Path], plan: Sequence[ArchiveEntry], staging: Path, label: str) -> None:
    files = [entry for entry in plan if entry.kind == "file"]
    # rars.extract_volumes streams from disk (RarFile.extractall first reads the whole archive into
    # memory) and decodes a solid archive in one pass; the links it writes are removed afterwards
    # (_remove_unwanted), and plan_extraction already refused any member whose path goes through one.
    _run_watched(lambda: rars.extract_volumes([str(v) for v in volumes], str(staging)), staging, files, label)


def _remove_unwanted(staging: Path, listing: Sequence[ArchiveEntry], plan: Sequence[ArchiveEntry]) -> None:
    planned = {entry.name for entry in plan}
    for entry in listing:
        if entry.name not in planned:
            path = staging / entry.name
            if path.is_file() or path.is_symlink():
                path.unlink()


def _run_watched(work: Callable[[], object], staging: Path, files: Sequence[ArchiveEntry], label: str) -> None:
    """Run a native extraction call while a thread advances the progress bar from the files on disk.

    rars releases the GIL and writes members in archive order, so a finished member is one whose
    file has reached its full size.
    """
    total = sum(entry.size for entry in files)
    done = threading.Event()
    with tqdm(total=total, desc=f"extract {label}", unit="B", unit_scale=True, disable=None, leave=False) as bar:
        def watch() -> None:
            index = 0
            while not done.wait(0.5):
                while index < len(files):
                    try:
                        size = (staging / files[index].name).stat().st_size
                    except OSError:
                        break
                    if size != files[index].size:
                        break
                    bar.update(size)
                    index += 1

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            work()
        finally:
            done.set()
            watcher.join(timeout=10)
        bar.update(total - bar.n)


# ----------------------------------------------------------------------------------------------
# zip and tar: our own extraction loop (their readers check CRC / sizes as we stream)


class _ZipSource:
    def __init__(self, path: Path) -> None:
        self.path = path

    def open(self):
        self.archive = zipfile.ZipFile(self.path)
        self.members = {safe_member_path(info.filename): info for info in self.archive.infolist()}
        return self

    def close(self) -> None:
        self.archive.close()

    def stream(self, name: str):
        return self.archive.open(self.members[name])


class _TarSource:
    def __init__(self, path: Path) -> None:
        self.path = path

    def open(self):
        self.archive = tarfile.open(self.path, "r:*")
        self.members = {safe_member_path(member.name): member for member in self.archive.getmembers()
                        if not _is_tar_root(member)}
        return self

    def close(self) -> None:
        self.archive.close()

    def stream(self, name: str):
        handle = self.archive.extractfile(self.members[name])
        if handle is None:
            raise ExtractError(f"member {name!r} has no data")
        return handle


def _list_zip(path: Path) -> list[ArchiveEntry]:
    entries = []
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            name = safe_member_path(info.filename)
            # Unix type bits live in the high half of external_attr; writers often leave them 0.
            file_type = stat.S_IFMT(info.external_attr >> 16) if info.create_system == 3 else 0
            if info.is_dir():
                entries.append(ArchiveEntry(name, "dir"))
            elif file_type == stat.S_IFLNK:
                target = archive.read(info).decode("utf-8", "surrogateescape")
                entries.append(ArchiveEntry(name, "symlink", link_target=target))
            elif file_type not in (0, stat.S_IFREG):
                entries.append(ArchiveEntry(name, "other"))
            else:
                entries.append(ArchiveEntry(name, "file", size=info.file_size, crc=info.CRC))
    return entries


def _list_tar(path: Path) -> list[ArchiveEntry]:
    entries = []
    with tarfile.open(path, "r:*") as archive:
        for member in archive.getmembers():
            if _is_tar_root(member):
                continue
            name = safe_member_path(member.name)
            if member.isdir():
                entries.append(ArchiveEntry(name, "dir"))
            elif member.issym():
                entries.append(ArchiveEntry(name, "symlink", link_target=member.linkname))
            elif member.islnk():
                entries.append(ArchiveEntry(name, "hardlink", link_target=member.linkname))
            elif member.isreg():
                entries.append(ArchiveEntry(name, "file", size=member.size))
            else:
                entries.append(ArchiveEntry(name, "other"))
    return entries


def _is_tar_root(member: tarfile.TarInfo) -> bool:
    """The folder a tarball was made from (``tar -C dir .`` stores it as ``.`` or ``./``)."""
    return member.isdir() and member.name in (".", "./")


def _extract_with(source_archive, plan: Iterable[ArchiveEntry], staging: Path, label: str) -> None:
    plan = list(plan)
    total = sum(entry.size for entry in plan if entry.kind == "file")
    source_archive.open()
    try:
        with tqdm(total=total, desc=f"extract {label}", unit="B", unit_scale=True, disable=None, leave=False) as bar:
            for entry in plan:
                path = staging / entry.name
                if entry.kind == "dir":
                    path.mkdir(parents=True, exist_ok=True)
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                written = 0
                with source_archive.stream(entry.name) as source, open(path, "xb") as out:
                    while chunk := source.read(CHUNK_BYTES):
                        out.write(chunk)
                        written += len(chunk)
                        bar.update(len(chunk))
                if written != entry.size:
                    raise ExtractError(f"member {entry.name!r}: {written} bytes read, archive says {entry.size}")
    finally:
        source_archive.close()


# ----------------------------------------------------------------------------------------------
# one member of a tar archive


def extract_tar_member(archive: str | os.PathLike, member: str, dest: str | os.PathLike) -> int:
    """Write the regular file ``member`` of a tar archive (found at the top or below one top
    folder, e.g. ``pretrained_model/``) to ``dest``, atomically; returns its size.

    Every name in the archive is checked as for a whole extraction (no absolute paths, no ``..``);
    a member that is a link or a special file, or named twice, is refused; only ``dest`` is written.
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise ExtractError(f"archive {archive} does not exist")
    try:
        with tarfile.open(archive, "r:*") as tar:
            found = []
            for info in tar.getmembers():
                name = safe_member_path(info.name)
                if name == member or (name.endswith("/" + member) and name.count("/") == member.count("/") + 1):
                    found.append((name, info))
            if not found:
                raise ExtractError(f"{archive.name} holds no {member} (nor <folder>/{member})")
            if len(found) > 1:
                raise ExtractError(f"{archive.name} holds {member} twice ({', '.join(name for name, _ in found)}): "
                                   "refusing to guess which one is right")
            name, info = found[0]
            if not info.isreg():
                raise UnsafeArchiveError(f"{archive.name}: {name} is not a regular file (a link or a special file)")
            with tar.extractfile(info) as source, atomic_path(dest) as tmp, open(tmp, "xb") as out:
                written = 0
                while chunk := source.read(CHUNK_BYTES):
                    out.write(chunk)
                    written += len(chunk)
                if written != info.size:
                    raise ExtractError(f"{archive.name}: {name}: {written} bytes read, archive says {info.size}")
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise ExtractError(f"{archive.name}: the archive is damaged or unreadable ({one_line(exc)})") from exc
    log.info("%s: %s (%d bytes) -> %s", archive.name, name, written, dest)
    return written
