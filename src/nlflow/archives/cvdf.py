"""Kinetics-400 from the Common Visual Data Foundation mirror (``dataset.download: cvdf``).

The mirror publishes, per split, a list of ``.tar.gz`` parts (one URL a line), the split's
annotation CSV, and no checksums. For one split, :func:`download_split` fetches the list and the
annotations, then each part through :func:`nlflow.archives.download.fetch` (resumable ``.part``,
retries, stall timeout, mirrors), extracts it safely into the copy's flat ``<split>/`` folder and
deletes the tarball (unless kept). Its bookkeeping lives in the copy, ``cvdf_download/<split>/``:

- ``<part>.done``: the part is extracted; a later run neither fetches nor extracts it again, so a
  killed run resumes at the part it was on (and within that part, at the byte it had reached);
- ``manifest.tsv``: each file's size and SHA-256 as first fetched. The mirror publishes no
  checksum, so this is a record, not a lock: a re-fetched file that differs is logged, not refused.

A part's members must be plain files with flat ``.mp4`` names (at the top of the tarball or under a
folder named after the split); anything else (a link, a sub-folder, another kind of file, an
absolute path or ``..``) refuses the whole part before anything of it is written.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import urllib.parse
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from nlflow.archives.download import DownloadError, fetch
from nlflow.archives.extract import ArchiveEntry, ExtractError, UnsafeArchiveError, extract_archive
from nlflow.errors import NlflowError
from nlflow.fileio import read_text_checked, write_text_atomic

log = logging.getLogger(__name__)

CVDF_BASE_URL = "https://s3.amazonaws.com/kinetics/400"
SPLITS = ("train", "val")  # what nlflow reads; the mirror's test split has no labels and is not fetched
BOOKKEEPING = "cvdf_download"
MANIFEST = "manifest.tsv"
_MANIFEST_HEADER = "file\tsize\tsha256\tsource\n"
# A user's report (cvdfoundation/kinetics-dataset issue #15, 2022-04; not verified here): the three
# splits with the replacement set are 436 GB as .tar.gz and 443 GB extracted, 241,190 train,
# 19,882 val and 38,686 test videos.
REPORTED_TARBALL_BYTES = 436e9
REPORTED_EXTRACTED_BYTES = 443e9
REPORTED_VIDEOS = {"train": 241_190, "val": 19_882, "test": 38_686}


class CvdfError(NlflowError):
    """The CVDF mirror's files could not be fetched or are not what the mirror's layout promises."""


def path_list_url(base: str, split: str) -> str:
    return f"{base.rstrip('/')}/{split}/k400_{split}_path.txt"


def annotations_url(base: str, split: str) -> str:
    return f"{base.rstrip('/')}/annotations/{split}.csv"


def mirror_urls(url: str, bases: Sequence[str]) -> list[str]:
    """``url`` (a line of a path list) at every base in turn, when it lies under one of them or
    under the CVDF mirror's own base (where the published lists point); else only where it points."""
    for known in (*bases, CVDF_BASE_URL):
        prefix = known.rstrip("/") + "/"
        if url.startswith(prefix):
            relative = url[len(prefix):]
            return [f"{base.rstrip('/')}/{relative}" for base in bases]
    return [url]


def read_path_list(path: str | os.PathLike) -> list[str]:
    """The part URLs of a path list, in order; every line must name a distinct ``.tar.gz`` file."""
    path = Path(path)
    recover = f"delete {path} to fetch the list again"
    urls: list[str] = []
    names: dict[str, int] = {}
    for number, line in enumerate(read_text_checked(path, CvdfError, recover).splitlines(), start=1):
        url = line.strip()
        if not url:
            continue
        name = part_name(url)
        if not name.endswith(".tar.gz") or "/" in name or name.startswith("."):
            raise CvdfError(f"{path}:{number}: {url!r:.200} is not the URL of a .tar.gz part; {recover}")
        if name in names:
            raise CvdfError(f"{path}:{number}: part {name} is listed twice (first at line {names[name]}); {recover}")
        names[name] = number
        urls.append(url)
    if not urls:
        raise CvdfError(f"{path} lists no parts; {recover}")
    return urls


def part_name(url: str) -> str:
    return urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])


def flat_video_check(split: str):
    """The member rule for one part (see the module docstring), for ``extract_archive``."""

    def check(listing: Sequence[ArchiveEntry]) -> None:
        for entry in listing:
            folders, _, name = entry.name.rpartition("/")
            if entry.kind == "dir" and entry.name == split:
                continue
            if entry.kind != "file":
                what = {"symlink": "a link", "hardlink": "a hard link", "dir": "a folder"}.get(entry.kind, "not a file")
                raise UnsafeArchiveError(f"member {entry.name!r} is {what}; a CVDF part holds only flat "
                                         "<youtube_id>_<start>_<end>.mp4 files")
            if folders not in ("", split) or not name.endswith(".mp4") or name.startswith("."):
                raise UnsafeArchiveError(f"member {entry.name!r} is not a flat .mp4 video (at the top or under "
                                         f"{split}/)")

    return check


@dataclasses.dataclass(frozen=True)
class SplitResult:
    split: str
    parts: int
    fetched: int  # parts fetched and extracted by this run (the rest were done before)
    videos: int  # files in <root>/<split> afterwards
    manifest: Path


