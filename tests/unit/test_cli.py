"""The `nlflow` console script: weights inspect/convert, predict, and one-line errors."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from nlflow.demo.dataset import make_class_video
from nlflow.demo.weights import write_demo_pretrained
from nlflow.models import ModelConfig, load_checkpoint

from helpers.evaluation import VIDEO_SIZE, tiny_checkpoint

NLFLOW = shutil.which("nlflow")
pytestmark = pytest.mark.skipif(NLFLOW is None, reason="the nlflow console script is not installed")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([NLFLOW, *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def caffe2_pkl(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "kinetics_like.pkl"
    cfg = ModelConfig(arch="i3d", depth=50, use_nonlocal=True, num_classes=400, width=4, video_length=4, sample_rate=2)
    write_demo_pretrained(path, cfg, num_pretrain_classes=400, seed=0)
    return path


def test_weights_inspect_lists_what_cleaning_drops(caffe2_pkl):
    result = run("weights", "inspect", str(caffe2_pkl))
    assert result.returncode == 0, result.stderr
    assert "conv1_w" in result.stdout and "model_iter" in result.stdout
    assert "momentum" in result.stdout


def test_weights_convert_for_fine_tuning(caffe2_pkl, tmp_path):
    dst = tmp_path / "init.pt"
    result = run("weights", "convert", str(caffe2_pkl), str(dst), "--num-classes", "7", "--drop-head")
    assert result.returncode == 0, result.stderr
    model = load_checkpoint(dst)
    assert model.config.num_classes == 7 and model.config.arch == "i3d" and model.config.width == 4
    fc = model.head.fc
    assert float(fc.bias.detach().abs().max()) == 0.0
    assert 0.003 < float(fc.weight.detach().std()) < 0.03  # std 0.01 initialisation
    payload = torch.load(dst, weights_only=True)
    assert not any("momentum" in key for key in payload["state_dict"])


def test_refused_pickle_is_one_line_error(tmp_path):
    evil = tmp_path / "evil.pkl"
    marker = tmp_path / "ran"
    evil.write_bytes(
        b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
    )
    result = run("weights", "inspect", str(evil))
    assert result.returncode == 2
    assert not marker.exists()
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "os" in result.stderr


def test_predict_reports_good_and_bad_files(tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "model.pt")
    good = tmp_path / "good.avi"
    make_class_video(good, "MoveUp", np.random.default_rng(0), num_frames=24, size=VIDEO_SIZE)
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"not a video")
    result = run("predict", str(good), str(bad), "--checkpoint", str(ckpt), "--topk", "2", "--views", "3", "--json")
    assert result.returncode == 1  # one file failed
    predictions = {Path(p["video"]).name: p for p in json.loads(result.stdout)}
    assert predictions["bad.avi"]["error"]
    top = predictions["good.avi"]["top"]
    assert len(top) == 2
    assert top[0]["probability"] >= top[1]["probability"] > 0
    assert {entry["class"] for entry in top} <= set(load_checkpoint(ckpt).classes)
    ok = run("predict", str(good), "--checkpoint", str(ckpt))
    assert ok.returncode == 0 and "good.avi" in ok.stdout


def _every_parser(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _every_parser(sub)


def test_every_option_and_argument_has_a_description():
    from nlflow.cli import build_parser

    undocumented = [
        f"{parser.prog} {action.dest}"
        for parser in _every_parser(build_parser())
        for action in parser._actions
        if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) and not action.help
    ]
    assert undocumented == []
