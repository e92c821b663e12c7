"""Downscale: output geometry, timestamps, keyframe spacing, bad inputs, manifest, incremental runs."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest

from nlflow.demo.dataset import render_class_frames, truncate_video, write_video
from nlflow.video.downscale import downscale_all, downscale_video, output_size
from nlflow.video.manifest import ManifestError, ManifestRow, read_manifest, write_manifest

from helpers.frames import read_frame_index
from helpers.videos import decode_all


def _source(path: Path, frames=40, size=(160, 120), keyframe_interval=5) -> Path:
    rendered = render_class_frames("MoveDown", np.random.default_rng(5), frames, size, draw_frame_index=True)
    write_video(path, rendered, fps=25, keyframe_interval=keyframe_interval, qscale=2)
    return path


def _packets(path: Path) -> list[tuple[int, bool]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.size]


def test_output_size_rules():
    # The original's filter, scale="trunc(oh*a/2)*2:256" with oh = 256 and a = iw/ih, by hand:
    # 320x240: 256 * 4/3 = 341.33, / 2 = 170.67, truncated 170, x 2 = 340 (rounding gave 342).
    assert output_size(320, 240, 256, upsample=True) == (340, 256)
    assert output_size(320, 240, 256, upsample=False) == (320, 240)
    assert output_size(640, 480, 256, upsample=False) == (340, 256)
    # 1920x1080: 256 * 16/9 = 455.11, / 2 = 227.56 -> 227 -> 454 (rounding: 456).
    assert output_size(1920, 1080, 256, upsample=False) == (454, 256)
    # 331x200: 256 * 1.655 = 423.68, / 2 = 211.84 -> 211 -> 422 (rounding: 424).
    assert output_size(331, 200, 256, upsample=True) == (422, 256)
    # An exact even width stays: 400x320 -> 256 * 1.25 = 320.
    assert output_size(400, 320, 256, upsample=False) == (320, 256)
    # The demo's 320x240 at short side 112: 112 * 4/3 = 149.33 -> 74.67 -> 74 -> 148.
    assert output_size(320, 240, 112, upsample=True) == (148, 112)
    # Portrait: nlflow fixes the short side (the original fixed the height at 256: 192x256 here),
    # and truncates the long side the same way: 256 * 4/3 -> 340.
    assert output_size(240, 320, 256, upsample=True) == (256, 340)
    assert output_size(321, 239, 256, upsample=False) == (320, 238)


def test_downscale_video_geometry_timestamps_keyframes(tmp_path):
    src = _source(tmp_path / "in.avi", frames=40, keyframe_interval=5)
    row = downscale_video(src, tmp_path / "out" / "o.avi", short_side=128, upsample=True, keyframe_interval=12, qscale=2)
    out = tmp_path / "out" / "o.avi"
    assert row == ManifestRow(str(src), "ok", 40, 25.0, 170, 128, out.stat().st_size, "")
    packets = _packets(out)
    assert [pts for pts, _ in packets] == list(range(40))
    # exactly every 12th frame is a keyframe, whatever the source's keyframes were
    assert [pts for pts, key in packets if key] == [0, 12, 24, 36]
    frames = decode_all(out)
    assert frames.shape == (40, 128, 170, 3)
    assert [read_frame_index(f) for f in frames] == list(range(40))
    with av.open(str(out)) as container:
        assert container.format.name == "avi" and not container.streams.audio
        assert container.streams.video[0].codec_context.name == "mpeg4"
    assert [p.name for p in out.parent.iterdir()] == ["o.avi"]  # no temporary left


def test_downscale_without_upsampling_keeps_small_videos(tmp_path):
    src = _source(tmp_path / "in.avi", frames=12)
    row = downscale_video(src, tmp_path / "o.avi", short_side=256, upsample=False, keyframe_interval=12, qscale=2)
    assert (row.status, row.width, row.height, row.frames) == ("ok", 160, 120, 12)


def test_bad_inputs_become_rows_not_exceptions(tmp_path):
    truncated = _source(tmp_path / "trunc.avi", frames=20)
    truncate_video(truncated)
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(b"RIFF....AVI " + os.urandom(300))
    empty = _source(tmp_path / "empty.avi", frames=3)
    data = empty.read_bytes()
    empty.write_bytes(data[: data.find(b"movi") + 4])  # headers intact, no frame chunks
    stale = tmp_path / "out" / "trunc.avi"
    stale.parent.mkdir()
    stale.write_bytes(b"old output")
    rows = {
        name: downscale_video(tmp_path / name, tmp_path / "out" / name, 64, True, 12, 2, name=name)
        for name in ("trunc.avi", "garbage.avi", "empty.avi", "missing.avi")
    }
    assert rows["trunc.avi"].status == "corrupt" and rows["trunc.avi"].error
    assert rows["garbage.avi"].status == "corrupt"
    assert rows["missing.avi"].status == "corrupt" and "missing" in rows["missing.avi"].error
    assert rows["empty.avi"].status == "empty"
    assert all(row.frames == 0 and row.bytes == 0 for row in rows.values())
    assert not any((tmp_path / "out").iterdir())  # failures leave no output, stale ones are removed


def test_manifest_round_trip_and_validation(tmp_path):
    rows = [
        ManifestRow("A/v_A_g01_c01.avi", "ok", 120, 25.0, 340, 256, 12345, ""),
        ManifestRow("B/v,comma.avi", "corrupt", 0, 29.97, 320, 240, 0, 'InvalidDataError: "bad", data'),
    ]
    write_manifest(tmp_path / "m.csv", rows)
    assert (tmp_path / "m.csv").read_text().splitlines()[0] == "video,status,frames,fps,width,height,bytes,error"
    assert list(read_manifest(tmp_path / "m.csv").values()) == rows
    (tmp_path / "bad.csv").write_text("video,status\nx,ok\n")
    with pytest.raises(ManifestError):
        read_manifest(tmp_path / "bad.csv")
    with pytest.raises(ManifestError):
        read_manifest(tmp_path / "nope.csv")


def test_downscale_all_parallel_incremental(tmp_path):
    root = tmp_path / "raw"
    rel_paths = [f"C{i % 2}/v{i}.avi" for i in range(4)]
    for i, rel in enumerate(rel_paths):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        _source(root / rel, frames=14 + i)
    (root / "C0/bad.avi").write_bytes(b"not a video")
    rel_paths.append("C0/bad.avi")
    out, manifest = tmp_path / "videos", tmp_path / "manifest.csv"
    kwargs = dict(short_side=64, upsample=True, keyframe_interval=12, qscale=3)

    rows = downscale_all(root, rel_paths, out, manifest, n_jobs=2, **kwargs)
    assert [r.video for r in rows] == rel_paths
    assert [r.status for r in rows] == ["ok"] * 4 + ["corrupt"]
    assert [r.frames for r in rows[:4]] == [14, 15, 16, 17]
    assert read_manifest(manifest) == {r.video: r for r in rows}
    mtimes = {rel: (out / rel).stat().st_mtime_ns for rel in rel_paths[:4]}

    # unchanged inputs and settings: nothing is re-encoded, same rows
    again = downscale_all(root, rel_paths, out, manifest, n_jobs=2, **kwargs)
    assert again == rows
    assert {rel: (out / rel).stat().st_mtime_ns for rel in rel_paths[:4]} == mtimes

    # a touched input is redone; other outputs stay
    future = (root / rel_paths[1]).stat().st_mtime + 10
    os.utime(root / rel_paths[1], (future, future))
    downscale_all(root, rel_paths, out, manifest, n_jobs=1, **kwargs)
    assert (out / rel_paths[1]).stat().st_mtime_ns != mtimes[rel_paths[1]]
    assert (out / rel_paths[0]).stat().st_mtime_ns == mtimes[rel_paths[0]]

    # new settings: everything is redone
    changed = downscale_all(root, rel_paths, out, manifest, n_jobs=2, **{**kwargs, "short_side": 96})
    assert {r.height for r in changed[:4]} == {96}
    assert (out / rel_paths[0]).stat().st_mtime_ns != mtimes[rel_paths[0]]


def test_downscale_stage_resumes_work_of_a_failed_run(tmp_path, caplog):
    from nlflow.workflow import stages

    extracted = tmp_path / "extracted"
    rel_paths = [f"C{i % 2}/v{i}.avi" for i in range(3)]
    for i, rel in enumerate(rel_paths):
        (extracted / rel).parent.mkdir(parents=True, exist_ok=True)
        _source(extracted / rel, frames=14 + i)
    out = tmp_path / "downscaled" / "videos"
    kwargs = dict(short_side=64, upsample=True, keyframe_interval=12, qscale=3, n_jobs=1)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")

    # The manifest cannot be written (its folder is a file): the job fails after encoding everything.
    with pytest.raises(OSError):
        stages.downscale(str(extracted), str(out), str(blocker / "manifest.csv"), **kwargs)
    assert not out.exists()
    work = out.parent / ".videos.partial"
    mtimes = {rel: (work / rel).stat().st_mtime_ns for rel in rel_paths}

    caplog.set_level("INFO")
    manifest = tmp_path / "downscaled" / "manifest.csv"
    stages.downscale(str(extracted), str(out), str(manifest), **kwargs)
    assert "3 up to date, 0 to encode" in caplog.text
    assert {rel: (out / rel).stat().st_mtime_ns for rel in rel_paths} == mtimes  # moved, not re-encoded
    assert not work.exists()
    assert [row.status for row in read_manifest(manifest).values()] == ["ok"] * 3
