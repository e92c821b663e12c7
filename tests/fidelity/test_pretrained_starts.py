"""The original's Kinetics recipes start from the members of pretrained_model.tar.gz: the ImageNet
ResNet-50 / 101 (2-D kernels) inflated into I3D with non-local blocks, and the affine I3D baseline
grown into the affine non-local 32x4 network. nlflow's conversion against the original's rule.

The rule, transcribed here from ``lib/utils/checkpoints.py`` (``initialize_master_gpu_model_params``,
commit c253ed5) without nlflow's code: for every parameter blob of the network being trained, a
blob the file lacks is logged "not found" and keeps the network's initialisation; a ``pred`` blob
of another element count is not loaded (same count: reshaped); a file blob with another number of
dimensions must match the network's first two and last two sizes and becomes
``np.stack([blob] * T, axis=2) / T``; any other blob must have the network's shape (assertion).
The files are made in the official format from the blob names and shapes of the original's own
builders (``tests/helpers/caffe2_reference.py``): a C2D network's blobs with the temporal axis
dropped (the ImageNet files), and an I3D baseline whose BN layers are folded as
``process_data/convert_models/convert_to_finetune.py`` folds them (the affine file).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nlflow.models import ModelConfig, build_model, load_checkpoint, read_checkpoint
from nlflow.weights.caffe2_pickle import dumps_py2, write_caffe2_pickle
from nlflow.weights.convert import ConvertError, convert_caffe2_to_checkpoint
from nlflow.weights.name_map import state_dict_to_blobs

from helpers import caffe2_reference as ref

WIDTH = 8
SEED = 0  # convert_caffe2_to_checkpoint's default: the seed of what a file lacks


def original_initialisation(network: dict[str, np.ndarray], file_blobs: dict) -> dict[str, np.ndarray]:
    """The network's blobs after the original loaded ``file_blobs`` into it (see the module docstring)."""
    loaded = {}
    for name, ws_blob in network.items():
        if name not in file_blobs:
            loaded[name] = ws_blob  # "{} not found": the initialisation stays
            continue
        blob = np.asarray(file_blobs[name])
        if "pred" in name:
            if np.prod(ws_blob.shape) != np.prod(blob.shape):
                loaded[name] = ws_blob  # "(classifier) found but unmatching (not loaded)"
                continue
            blob = np.reshape(blob, ws_blob.shape)
        if len(ws_blob.shape) != len(blob.shape):
            assert ws_blob.shape[:2] == blob.shape[:2]
            assert ws_blob.shape[-2:] == blob.shape[-2:]
            num_inflate = ws_blob.shape[2]
            blob = np.stack([blob] * num_inflate, axis=2) / float(num_inflate)
        assert ws_blob.shape == blob.shape
        loaded[name] = blob.astype(np.float32, copy=False)
    return loaded


def imagenet_file(depth: int) -> dict[str, np.ndarray]:
    """An ImageNet ResNet's blobs: the original's C2D network of that depth, kernels 2-D, a 1000-way FC."""
    c2d = ref.ref_config({"MODEL.VIDEO_ARC_CHOICE": 1 if depth == 50 else 3, "MODEL.DEPTH": depth,
                          "MODEL.NUM_CLASSES": 1000, "NONLOCAL.CONV3_NONLOCAL": False,
                          "NONLOCAL.CONV4_NONLOCAL": False}, width=WIDTH)
    blobs = ref.make_blobs(c2d, seed=depth, split="train")
    planar = {name: value[:, :, 0] if value.ndim == 5 else value for name, value in blobs.items()}
    assert planar["conv1_w"].shape == (WIDTH, 3, 7, 7) and planar["pred_w"].shape == (1000, 32 * WIDTH)
    return planar


def nlflow_blobs(checkpoint) -> dict[str, np.ndarray]:
    return state_dict_to_blobs(load_checkpoint(checkpoint))


def fresh_blobs(cfg: ModelConfig) -> dict[str, np.ndarray]:
    torch.manual_seed(SEED)
    return state_dict_to_blobs(build_model(cfg))


