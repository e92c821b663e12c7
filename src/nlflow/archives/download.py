"""Resumable, checksummed download of one file from a list of mirrors.

Data is streamed into ``dest + ".part"`` and renamed onto ``dest`` only after its SHA-256 matched,
so a killed download never leaves something that looks finished. A configured MD5 (HMDB-51 publishes
only MD5s) is checked as well; the lock file still records the SHA-256, the stronger pin.  Sources may be ``http(s)://``
URLs or local files (``file:relative``, ``file:///abs``, or a plain path).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from nlflow.diskspace import check_free_space, storage_fault
from nlflow.errors import NlflowError
from nlflow.fileio import CHUNK_BYTES, file_digest, hash_stream, read_text_checked, write_text_atomic

log = logging.getLogger(__name__)

_MAX_BACKOFF_S = 60.0
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_MD5_RE = re.compile(r"^[0-9a-f]{32}$")
_CONTENT_RANGE_RE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$")
_UNSATISFIED_RANGE_RE = re.compile(r"^bytes\s+\*/(\d+)$")
_USER_AGENT = "nlflow-downloader/1"


class DownloadError(NlflowError):
    """A file could not be downloaded or did not match its checksum."""


class NoSourceWorkedError(DownloadError):
    """Every configured source failed (no network, a missing local file, HTTP errors)."""


class _PermanentFailure(Exception):
    """This mirror will not serve the file (404, missing local file): try the next one."""


class _RetryableFailure(Exception):
    """A transient failure (connection, timeout, 5xx): retry the same mirror after a pause."""


@dataclass(frozen=True)
class FetchResult:
    path: Path
    sha256: str
    size: int
    source: str | None  # the mirror that delivered the data; None when dest was already there
    already_present: bool = False
    resumed: bool = False
    recorded_in_lock: bool = False  # the checksum was new and got written to the lock file


def fetch(
    urls: Sequence[str] | str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    lock_file: str | os.PathLike | None = None,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60,
    strict_resume: bool = False,
    md5: str | None = None,
    manual: str | os.PathLike | None = None,
    check_disk: bool = True,
) -> FetchResult:
    """Download ``dest`` from the first mirror in ``urls`` that works, verify it, rename it into place.

    Checksum source, in order: ``sha256``; the entry for ``dest``'s file name in ``lock_file``;
    otherwise the SHA-256 of the first complete download is recorded in ``lock_file``.
    ``md5``, when given, must match too, on every run: the first download is recorded in the lock
    file only after its MD5 matched, and later runs check both the recorded SHA-256 and the MD5.
    ``strict_resume`` makes a server that ignores ``Range`` an error instead of a restart from zero.
    ``timeout``: seconds without a byte (connecting or during the transfer) before an attempt
    counts as stalled; the next attempt resumes where it stopped.
    ``manual``: where a user may put the file downloaded by hand (when every mirror fails); when
    it is there it is checked like a download and moved to ``dest`` instead of downloading.
    ``check_disk``: stop before a transfer whose size does not fit on the disk (False: warn).
    """
    if isinstance(urls, str):
        urls = [urls]
    if not urls:
        raise DownloadError(f"no download sources configured for {Path(dest).name}")
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    expected, expected_from = _expected_checksum(dest.name, sha256, lock_file)
    md5 = _normalise_md5(md5) if md5 else None

    if dest.exists():
        existing = _verify_existing(dest, expected, expected_from, lock_file, md5)
        if existing is not None:
            return existing
    if manual is not None and Path(manual).is_file():
        return _use_manual(Path(manual), dest, expected, expected_from, lock_file, md5)

    dest.parent.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    for url in urls:
        try:
            digest, size, resumed = _fetch_from_mirror(url, part, dest.name, retries, backoff, timeout, strict_resume,
                                                       check_disk)
        except _PermanentFailure as exc:
            failures.append(f"{url}: {exc}")
            log.warning("%s: mirror %s failed (%s), trying the next one", dest.name, url, exc)
            continue
        return _finish(dest, part, digest, size, url, resumed, expected, expected_from, lock_file, md5)
    raise NoSourceWorkedError(_all_mirrors_failed(dest, urls, failures, manual, expected_from, md5 is not None))


def _all_mirrors_failed(dest: Path, urls: Sequence[str], failures: Sequence[str], manual: str | os.PathLike | None,
                        expected_from: str, has_md5: bool) -> str:
    """One line: every mirror's reason, what to do about a certificate, and the manual route."""
    message = f"could not download {dest.name} from any of {len(urls)} source(s): " + "; ".join(failures)
    if any(_CERTIFICATE_FAILURE in failure for failure in failures):
        message += (". TLS stays verified: if your network or system lacks the certificate authority, update the "
                    "system's CA bundle (the ca-certificates package) or point SSL_CERT_FILE at a bundle that has it")
    if manual is not None:
        checks = [what for what in (expected_from, "the configured md5" if has_md5 else "") if what]
        check = "checked against " + " and ".join(checks) if checks else "its SHA-256 is recorded on first use"
        message += (f". Or download it by hand (docs/recovery.md, 'Downloading by hand') and put it at {manual}: "
                    f"the same command then uses it ({check})")
    return message


