"""`nlflow predict --model <zoo name>`: the released file is fetched from a real HTTP server on
127.0.0.1 on first use, converted with its 400-class head named by classids.json, and reused after."""

from __future__ import annotations

import functools
import json
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from nlflow.cli import main
from nlflow.demo.dataset import make_class_video
from nlflow.demo.weights import write_demo_pretrained
from nlflow.lists.kinetics_facts import kinetics400_classes
from nlflow.models import ModelConfig, read_checkpoint
from nlflow.weights.cache import CACHE_ENV, MIRROR_ENV, cache_dir, released_checkpoint, zoo_file_url

NAME = "i3d_nonlocal_8x8_IN_pretrain_400k"
# The released network at width 8 (a zoo-format file: official blob names, solver state, 400 classes).
TINY = ModelConfig(arch="i3d", depth=50, use_nonlocal=True, width=8, video_length=8, sample_rate=8)


@pytest.fixture()
def zoo_server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    write_demo_pretrained(served / f"{NAME}.pkl", TINY, num_pretrain_classes=400)
    requests: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            requests.append(self.path)
            super().do_GET()

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", requests
    server.shutdown()
    server.server_close()


def test_predict_downloads_converts_once_and_prints_kinetics_names(zoo_server, tmp_path, monkeypatch, capsys):
    mirror, requests = zoo_server
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(MIRROR_ENV, mirror)
    video = tmp_path / "clip.avi"
    make_class_video(video, "Grow", np.random.default_rng(0), num_frames=24, size=(64, 48))
    assert main(["predict", str(video), "--model", NAME, "--views", "1", "--topk", "3", "--json"]) == 0
    first = capsys.readouterr().out
    names = set(kinetics400_classes())
    top = json.loads(first)[0]["top"]
    assert len(top) == 3 and all(entry["class"] in names for entry in top)
    assert requests == [f"/{NAME}.pkl"]
    checkpoint = tmp_path / "cache" / "zoo" / f"{NAME}.pt"
    assert read_checkpoint(checkpoint)["classes"] == list(kinetics400_classes())
    assert (tmp_path / "cache" / "zoo" / "zoo.sha256").read_text().endswith(f"  {NAME}.pkl\n")
    # the second use reads the cache: no request, the same answer
    assert main(["predict", str(video), "--model", NAME, "--views", "1", "--topk", "3", "--json"]) == 0
    assert capsys.readouterr().out == first and len(requests) == 1


def test_a_name_that_is_no_released_model_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    assert main(["predict", str(tmp_path / "x.mp4"), "--model", "i3d_nonlocal_8x8_IN_pretrain_40k"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("nlflow predict: 'i3d_nonlocal_8x8_IN_pretrain_40k' is not a released")
    assert "did you mean i3d_nonlocal_8x8_IN_pretrain_400k" in error and "\n" not in error


def test_cache_place_and_mirror(tmp_path, monkeypatch):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "nlflow"
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    assert zoo_file_url(NAME) == f"https://dl.fbaipublicfiles.com/video-nonlocal/{NAME}.pkl"
    assert zoo_file_url(NAME, "/srv/models/") == f"/srv/models/{NAME}.pkl"


def test_a_local_folder_as_mirror(tmp_path):
    served = tmp_path / "models"
    served.mkdir()
    write_demo_pretrained(served / f"{NAME}.pkl", TINY, num_pretrain_classes=400)
    checkpoint = released_checkpoint(NAME, cache=tmp_path / "cache", mirror=str(served))
    assert read_checkpoint(checkpoint)["model_config"]["width"] == 8
