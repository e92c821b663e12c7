"""hubconf.py: torch.hub loads every zoo model from the local checkout; pretrained=True downloads
(checksum-locked, from a real HTTP server on 127.0.0.1) and converts the released file."""

from __future__ import annotations

import functools
import importlib.util
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from nlflow.archives.download import DownloadError
from nlflow.models import ModelConfig
from nlflow.weights.convert import convert_caffe2_to_checkpoint
from nlflow.models import load_checkpoint
from nlflow.weights.zoo import ZOO, zoo_model

from helpers import REPO
from helpers.weights import trained_model, write_official_pickle

NAME = "i3d_nonlocal_8x8_IN_pretrain_400k"


def hubconf():
    spec = importlib.util.spec_from_file_location("hubconf", REPO / "hubconf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_entry_point_per_zoo_model_and_the_dependencies():
    module = hubconf()
    entries = sorted(name for name in dir(module) if callable(getattr(module, name)) and not name.startswith("_"))
    assert entries == sorted(model.name for model in ZOO)  # what torch.hub.list shows
    for name in module.dependencies:
        assert importlib.util.find_spec(name) is not None
    assert "32x4 clips, affine" in module.i3d_nonlocal_32x4_I3D_pretrain_400k.__doc__


@pytest.mark.parametrize("name", [model.name for model in ZOO])
def test_torch_hub_builds_each_zoo_network_from_the_local_checkout(name):
    model = torch.hub.load(str(REPO), name, source="local", pretrained=False, trust_repo=True, verbose=False)
    assert model.config == zoo_model(name).model_config(400)
    small = torch.hub.load(str(REPO), name, source="local", num_classes=101, verbose=False)
    assert small.head.fc.out_features == 101


@pytest.fixture()
def server(tmp_path):
    """A real HTTP server over a folder, counting the requests it answers."""
    served = tmp_path / "served"
    served.mkdir()
    requests = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            requests.append(self.path)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}", requests
    httpd.shutdown()
    httpd.server_close()


def test_pretrained_downloads_locks_converts_and_reuses(server, tmp_path):
    served, url, requests = server
    network = trained_model(ModelConfig(**zoo_model(NAME).model_settings(), num_classes=400), seed=4)
    write_official_pickle(served / f"{NAME}.pkl", network)
    cache = tmp_path / "hub"

    def load(**kwargs):
        return torch.hub.load(str(REPO), NAME, source="local", pretrained=True, url=f"{url}/{NAME}.pkl",
                              cache_dir=str(cache), verbose=False, **kwargs)

    model = load()
    assert len(requests) == 1 and (cache / f"{NAME}.pkl.sha256").is_file()
    convert_caffe2_to_checkpoint(served / f"{NAME}.pkl", tmp_path / "direct.pt")
    expected = load_checkpoint(tmp_path / "direct.pt").state_dict()
    assert model.state_dict().keys() == expected.keys()
    assert all(torch.equal(model.state_dict()[key], value) for key, value in expected.items())
    assert not model.training and model.config == zoo_model(NAME).model_config(400)

    again = load()  # the verified download and its conversion are reused
    assert len(requests) == 1 and torch.equal(again.head.fc.weight, model.head.fc.weight)
    fine_tune = load(num_classes=101)
    assert fine_tune.head.fc.out_features == 101 and len(requests) == 1
    assert torch.equal(fine_tune.res5[0].conv_a.weight, model.res5[0].conv_a.weight)

    # Another file under the same name on the server: the lock recorded at the first download refuses it.
    write_official_pickle(served / f"{NAME}.pkl", trained_model(network.config, seed=5))
    (cache / f"{NAME}.pkl").unlink()
    with pytest.raises(DownloadError, match="SHA-256"):
        load()