def _use_manual(manual: Path, dest: Path, expected: str | None, expected_from: str,
                lock_file: str | os.PathLike | None, md5: str | None) -> FetchResult:
    """A file the user put in place by hand: verified like a download, then moved to ``dest``.
    A wrong file stays where it is (it may be the user's only copy) and the error says so."""
    log.info("%s: using %s, put there by hand", dest.name, manual)
    problems = []
    if md5 is not None and (actual := _file_digest(manual, "md5")) != md5:
        problems.append(f"MD5 {actual}, expected {md5} (the configured md5)")
    digest = _file_digest(manual, "sha256")
    if expected is not None and digest != expected:
        problems.append(f"SHA-256 {digest}, expected {expected} ({expected_from})")
    if problems:
        raise DownloadError(f"{manual} is not the right {dest.name}: {'; '.join(problems)}; replace it with the right "
                            "file (or delete it to download from the mirrors again)")
    size = manual.stat().st_size
    dest.parent.mkdir(parents=True, exist_ok=True)
    recorded = _move_into_place(manual, dest, digest, expected, lock_file)
    return FetchResult(dest, digest, size, str(manual), recorded_in_lock=recorded)


def _move_into_place(verified: Path, dest: Path, digest: str, expected: str | None,
                     lock_file: str | os.PathLike | None) -> bool:
    """Rename a verified file to ``dest``; record its SHA-256 when none was known. Returns whether it was recorded."""
    os.replace(verified, dest)
    if expected is not None or lock_file is None:
        return False
    record_in_lock_file(lock_file, dest.name, digest)
    log.info("%s: recorded SHA-256 %s in %s (verified on later runs)", dest.name, digest, lock_file)
    return True


# ----------------------------------------------------------------------------------------------
# checksums and the lock file


def _normalise_sha256(value: str, where: str, recover: str = "") -> str:
    value = value.strip().lower()
    if not _SHA256_RE.match(value):
        raise DownloadError(f"{where}: {value!r:.80} is not a SHA-256 (64 hex digits)" + (f"; {recover}" if recover else ""))
    return value


def _normalise_md5(value: str) -> str:
    value = value.strip().lower()
    if not _MD5_RE.match(value):
        raise DownloadError(f"configured md5: {value!r} is not an MD5 (32 hex digits)")
    return value


def _expected_checksum(
    name: str, sha256: str | None, lock_file: str | os.PathLike | None
) -> tuple[str | None, str]:
    if sha256:
        return _normalise_sha256(sha256, "configured sha256"), "the configured sha256"
    if lock_file is not None:
        recorded = read_lock_file(lock_file).get(name)
        if recorded is not None:
            return recorded, f"the lock file {lock_file}"
    return None, ""


