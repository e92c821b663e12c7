"""Independent float64 reference of the original Caffe2 *test graph* (a test helper, not a test file).

What this is
------------
A second, independent reading of facebookresearch/video-nonlocal-net at commit c253ed5
(c253ed5eb004fa2cae0490ed46f5018a3c3b060f), written in plain ``torch.nn.functional`` / numpy
without looking at nlflow's own model code, so that tests can check nlflow's network against it.
It follows, function by function:

- ``lib/models/resnet_video.py`` and ``lib/models/resnet_video_org.py``: ``obtain_arc`` and
  ``create_model`` (the two files differ only in conv1's temporal stride (1 vs 2), pool1
  ([1,3,3]/[1,2,2] vs [2,3,3]/[2,2,2]) and ``pool_stride`` (VIDEO_LENGTH/2 vs VIDEO_LENGTH/8)).
- ``lib/models/resnet_helper.py``: ``bottleneck_transformation_3d``, ``_add_shortcut_3d``,
  ``_generic_residual_block_3d``, ``res_stage_nonlocal``, ``res_stage_nonlocal_group``.
- ``lib/models/nonlocal_helper.py``: ``spacetime_nonlocal``, ``add_nonlocal``, ``add_nonlocal_group``.
- ``lib/models/model_builder_video.py``: ``Conv3dBN``, ``Conv3dAffine``, ``AffineNd`` (blob names).
- ``caffe2_customized_ops/video/affine_nd_op.{cc,cu}``: AffineNd is ``x * s[c] + b[c]`` and has no
  gradient for ``s``/``b`` (so a training checkpoint holds no ``_momentum`` for them).
- Caffe2's ``brew.spatial_bn`` helper: ``<name>_s, _b, _rm, _riv``; ``_riv`` holds the running
  *variance* despite its name, and test-mode SpatialBN is ``(x - rm) / sqrt(riv + eps) * s + b``.
- ``lib/utils/checkpoints.py``: ``save_model_params`` (``model_iter``, ``lr``, ``<param>_momentum``
  for trainable params) and the loader's reshape of any ``pred`` blob with matching element count.
- ``tools/test_net_video.py``: fully-convolutional test sets ``TRAIN.CROP_SIZE = JITTER_SCALES[0]``
  (256), which is what ``add_nonlocal_group`` receives as ``spatial_dim = int(crop_size / 8)``.

The graph is written ONCE (``create_model`` below, a literal transcription of the original's
builders) against a tiny stand-in for the Caffe2 model helper (``_Net``). ``_Net`` either
*collects* the parameter blobs each helper call creates (``blob_specs`` / ``make_blobs``: no data
flows, exactly as Caffe2 builds a graph without data) or *runs* the ops on data
(``test_graph`` / ``val_graph``), so blob names and shapes are defined in one place.

Computation is float64 throughout (blobs and data are cast to float64; the result is a float64
numpy array). Caffe2 computed in float32 on GPU (cuDNN), so compare with float32-appropriate
tolerances.

The one deliberate addition: ``width``
--------------------------------------
``RefConfig.width`` (not an original config key) scales every channel count the original hard-codes
by ``width / 64``: conv1's 64, the stage outputs 256/512/1024/2048, and
``dim_inner = NUM_GROUPS * WIDTH_PER_GROUP`` (so res2..res5 inner widths 64/128/256/512). The
non-local inner width stays ``int(dim_in / 2)`` of the (scaled) stage width, the input has 3
channels, and nothing else changes. ``width=64`` (the default) is the original network; tests use
4 or 8 so full-depth networks at 256x256 run in about a second on one CPU thread.

Other modelling choices (documented, not additions)
---------------------------------------------------
- ``TRAIN.BATCH_SIZE=None`` (default) means "the data's N times NUM_GPUS", i.e. the per-GPU
  ``batch_size`` that ``create_model`` passes to the non-local reshapes equals the data batch, as the
  release's test script arranges (``scripts/run_test_multicrop.sh`` sets TRAIN.BATCH_SIZE ==
  TEST.BATCH_SIZE). Set it explicitly to reproduce the original's reshapes literally when the two
  differ (then samples get mixed, exactly as Caffe2's explicit-shape Reshape would mix them).
- Config defaults are ``lib/core/config.py`` merged with
  ``configs/DBG_kinetics_resnet_8gpu_c2d_nonlocal_400k.yaml`` (NUM_CLASSES 400, VIDEO_LENGTH 8,
  TRANS_FUNC bottleneck_transformation_3d, NUM_GPUS 8) and ``TRAIN.CROP_SIZE = 256``
  (fully-convolutional test). ``MODEL.BN_INIT_GAMMA``, ``NONLOCAL.BN_INIT_GAMMA``,
  ``*_INIT_STD``, ``USE_ZERO_INIT_CONV``, momentum and ``ALLOW_INPLACE_*`` only affect
  initialisation, training or intermediate blob names, never the test output, so they are absent.

Public API
----------
``RefConfig`` (+ ``ModelCfg``, ``ResnetsCfg``, ``NonlocalCfg``, ``TrainCfg``), ``ref_config``,
``obtain_arc``, ``blob_specs``, ``make_blobs``, ``test_graph``, ``val_graph``, and the literal
builders (``create_model``, ``spacetime_nonlocal``, ``add_nonlocal``, ``add_nonlocal_group``,
``res_stage_nonlocal``, ``res_stage_nonlocal_group``, ``head``) with ``_Net`` for unit tests.
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

DTYPE = torch.float64
ORIGINAL_COMMIT = "c253ed5eb004fa2cae0490ed46f5018a3c3b060f"

# resnet_video.py / resnet_video_org.py
BLOCK_CONFIG = {
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
}


# --------------------------------------------------------------------------------------------
# Configuration (the cfg keys create_model and its helpers read)
# --------------------------------------------------------------------------------------------
@dataclass
class ModelCfg:
    DEPTH: int = 50
    VIDEO_ARC_CHOICE: int = 1  # 1 c2d R50, 2 i3d R50, 3 c2d R101, 4 i3d R101
    MODEL_NAME: str = "resnet_video"  # or "resnet_video_org"
    USE_AFFINE: bool = False
    NUM_CLASSES: int = 400
    BN_EPSILON: float = 1.0000001e-5


@dataclass
class ResnetsCfg:
    NUM_GROUPS: int = 1
    WIDTH_PER_GROUP: int = 64
    TRANS_FUNC: str = "bottleneck_transformation_3d"


@dataclass
class NonlocalCfg:
    CONV3_NONLOCAL: bool = True
    CONV4_NONLOCAL: bool = True
    USE_BN: bool = True
    USE_AFFINE: bool = False
    LAYER_MOD: int = 2
    BN_EPSILON: float = 1.0000001e-5
    NO_BIAS: int = 0
    USE_MAXPOOL: bool = True
    USE_SOFTMAX: bool = True
    USE_SCALE: bool = True


@dataclass
class TrainCfg:
    VIDEO_LENGTH: int = 8
    # tools/test_net_video.py: TEST_FULLY_CONV sets TRAIN.CROP_SIZE = TRAIN.JITTER_SCALES[0] = 256
    CROP_SIZE: int = 256
    # None: per-GPU batch_size = data N (see module docstring); else int(BATCH_SIZE / NUM_GPUS).
    BATCH_SIZE: int | None = None


@dataclass
class RefConfig:
    MODEL: ModelCfg = field(default_factory=ModelCfg)
    RESNETS: ResnetsCfg = field(default_factory=ResnetsCfg)
    NONLOCAL: NonlocalCfg = field(default_factory=NonlocalCfg)
    TRAIN: TrainCfg = field(default_factory=TrainCfg)
    NUM_GPUS: int = 8
    # Test-only addition, NOT an original key: channel counts are scaled by width / 64.
    width: int = 64


def ref_config(overrides: dict[str, Any] | None = None, width: int = 64) -> RefConfig:
    """A RefConfig with dotted-key overrides, like the original's cfg_from_list:
    ``ref_config({"MODEL.DEPTH": 101, "NONLOCAL.USE_BN": False}, width=8)``."""
    cfg = RefConfig(width=width)
    for key, value in (overrides or {}).items():
        parts = key.split(".")
        node = cfg
        for part in parts[:-1]:
            node = getattr(node, part)
        if not any(f.name == parts[-1] for f in dataclasses.fields(node)):
            raise KeyError(f"config key {key} not found")
        setattr(node, parts[-1], value)
    return cfg


def _ch(cfg: RefConfig, channels: int) -> int:
    """A channel count the original hard-codes, scaled by the test-only ``width``."""
    scaled = channels * cfg.width
    if scaled % 64:
        raise ValueError(f"width {cfg.width} does not scale {channels} channels to an integer")
    return scaled // 64


# --------------------------------------------------------------------------------------------
# obtain_arc (resnet_video.py / resnet_video_org.py)
# --------------------------------------------------------------------------------------------
def obtain_arc(arc_type: int, model_name: str, video_length: int):
    """(use_temp_convs_set, temp_strides_set, pool_stride) as the chosen MODEL_NAME's obtain_arc."""
    if model_name == "resnet_video":
        stride_1, pool_stride = 1, int(video_length / 2)
    elif model_name == "resnet_video_org":
        stride_1, pool_stride = 2, int(video_length / 8)
    else:
        raise ValueError(f"Unknown model_type {model_name}")

    if arc_type == 1:  # c2d, ResNet50
        use_temp_convs_set = [[0], [0, 0, 0], [0, 0, 0, 0], [0] * 6, [0, 0, 0]]
        temp_strides_set = [[stride_1], [1, 1, 1], [1, 1, 1, 1], [1] * 6, [1, 1, 1]]
    elif arc_type == 2:  # i3d, ResNet50
        use_temp_convs_set = [[2], [1, 1, 1], [1, 0, 1, 0], [1, 0, 1, 0, 1, 0], [0, 1, 0]]
        temp_strides_set = [[stride_1], [1, 1, 1], [1, 1, 1, 1], [1] * 6, [1, 1, 1]]
    elif arc_type == 3:  # c2d, ResNet101
        use_temp_convs_set = [[0], [0, 0, 0], [0, 0, 0, 0], [0] * 23, [0, 0, 0]]
        temp_strides_set = [[stride_1], [1, 1, 1], [1, 1, 1, 1], [1] * 23, [1, 1, 1]]
    elif arc_type == 4:  # i3d, ResNet101
        use_temp_convs_set = [[2], [1, 1, 1], [1, 0, 1, 0], [1 if i % 2 == 0 else 0 for i in range(23)],
                              [0, 1, 0]]
        temp_strides_set = [[stride_1], [1, 1, 1], [1, 1, 1, 1], [1] * 23, [1, 1, 1]]
    else:
        # The original leaves the lists undefined (NameError) for any other arc_type.
        raise ValueError(f"VIDEO_ARC_CHOICE {arc_type} is not defined by obtain_arc")
    return use_temp_convs_set, temp_strides_set, pool_stride


