"""dataset.download: cvdf against a real HTTP server on 127.0.0.1 serving a small CVDF mirror
(helpers.cvdf_mirror: the demo's Kinetics copy packed into .tar.gz parts)."""

from __future__ import annotations

import hashlib
import tarfile

import pytest

from nlflow.archives.cvdf import (
    BOOKKEEPING,
    CVDF_BASE_URL,
    CvdfError,
    download_split,
    mirror_urls,
    read_path_list,
)
from nlflow.archives.extract import UnsafeArchiveError
from nlflow.errors import one_line
from nlflow.lists.kinetics import CVDF, find_layout, kinetics_lists

from helpers.cvdf_mirror import VAL_ROWS, mirror_files, tar_gz, tar_with
from helpers.http_server import server  # noqa: F401  (server: fixture)

FAST = dict(retries=2, backoff=0.01, timeout=5)


def _download(root, base, splits=("train", "val"), **options):
    return [download_split(split=split, root=root, bases=[base], **FAST, **options) for split in splits]


def _names(folder):
    return sorted(path.name for path in folder.iterdir())


def test_download_makes_a_copy_the_lists_recognise(server, tmp_path):
    base, state = server
    state.files.update(mirror_files(tmp_path / "source", base))
    root = tmp_path / "copy"
    train, val = _download(root, base)

    assert (train.parts, train.fetched, val.parts) == (2, 2, 1)
    for split in ("train", "val"):
        assert _names(root / split) == _names(tmp_path / "source" / split)
        assert (root / "annotations" / f"{split}.csv").read_bytes() == state.files[f"/annotations/{split}.csv"]
    layout = find_layout(root)
    assert layout.kind == CVDF
    lists = kinetics_lists(root, "val", None, 400, "test")
    assert len(lists.test) == VAL_ROWS  # missing ones stay in the test list, named in missing.csv
    assert sum(video.split == "val" for video in lists.missing) == VAL_ROWS // 20
    # Extracted parts are deleted; the manifest records each file's size and SHA-256 as fetched.
    work = root / BOOKKEEPING / "train"
    assert not list(work.glob("*.tar.gz"))
    rows = [line.split("\t") for line in (work / "manifest.tsv").read_text().splitlines()[1:]]
    recorded = {name: (int(size), digest) for name, size, digest, _ in rows}
    part = state.files["/train/part_1.tar.gz"]
    assert recorded["part_1.tar.gz"] == (len(part), hashlib.sha256(part).hexdigest())
    assert set(recorded) == {"k400_train_path.txt", "train.csv", "part_0.tar.gz", "part_1.tar.gz"}

    # A second run fetches nothing: every part is marked done.
    requests = len(state.requests)
    again = _download(root, base)
    assert [result.fetched for result in again] == [0, 0]
    assert len(state.requests) == requests


def test_members_under_a_split_folder_are_taken_too(server, tmp_path):
    base, state = server
    state.files.update(mirror_files(tmp_path / "source", base))
    names = _names(tmp_path / "source" / "val")
    state.files["/val/part_0.tar.gz"] = tar_gz({("val/" if number % 2 else "") + name: b""
                                               for number, name in enumerate(names)})
    _download(tmp_path / "copy", base, splits=("val",))
    assert _names(tmp_path / "copy" / "val") == names


def test_keep_tarballs_keeps_them(server, tmp_path):
    base, state = server
    state.files.update(mirror_files(tmp_path / "source", base))
    _download(tmp_path / "copy", base, splits=("val",), keep_tarballs=True)
    kept = tmp_path / "copy" / BOOKKEEPING / "val" / "part_0.tar.gz"
    assert kept.read_bytes() == state.files["/val/part_0.tar.gz"]


def test_a_run_stopped_at_a_part_resumes_there(server, tmp_path):
    base, state = server
    state.files.update(mirror_files(tmp_path / "source", base, train_parts=3))
    state.missing.add("/train/part_2.tar.gz")
    root = tmp_path / "copy"
    with pytest.raises(CvdfError, match="part_2.tar.gz"):
        _download(root, base, splits=("train",))
    state.missing.clear()
    state.requests.clear()
    (result,) = _download(root, base, splits=("train",))
    assert result.fetched == 1
    assert [path for path, _ in state.requests] == ["/train/part_2.tar.gz"]
    assert _names(root / "train") == _names(tmp_path / "source" / "train")


