"""Caffe2 blob names <-> state_dict keys: complete, official, strict, inflating, folding."""

import numpy as np
import pytest
import torch

from nlflow.models.builder import ModelConfig, build_model
from nlflow.weights.name_map import WeightMismatchError, blobs_to_state_dict, state_dict_to_blobs, tensor_names


def _official_blob_names_r50(nonlocal_blocks: dict[int, tuple[int, ...]]) -> set[str]:
    """The released R50 checkpoints' parameter/statistics blobs, written out independently."""
    bn = ("_s", "_b", "_rm", "_riv")
    names = {"conv1_w", "pred_w", "pred_b"} | {"res_conv1_bn" + s for s in bn}
    for stage, blocks in zip((2, 3, 4, 5), (3, 4, 6, 3)):
        for i in range(blocks):
            branches = ["branch2a", "branch2b", "branch2c"] + (["branch1"] if i == 0 else [])
            for br in branches:
                names.add(f"res{stage}_{i}_{br}_w")
                names |= {f"res{stage}_{i}_{br}_bn{s}" for s in bn}
        for i in nonlocal_blocks.get(stage, ()):
            for part in ("theta", "phi", "g", "out"):
                names |= {f"nonlocal_conv{stage}_{i}_{part}_w", f"nonlocal_conv{stage}_{i}_{part}_b"}
            names |= {f"nonlocal_conv{stage}_{i}_bn{s}" for s in bn}
    return names


def _randomised(cfg: ModelConfig, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(cfg)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand_like(tensor) + 0.5 if "running_var" in name else torch.randn_like(tensor) * 0.1)
    return model.eval()


def test_blob_names_are_the_official_ones():
    blobs = {n.blob for n in tensor_names(ModelConfig(use_nonlocal=True))}
    assert blobs == _official_blob_names_r50({3: (1, 3), 4: (1, 3, 5)})
    assert {n.blob for n in tensor_names(ModelConfig(use_nonlocal=False, arch="c2d"))} == _official_blob_names_r50({})
    r101 = {n.blob for n in tensor_names(ModelConfig(depth=101))}
    assert "res4_22_branch2c_bn_riv" in r101 and "nonlocal_conv4_20_out_b" in r101 and "nonlocal_conv4_5_g_w" not in r101


@pytest.mark.parametrize("arch", ["i3d", "c2d"])
@pytest.mark.parametrize("depth", [50, 101])
@pytest.mark.parametrize("frozen_bn", [False, True])
def test_map_covers_every_tensor_exactly_once(arch, depth, frozen_bn):
    cfg = ModelConfig(arch=arch, depth=depth, frozen_bn=frozen_bn, width=4, num_classes=3)
    names = tensor_names(cfg)
    keys = [n.key for n in names]
    blobs = [n.blob for n in names]
    assert len(set(keys)) == len(keys) and len(set(blobs)) == len(blobs)
    expected = {k for k in build_model(cfg).state_dict() if not k.endswith("num_batches_tracked")}
    assert set(keys) == expected


def test_round_trip_through_blobs_reproduces_the_network():
    cfg = ModelConfig(width=4, num_classes=3)
    source = _randomised(cfg)
    blobs = state_dict_to_blobs(source)
    assert blobs["pred_w"].shape == (3, 128) and blobs["conv1_w"].shape == (4, 3, 5, 7, 7)
    assert all(v.dtype == np.float32 for v in blobs.values())
    target = build_model(cfg).eval()
    state, report = blobs_to_state_dict(blobs, target)
    target.load_state_dict(state)
    assert not report.leftover and not report.defaults and len(report.loaded) == len(blobs)
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(target(x), source(x))


def test_fully_convolutional_pred_w_is_accepted():
    cfg = ModelConfig(width=4, num_classes=3, use_nonlocal=False)
    blobs = state_dict_to_blobs(_randomised(cfg))
    blobs["pred_w"] = blobs["pred_w"].reshape(3, 128, 1, 1, 1)
    state, _ = blobs_to_state_dict(blobs, build_model(cfg))
    np.testing.assert_array_equal(state["head.fc.weight"].numpy(), blobs["pred_w"].reshape(3, 128))


def test_2d_imagenet_kernels_are_inflated_by_repeating_and_dividing_by_t():
    c2d = ModelConfig(arch="c2d", width=4, num_classes=3, use_nonlocal=False)
    blobs = state_dict_to_blobs(_randomised(c2d))
    planar = {k: v[:, :, 0] if k.endswith("_w") and v.ndim == 5 else v for k, v in blobs.items()}  # [out,in,h,w]
    i3d_model = build_model(c2d.replace(arch="i3d"))
    state, report = blobs_to_state_dict(planar, i3d_model)
    conv1 = state["stem.conv.weight"].numpy()
    assert conv1.shape == (4, 3, 5, 7, 7)
    for t in range(5):
        np.testing.assert_allclose(conv1[:, :, t], planar["conv1_w"] / 5, rtol=1e-6)
    np.testing.assert_allclose(state["res2.0.conv_a.weight"].numpy().sum(axis=2), planar["res2_0_branch2a_w"][:, :, 0, 0][..., None, None], rtol=1e-5)
    assert "conv1_w" in report.inflated and "res3_0_branch2a_w" in report.inflated
    assert "res3_1_branch2a_w" not in report.inflated  # temporal kernel 1 there: a plain copy
    # A 5-D kernel of temporal size 1 (a C2D file) does not inflate: the original asserts equal shapes.
    with pytest.raises(WeightMismatchError, match=r"'conv1_w' has shape \[4, 3, 1, 7, 7\].*only 2-D kernels inflate"):
        blobs_to_state_dict(blobs, i3d_model)


