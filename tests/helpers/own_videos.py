"""A user's own folder of videos, as the first-hour tests meet it: a few classes of short real
(PyAV-made) clips whose names are in several scripts, plus the data problems real folders have (a
text file named .mp4, a truncated video, a class with a single video), and a stand-in for a zoo
model's released file (the demo's Caffe2-format writer at the zoo network's shape)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nlflow.demo.dataset import make_class_video, truncate_video

# class folder -> the demo motion its clips show (the demo's classes differ only in motion)
OWN_CLASSES = {"Прыжок": "MoveUp", "縮む": "Shrink", "Wave & Smile": "Grow"}
# every name in another script, with spaces and punctuation
CLIP_NAMES = ("клип {n}", "片段_{n}", "take #{n} (été)", "مقطع {n}", "clip-{n}", "κλιπ {n}")
LONE_CLASS = "Einzeln"  # one video only: it cannot have a test video
NOT_A_VIDEO = "Прыжок/notes.mp4"
TRUNCATED = "縮む/broken clip.avi"


def make_own_videos(root: Path, *, clips_per_class: int = 6, num_frames: int = 24,
                    size: tuple[int, int] = (160, 120), problems: bool = True) -> Path:
    """``root/<class>/<clip>.avi``; with ``problems``, also the lone class, a text file named .mp4
    and a truncated AVI (both in classes that have enough good videos)."""
    for label, (folder, motion) in enumerate(OWN_CLASSES.items()):
        for n in range(clips_per_class):
            path = root / folder / f"{CLIP_NAMES[n % len(CLIP_NAMES)].format(n=n + 1)}.avi"
            path.parent.mkdir(parents=True, exist_ok=True)
            make_class_video(path, motion, np.random.default_rng([label, n]), num_frames=num_frames, size=size)
    if problems:
        lone = root / LONE_CLASS / "nur eins.avi"
        lone.parent.mkdir(parents=True)
        make_class_video(lone, "StandStill", np.random.default_rng(99), num_frames=num_frames, size=size)
        (root / NOT_A_VIDEO).write_text("not a video, whatever its name says\n")
        make_class_video(root / TRUNCATED, "Shrink", np.random.default_rng(98), num_frames=num_frames, size=size)
        truncate_video(root / TRUNCATED)
    return root


def write_zoo_stand_in(folder: Path, name: str) -> Path:
    """``folder/<name>.pkl``: a freshly initialised network of zoo model ``name``'s shape in the
    official Caffe2 format (400-class head, solver blobs), where no released file can be fetched."""
    from nlflow.demo.weights import write_demo_pretrained
    from nlflow.weights.zoo import zoo_model

    folder.mkdir(parents=True, exist_ok=True)
    return write_demo_pretrained(folder / f"{name}.pkl", zoo_model(name).model_config(num_classes=400))