# --------------------------------------------------------------------------------------------
# A stand-in for the Caffe2 model helper: collects parameter blobs or runs ops
# --------------------------------------------------------------------------------------------
class BlobSpec(NamedTuple):
    shape: tuple[int, ...]
    # conv_w (MSRAFill convs), nl_w (non-local GaussianFill convs), conv_b, bn_s, bn_b, bn_rm, bn_riv,
    # affine_s, affine_b, pred_w, pred_b
    kind: str
    # has a gradient in the training net, hence a <name>_momentum blob in a training checkpoint
    trainable: bool


class _Net:
    """Mirror of the ``ModelBuilder`` / ``CNNModelHelper`` calls the original makes.

    ``_Net()`` collects parameter specs (every op returns None: no data flows).
    ``_Net(blobs)`` runs the ops in float64 on torch tensors, reading parameters from ``blobs``.
    ``taps`` (run mode) receives named intermediate outputs recorded by ``create_model``.
    """

    def __init__(self, blobs: dict[str, Any] | None = None):
        self.collect = blobs is None
        self.blobs = blobs
        self.specs: OrderedDict[str, BlobSpec] = OrderedDict()
        self.taps: OrderedDict[str, torch.Tensor] = OrderedDict()

    # ---- parameters
    def param(self, name: str, shape, kind: str, trainable: bool):
        shape = tuple(int(s) for s in shape)
        if self.collect:
            if name in self.specs:  # e.g. NONLOCAL.USE_BN and USE_AFFINE both on: same <prefix>_bn_s/_b
                if self.specs[name].shape != shape:
                    raise ValueError(f"blob {name} created twice with shapes {self.specs[name].shape}, {shape}")
            else:
                self.specs[name] = BlobSpec(shape, kind, trainable)
            return None
        if name not in self.blobs:
            raise KeyError(f"blob {name} missing")
        arr = np.asarray(self.blobs[name])
        if arr.shape != shape:
            # checkpoints.py: a 'pred' blob with the same element count is reshaped to the
            # workspace shape (FC [C, dim] <-> test ConvNd [C, dim, 1, 1, 1]).
            if "pred" in name and arr.size == int(np.prod(shape)):
                arr = arr.reshape(shape)
            else:
                raise ValueError(f"blob {name} has shape {arr.shape}, the graph needs {shape}")
        return torch.from_numpy(np.array(arr, dtype=np.float64))

    def tap(self, name: str, x):
        if not self.collect:
            self.taps[name] = x

    # ---- ops (CNNModelHelper.ConvNd etc.)
    def ConvNd(self, x, prefix, dim_in, dim_out, kernels, strides, pads, group=1, no_bias=0, kind="conv_w"):
        w = self.param(prefix + "_w", [dim_out, dim_in // group] + list(kernels), kind, True)
        b = None if no_bias else self.param(prefix + "_b", [dim_out], "conv_b", True)
        if self.collect:
            return None
        assert len(pads) == 6  # Caffe2 order: heads (t, h, w), then tails (t, h, w)
        if tuple(pads[:3]) == tuple(pads[3:]):
            return F.conv3d(x, w, b, stride=tuple(strides), padding=tuple(pads[:3]), groups=group)
        x = F.pad(x, (pads[2], pads[5], pads[1], pads[4], pads[0], pads[3]))  # zero padding
        return F.conv3d(x, w, b, stride=tuple(strides), padding=0, groups=group)

    def SpatialBN(self, x, name, dim, epsilon):
        s = self.param(name + "_s", [dim], "bn_s", True)
        b = self.param(name + "_b", [dim], "bn_b", True)
        rm = self.param(name + "_rm", [dim], "bn_rm", False)
        riv = self.param(name + "_riv", [dim], "bn_riv", False)
        if self.collect:
            return None
        view = (1, dim) + (1,) * (x.dim() - 2)
        return (x - rm.view(view)) / torch.sqrt(riv.view(view) + epsilon) * s.view(view) + b.view(view)

    def AffineNd(self, x, name, dim):
        # AffineNd has no gradient for scale/bias (affine_nd_op.cc): not trainable.
        s = self.param(name + "_s", [dim], "affine_s", False)
        b = self.param(name + "_b", [dim], "affine_b", False)
        if self.collect:
            return None
        view = (1, dim) + (1,) * (x.dim() - 2)
        return x * s.view(view) + b.view(view)

    def FC(self, x, name, dim_in, dim_out):
        w = self.param(name + "_w", [dim_out, dim_in], "pred_w" if name == "pred" else "conv_w", True)
        b = self.param(name + "_b", [dim_out], "pred_b" if name == "pred" else "conv_b", True)
        if self.collect:
            return None
        x2 = x.reshape(x.shape[0], -1)  # Caffe2 FC, axis=1
        if x2.shape[1] != dim_in:
            raise ValueError(f"FC {name}: input flattens to {x2.shape[1]} features, weight has {dim_in}")
        return x2 @ w.t() + b

    def Relu(self, x):
        return None if self.collect else torch.clamp(x, min=0)

    def MaxPool(self, x, kernels, strides, pads):
        if self.collect:
            return None
        assert list(pads) == [0] * 6
        return F.max_pool3d(x, tuple(kernels), tuple(strides), padding=0)  # floor, as Caffe2

    def AveragePool(self, x, kernels, strides, pads):
        if self.collect:
            return None
        assert list(pads) == [0] * 6
        return F.avg_pool3d(x, tuple(kernels), tuple(strides), padding=0)

    def Sum(self, a, b):
        return None if self.collect else a + b

    def Transpose(self, x, axes):
        return None if self.collect else x.permute(*axes).contiguous()

    def Reshape(self, x, shape):
        """Caffe2 Reshape: returns (reshaped, old_shape); -1 is inferred, sizes must match."""
        if self.collect:
            return None, None
        return x.reshape(tuple(shape)), tuple(x.shape)

    def BatchMatMul(self, a, b, trans_a=0, trans_b=0):
        if self.collect:
            return None
        if trans_a:
            a = a.transpose(1, 2)
        if trans_b:
            b = b.transpose(1, 2)
        return torch.bmm(a, b)

    def Scale(self, x, scale):
        return None if self.collect else x * scale

    def Softmax(self, x, axis=1):
        """Caffe2 Softmax: coerce to 2D [prod(dims[:axis]), prod(dims[axis:])], softmax rows."""
        if self.collect:
            return None
        shape = x.shape
        rows = int(np.prod(shape[:axis]))
        return torch.softmax(x.reshape(rows, -1), dim=1).reshape(shape)

    def ReduceBackSumOnesDenominator(self, theta_phi):
        """nonlocal_helper's non-softmax branch: Div(theta_phi, Add(zeros, ReduceBackSum(ones)))
        divides by the size of the last axis."""
        if self.collect:
            return None
        return theta_phi / float(theta_phi.shape[-1])

    def ReduceBackMean(self, x):
        return None if self.collect else x.mean(dim=-1)


# --------------------------------------------------------------------------------------------
# model_builder_video.py: Conv3dBN / Conv3dAffine
# --------------------------------------------------------------------------------------------
def Conv3dBN(net: _Net, cfg: RefConfig, blob_in, prefix, dim_in, dim_out, kernels, strides, pads, group=1):
    conv_blob = net.ConvNd(blob_in, prefix, dim_in, dim_out, kernels, strides, pads, group=group, no_bias=1)
    return net.SpatialBN(conv_blob, prefix + "_bn", dim_out, epsilon=cfg.MODEL.BN_EPSILON)


def Conv3dAffine(net: _Net, cfg: RefConfig, blob_in, prefix, dim_in, dim_out, kernels, strides, pads, group=1,
                 suffix="_bn"):
    conv_blob = net.ConvNd(blob_in, prefix, dim_in, dim_out, kernels, strides, pads, group=group, no_bias=1)
    return net.AffineNd(conv_blob, prefix + suffix, dim_out)


def _conv_op(cfg: RefConfig):
    return Conv3dAffine if cfg.MODEL.USE_AFFINE else Conv3dBN


# --------------------------------------------------------------------------------------------
# resnet_helper.py
# --------------------------------------------------------------------------------------------
def bottleneck_transformation_3d(net, cfg, blob_in, dim_in, dim_out, stride, prefix, dim_inner, group=1,
                                 use_temp_conv=1, temp_stride=1):
    conv_op = _conv_op(cfg)
    # 1x1 layer (temporal kernel 1 + 2 * use_temp_conv, temporal stride here)
    blob_out = conv_op(net, cfg, blob_in, prefix + "_branch2a", dim_in, dim_inner,
                       [1 + use_temp_conv * 2, 1, 1], strides=[temp_stride, 1, 1],
                       pads=[use_temp_conv, 0, 0] * 2)
    blob_out = net.Relu(blob_out)
    # 3x3 layer (spatial stride here)
    blob_out = conv_op(net, cfg, blob_out, prefix + "_branch2b", dim_inner, dim_inner, [1, 3, 3],
                       strides=[1, stride, stride], pads=[0, 1, 1] * 2, group=group)
    blob_out = net.Relu(blob_out)
    # 1x1 layer (no relu)
    blob_out = conv_op(net, cfg, blob_out, prefix + "_branch2c", dim_inner, dim_out, [1, 1, 1],
                       strides=[1, 1, 1], pads=[0, 0, 0] * 2)
    return blob_out


def _add_shortcut_3d(net, cfg, blob_in, prefix, dim_in, dim_out, stride, temp_stride=1):
    if dim_in == dim_out and temp_stride == 1 and stride == 1:
        return blob_in  # identity mapping
    conv_op = _conv_op(cfg)
    return conv_op(net, cfg, blob_in, prefix, dim_in, dim_out, [1, 1, 1],
                   strides=[temp_stride, stride, stride], pads=[0, 0, 0] * 2, group=1)


def _generic_residual_block_3d(net, cfg, blob_in, dim_in, dim_out, stride, prefix, dim_inner, group=1,
                               use_temp_conv=0, temp_stride=1):
    if cfg.RESNETS.TRANS_FUNC != "bottleneck_transformation_3d":
        # globals()[cfg.RESNETS.TRANS_FUNC] in resnet_helper only resolves this one
        raise ValueError(f"TRANS_FUNC {cfg.RESNETS.TRANS_FUNC} is not defined in resnet_helper")
    tr_blob = bottleneck_transformation_3d(net, cfg, blob_in, dim_in, dim_out, stride, prefix, dim_inner,
                                           group=group, use_temp_conv=use_temp_conv, temp_stride=temp_stride)
    sc_blob = _add_shortcut_3d(net, cfg, blob_in, prefix + "_branch1", dim_in, dim_out, stride,
                               temp_stride=temp_stride)
    sum_blob = net.Sum(tr_blob, sc_blob)
    return net.Relu(sum_blob)


def res_stage_nonlocal(net, cfg, blob_in, dim_in, dim_out, stride, num_blocks, prefix, dim_inner=None,
                       group=None, use_temp_convs=None, temp_strides=None, batch_size=None,
                       nonlocal_name=None, nonlocal_mod=1000):
    if use_temp_convs is None:
        use_temp_convs = [0] * num_blocks
    if temp_strides is None:
        temp_strides = [1] * num_blocks
    use_temp_convs, temp_strides = list(use_temp_convs), list(temp_strides)
    if len(use_temp_convs) < num_blocks:
        for _ in range(num_blocks - len(use_temp_convs)):
            use_temp_convs.append(0)
            temp_strides.append(1)

    for idx in range(num_blocks):
        block_prefix = "{}_{}".format(prefix, idx)
        block_stride = 2 if (idx == 0 and stride == 2) else 1
        blob_in = _generic_residual_block_3d(net, cfg, blob_in, dim_in, dim_out, block_stride, block_prefix,
                                             dim_inner, group, use_temp_convs[idx], temp_strides[idx])
        net.tap(block_prefix, blob_in)
        dim_in = dim_out
        if idx % nonlocal_mod == nonlocal_mod - 1:
            name = nonlocal_name + "_{}".format(idx)
            blob_in = add_nonlocal(net, cfg, blob_in, dim_in, dim_in, batch_size, name, int(dim_in / 2))
            net.tap(name + "_sum", blob_in)
    return blob_in, dim_in


def res_stage_nonlocal_group(net, cfg, blob_in, dim_in, dim_out, stride, num_blocks, prefix, dim_inner=None,
                             group=None, use_temp_convs=None, temp_strides=None, batch_size=None,
                             pool_stride=None, spatial_dim=None, group_size=None, nonlocal_name=None,
                             nonlocal_mod=1000):
    if use_temp_convs is None:
        use_temp_convs = [0] * num_blocks
    if temp_strides is None:
        temp_strides = [1] * num_blocks
    use_temp_convs, temp_strides = list(use_temp_convs), list(temp_strides)
    if len(use_temp_convs) < num_blocks:
        for _ in range(num_blocks - len(use_temp_convs)):
            use_temp_convs.append(0)
            temp_strides.append(1)

    for idx in range(num_blocks):
        block_prefix = "{}_{}".format(prefix, idx)
        block_stride = 2 if (idx == 0 and stride == 2) else 1
        blob_in = _generic_residual_block_3d(net, cfg, blob_in, dim_in, dim_out, block_stride, block_prefix,
                                             dim_inner, group, use_temp_convs[idx], temp_strides[idx])
        net.tap(block_prefix, blob_in)
        dim_in = dim_out
        if idx % nonlocal_mod == nonlocal_mod - 1:
            name = nonlocal_name + "_{}".format(idx)
            blob_in = add_nonlocal_group(net, cfg, blob_in, dim_in, dim_in, batch_size, pool_stride,
                                         spatial_dim, spatial_dim, group_size, name, int(dim_in / 2))
            net.tap(name + "_sum", blob_in)
    return blob_in, dim_in


# --------------------------------------------------------------------------------------------
# nonlocal_helper.py
# --------------------------------------------------------------------------------------------
def spacetime_nonlocal(net, cfg, blob_in, dim_in, dim_out, batch_size, prefix, dim_inner, max_pool_stride=2):
    nl = cfg.NONLOCAL
    cur = blob_in
    theta = net.ConvNd(cur, prefix + "_theta", dim_in, dim_inner, [1, 1, 1], [1, 1, 1], [0, 0, 0] * 2,
                       no_bias=nl.NO_BIAS, kind="nl_w")
    if nl.USE_MAXPOOL:
        max_pool = net.MaxPool(cur, [1, max_pool_stride, max_pool_stride], [1, max_pool_stride, max_pool_stride],
                               [0, 0, 0] * 2)
    else:
        max_pool = cur
    phi = net.ConvNd(max_pool, prefix + "_phi", dim_in, dim_inner, [1, 1, 1], [1, 1, 1], [0, 0, 0] * 2,
                     no_bias=nl.NO_BIAS, kind="nl_w")
    g = net.ConvNd(max_pool, prefix + "_g", dim_in, dim_inner, [1, 1, 1], [1, 1, 1], [0, 0, 0] * 2,
                   no_bias=nl.NO_BIAS, kind="nl_w")

    # explicit batch size, as the original: (B, dim_inner, T, H, W) => (batch_size, dim_inner, -1)
    theta, theta_shape_5d = net.Reshape(theta, (batch_size, dim_inner, -1))
    phi, _ = net.Reshape(phi, (batch_size, dim_inner, -1))
    g, _ = net.Reshape(g, (batch_size, dim_inner, -1))

    theta_phi = net.BatchMatMul(theta, phi, trans_a=1)  # (b, N_theta, N_phi)
    if nl.USE_SOFTMAX:
        theta_phi_sc = net.Scale(theta_phi, dim_inner ** -.5) if nl.USE_SCALE else theta_phi
        p = net.Softmax(theta_phi_sc, axis=2)
    else:
        p = net.ReduceBackSumOnesDenominator(theta_phi)

    t = net.BatchMatMul(g, p, trans_b=1)  # (b, dim_inner, N_theta)
    t_re, _ = net.Reshape(t, theta_shape_5d)
    blob_out = net.ConvNd(t_re, prefix + "_out", dim_inner, dim_out, [1, 1, 1], [1, 1, 1], [0, 0, 0] * 2,
                          no_bias=nl.NO_BIAS, kind="nl_w")
    if nl.USE_BN:
        blob_out = net.SpatialBN(blob_out, prefix + "_bn", dim_out, epsilon=nl.BN_EPSILON)
    if nl.USE_AFFINE:
        blob_out = net.AffineNd(blob_out, prefix + "_bn", dim_out)
    return blob_out


def add_nonlocal(net, cfg, blob_in, dim_in, dim_out, batch_size, prefix, dim_inner):
    blob_out = spacetime_nonlocal(net, cfg, blob_in, dim_in, dim_out, batch_size, prefix, dim_inner)
    return net.Sum(blob_in, blob_out)


def add_nonlocal_group(net, cfg, blob_in, dim_in, dim_out, batch_size, pool_stride, height, width, group_size,
                       prefix, dim_inner):
    group_num = int(pool_stride / group_size)
    assert pool_stride % group_size == 0, (pool_stride, group_size)

    if group_num > 1:
        blob_in = net.Transpose(blob_in, (0, 2, 1, 3, 4))
        blob_in, blob_in_5d = net.Reshape(blob_in, (batch_size * group_num, group_size, dim_in, height, width))
        blob_in = net.Transpose(blob_in, (0, 2, 1, 3, 4))

    blob_out = spacetime_nonlocal(net, cfg, blob_in, dim_in, dim_out, batch_size * group_num, prefix, dim_inner)
    blob_out = net.Sum(blob_in, blob_out)

    if group_num > 1:
        blob_out = net.Transpose(blob_out, (0, 2, 1, 3, 4))
        blob_out, _ = net.Reshape(blob_out, blob_in_5d)
        blob_out = net.Transpose(blob_out, (0, 2, 1, 3, 4))
    return blob_out


# --------------------------------------------------------------------------------------------
# resnet_video.py / resnet_video_org.py: create_model
# --------------------------------------------------------------------------------------------
def head(net, cfg, blob_in, dim_in, pool_stride, split):
    """create_model from pool5 on: the fully-convolutional test head or the val FC head."""
    num_classes = cfg.MODEL.NUM_CLASSES
    blob_out = net.AveragePool(blob_in, [pool_stride, 7, 7], [1, 1, 1], [0, 0, 0] * 2)
    net.tap("pool5", blob_out)
    # (Dropout only when not test_mode: absent from 'test'/'val')
    if split in ("train", "val"):
        blob_out = net.FC(blob_out, "pred", dim_in, num_classes)
    elif split == "test":
        blob_out = net.ConvNd(blob_out, "pred", dim_in, num_classes, [1, 1, 1], [1, 1, 1], [0, 0, 0] * 2,
                              kind="pred_w")
    else:
        raise ValueError(split)
    net.tap("pred", blob_out)

    if split == "train":
        return None  # SoftmaxWithLoss: not modelled; 'train' only serves blob collection
    if split == "val":
        return net.Softmax(blob_out, axis=1)
    # fully convolutional testing
    blob_out = net.Transpose(blob_out, (0, 2, 3, 4, 1))
    blob_out, old_shape = net.Reshape(blob_out, (-1, num_classes))
    blob_out = net.Softmax(blob_out)
    blob_out, _ = net.Reshape(blob_out, old_shape)
    blob_out = net.Transpose(blob_out, (0, 4, 1, 2, 3))
    blob_out = net.ReduceBackMean(blob_out)  # softmax_ave_w
    blob_out = net.ReduceBackMean(blob_out)  # softmax_ave_h
    return net.ReduceBackMean(blob_out)  # softmax


def create_model(net: _Net, cfg: RefConfig, data, split: str, batch_size: int | None):
    group = cfg.RESNETS.NUM_GROUPS
    width_per_group = cfg.RESNETS.WIDTH_PER_GROUP
    assert cfg.MODEL.DEPTH in BLOCK_CONFIG, "Block config is not defined for specified model depth."
    (n1, n2, n3, n4) = BLOCK_CONFIG[cfg.MODEL.DEPTH]
    dim_inner = _ch(cfg, group * width_per_group)
    use_temp_convs_set, temp_strides_set, pool_stride = obtain_arc(
        cfg.MODEL.VIDEO_ARC_CHOICE, cfg.MODEL.MODEL_NAME, cfg.TRAIN.VIDEO_LENGTH)

    c64 = _ch(cfg, 64)
    conv_blob = net.ConvNd(data, "conv1", 3, c64, [1 + use_temp_convs_set[0][0] * 2, 7, 7],
                           strides=[temp_strides_set[0][0], 2, 2], pads=[use_temp_convs_set[0][0], 3, 3] * 2,
                           no_bias=1)
    if cfg.MODEL.USE_AFFINE is False:
        bn_blob = net.SpatialBN(conv_blob, "res_conv1_bn", c64, epsilon=cfg.MODEL.BN_EPSILON)
    else:
        bn_blob = net.AffineNd(conv_blob, "res_conv1_bn", c64)
    relu_blob = net.Relu(bn_blob)
    if cfg.MODEL.MODEL_NAME == "resnet_video":
        max_pool = net.MaxPool(relu_blob, [1, 3, 3], [1, 2, 2], [0, 0, 0] * 2)
    else:  # resnet_video_org
        max_pool = net.MaxPool(relu_blob, [2, 3, 3], [2, 2, 2], [0, 0, 0] * 2)
    net.tap("pool1", max_pool)

    blob_in, dim_in = res_stage_nonlocal(
        net, cfg, max_pool, c64, _ch(cfg, 256), stride=1, num_blocks=n1, prefix="res2", dim_inner=dim_inner,
        group=group, use_temp_convs=use_temp_convs_set[1], temp_strides=temp_strides_set[1])

    layer_mod = cfg.NONLOCAL.LAYER_MOD
    if cfg.MODEL.DEPTH == 101:
        layer_mod = 2
    if cfg.NONLOCAL.CONV3_NONLOCAL is False:
        layer_mod = 1000

    blob_in = net.MaxPool(blob_in, [2, 1, 1], [2, 1, 1], [0, 0, 0] * 2)
    net.tap("pool2", blob_in)

    if cfg.MODEL.USE_AFFINE is False:
        blob_in, dim_in = res_stage_nonlocal(
            net, cfg, blob_in, dim_in, _ch(cfg, 512), stride=2, num_blocks=n2, prefix="res3",
            dim_inner=dim_inner * 2, group=group, use_temp_convs=use_temp_convs_set[2],
            temp_strides=temp_strides_set[2], batch_size=batch_size, nonlocal_name="nonlocal_conv3",
            nonlocal_mod=layer_mod)
    else:
        crop_size = cfg.TRAIN.CROP_SIZE
        blob_in, dim_in = res_stage_nonlocal_group(
            net, cfg, blob_in, dim_in, _ch(cfg, 512), stride=2, num_blocks=n2, prefix="res3",
            dim_inner=dim_inner * 2, group=group, use_temp_convs=use_temp_convs_set[2],
            temp_strides=temp_strides_set[2], batch_size=batch_size, pool_stride=pool_stride,
            spatial_dim=(int(crop_size / 8)), group_size=4, nonlocal_name="nonlocal_conv3",
            nonlocal_mod=layer_mod)

    layer_mod = cfg.NONLOCAL.LAYER_MOD
    if cfg.MODEL.DEPTH == 101:
        layer_mod = layer_mod * 4 - 1
    if cfg.NONLOCAL.CONV4_NONLOCAL is False:
        layer_mod = 1000

    blob_in, dim_in = res_stage_nonlocal(
        net, cfg, blob_in, dim_in, _ch(cfg, 1024), stride=2, num_blocks=n3, prefix="res4",
        dim_inner=dim_inner * 4, group=group, use_temp_convs=use_temp_convs_set[3],
        temp_strides=temp_strides_set[3], batch_size=batch_size, nonlocal_name="nonlocal_conv4",
        nonlocal_mod=layer_mod)

    blob_in, dim_in = res_stage_nonlocal(
        net, cfg, blob_in, dim_in, _ch(cfg, 2048), stride=2, num_blocks=n4, prefix="res5",
        dim_inner=dim_inner * 8, group=group, use_temp_convs=use_temp_convs_set[4],
        temp_strides=temp_strides_set[4])

    return head(net, cfg, blob_in, dim_in, pool_stride, split)


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------
def blob_specs(cfg: RefConfig, split: str = "test") -> OrderedDict[str, BlobSpec]:
    """Every parameter blob create_model(split) reads, in creation order: name -> BlobSpec.
    'test' has pred as ConvNd ([C, dim, 1, 1, 1]); 'val'/'train' as FC ([C, dim])."""
    net = _Net()
    create_model(net, cfg, None, split, batch_size=1)  # batch_size shapes no blob
    return net.specs


def make_blobs(cfg: RefConfig, seed: int = 0, *, split: str = "test", solver_state: bool = False,
               model_iter: int = 400000, lr: float = 1e-4) -> dict[str, Any]:
    """Random, well-conditioned float32 values for every blob of ``blob_specs(cfg, split)``.

    Values (chosen so that activations stay O(1) through 50 or 101 layers although the BN statistics
    are not those of the data, and the softmax is neither saturated nor uniform):
    convs N(0, 2 / fan_in) (MSRA), shortcut (branch1) convs N(0, 1 / fan_in); non-local
    theta/phi/g N(0, 1 / fan_in), non-local out N(0, 0.3 / fan_in); conv biases U(-0.1, 0.1);
    BN/affine scales U(0.8, 1.2) except branch2c's U(0.1, 0.3) (damps x + F(x)); shifts and running
    means U(-0.1, 0.1); running variances U(0.5, 1.5); pred_w N(0, (0.3 / sqrt(dim))^2), pred_b
    U(-0.1, 0.1). Same seed, same values; values are drawn in blob creation order.

    ``solver_state`` adds what checkpoints.save_model_params writes in a training checkpoint:
    ``model_iter`` (a Python int), ``lr`` (float32 array of shape [1], as the ConstantFill'd blob) and
    ``<param>_momentum`` (float32, the param's shape) for every param with a gradient (convs, conv
    biases, SpatialBN _s/_b, pred; not _rm/_riv, not AffineNd _s/_b). For a training checkpoint use
    ``split='train'`` (pred as FC [C, dim]).
    """
    rng = np.random.default_rng(seed)
    specs = blob_specs(cfg, split)
    blobs: dict[str, Any] = {}
    for name, spec in specs.items():
        shape = spec.shape
        if spec.kind in ("conv_w", "nl_w"):
            fan_in = int(np.prod(shape[1:]))
            if spec.kind == "nl_w":
                gain = 0.3 if name.endswith("_out_w") else 1.0
            else:
                gain = 1.0 if "_branch1" in name else 2.0
            value = rng.normal(0.0, math.sqrt(gain / fan_in), size=shape)
        elif spec.kind == "pred_w":
            value = rng.normal(0.0, 0.3 / math.sqrt(int(np.prod(shape[1:]))), size=shape)
        elif spec.kind in ("bn_s", "affine_s"):
            # branch2c's norm (the last of a residual branch) is damped so that x + F(x) does not
            # double the residual stream's magnitude in every block (the non-local branch is damped
            # by its out conv's gain instead, so it is damped with or without a norm after it)
            damped = name.endswith("_branch2c_bn_s")
            value = rng.uniform(0.1, 0.3, size=shape) if damped else rng.uniform(0.8, 1.2, size=shape)
        elif spec.kind in ("conv_b", "pred_b", "bn_b", "affine_b", "bn_rm"):
            value = rng.uniform(-0.1, 0.1, size=shape)
        elif spec.kind == "bn_riv":
            value = rng.uniform(0.5, 1.5, size=shape)
        else:
            raise AssertionError(spec.kind)
        blobs[name] = value.astype(np.float32)
    if solver_state:
        blobs["model_iter"] = int(model_iter)
        blobs["lr"] = np.array([lr], dtype=np.float32)
        for name, spec in specs.items():
            if spec.trainable:
                blobs[name + "_momentum"] = rng.normal(0.0, 1e-3, size=spec.shape).astype(np.float32)
    return blobs


def _batch_size(cfg: RefConfig, n: int) -> int:
    if cfg.TRAIN.BATCH_SIZE is None:
        return n
    return int(cfg.TRAIN.BATCH_SIZE / cfg.NUM_GPUS)


def _as_tensor(data) -> torch.Tensor:
    if isinstance(data, torch.Tensor):
        return data.detach().to(DTYPE)
    return torch.from_numpy(np.asarray(data, dtype=np.float64))


def test_graph(blobs: dict[str, Any], cfg: RefConfig, data, taps: dict | None = None) -> np.ndarray:
    """The original ``create_model(..., split='test')`` output blob ``softmax``: float64 [N, NUM_CLASSES].

    ``data``: N x 3 x T x H x W, already normalised ((x - MEAN) / STD, RGB unless USE_BGR).
    ``blobs``: name -> array (extra entries such as solver state are ignored; ``pred_w`` may be FC
    [C, dim] or conv [C, dim, 1, 1, 1]). ``taps``: if a dict, receives float64 tensors of
    intermediate outputs: 'pool1', 'pool2', every block output '<stage>_<idx>' (after the final
    ReLU), every '<nonlocal prefix>_sum', 'pool5', 'pred' (the pre-softmax [N, C, T', H', W'] map).
    """
    x = _as_tensor(data)
    net = _Net(blobs)
    with torch.no_grad():
        out = create_model(net, cfg, x, "test", _batch_size(cfg, x.shape[0]))
    if taps is not None:
        taps.update(net.taps)
    return out.numpy()


test_graph.__test__ = False  # not a pytest test despite the name


def val_graph(blobs: dict[str, Any], cfg: RefConfig, data, taps: dict | None = None) -> np.ndarray:
    """``create_model(..., split='val')``'s ``softmax``: pool5 -> FC pred -> Softmax. Caffe2's FC
    flattens pool5 to [N, dim * T' * H' * W'], so this needs pool5 to be 1x1x1 (e.g. 224x224 input)."""
    x = _as_tensor(data)
    net = _Net(blobs)
    with torch.no_grad():
        out = create_model(net, cfg, x, "val", _batch_size(cfg, x.shape[0]))
    if taps is not None:
        taps.update(net.taps)
    return out.numpy()