def read_lock_file(path: str | os.PathLike) -> dict[str, str]:
    """Parse a ``<sha256>  <filename>`` file (the ``sha256sum`` format); a missing file is empty.

    A damaged lock file (cut off mid-line, bytes that are not text, a malformed line) is an error,
    not an empty lock: silently forgetting a checksum would trust the next download blindly.
    """
    path = Path(path)
    if not path.exists():
        return {}
    recover = _lock_file_recovery(path)
    entries: dict[str, str] = {}
    for number, line in enumerate(read_text_checked(path, DownloadError, recover).splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        digest, _, name = line.partition(" ")
        name = name.strip().lstrip("*")  # sha256sum marks binary mode with '*'
        if not name:
            raise DownloadError(f"{path}:{number}: expected '<sha256>  <filename>', got {line!r:.120}; {recover}")
        entries[name] = _normalise_sha256(digest, f"{path}:{number}", recover)
    return entries


def _lock_file_recovery(path: Path) -> str:
    files = path.with_suffix("") if path.suffix == ".sha256" else path.parent / "<file>"
    return (f"re-check the lock file against `sha256sum {files}` and correct it, or delete it to record "
            "the checksum of the file as it is now")


def record_in_lock_file(path: str | os.PathLike, name: str, digest: str) -> None:
    """Add or replace ``name``'s checksum, keeping the other entries (atomic rewrite)."""
    entries = read_lock_file(path)
    entries[name] = digest
    write_text_atomic(path, "".join(f"{entries[key]}  {key}\n" for key in sorted(entries)))


def _file_digest(path: Path, algorithm: str) -> str:
    """``file_digest`` of a downloaded file, with a progress bar (archives run to gigabytes)."""
    with _progress_bar(path.stat().st_size, 0, f"verify {path.name}") as bar:
        return file_digest(path, algorithm, bar.update)


def _verify_existing(
    dest: Path, expected: str | None, expected_from: str, lock_file: str | os.PathLike | None,
    md5: str | None = None,
) -> FetchResult | None:
    """Return a result when ``dest`` is already the right file; None when it must be fetched again."""
    if md5 is not None and (actual := _file_digest(dest, "md5")) != md5:
        log.warning("%s exists but its MD5 %s differs from the configured %s; downloading it again", dest, actual, md5)
        return None
    digest = _file_digest(dest, "sha256")
    size = dest.stat().st_size
    if expected is None:
        recorded = False
        if lock_file is not None:
            record_in_lock_file(lock_file, dest.name, digest)
            recorded = True
            log.info("%s: already present; recorded its SHA-256 %s in %s", dest.name, digest, lock_file)
        return FetchResult(dest, digest, size, None, already_present=True, recorded_in_lock=recorded)
    if digest == expected:
        log.info("%s: already present and verified", dest.name)
        return FetchResult(dest, digest, size, None, already_present=True)
    # Keep the old file until a verified replacement is ready.
    log.warning(
        "%s exists but its SHA-256 %s differs from %s (%s); downloading it again",
        dest, digest, expected, expected_from,
    )
    return None


def _finish(
    dest: Path, part: Path, digest: str, size: int, url: str, resumed: bool,
    expected: str | None, expected_from: str, lock_file: str | os.PathLike | None, md5: str | None = None,
) -> FetchResult:
    if md5 is not None and (actual := _file_digest(part, "md5")) != md5:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"{dest.name}: MD5 mismatch (expected {md5} from the configured md5, got {actual} from {url}); "
            "the partial file was deleted: retry, try another mirror, or fix the checksum"
        )
    if expected is not None and digest != expected:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"{dest.name}: SHA-256 mismatch (expected {expected} from {expected_from}, got {digest} "
            f"from {url}); the partial file was deleted: retry, try another mirror, or fix the checksum "
            "if the file was legitimately replaced (or the lock file was damaged)"
        )
    recorded = _move_into_place(part, dest, digest, expected, lock_file)
    return FetchResult(dest, digest, size, url, resumed=resumed, recorded_in_lock=recorded)


