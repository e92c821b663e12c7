"""The demo's stand-in pretrained file looks like a released Caffe2 checkpoint."""

import numpy as np
import torch

from nlflow.demo.weights import write_demo_pretrained
from nlflow.models import ModelConfig
from nlflow.weights.caffe2_pickle import read_caffe2_pickle
from nlflow.weights.convert import convert_caffe2_to_checkpoint
from nlflow.weights.name_map import tensor_names

CFG = ModelConfig(width=8, num_classes=5, video_length=8, sample_rate=8)


def test_demo_file_has_the_official_layout(tmp_path):
    path = write_demo_pretrained(tmp_path / "demo.pkl", CFG)
    assert path.read_bytes()[:2] == b"\x80\x02"
    blobs = read_caffe2_pickle(path)
    assert int(blobs["model_iter"][0]) == 400000 and float(blobs["lr"][0]) > 0
    assert blobs["pred_w"].shape == (400, 256) and blobs["pred_b"].shape == (400,)
    names = tensor_names(CFG.replace(num_classes=400))
    params = [n.blob for n in names if n.role not in ("bn_rm", "bn_riv")]
    stats = [n.blob for n in names if n.role in ("bn_rm", "bn_riv")]
    assert set(blobs) == {n.blob for n in names} | {p + "_momentum" for p in params} | {"model_iter", "lr"}
    assert all(blobs[p + "_momentum"].shape == blobs[p].shape for p in params)
    assert not any(s + "_momentum" in blobs for s in stats)
    assert all(blobs[n].dtype == np.float32 for n in params)


def test_demo_file_is_seeded_and_converts_to_the_demo_model(tmp_path):
    a = read_caffe2_pickle(write_demo_pretrained(tmp_path / "a.pkl", CFG, seed=1))
    b = read_caffe2_pickle(write_demo_pretrained(tmp_path / "b.pkl", CFG, seed=1))
    c = read_caffe2_pickle(write_demo_pretrained(tmp_path / "c.pkl", CFG, seed=2))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["conv1_w"], c["conv1_w"])

    report = convert_caffe2_to_checkpoint(tmp_path / "a.pkl", tmp_path / "a.pt", num_classes=5)
    assert report.model_config == CFG  # arch, depth, non-local and width inferred from the file
    assert report.head_reinitialised and report.source_classes == 400
    assert len(report.clean.training_state) == len(a) - len(tensor_names(CFG)) and not report.load.leftover
    state = torch.load(tmp_path / "a.pt", weights_only=True)["state_dict"]
    assert torch.equal(state["stem.conv.weight"], torch.from_numpy(a["conv1_w"]))