def test_missing_and_misshapen_blobs_are_errors_and_leftovers_are_reported():
    cfg = ModelConfig(width=4, num_classes=3)
    model = build_model(cfg)
    blobs = state_dict_to_blobs(_randomised(cfg))

    missing = dict(blobs)
    del missing["res4_3_branch2b_w"]
    with pytest.raises(WeightMismatchError, match="res4_3_branch2b_w"):
        blobs_to_state_dict(missing, model)

    wrong = dict(blobs)
    wrong["nonlocal_conv3_1_theta_w"] = np.zeros((3, 3, 1, 1, 1), np.float32)
    with pytest.raises(WeightMismatchError, match=r"nonlocal_conv3_1_theta_w.*\[3, 3, 1, 1, 1\]"):
        blobs_to_state_dict(wrong, model)

    extra = dict(blobs, res9_0_branch2a_w=np.zeros(1, np.float32))
    _, report = blobs_to_state_dict(extra, model)
    assert report.leftover == ["res9_0_branch2a_w"]


def test_missing_head_only_when_allowed():
    cfg = ModelConfig(width=4, num_classes=3)
    model = build_model(cfg)
    blobs = {k: v for k, v in state_dict_to_blobs(_randomised(cfg)).items() if not k.startswith("pred_")}
    with pytest.raises(WeightMismatchError, match="drop_head"):
        blobs_to_state_dict(blobs, model)
    state, report = blobs_to_state_dict(blobs, model, allow_missing_head=True)
    assert set(report.defaults) == {"head.fc.weight", "head.fc.bias"}
    assert torch.equal(state["head.fc.weight"], model.state_dict()["head.fc.weight"])


def test_bn_statistics_all_absent_keep_defaults_but_partial_absence_is_an_error():
    cfg = ModelConfig(width=4, num_classes=3)
    model = build_model(cfg)
    blobs = state_dict_to_blobs(_randomised(cfg))
    no_stats = {k: v for k, v in blobs.items() if not k.endswith(("_rm", "_riv"))}
    state, report = blobs_to_state_dict(no_stats, model)
    assert "stem.bn.running_var" in report.defaults
    assert torch.equal(state["stem.bn.running_var"], torch.ones(4))
    partial = dict(no_stats, res_conv1_bn_rm=blobs["res_conv1_bn_rm"])
    with pytest.raises(WeightMismatchError, match="res_conv1_bn_riv"):
        blobs_to_state_dict(partial, model)


def test_frozen_bn_network_folds_statistics_and_computes_the_same():
    cfg = ModelConfig(width=4, num_classes=3)
    with_bn = _randomised(cfg)
    blobs = state_dict_to_blobs(with_bn)
    frozen = build_model(cfg.replace(frozen_bn=True)).eval()
    state, report = blobs_to_state_dict(blobs, frozen)
    frozen.load_state_dict(state)
    assert "res_conv1_bn" in report.folded_bn and "nonlocal_conv4_5_bn" in report.folded_bn
    assert not report.leftover
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(frozen(x), with_bn(x), rtol=1e-4, atol=1e-5)
    # Without statistics (the "affine" configs' files), _s and _b are the affine parameters.
    affine_blobs = state_dict_to_blobs(frozen)
    assert not any(k.endswith(("_rm", "_riv")) for k in affine_blobs)
    state2, report2 = blobs_to_state_dict(affine_blobs, build_model(cfg.replace(frozen_bn=True)))
    assert not report2.folded_bn
    assert all(torch.equal(state2[k], v) for k, v in state.items())


def test_a_baseline_file_can_start_a_nonlocal_network_only_when_allowed():
    baseline = ModelConfig(width=4, num_classes=3, use_nonlocal=False)
    blobs = state_dict_to_blobs(_randomised(baseline))
    target = build_model(baseline.replace(use_nonlocal=True))
    with pytest.raises(WeightMismatchError, match="nonlocal_conv3_1"):
        blobs_to_state_dict(blobs, target)
    state, report = blobs_to_state_dict(blobs, target, allow_missing_nonlocal=True)
    assert "res3.nl1.theta.weight" in report.defaults and len(report.defaults) == 5 * 12
    assert torch.count_nonzero(state["res4.nl5.bn.weight"]) == 0  # still the identity
    assert torch.equal(state["res2.0.conv_a.weight"], torch.from_numpy(blobs["res2_0_branch2a_w"]))