def test_a_part_cut_off_halfway_resumes_with_range(server, tmp_path):
    base, state = server
    state.files.update(mirror_files(tmp_path / "source", base))
    part = state.files["/train/part_0.tar.gz"]
    state.drop_after["/train/part_0.tar.gz"] = len(part) // 2
    root = tmp_path / "copy"
    with pytest.raises(CvdfError):  # no retries: the cut transfer stops the run, as a kill would
        download_split(split="train", root=root, bases=[base], retries=0, backoff=0.01, timeout=5)
    partial = root / BOOKKEEPING / "train" / "part_0.tar.gz.part"
    assert partial.stat().st_size == len(part) // 2
    _download(root, base, splits=("train",))
    ranges = [header for path, header in state.requests if path == "/train/part_0.tar.gz"]
    assert ranges == [None, f"bytes={len(part) // 2}-"]
    assert _names(root / "train") == _names(tmp_path / "source" / "train")


def _link(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def _file(name, data=b"x"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info


def _folder(name):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info


@pytest.mark.parametrize("part, says", [
    (tar_with(_file("../escape.mp4")), "'..' in path"),
    (tar_with(_file("/abs/escape.mp4")), "absolute path"),
    (tar_with(_link("aaaaaaaaaaa_000000_000010.mp4", "/etc/passwd")), "points outside"),
    (tar_with(_link("aaaaaaaaaaa_000000_000010.mp4", "bbbbbbbbbbb_000000_000010.mp4")), "is a link"),
    (tar_with(_file("other/aaaaaaaaaaa_000000_000010.mp4")), "not a flat .mp4 video"),
    (tar_with(_folder("other")), "is a folder"),
    (tar_gz({"notes.txt": b"hello"}), "not a flat .mp4 video"),
], ids=["dotdot", "absolute", "link-out", "link-in", "sub-folder", "folder", "not-mp4"])
def test_a_malicious_or_foreign_member_refuses_the_part_in_one_line(server, tmp_path, part, says):
    base, state = server
    state.files.update(mirror_files(tmp_path / "source", base))
    state.files["/val/part_0.tar.gz"] = part
    root = tmp_path / "copy"
    with pytest.raises(UnsafeArchiveError) as raised:
        _download(root, base, splits=("val",))
    message = one_line(raised.value)
    assert says in message and "\n" not in message and "part_0.tar.gz" in message
    assert _names(root / "val") == []  # nothing of the part was written
    assert not (root / BOOKKEEPING / "val" / "part_0.tar.gz.done").exists()
    assert not (tmp_path / "escape.mp4").exists() and not (tmp_path.parent / "escape.mp4").exists()


def test_mirrors_are_tried_in_order(server, tmp_path):
    base, state = server
    state.files.update(mirror_files(tmp_path / "source", base))
    # The lists point at the first mirror, which is down: every file comes from the second.
    dead = "http://127.0.0.1:9/kinetics/400"
    state.files["/val/k400_val_path.txt"] = f"{dead}/val/part_0.tar.gz\n".encode()
    (result,) = [download_split(split="val", root=tmp_path / "copy", bases=[dead, base], retries=0, backoff=0.01,
                                timeout=5)]
    assert result.fetched == 1
    assert "/val/part_0.tar.gz" in [path for path, _ in state.requests]


def test_mirror_urls_map_the_published_lists_onto_each_mirror():
    url = f"{CVDF_BASE_URL}/train/part_7.tar.gz"
    assert mirror_urls(url, ["file:/data/k400", CVDF_BASE_URL]) == ["file:/data/k400/train/part_7.tar.gz", url]
    assert mirror_urls("https://elsewhere.example/p.tar.gz", ["file:/data/k400"]) == ["https://elsewhere.example/p.tar.gz"]


@pytest.mark.parametrize("text, says", [
    ("https://x/train/part_0.tar.gz\nhttps://x/train/part_0.tar.gz\n", "listed twice"),
    ("https://x/train/part_0.zip\n", "not the URL of a .tar.gz part"),
    ("\n\n", "lists no parts"),
])
def test_a_bad_path_list_names_file_and_line(tmp_path, text, says):
    path = tmp_path / "k400_train_path.txt"
    path.write_text(text)
    with pytest.raises(CvdfError, match=says) as raised:
        read_path_list(path)
    assert str(path) in str(raised.value)
