"""Cleaning Caffe2 blobs before fine-tuning."""

import numpy as np

from nlflow.weights.clean import clean_blobs


def _blobs(classes: int = 400) -> dict:
    z = np.zeros(2, np.float32)
    return {
        "conv1_w": z, "conv1_w_momentum": z, "res_conv1_bn_s": z, "res_conv1_bn_s_momentum": z,
        "res_conv1_bn_rm": z, "res_conv1_bn_riv": z, "nonlocal_conv3_1_bn_riv": z,
        "pred_w": np.zeros((classes, 8), np.float32), "pred_b": np.zeros(classes, np.float32),
        "pred_w_momentum": z, "model_iter": np.array([400000]), "lr": np.array([0.0001]),
    }


def test_solver_state_always_goes_and_the_rest_stays_by_default():
    kept, report = clean_blobs(_blobs(), num_classes=None)
    assert set(kept) == {"conv1_w", "res_conv1_bn_s", "res_conv1_bn_rm", "res_conv1_bn_riv", "nonlocal_conv3_1_bn_riv", "pred_w", "pred_b"}
    assert set(report.training_state) == {"conv1_w_momentum", "res_conv1_bn_s_momentum", "pred_w_momentum", "model_iter", "lr"}
    assert report.head == [] and report.head_classes == 400
    assert "5 solver-state" in report.summary()


def test_head_dropped_when_classes_differ_or_requested():
    kept, report = clean_blobs(_blobs(), num_classes=101)
    assert "pred_w" not in kept and "pred_b" not in kept
    assert sorted(report.head) == ["pred_b", "pred_w"] and "400 classes in the file, 101 wanted" in report.summary()
    kept, report = clean_blobs(_blobs(), num_classes=400)
    assert "pred_w" in kept and report.head == []
    kept, report = clean_blobs(_blobs(), num_classes=400, drop_head=True)
    assert "pred_w" not in kept and report.head_reason == "requested"


def test_bn_statistics_dropped_on_request_like_modify_blob_rm():
    kept, report = clean_blobs(_blobs(), num_classes=None, keep_bn_stats=False)
    assert sorted(report.bn_stats) == ["nonlocal_conv3_1_bn_riv", "res_conv1_bn_riv", "res_conv1_bn_rm"]
    assert not any(k.endswith(("_rm", "_riv")) for k in kept)
    assert "res_conv1_bn_s" in kept


def test_device_scopes_are_removed():
    kept, report = clean_blobs({"gpu_0/conv1_w": 1, "gpu_0/conv1_w_momentum": 2}, num_classes=None)
    assert kept == {"conv1_w": 1} and report.unscoped == 2
