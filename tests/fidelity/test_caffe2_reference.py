"""Checks of tests/helpers/caffe2_reference.py (the independent float64 reading of the original Caffe2 test
graph) against things worked out by hand: blob names and shapes counted from the original's
builders, and each kind of op recomputed with explicit numpy loops (convolution as a loop over
kernel offsets, pooling as a loop over window offsets, the non-local block as the paper's formula
per sample, the head as a loop over positions), both on tiny inputs and in situ on full-depth
narrow (width 4) networks at the fully-convolutional test size 256x256."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from helpers import caffe2_reference as ref

EPS = 1.0000001e-5
C = 7  # classes in the small networks


# --------------------------------------------------------------------------------------------
# Hand-written numpy ops
# --------------------------------------------------------------------------------------------
def conv_np(x, w, stride=(1, 1, 1), pad=(0, 0, 0), groups=1, bias=None):
    """3D convolution as a sum over kernel offsets of (strided slice) x (weight tap)."""
    n, c, t, h, wd = x.shape
    o, cg, kt, kh, kw = w.shape
    assert c == cg * groups
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1]), (pad[2], pad[2])))
    to = (t + 2 * pad[0] - kt) // stride[0] + 1
    ho = (h + 2 * pad[1] - kh) // stride[1] + 1
    wo = (wd + 2 * pad[2] - kw) // stride[2] + 1
    out = np.zeros((n, o, to, ho, wo))
    og = o // groups
    for gi in range(groups):
        for dt in range(kt):
            for dh in range(kh):
                for dw in range(kw):
                    patch = xp[:, gi * cg:(gi + 1) * cg,
                               dt:dt + stride[0] * (to - 1) + 1:stride[0],
                               dh:dh + stride[1] * (ho - 1) + 1:stride[1],
                               dw:dw + stride[2] * (wo - 1) + 1:stride[2]]
                    out[:, gi * og:(gi + 1) * og] += np.einsum(
                        "ncthw,oc->nothw", patch, w[gi * og:(gi + 1) * og, :, dt, dh, dw])
    if bias is not None:
        out += bias[None, :, None, None, None]
    return out


def pool_np(x, kernel, stride, reduce):
    n, c, t, h, w = x.shape
    to, ho, wo = ((s - k) // st + 1 for s, k, st in zip((t, h, w), kernel, stride))
    windows = []
    for dt in range(kernel[0]):
        for dh in range(kernel[1]):
            for dw in range(kernel[2]):
                windows.append(x[:, :, dt:dt + stride[0] * (to - 1) + 1:stride[0],
                                 dh:dh + stride[1] * (ho - 1) + 1:stride[1],
                                 dw:dw + stride[2] * (wo - 1) + 1:stride[2]])
    return reduce(np.stack(windows), axis=0)


def bn_np(x, blobs, name, eps=EPS):
    v = lambda k: blobs[name + k].astype(np.float64)[None, :, None, None, None]  # noqa: E731
    return (x - v("_rm")) / np.sqrt(v("_riv") + eps) * v("_s") + v("_b")


def affine_np(x, blobs, name):
    v = lambda k: blobs[name + k].astype(np.float64)[None, :, None, None, None]  # noqa: E731
    return x * v("_s") + v("_b")


def f64(blobs, name):
    return blobs[name].astype(np.float64)


def nonlocal_np(x, blobs, prefix, norm="bn", softmax=True, scale=True):
    """x + BN(W_z y), y_i = sum_j softmax_j(theta_i . phi_j / sqrt(d)) g_j, phi/g on a 1x2x2 max-pooled x,
    one sample at a time."""
    w = lambda k: f64(blobs, prefix + k)  # noqa: E731
    theta = conv_np(x, w("_theta_w"), bias=w("_theta_b"))
    pooled = pool_np(x, (1, 2, 2), (1, 2, 2), np.max)
    phi = conv_np(pooled, w("_phi_w"), bias=w("_phi_b"))
    g = conv_np(pooled, w("_g_w"), bias=w("_g_b"))
    d = theta.shape[1]
    y = np.zeros_like(theta)
    for n in range(x.shape[0]):
        th = theta[n].reshape(d, -1).T  # (positions, d)
        ph = phi[n].reshape(d, -1).T
        gg = g[n].reshape(d, -1).T
        f = th @ ph.T
        if softmax:
            if scale:
                f = f / math.sqrt(d)
            p = np.exp(f - f.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
        else:
            p = f / ph.shape[0]
        y[n] = (p @ gg).T.reshape(theta.shape[1:])
    z = conv_np(y, w("_out_w"), bias=w("_out_b"))
    if norm == "bn":
        z = bn_np(z, blobs, prefix + "_bn")
    elif norm == "affine":
        z = affine_np(z, blobs, prefix + "_bn")
    return x + z


def head_np(feat, pred_w, pred_b, pool_stride):
    """pool5 (avg [pool_stride, 7, 7], stride 1), 1x1x1 pred conv, softmax at every position, mean."""
    n, d, t, h, w = feat.shape
    pred_w = pred_w.reshape(pred_w.shape[0], -1)
    out = np.zeros((n, pred_w.shape[0]))
    positions = [(a, b, c) for a in range(t - pool_stride + 1) for b in range(h - 6) for c in range(w - 6)]
    for i in range(n):
        for a, b, c in positions:
            pooled = np.zeros(d)
            for dt in range(pool_stride):
                for dh in range(7):
                    for dw in range(7):
                        pooled += feat[i, :, a + dt, b + dh, c + dw]
            pooled /= pool_stride * 49
            logits = pred_w @ pooled + pred_b
            e = np.exp(logits - logits.max())
            out[i] += e / e.sum()
        out[i] /= len(positions)
    return out


def run_net(blobs, fn, *args):
    net = ref._Net(blobs)
    with torch.no_grad():
        out = fn(net, *args)
    return out.numpy() if isinstance(out, torch.Tensor) else out


def rand_blobs(rng, shapes):
    return {k: rng.normal(0, 1 / math.sqrt(max(1, int(np.prod(s[1:])))), size=s).astype(np.float32)
            if k.endswith("_w") else rng.uniform(-0.3, 0.3, size=s).astype(np.float32)
            for k, s in shapes.items()}


def nl_blobs(rng, prefix, dim, dim_inner, norm):
    shapes = {}
    for part in ("theta", "phi", "g"):
        shapes[f"{prefix}_{part}_w"] = (dim_inner, dim, 1, 1, 1)
        shapes[f"{prefix}_{part}_b"] = (dim_inner,)
    shapes[f"{prefix}_out_w"] = (dim, dim_inner, 1, 1, 1)
    shapes[f"{prefix}_out_b"] = (dim,)
    blobs = rand_blobs(rng, shapes)
    if norm in ("bn", "affine"):
        blobs[f"{prefix}_bn_s"] = rng.uniform(0.5, 1.5, dim).astype(np.float32)
        blobs[f"{prefix}_bn_b"] = rng.uniform(-0.3, 0.3, dim).astype(np.float32)
    if norm == "bn":
        blobs[f"{prefix}_bn_rm"] = rng.uniform(-0.3, 0.3, dim).astype(np.float32)
        blobs[f"{prefix}_bn_riv"] = rng.uniform(0.5, 1.5, dim).astype(np.float32)
    return blobs


def nl_cfg(norm="bn", **nonlocal_overrides):
    overrides = {"NONLOCAL.USE_BN": norm == "bn", "NONLOCAL.USE_AFFINE": norm == "affine"}
    overrides.update({f"NONLOCAL.{k}": v for k, v in nonlocal_overrides.items()})
    return ref.ref_config(overrides)


# --------------------------------------------------------------------------------------------
# Blob names and shapes, counted by hand from the original's builders
# --------------------------------------------------------------------------------------------
NL_PARTS = {"theta_w", "theta_b", "phi_w", "phi_b", "g_w", "g_b", "out_w", "out_b"}
BN_PARTS = {"bn_s", "bn_b", "bn_rm", "bn_riv"}


def nonlocal_prefixes(specs):
    return {k[: -len("_theta_w")] for k in specs if k.endswith("_theta_w")}


def test_blobs_r50_i3d_nonlocal_bn():
    specs = ref.blob_specs(ref.ref_config({"MODEL.VIDEO_ARC_CHOICE": 2}))
    prefixes = {"nonlocal_conv3_1", "nonlocal_conv3_3", "nonlocal_conv4_1", "nonlocal_conv4_3", "nonlocal_conv4_5"}
    assert nonlocal_prefixes(specs) == prefixes
    for p in prefixes:
        assert {k[len(p) + 1:] for k in specs if k.startswith(p + "_")} == NL_PARTS | BN_PARTS
    # 53 convs (conv1, 16 blocks x 3, 4 shortcuts), each with a SpatialBN (w + 4), pred (w, b), 5 x 12 non-local
    assert len(specs) == 53 * 5 + 2 + 5 * 12
    assert sorted(k for k in specs if "_branch1_w" in k) == [f"res{s}_0_branch1_w" for s in (2, 3, 4, 5)]
    expected = {
        "conv1_w": (64, 3, 5, 7, 7), "res_conv1_bn_s": (64,), "res_conv1_bn_riv": (64,),
        "res2_0_branch2a_w": (64, 64, 3, 1, 1), "res2_0_branch2b_w": (64, 64, 1, 3, 3),
        "res2_0_branch2c_w": (256, 64, 1, 1, 1), "res2_0_branch2c_bn_rm": (256,),
        "res2_0_branch1_w": (256, 64, 1, 1, 1), "res2_2_branch2a_w": (64, 256, 3, 1, 1),
        "res3_0_branch1_w": (512, 256, 1, 1, 1), "res3_0_branch2a_w": (128, 256, 3, 1, 1),
        "res3_1_branch2a_w": (128, 512, 1, 1, 1), "res3_2_branch2a_w": (128, 512, 3, 1, 1),
        "res3_3_branch2b_w": (128, 128, 1, 3, 3), "res4_0_branch2a_w": (256, 512, 3, 1, 1),
        "res4_5_branch2a_w": (256, 1024, 1, 1, 1), "res4_0_branch1_w": (1024, 512, 1, 1, 1),
        "res5_0_branch2a_w": (512, 1024, 1, 1, 1), "res5_1_branch2a_w": (512, 2048, 3, 1, 1),
        "res5_2_branch2c_w": (2048, 512, 1, 1, 1), "res5_0_branch1_w": (2048, 1024, 1, 1, 1),
        "nonlocal_conv3_1_theta_w": (256, 512, 1, 1, 1), "nonlocal_conv3_1_theta_b": (256,),
        "nonlocal_conv3_1_out_w": (512, 256, 1, 1, 1), "nonlocal_conv3_1_bn_riv": (512,),
        "nonlocal_conv4_5_g_w": (512, 1024, 1, 1, 1), "nonlocal_conv4_5_bn_s": (1024,),
        "pred_w": (400, 2048, 1, 1, 1), "pred_b": (400,),
    }
    for name, shape in expected.items():
        assert specs[name].shape == shape, name
    assert "conv1_b" not in specs and "res2_0_branch2a_b" not in specs


def test_blobs_c2d_kernels_are_planar():
    specs = ref.blob_specs(ref.ref_config({"MODEL.VIDEO_ARC_CHOICE": 1}))
    assert specs["conv1_w"].shape == (64, 3, 1, 7, 7)
    assert all(s.shape[2] == 1 for k, s in specs.items() if k.endswith("_w") and len(s.shape) == 5)


@pytest.mark.parametrize("arc", [3, 4])
def test_blobs_r101_nonlocal_placement(arc):
    specs = ref.blob_specs(ref.ref_config({"MODEL.DEPTH": 101, "MODEL.VIDEO_ARC_CHOICE": arc}))
    assert nonlocal_prefixes(specs) == {"nonlocal_conv3_1", "nonlocal_conv3_3", "nonlocal_conv4_6",
                                        "nonlocal_conv4_13", "nonlocal_conv4_20"}
    # 104 convs (conv1, 33 blocks x 3, 4 shortcuts)
    assert len(specs) == 104 * 5 + 2 + 5 * 12
    assert "res4_22_branch2c_w" in specs and "res4_23_branch2a_w" not in specs
    for i in range(23):
        assert specs[f"res4_{i}_branch2a_w"].shape[2] == (3 if arc == 4 and i % 2 == 0 else 1)


def test_blobs_layer_mod_and_switches():
    r50 = ref.blob_specs(ref.ref_config({"NONLOCAL.LAYER_MOD": 3}))
    assert nonlocal_prefixes(r50) == {"nonlocal_conv3_2", "nonlocal_conv4_2", "nonlocal_conv4_5"}
    # R101: res3 is forced to mod 2, res4 uses LAYER_MOD * 4 - 1 = 11
    r101 = ref.blob_specs(ref.ref_config({"MODEL.DEPTH": 101, "NONLOCAL.LAYER_MOD": 3}))
    assert nonlocal_prefixes(r101) == {"nonlocal_conv3_1", "nonlocal_conv3_3", "nonlocal_conv4_10",
                                       "nonlocal_conv4_21"}
    no3 = ref.blob_specs(ref.ref_config({"NONLOCAL.CONV3_NONLOCAL": False}))
    assert nonlocal_prefixes(no3) == {"nonlocal_conv4_1", "nonlocal_conv4_3", "nonlocal_conv4_5"}
    none = ref.blob_specs(ref.ref_config({"NONLOCAL.CONV3_NONLOCAL": False, "NONLOCAL.CONV4_NONLOCAL": False}))
    assert not any(k.startswith("nonlocal") for k in none) and len(none) == 53 * 5 + 2


def test_blobs_affine():
    cfg = ref.ref_config({"MODEL.USE_AFFINE": True, "NONLOCAL.USE_BN": False})
    specs = ref.blob_specs(cfg)
    assert not any(k.endswith(("_rm", "_riv")) for k in specs)
    assert not any(k.startswith("nonlocal_") and "_bn_" in k for k in specs)
    assert len(nonlocal_prefixes(specs)) == 5
    assert len(specs) == 53 * 3 + 2 + 5 * 8
    assert {"res_conv1_bn_s", "res_conv1_bn_b", "res3_0_branch1_bn_s", "res5_2_branch2c_bn_b"} <= set(specs)
    # NONLOCAL.USE_AFFINE: an AffineNd named <prefix>_bn after the out conv
    aff = ref.blob_specs(ref.ref_config({"MODEL.USE_AFFINE": True, "NONLOCAL.USE_BN": False,
                                         "NONLOCAL.USE_AFFINE": True}))
    assert {k[len("nonlocal_conv4_3_"):] for k in aff if k.startswith("nonlocal_conv4_3_")} == \
        NL_PARTS | {"bn_s", "bn_b"}


def test_blobs_width_scaling_and_groups():
    specs = ref.blob_specs(ref.ref_config({"RESNETS.NUM_GROUPS": 2, "RESNETS.WIDTH_PER_GROUP": 16}, width=8))
    assert specs["conv1_w"].shape == (8, 3, 1, 7, 7)
    # dim_inner = 2 * 16 * 8 / 64 = 4 at res2; grouped 3x3: [dim_inner, dim_inner / group, 1, 3, 3]
    assert specs["res2_0_branch2b_w"].shape == (4, 2, 1, 3, 3)
    assert specs["res5_0_branch2b_w"].shape == (32, 16, 1, 3, 3)
    assert specs["res5_2_branch2c_w"].shape == (256, 32, 1, 1, 1)
    assert specs["nonlocal_conv4_1_theta_w"].shape == (64, 128, 1, 1, 1)
    assert specs["pred_w"].shape == (400, 256, 1, 1, 1)


def test_make_blobs_values_and_solver_state():
    cfg = ref.ref_config({"MODEL.NUM_CLASSES": C}, width=8)
    blobs = ref.make_blobs(cfg, 3)
    assert list(blobs) == list(ref.blob_specs(cfg))
    assert all(v.dtype == np.float32 for v in blobs.values())
    assert all((v > 0).all() for k, v in blobs.items() if k.endswith("_riv"))
    again, other = ref.make_blobs(cfg, 3), ref.make_blobs(cfg, 4)
    assert all(np.array_equal(blobs[k], again[k]) for k in blobs)
    assert not np.array_equal(blobs["conv1_w"], other["conv1_w"])

    train = ref.make_blobs(cfg, 3, split="train", solver_state=True, model_iter=1234, lr=0.01)
    assert train["model_iter"] == 1234 and isinstance(train["model_iter"], int)
    assert train["lr"].shape == (1,) and train["lr"].dtype == np.float32
    assert train["pred_w"].shape == (C, 256)
    momenta = {k[: -len("_momentum")] for k in train if k.endswith("_momentum")}
    params = {k for k in train if k not in ("model_iter", "lr") and not k.endswith("_momentum")}
    assert momenta == {k for k in params if not k.endswith(("_rm", "_riv"))}
    assert all(train[k + "_momentum"].shape == train[k].shape for k in momenta)

    affine = ref.make_blobs(ref.ref_config({"MODEL.USE_AFFINE": True, "NONLOCAL.USE_BN": False}, width=8), 0,
                            split="train", solver_state=True)
    momenta = {k[: -len("_momentum")] for k in affine if k.endswith("_momentum")}
    # AffineNd has no gradient for its scale and bias: no momentum for any *_bn_s / *_bn_b
    assert not any("_bn_" in k for k in momenta)
    assert "conv1_w" in momenta and "nonlocal_conv3_1_theta_b" in momenta and "pred_b" in momenta


# --------------------------------------------------------------------------------------------
# Single ops on tiny inputs against hand computation
# --------------------------------------------------------------------------------------------
def test_head_by_hand():
    rng = np.random.default_rng(0)
    feat = rng.normal(size=(2, 3, 3, 8, 9))
    blobs = {"pred_w": rng.normal(size=(4, 3, 1, 1, 1)).astype(np.float32),
             "pred_b": rng.normal(size=4).astype(np.float32)}
    cfg = ref.ref_config({"MODEL.NUM_CLASSES": 4})
    out = run_net(blobs, ref.head, cfg, torch.from_numpy(feat), 3, 2, "test")
    expected = head_np(feat, f64(blobs, "pred_w"), f64(blobs, "pred_b"), pool_stride=2)  # 2 x 2 x 3 positions
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(out.sum(1), 1.0, rtol=1e-12)
    # the FC-shaped pred_w of a training checkpoint is accepted (checkpoints.py reshapes 'pred' blobs)
    fc = dict(blobs, pred_w=blobs["pred_w"].reshape(4, 3))
    np.testing.assert_array_equal(run_net(fc, ref.head, cfg, torch.from_numpy(feat), 3, 2, "test"), out)


def test_val_head_by_hand():
    rng = np.random.default_rng(1)
    feat = rng.normal(size=(2, 5, 4, 7, 7))
    blobs = {"pred_w": rng.normal(size=(3, 5)).astype(np.float32), "pred_b": rng.normal(size=3).astype(np.float32)}
    cfg = ref.ref_config({"MODEL.NUM_CLASSES": 3})
    out = run_net(blobs, ref.head, cfg, torch.from_numpy(feat), 5, 4, "val")
    np.testing.assert_allclose(out, head_np(feat, f64(blobs, "pred_w"), f64(blobs, "pred_b"), 4), rtol=1e-12)
    with pytest.raises(ValueError):  # Caffe2 FC flattens [N, 5, 1, 2, 2]: 20 features for a 5-wide weight
        run_net(blobs, ref.head, cfg, torch.from_numpy(rng.normal(size=(2, 5, 4, 8, 8))), 5, 4, "val")


@pytest.mark.parametrize("norm", ["bn", "affine", "none"])
def test_nonlocal_by_hand(norm):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 6, 3, 5, 7))  # odd H, W: the 1x2x2 max pool floors to 2 x 3
    blobs = nl_blobs(rng, "nl", 6, 3, norm)
    out = run_net(blobs, ref.add_nonlocal, nl_cfg(norm), torch.from_numpy(x), 6, 6, 2, "nl", 3)
    np.testing.assert_allclose(out, nonlocal_np(x, blobs, "nl", norm), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("softmax,scale", [(True, False), (False, True)])
def test_nonlocal_variants_by_hand(softmax, scale):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1, 4, 2, 4, 4))
    blobs = nl_blobs(rng, "nl", 4, 2, "bn")
    cfg = nl_cfg("bn", USE_SOFTMAX=softmax, USE_SCALE=scale)
    out = run_net(blobs, ref.add_nonlocal, cfg, torch.from_numpy(x), 4, 4, 1, "nl", 2)
    np.testing.assert_allclose(out, nonlocal_np(x, blobs, "nl", "bn", softmax, scale), rtol=1e-10, atol=1e-12)


def test_nonlocal_samples_stay_apart_when_batch_size_is_n():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 4, 2, 4, 4))
    blobs = nl_blobs(rng, "nl", 4, 2, "bn")
    cfg = nl_cfg("bn")
    out = run_net(blobs, ref.add_nonlocal, cfg, torch.from_numpy(x), 4, 4, 3, "nl", 2)
    y = x.copy()
    y[1] += 1.0
    out2 = run_net(blobs, ref.add_nonlocal, cfg, torch.from_numpy(y), 4, 4, 3, "nl", 2)
    np.testing.assert_array_equal(out[[0, 2]], out2[[0, 2]])
    assert not np.allclose(out[1], out2[1])


def test_grouped_nonlocal_one_group_is_ungrouped():
    rng = np.random.default_rng(5)
    x = torch.from_numpy(rng.normal(size=(2, 6, 4, 6, 6)))
    blobs = nl_blobs(rng, "nl", 6, 3, "none")
    cfg = nl_cfg("none")
    grouped = run_net(blobs, ref.add_nonlocal_group, cfg, x, 6, 6, 2, 4, 6, 6, 4, "nl", 3)  # pool_stride 4
    plain = run_net(blobs, ref.add_nonlocal, cfg, x, 6, 6, 2, "nl", 3)
    np.testing.assert_array_equal(grouped, plain)
    specs = {}
    for fn, args in ((ref.add_nonlocal, (6, 6, 2, "nl", 3)), (ref.add_nonlocal_group, (6, 6, 2, 4, 6, 6, 4, "nl", 3))):
        net = ref._Net()
        fn(net, cfg, None, *args)
        specs[fn.__name__] = net.specs
    assert specs["add_nonlocal"] == specs["add_nonlocal_group"]


def test_grouped_nonlocal_four_groups_are_four_chunks():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(2, 6, 16, 6, 6))
    blobs = nl_blobs(rng, "nl", 6, 3, "none")
    cfg = nl_cfg("none")
    # pool_stride 16, group_size 4: 4 groups of 4 consecutive frames, height = width = spatial_dim = 6
    grouped = run_net(blobs, ref.add_nonlocal_group, cfg, torch.from_numpy(x), 6, 6, 2, 16, 6, 6, 4, "nl", 3)
    for gi in range(4):
        chunk = x[:, :, 4 * gi:4 * gi + 4]
        np.testing.assert_allclose(grouped[:, :, 4 * gi:4 * gi + 4], nonlocal_np(chunk, blobs, "nl", "none"),
                                   rtol=1e-10, atol=1e-12)
        plain = run_net(blobs, ref.add_nonlocal, cfg, torch.from_numpy(chunk), 6, 6, 2, "nl", 3)
        np.testing.assert_allclose(grouped[:, :, 4 * gi:4 * gi + 4], plain, rtol=1e-12, atol=1e-12)
    # ... and not one non-local over all 16 frames
    assert not np.allclose(grouped, nonlocal_np(x, blobs, "nl", "none"))
    # the explicit-shape Reshape needs the feature map to be spatial_dim x spatial_dim, as in Caffe2
    with pytest.raises(RuntimeError):
        run_net(blobs, ref.add_nonlocal_group, cfg, torch.from_numpy(x), 6, 6, 2, 16, 5, 5, 4, "nl", 3)
    with pytest.raises(AssertionError):  # pool_stride % group_size
        run_net(blobs, ref.add_nonlocal_group, cfg, torch.from_numpy(x), 6, 6, 2, 6, 6, 6, 4, "nl", 3)


# --------------------------------------------------------------------------------------------
# Full-depth width-4 networks at 256x256, with every kind of stage checked in situ by hand
# --------------------------------------------------------------------------------------------
FULL = {
    # scripts/run_i3d_nlnet_400k.sh (configs/DBG_kinetics_resnet_8gpu_c2d_nonlocal_400k.yaml + arc 2):
    # resnet_video, 8-frame I3D R50 + 5 non-local blocks (BN)
    "i3d_8f": ({"MODEL.VIDEO_ARC_CHOICE": 2, "TRAIN.VIDEO_LENGTH": 8}, 8),
    # scripts/run_c2d_nlnet_400k_32f.sh: resnet_video_org, 32-frame C2D R50 + non-local
    "org_c2d_32f": ({"MODEL.MODEL_NAME": "resnet_video_org", "MODEL.VIDEO_ARC_CHOICE": 1,
                     "TRAIN.VIDEO_LENGTH": 32}, 32),
    # configs/DBG_kinetics_resnet_8gpu_c2d_nonlocal_affine_400k.yaml (32 frames, affine, grouped res3 NL)
    "affine_32f": ({"MODEL.USE_AFFINE": True, "NONLOCAL.USE_BN": False, "TRAIN.VIDEO_LENGTH": 32}, 32),
}


@pytest.fixture(scope="module")
def full_runs():
    cache = {}

    def get(key):
        if key not in cache:
            overrides, frames = FULL[key]
            cfg = ref.ref_config(dict(overrides, **{"MODEL.NUM_CLASSES": C}), width=4)
            blobs = ref.make_blobs(cfg, seed=11)
            data = np.random.default_rng(12).normal(size=(1, 3, frames, 256, 256)).astype(np.float32)
            taps = {}
            out = ref.test_graph(blobs, cfg, data, taps)
            cache[key] = (cfg, blobs, data, {k: v.numpy() for k, v in taps.items()}, out)
        return cache[key]

    return get


@pytest.mark.parametrize("key,shapes", [
    ("i3d_8f", {"pool1": (1, 4, 8, 63, 63), "pool2": (1, 16, 4, 63, 63), "res3_3": (1, 32, 4, 32, 32),
                "res4_5": (1, 64, 4, 16, 16), "res5_2": (1, 128, 4, 8, 8), "pool5": (1, 128, 1, 2, 2),
                "pred": (1, C, 1, 2, 2)}),
    ("org_c2d_32f", {"pool1": (1, 4, 8, 63, 63), "pool2": (1, 16, 4, 63, 63), "res3_3": (1, 32, 4, 32, 32),
                     "res5_2": (1, 128, 4, 8, 8), "pool5": (1, 128, 1, 2, 2), "pred": (1, C, 1, 2, 2)}),
    ("affine_32f", {"pool1": (1, 4, 32, 63, 63), "pool2": (1, 16, 16, 63, 63), "res3_3": (1, 32, 16, 32, 32),
                    "res5_2": (1, 128, 16, 8, 8), "pool5": (1, 128, 1, 2, 2), "pred": (1, C, 1, 2, 2)}),
])
def test_full_graph_shapes_and_output(full_runs, key, shapes):
    cfg, blobs, data, taps, out = full_runs(key)
    for name, shape in shapes.items():
        assert taps[name].shape == shape, name
    # res5 8x8 -> pool5 [pool_stride, 7, 7] leaves 1 x 2 x 2 = 4 positions
    assert out.shape == (1, C) and out.dtype == np.float64
    np.testing.assert_allclose(out.sum(1), 1.0, rtol=1e-12)
    assert 0.02 < out.max() < 0.98  # well-conditioned blobs: not saturated, not uniform
    expected = {"i3d_8f": ["nonlocal_conv3_1_sum", "nonlocal_conv3_3_sum", "nonlocal_conv4_1_sum",
                           "nonlocal_conv4_3_sum", "nonlocal_conv4_5_sum"]}
    expected["org_c2d_32f"] = expected["affine_32f"] = expected["i3d_8f"]
    assert [k for k in taps if k.startswith("nonlocal")] == expected[key]


@pytest.mark.parametrize("key", list(FULL))
def test_full_graph_stem_by_hand(full_runs, key):
    cfg, blobs, data, taps, out = full_runs(key)
    i3d = cfg.MODEL.VIDEO_ARC_CHOICE == 2
    org = cfg.MODEL.MODEL_NAME == "resnet_video_org"
    x = conv_np(data.astype(np.float64), f64(blobs, "conv1_w"), stride=(2 if org else 1, 2, 2),
                pad=(2 if i3d else 0, 3, 3))
    x = affine_np(x, blobs, "res_conv1_bn") if cfg.MODEL.USE_AFFINE else bn_np(x, blobs, "res_conv1_bn")
    x = pool_np(np.maximum(x, 0), (2, 3, 3) if org else (1, 3, 3), (2, 2, 2) if org else (1, 2, 2), np.max)
    np.testing.assert_allclose(taps["pool1"], x, rtol=1e-9, atol=1e-9)


def block_np(x, blobs, prefix, temporal, stride, shortcut, affine):
    norm = (lambda y, n: affine_np(y, blobs, n)) if affine else (lambda y, n: bn_np(y, blobs, n))
    y = norm(conv_np(x, f64(blobs, prefix + "_branch2a_w"), pad=(temporal, 0, 0)), prefix + "_branch2a_bn")
    y = norm(conv_np(np.maximum(y, 0), f64(blobs, prefix + "_branch2b_w"), stride=(1, stride, stride),
                     pad=(0, 1, 1)), prefix + "_branch2b_bn")
    y = norm(conv_np(np.maximum(y, 0), f64(blobs, prefix + "_branch2c_w")), prefix + "_branch2c_bn")
    if shortcut:
        x = norm(conv_np(x, f64(blobs, prefix + "_branch1_w"), stride=(1, stride, stride)), prefix + "_branch1_bn")
    return np.maximum(x + y, 0)


@pytest.mark.parametrize("key", list(FULL))
def test_full_graph_blocks_by_hand(full_runs, key):
    cfg, blobs, data, taps, out = full_runs(key)
    i3d = cfg.MODEL.VIDEO_ARC_CHOICE == 2
    affine = cfg.MODEL.USE_AFFINE
    np.testing.assert_allclose(taps["pool2"], pool_np(taps["res2_2"], (2, 1, 1), (2, 1, 1), np.max), rtol=0)
    # first block of res3: stride 2 on the 3x3, projection shortcut with stride 2; i3d: 3x1x1 branch2a
    np.testing.assert_allclose(
        taps["res3_0"], block_np(taps["pool2"], blobs, "res3_0", 1 if i3d else 0, 2, True, affine),
        rtol=1e-9, atol=1e-9)
    # an identity-shortcut block (res5_1: temporal kernel 3 in i3d)
    np.testing.assert_allclose(
        taps["res5_1"], block_np(taps["res5_0"], blobs, "res5_1", 1 if i3d else 0, 1, False, affine),
        rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("key", list(FULL))
def test_full_graph_nonlocal_by_hand(full_runs, key):
    cfg, blobs, data, taps, out = full_runs(key)
    norm = "none" if cfg.MODEL.USE_AFFINE else "bn"
    x = taps["res3_1"]
    if key == "affine_32f":  # res3: add_nonlocal_group, 16 frames in 4 groups of 4
        expected = np.concatenate([nonlocal_np(x[:, :, 4 * g:4 * g + 4], blobs, "nonlocal_conv3_1", norm)
                                   for g in range(4)], axis=2)
    else:
        expected = nonlocal_np(x, blobs, "nonlocal_conv3_1", norm)
    np.testing.assert_allclose(taps["nonlocal_conv3_1_sum"], expected, rtol=1e-9, atol=1e-9)
    assert np.abs(expected - x).max() > 1e-2 * np.abs(x).max()  # the block does contribute
    # res4 is never grouped
    np.testing.assert_allclose(taps["nonlocal_conv4_3_sum"], nonlocal_np(taps["res4_3"], blobs, "nonlocal_conv4_3",
                                                                         norm), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("key", list(FULL))
def test_full_graph_head_by_hand(full_runs, key):
    cfg, blobs, data, taps, out = full_runs(key)
    pool_stride = taps["res5_2"].shape[2]  # VIDEO_LENGTH / 2 (resnet_video) or / 8 (resnet_video_org)
    expected = head_np(taps["res5_2"], f64(blobs, "pred_w"), f64(blobs, "pred_b"), pool_stride)
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-13)


def test_fc_pred_and_val_graph_at_224():
    cfg = ref.ref_config({"MODEL.NUM_CLASSES": C}, width=4)
    blobs = ref.make_blobs(cfg, seed=5)
    data = np.random.default_rng(6).normal(size=(1, 3, 8, 224, 224)).astype(np.float32)
    taps = {}
    out = ref.test_graph(blobs, cfg, data, taps)
    assert taps["pool5"].shape == (1, 128, 1, 1, 1)  # res5 7x7: one position
    fc = dict(blobs, pred_w=blobs["pred_w"].reshape(C, 128))
    val_taps = {}
    np.testing.assert_allclose(ref.val_graph(fc, cfg, data, val_taps), out, rtol=1e-12)
    assert val_taps["pred"].shape == (1, C)
    # FC-shaped pred_w in the test graph, and an explicit TRAIN.BATCH_SIZE with int(BATCH_SIZE / NUM_GPUS) == N
    cfg8 = ref.ref_config({"MODEL.NUM_CLASSES": C, "TRAIN.BATCH_SIZE": 8}, width=4)
    np.testing.assert_allclose(ref.test_graph(fc, cfg8, data), out, rtol=1e-12)