# ----------------------------------------------------------------------------------------------
# one mirror, with retries


def _fetch_from_mirror(
    url: str, part: Path, name: str, retries: int, backoff: float, timeout: float, strict_resume: bool,
    check_disk: bool = True,
) -> tuple[str, int, bool]:
    """Fill ``part`` completely from ``url``; return (sha256, size, resumed)."""
    local = local_source_path(url)
    if local is not None and local.is_dir():
        # An offline user's folder of archives: take the file of the same name from it.
        local = local / name
    attempts = max(0, int(retries)) + 1
    last_error: Exception | None = None
    for attempt in range(attempts):
        if attempt:
            pause = min(_MAX_BACKOFF_S, backoff * 2 ** (attempt - 1))
            log.warning("%s: %s (attempt %d/%d); retrying in %.1f s", name, last_error, attempt, attempts, pause)
            time.sleep(pause)
        try:
            if local is not None:
                digest, size, was_resumed = _copy_local(local, part, name, check_disk)
            else:
                digest, size, was_resumed = _download_http(url, part, name, timeout, strict_resume, check_disk)
            return digest, size, was_resumed
        except _RetryableFailure as exc:
            last_error = exc
    raise _PermanentFailure(f"{last_error} (gave up after {attempts} attempts)")


def local_source_path(url: str) -> Path | None:
    """The local path for ``file:`` sources and plain paths; None for http(s)."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        return None
    if url.startswith("file://"):
        parsed = urllib.parse.urlsplit(url)
        if parsed.netloc not in ("", "localhost"):
            raise DownloadError(f"{url}: file URLs on another host are not supported")
        return Path(urllib.parse.unquote(parsed.path))
    if url.startswith("file:"):
        return Path(urllib.parse.unquote(url[len("file:"):]))
    if scheme and len(scheme) > 1:  # a one-letter scheme is a Windows drive
        raise DownloadError(f"{url}: unsupported URL scheme {scheme!r} (use http, https, file or a path)")
    return Path(url)


def _copy_local(source: Path, part: Path, name: str, check_disk: bool = True) -> tuple[str, int, bool]:
    if not source.is_file():
        raise _PermanentFailure(f"local source {source} does not exist or is not a file")
    total = source.stat().st_size
    hasher = hashlib.sha256()
    offset = _resume_offset(part, hasher, total)
    check_free_space(part, total - offset, f"copying {name}", enforce=check_disk)
    with open(source, "rb") as src, open(part, "ab" if offset else "wb") as out, \
            _progress_bar(total, offset, name) as bar:
        src.seek(offset)
        while chunk := src.read(CHUNK_BYTES):
            out.write(chunk)
            hasher.update(chunk)
            bar.update(len(chunk))
    size = part.stat().st_size
    if size != total:
        raise _RetryableFailure(f"copied {size} of {total} bytes from {source}")
    return hasher.hexdigest(), size, offset > 0


def _resume_offset(part: Path, hasher: "hashlib._Hash", total: int | None) -> int:
    """Hash an existing .part so the checksum continues over it; restart when it cannot be a prefix."""
    if not part.exists():
        return 0
    size = part.stat().st_size
    if size == 0 or (total is not None and size > total):
        part.unlink()
        return 0
    with open(part, "rb") as handle:
        hash_stream(handle, hasher)
    return size


def _download_http(url: str, part: Path, name: str, timeout: float, strict_resume: bool,
                   check_disk: bool = True) -> tuple[str, int, bool]:
    hasher = hashlib.sha256()
    offset = _resume_offset(part, hasher, None)
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            return _range_not_satisfiable(exc, part, hasher, offset)
        if exc.code >= 500 or exc.code in (408, 429):
            raise _RetryableFailure(f"HTTP {exc.code} {exc.reason} from {url}") from exc
        raise _PermanentFailure(f"HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        certificate = _certificate_problem(exc)
        if certificate is not None:
            # Another attempt meets the same certificate: try the next mirror.
            raise _PermanentFailure(f"{_CERTIFICATE_FAILURE} ({certificate})") from exc
        raise _RetryableFailure(f"cannot connect to {url}: {_reason(exc)}") from exc

    with response:
        total, restart = _plan_body(response, url, part, offset, strict_resume)
        if restart:
            offset, hasher = 0, hashlib.sha256()
        if total is not None:
            check_free_space(part, total - offset, f"downloading {name}", enforce=check_disk)
        mode = "ab" if offset else "wb"
        received = offset
        try:
            with open(part, mode) as out, _progress_bar(total, offset, name) as bar:
                # read1: what has arrived, so that a stall loses nothing already received
                while chunk := response.read1(CHUNK_BYTES):
                    out.write(chunk)
                    hasher.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        except (OSError, http.client.HTTPException) as exc:
            if storage_fault(exc) is not None:
                raise  # a full disk is no reason to try the mirror again (nlflow.diskspace says it)
            # What arrived stays in .part; the next attempt resumes from there.
            if isinstance(exc, TimeoutError):
                raise _RetryableFailure(f"transfer from {url} stalled: no data for {timeout:g} s after "
                                        f"{received} bytes") from exc
            raise _RetryableFailure(f"transfer from {url} interrupted after {received} bytes: {_reason(exc)}") from exc
    if total is not None and received != total:
        raise _RetryableFailure(f"transfer from {url} ended after {received} of {total} bytes")
    return hasher.hexdigest(), received, offset > 0


def _plan_body(
    response: http.client.HTTPResponse, url: str, part: Path, offset: int, strict_resume: bool
) -> tuple[int | None, bool]:
    """Check how the server answered a (possibly ranged) request; return (total size, restart from zero)."""
    length = response.headers.get("Content-Length")
    length = int(length) if length and length.isdigit() else None
    if response.status == 206 and offset:
        match = _CONTENT_RANGE_RE.match(response.headers.get("Content-Range", "").strip())
        if not match or int(match.group(1)) != offset:
            raise _PermanentFailure(
                f"asked for bytes {offset}- but got Content-Range {response.headers.get('Content-Range')!r}"
            )
        total = match.group(3)
        return (int(total) if total != "*" else None), False
    if response.status == 200:
        if offset:
            message = f"{url} ignores HTTP Range requests, so the partial download cannot be resumed"
            if strict_resume:
                raise DownloadError(f"{message}; delete {part} to download from zero")
            log.warning("%s; starting again from zero", message)
        return length, offset > 0
    raise _PermanentFailure(f"unexpected HTTP status {response.status}")


def _range_not_satisfiable(
    exc: urllib.error.HTTPError, part: Path, hasher: "hashlib._Hash", offset: int
) -> tuple[str, int, bool]:
    """416: the .part is already whole (offset == size) or is not a prefix of this file."""
    match = _UNSATISFIED_RANGE_RE.match((exc.headers.get("Content-Range") or "").strip())
    if match and int(match.group(1)) == offset:
        return hasher.hexdigest(), offset, True
    part.unlink(missing_ok=True)
    raise _RetryableFailure(f"the server refused to resume at byte {offset}; restarting from zero")


_CERTIFICATE_FAILURE = "the server's TLS certificate could not be verified"


def _certificate_problem(exc: BaseException) -> str | None:
    """Why the server's certificate was refused, when that is why the connection failed."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, ssl.SSLCertVerificationError):
        return reason.verify_message or str(reason)
    return None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        return str(exc.reason)
    if isinstance(exc, socket.timeout):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _progress_bar(total: int | None, initial: int, name: str) -> tqdm:
    return tqdm(
        total=total, initial=initial, desc=name, unit="B", unit_scale=True, unit_divisor=1024, disable=None,
        leave=False,
    )
