"""Does a trained demo network read the direction of time? Classify each test video's clips as
they are and played backwards.

The demo's classes come in time-reversed pairs (MoveUp / MoveDown, Grow / Shrink; StandStill is
its own reverse), so a network that uses the direction of the motion must call a reversed MoveUp
clip MoveDown; one that used appearance alone (where the object is, how big) would keep the label.
Prints, for the clip starting at frame 0 and the clip in the middle of each video (centre crop at
the test scale): top-1 forward, top-1 reversed (against the reversed class), and how often a
reversed clip kept its original label.

Run: ``python benchmarks/demo_time_reversal.py results/train/model_final.pt results/lmdb/split1/test.lmdb``
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from nlflow.models import load_checkpoint
from nlflow.store.lmdb_store import LmdbReader
from nlflow.video.decode import decode_frames
from nlflow.video.transforms import crop_offsets, resize_short_side
from nlflow.video.views import normalize_views

REVERSED = {"MoveUp": "MoveDown", "MoveDown": "MoveUp", "Grow": "Shrink", "Shrink": "Grow", "StandStill": "StandStill"}


def centre_clip(source: bytes, indices: list[int], size: int) -> torch.Tensor:
    frames = resize_short_side(decode_frames(source, indices), size)
    ((top, left),) = crop_offsets(frames.shape[1], frames.shape[2], size, 1)
    return torch.as_tensor(np.ascontiguousarray(frames[:, top : top + size, left : left + size]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a trained demo model (model_final.pt)")
    parser.add_argument("test_lmdb", help="the demo's test store")
    parser.add_argument("--size", type=int, default=112, help="test scale and crop (the demo's: 112)")
    args = parser.parse_args()

    torch.set_num_threads(1)
    model = load_checkpoint(args.model).eval()
    cfg = model.config
    span = (cfg.video_length - 1) * cfg.sample_rate + 1
    counts: dict[tuple[str, str], list[bool]] = {}
    with LmdbReader(args.test_lmdb) as reader, torch.no_grad():
        for index in range(len(reader)):
            record = reader[index]
            truth = model.classes[record.label]
            for where, start in (("frame 0", 0), ("middle", max(0, (record.frames - span) // 2))):
                indices = [(start + j * cfg.sample_rate) % record.frames for j in range(cfg.video_length)]
                clip = centre_clip(record.source, indices, args.size)
                for direction, frames in (("forward", clip), ("reversed", clip.flip(0))):
                    predicted = model.classes[int(model(normalize_views(frames[None])).argmax(1))]
                    expected = truth if direction == "forward" else REVERSED[truth]
                    counts.setdefault((where, direction), []).append(predicted == expected)
                    if direction == "reversed" and expected != truth:
                        counts.setdefault((where, "reversed, original label kept"), []).append(predicted == truth)
    for (where, what), hits in counts.items():
        print(f"{where:8s} {what:30s} {np.mean(hits):.3f} of {len(hits)} clips")


if __name__ == "__main__":
    main()
