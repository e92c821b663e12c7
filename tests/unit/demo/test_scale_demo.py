"""The UCF-101-shaped scale generator: counts, lengths and groups of the full set, what a fraction
keeps, and the archives it writes (at the smallest fraction, with clips cut short to stay fast)."""

from __future__ import annotations

import io
import json
import zipfile
from collections import Counter

import av
import numpy as np
import pytest
import rars

from nlflow.archives.extract import extract_archive
from nlflow.cli import main
from nlflow.demo import scale as scale_demo
from nlflow.lists.listfiles import read_list

from helpers.lists import write_ucf101_lists

MAX_FRAMES = 6


@pytest.fixture(scope="module")
def inventory():
    return scale_demo.full_inventory(seed=0)


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("scale")
    summary = scale_demo.generate_scale_demo(out, 0.001, seed=0, n_jobs=2, max_frames=MAX_FRAMES)
    return out, summary


def test_the_full_set_has_ucf101s_counts(inventory):
    assert len(inventory) == scale_demo.FULL_VIDEOS == 13_320
    assert len(scale_demo.UCF101_CLASSES) == len(set(scale_demo.UCF101_CLASSES)) == 101
    per_group = Counter((video.label, video.group) for video in inventory)
    assert len(per_group) == 101 * 25
    assert set(per_group.values()) == {4, 5, 6, 7}
    assert len({video.relpath for video in inventory}) == len(inventory)


def test_clip_lengths_follow_ucf101s(inventory):
    seconds = np.array([video.frames for video in inventory]) / scale_demo.FPS
    assert 7.0 < seconds.mean() < 7.5  # UCF-101: 7.21 s
    assert seconds.min() >= scale_demo.MIN_SECONDS and seconds.max() <= scale_demo.MAX_SECONDS
    assert 20 <= (seconds > 30).sum() <= 100  # a few long ones
    assert 2.3e6 < seconds.sum() * scale_demo.FPS < 2.5e6  # about 2.4 million frames


def test_file_names_keep_the_official_spelling_quirk(inventory):
    video = next(v for v in inventory if v.class_name == "HandstandPushups")
    assert video.relpath.startswith("HandstandPushups/v_HandStandPushups_g01_c01")


@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.5])
def test_a_fraction_keeps_every_class_and_group(inventory, fraction):
    videos = scale_demo.select_fraction(inventory, fraction)
    assert abs(len(videos) - fraction * 13_320) <= 1
    assert {video.label for video in videos} == set(range(101))
    assert {video.group for video in videos} == set(range(1, 26))
    tested = sum(video.group <= 7 for video in videos) / len(videos)  # split 1 tests groups 1-7
    assert 0.25 < tested < 0.31


def test_a_smaller_fraction_is_a_subset_of_a_larger_one(inventory):
    small = set(scale_demo.select_fraction(inventory, 0.01))
    assert small <= set(scale_demo.select_fraction(inventory, 0.1))
    assert scale_demo.select_fraction(inventory, 1.0) == inventory


def test_quotas_give_every_class_one_video_and_refuse_bad_fractions():
    assert scale_demo.class_quotas([132, 140, 128], 0.001) == [1, 1, 1]
    assert scale_demo.class_quotas([10, 10], 1.0) == [10, 10]
    with pytest.raises(scale_demo.ScaleDemoError):
        scale_demo.class_quotas([10], 0)


def test_the_archives_have_the_official_layout(tiny_set):
    out, summary = tiny_set
    assert summary.num_videos == 101 and summary.num_frames == 101 * MAX_FRAMES
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["UCF101.rar", "UCF101TrainTestSplits-RecognitionTask.zip", "scale_manifest.json"])  # staging removed
    names = rars.RarFile(summary.videos_path).namelist()
    videos = [name for name in names if name.endswith(".avi")]
    assert len(videos) == 101
    assert all(name.split("/")[0] == "UCF-101" for name in names)
    assert "UCF-101/HandstandPushups/v_HandStandPushups_g12_c01.avi" in videos
    with zipfile.ZipFile(summary.splits_path) as archive:
        class_ind = archive.read("ucfTrainTestlist/classInd.txt").decode()
    assert class_ind.startswith("1 ApplyEyeMakeup\r\n2 ApplyLipstick\r\n") and class_ind.endswith("101 YoYo\r\n")


@pytest.mark.parametrize("split", [1, 2, 3])
def test_the_split_files_parse_as_ucf101s(tiny_set, tmp_path, split):
    out, summary = tiny_set
    with zipfile.ZipFile(summary.splits_path) as archive:
        archive.extractall(tmp_path)
    result = write_ucf101_lists(tmp_path / "ucfTrainTestlist", split, tmp_path / "lists", expected_num_classes=101)
    assert result.num_train + result.num_test == 101
    test = read_list(tmp_path / "lists" / "test.txt")
    assert all(7 * (split - 1) < int(rel.split("_g")[1][:2]) <= 7 * split for rel, _ in test)


def test_videos_are_xvid_like_avi_at_320x240_25fps(tiny_set):
    out, summary = tiny_set
    manifest = json.loads((out / scale_demo.MANIFEST_NAME).read_text())
    entry = manifest["videos"][0]
    data = rars.RarFile(summary.videos_path).read(f"UCF-101/{entry['video']}")
    assert len(data) == entry["bytes"]
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        assert (container.format.name, stream.codec_context.name) == ("avi", "mpeg4")
        assert (stream.width, stream.height, stream.average_rate) == (320, 240, 25)
        assert sum(1 for _ in container.decode(stream)) == entry["frames"] == MAX_FRAMES


def test_a_video_is_the_same_at_every_fraction(inventory):
    video = scale_demo.select_fraction(inventory, 0.01)[0]
    first = next(scale_demo.render_scale_frames(scale_demo._video_rng(0, video), 3))
    again = next(scale_demo.render_scale_frames(scale_demo._video_rng(0, video), 3))
    assert first.shape == (240, 320, 3) and first.dtype == np.uint8
    assert np.array_equal(first, again)
    assert first.std() > 20  # textured, not flat: compresses like footage, not like a test card


def test_a_solid_archive_extracts_to_the_same_files(tmp_path):
    summary = scale_demo.generate_scale_demo(tmp_path / "solid", 0.001, n_jobs=2, solid=True, max_frames=2)
    members = rars.RarFile(summary.videos_path).infolist()
    assert any(info.is_solid for info in members)  # each member continues the one before
    result = extract_archive(summary.videos_path, tmp_path / "extracted", expected_top="UCF-101")
    assert result.files == 101 and result.bytes == summary.video_bytes


def test_the_command_line_writes_the_set(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(scale_demo, "generate_scale_demo", lambda *args, **kwargs: calls.append((args, kwargs)) or "ok")
    assert main(["scale-demo", str(tmp_path), "--fraction", "0.1", "--solid", "--jobs", "3"]) == 0
    assert calls == [((str(tmp_path), 0.1), {"seed": 0, "n_jobs": 3, "solid": True})]