def download_split(
    *, split: str, root: str | os.PathLike, bases: Sequence[str], keep_tarballs: bool = False,
    check_disk: bool = True, retries: int = 5, backoff: float = 1.0, timeout: float = 60,
) -> SplitResult:
    """Fetch and extract one split of the CVDF mirror into ``root`` (see the module docstring)."""
    if split not in SPLITS:
        raise CvdfError(f"the CVDF download reads the splits {', '.join(SPLITS)}, not {split!r}")
    if not bases:
        raise CvdfError("no CVDF mirror configured (dataset.download_mirrors)")
    root = Path(root)
    work = root / BOOKKEEPING / split
    manifest = Manifest(work / MANIFEST)
    fetch_options = dict(retries=retries, backoff=backoff, timeout=timeout, check_disk=check_disk)

    path_list = work / f"k400_{split}_path.txt"
    list_urls = [path_list_url(base, split) for base in bases]
    manifest.record(_fetch(list_urls, path_list, **fetch_options))
    annotations = root / "annotations" / f"{split}.csv"
    manifest.record(_fetch([annotations_url(base, split) for base in bases], annotations, **fetch_options))

    urls = read_path_list(path_list)
    target = root / split
    target.mkdir(parents=True, exist_ok=True)
    fetched = 0
    with tqdm(total=len(urls), desc=f"cvdf {split}", unit="part", disable=None) as bar:
        for url in urls:
            name = part_name(url)
            done = work / f"{name}.done"
            tarball = work / name
            if not done.exists():
                manifest.record(_fetch(mirror_urls(url, bases), tarball, **fetch_options))
                videos = _extract_part(tarball, split, target, check_disk)
                write_text_atomic(done, f"{videos}\n")
                fetched += 1
                log.info("%s: %d videos into %s", name, videos, target)
            if not keep_tarballs and tarball.exists():
                tarball.unlink()  # extracted: 436 GB of tarballs next to 443 GB of videos fits few disks
            bar.update(1)
    count = sum(1 for entry in os.scandir(target) if entry.is_file())
    log.info("cvdf %s: %d parts (%d fetched now), %d files in %s; sizes and SHA-256 in %s", split, len(urls), fetched,
             count, target, manifest.path)
    return SplitResult(split, len(urls), fetched, count, manifest.path)


def _fetch(urls: Sequence[str], dest: Path, **options):
    try:
        return fetch(list(urls), dest, **options)
    except DownloadError as error:
        raise CvdfError(f"{error}; without a network, copy the mirror's files into a folder of its layout "
                        "(<split>/k400_<split>_path.txt, annotations/<split>.csv, <split>/part_N.tar.gz) and list it "
                        "first in dataset.download_mirrors as file:<folder>") from None


def _extract_part(tarball: Path, split: str, target: Path, check_disk: bool) -> int:
    """Extract ``tarball`` next to itself, checked, then move its videos into ``target``; returns their count.

    The staging folder replaces any left by a killed run; moving overwrites a video moved before,
    so a part interrupted while moving is simply done again.
    """
    staging = tarball.with_name(tarball.name + ".extracted")
    try:
        extract_archive(tarball, staging, check_disk=check_disk, check_members=flat_video_check(split))
    except UnsafeArchiveError as error:
        raise UnsafeArchiveError(f"{tarball}: {error}: the part is refused and nothing of it was written; it is not "
                                 "what the CVDF mirror publishes (check where dataset.download_mirrors points)") from None
    except ExtractError as error:
        raise CvdfError(f"{tarball}: {error}; delete it to fetch the part again") from None
    videos = 0
    # Members at the top and under <split>/ (flat_video_check allowed nothing else) alike.
    for folder in (staging, staging / split):
        if not folder.is_dir():
            continue
        for entry in os.scandir(folder):
            if entry.is_file(follow_symlinks=False):
                os.replace(entry.path, target / entry.name)
                videos += 1
    shutil.rmtree(staging)
    return videos


class Manifest:
    """``manifest.tsv``: file, size, SHA-256 and source of each file as first fetched (a record, not a lock)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> dict[str, tuple[int, str, str]]:
        if not self.path.exists():
            return {}
        recover = f"delete {self.path} to start a new record"
        entries = {}
        for number, line in enumerate(read_text_checked(self.path, CvdfError, recover).splitlines(), start=1):
            if number == 1 or not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != 4 or not fields[1].isdigit():
                raise CvdfError(f"{self.path}:{number}: expected file, size, sha256, source; {recover}")
            entries[fields[0]] = (int(fields[1]), fields[2], fields[3])
        return entries

    def record(self, result) -> None:
        """Add a fetched file; one already recorded with another SHA-256 is logged (the mirror changed it)."""
        entries = self.entries()
        name = result.path.name
        known = entries.get(name)
        if known is not None:
            if known[1] != result.sha256:
                log.warning("%s: SHA-256 %s differs from %s recorded when first fetched (%s); the mirror publishes "
                            "no checksum, so nlflow cannot tell which is right; recording the new one", name,
                            result.sha256, known[1], self.path)
            else:
                return
        entries[name] = (result.size, result.sha256, result.source or "already present")
        lines = [f"{file}\t{size}\t{digest}\t{source}\n" for file, (size, digest, source) in sorted(entries.items())]
        write_text_atomic(self.path, _MANIFEST_HEADER + "".join(lines))
