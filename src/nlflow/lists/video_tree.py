"""Folders of videos: which files count as videos, where the `<class>/<video>` tree of an extracted
archive starts, and which sub-folders are classes.

One definition for every stage, so that the lists, the downscaled copies and the parse-time class
count of a `folder` dataset all see the same files.
"""

from __future__ import annotations

import os
from pathlib import Path

# Containers PyAV (FFmpeg) reads; a file with another suffix is not a video to nlflow.
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ogv")
# The UCF-101 archive's top folder; the demo keeps it.
UCF101_FOLDER = "UCF-101"


def is_video_file(name: str) -> bool:
    return Path(name).suffix.lower() in VIDEO_SUFFIXES


def is_hidden(name: str) -> bool:
    """Dot files and folders (`.DS_Store`, `.snakemake_timestamp`, editors' swap files) are never data."""
    return name.startswith(".")


def video_root(extracted_dir: str | os.PathLike) -> Path:
    """The folder holding `<Class>/<video>` inside an extracted video archive.

    UCF-101 wraps its classes in `UCF-101/`; an archive with a single top folder and no videos in
    it is unwrapped the same way; HMDB-51's nested extraction and user folders are the tree itself.
    """
    root = Path(extracted_dir)
    if (root / UCF101_FOLDER).is_dir():
        return root / UCF101_FOLDER
    subdirs = [p for p in root.iterdir() if p.is_dir() and not is_hidden(p.name)]
    if len(subdirs) == 1 and not any(p.is_file() and is_video_file(p.name) for p in subdirs[0].iterdir()):
        return subdirs[0]
    return root


def list_videos(root: str | os.PathLike) -> list[str]:
    """Every video file below ``root`` as a sorted relative POSIX path; hidden files and folders skipped.

    Linked folders are followed: users often assemble a dataset from class folders that live elsewhere.
    """
    root = Path(root)
    found = []
    for folder, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = [d for d in dirnames if not is_hidden(d)]
        for name in filenames:
            if is_video_file(name) and not is_hidden(name):
                found.append(Path(folder, name).relative_to(root).as_posix())
    return sorted(found)


def class_folders(root: str | os.PathLike) -> list[str]:
    """The class names of a `<class>/<video>` tree: its visible sub-folders, sorted (label = index)."""
    return sorted(p.name for p in Path(root).iterdir() if p.is_dir() and not is_hidden(p.name))