@pytest.mark.parametrize("depth", [50, 101])
def test_imagenet_into_i3d_nonlocal_is_the_originals_inflation(tmp_path, depth):
    i3d_nl = ref.ref_config({"MODEL.VIDEO_ARC_CHOICE": 2 if depth == 50 else 4, "MODEL.DEPTH": depth}, width=WIDTH)
    specs = ref.blob_specs(i3d_nl, split="train")
    source = imagenet_file(depth)
    write_caffe2_pickle(tmp_path / f"r{depth}_pretrain_c2_model_iter450450_clean.pkl", source, protocol=2)
    cfg = ModelConfig(arch="i3d", depth=depth, use_nonlocal=True, width=WIDTH, num_classes=400)
    report = convert_caffe2_to_checkpoint(tmp_path / f"r{depth}_pretrain_c2_model_iter450450_clean.pkl",
                                          tmp_path / "init.pt", model_cfg=cfg, init_missing_nonlocal=True)

    ours = nlflow_blobs(tmp_path / "init.pt")
    # the original's builder and nlflow name and shape the same blobs
    assert {name: spec.shape for name, spec in specs.items()} == {name: value.shape for name, value in ours.items()}
    expected = original_initialisation(fresh_blobs(cfg), source)
    for name in specs:
        np.testing.assert_array_equal(ours[name], expected[name], err_msg=name)
    # what the rule did, told apart: inflated kernels, kept initialisation (5 non-local blocks, classifier)
    assert ours["conv1_w"].shape == (WIDTH, 3, 5, 7, 7)
    np.testing.assert_array_equal(ours["conv1_w"][:, :, 2], source["conv1_w"] / np.float32(5))
    assert report.load.inflated.count("conv1_w") == 1 and "res2_0_branch2a_w" in report.load.inflated
    kept = {name for name in specs if name not in source or name.startswith("pred")}
    assert {name.split("_")[1] for name in kept if name.startswith("nonlocal_")} == {"conv3", "conv4"}
    assert len({name.rsplit("_", 2)[0] for name in kept if name.startswith("nonlocal_")}) == 5
    assert report.head_reinitialised and read_checkpoint(tmp_path / "init.pt")["model_config"]["depth"] == depth


def test_a_5d_source_of_temporal_size_1_is_refused_as_the_original_asserts(tmp_path):
    cfg = ModelConfig(arch="i3d", depth=50, use_nonlocal=True, width=WIDTH, num_classes=400)
    temporal = {name: value[:, :, None] if value.ndim == 4 else value for name, value in imagenet_file(50).items()}
    with pytest.raises(AssertionError):
        original_initialisation(fresh_blobs(cfg), temporal)
    write_caffe2_pickle(tmp_path / "c2d_like.pkl", temporal, protocol=2)
    with pytest.raises(ConvertError, match=r"conv1_w' has shape \[8, 3, 1, 7, 7\].*only 2-D kernels inflate"):
        convert_caffe2_to_checkpoint(tmp_path / "c2d_like.pkl", tmp_path / "x.pt", model_cfg=cfg,
                                     init_missing_nonlocal=True)
    assert not (tmp_path / "x.pt").exists()


def fold_bn_as_convert_to_finetune(blobs: dict) -> dict:
    """remove_spatial_bn_layers, remove_momentum, remove_non_param_fields; modify_caffe2_ftvideo.py then
    deletes every `pred` blob and sets lr, writing the flat dict."""
    folded = {name: value for name, value in blobs.items() if not name.endswith("_momentum") and "pred" not in name}
    for name in sorted(blobs):
        if name.endswith("_bn_s"):
            layer = name[: -len("_bn_s")]
            std = np.sqrt(blobs[layer + "_bn_riv"] + 1e-5)
            folded[layer + "_bn_s"] = blobs[layer + "_bn_s"] / std
            folded[layer + "_bn_b"] = blobs[layer + "_bn_b"] - blobs[layer + "_bn_rm"] * blobs[layer + "_bn_s"] / std
            del folded[layer + "_bn_rm"], folded[layer + "_bn_riv"]
    for field in ("epoch", "model_iter", "lr"):
        folded.pop(field, None)
    folded["lr"] = 0.00125
    return folded


def test_affine_baseline_into_the_affine_nonlocal_32x4_network(tmp_path):
    baseline = ref.ref_config({"MODEL.VIDEO_ARC_CHOICE": 2, "NONLOCAL.CONV3_NONLOCAL": False,
                               "NONLOCAL.CONV4_NONLOCAL": False}, width=WIDTH)
    source = fold_bn_as_convert_to_finetune(ref.make_blobs(baseline, seed=3, split="train", solver_state=True))
    path = tmp_path / "run_i3d_baseline_400k" / "affine_model_400k.pkl"
    path.parent.mkdir()
    path.write_bytes(dumps_py2(source, protocol=2))  # modify_caffe2_ftvideo.py pickles the flat dict
    # run_i3d_nlnet_affine_400k.sh: the affine config (USE_AFFINE, NONLOCAL.USE_BN False), 32 x 4 clips
    affine_nl = ref.ref_config({"MODEL.VIDEO_ARC_CHOICE": 2, "MODEL.USE_AFFINE": True, "NONLOCAL.USE_BN": False,
                                "TRAIN.VIDEO_LENGTH": 32}, width=WIDTH)
    specs = ref.blob_specs(affine_nl, split="train")
    cfg = ModelConfig(arch="i3d", depth=50, use_nonlocal=True, width=WIDTH, num_classes=400, video_length=32,
                      sample_rate=4, frozen_bn=True, nonlocal_norm=False, nonlocal_temporal_group=4)
    convert_caffe2_to_checkpoint(path, tmp_path / "init.pt", model_cfg=cfg, init_missing_nonlocal=True)
    ours = nlflow_blobs(tmp_path / "init.pt")
    assert {name: spec.shape for name, spec in specs.items()} == {name: value.shape for name, value in ours.items()}
    expected = original_initialisation(fresh_blobs(cfg), source)
    for name in specs:
        np.testing.assert_array_equal(ours[name], expected[name], err_msg=name)
    assert not any(name.endswith(("_rm", "_riv")) for name in specs)
