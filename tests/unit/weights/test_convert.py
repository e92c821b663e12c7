"""Caffe2 pickle -> nlflow checkpoint for every architecture, with identical outputs."""

import pickle

import pytest
import torch

from nlflow.models import ModelConfig, build_model, load_checkpoint, read_checkpoint
from nlflow.weights.caffe2_pickle import UnsafePickleError, read_caffe2_pickle
from nlflow.weights.convert import ConvertError, convert_caffe2_to_checkpoint, infer_model_config, inspect_weights
from nlflow.weights.name_map import state_dict_to_blobs

from helpers.weights import trained_model, write_official_pickle


@pytest.mark.parametrize("arch", ["c2d", "i3d"])
@pytest.mark.parametrize("depth", [50, 101])
@pytest.mark.parametrize("use_nonlocal", [False, True])
def test_every_architecture_converts_back_to_identical_outputs(tmp_path, arch, depth, use_nonlocal):
    cfg = ModelConfig(arch=arch, depth=depth, use_nonlocal=use_nonlocal, num_classes=6, width=8)
    model = trained_model(cfg)
    write_official_pickle(tmp_path / "official.pkl", model)

    report = convert_caffe2_to_checkpoint(tmp_path / "official.pkl", tmp_path / "model.pt")
    assert report.inferred and report.model_config == cfg
    assert not report.head_reinitialised and not report.load.leftover and not report.load.defaults
    assert "model_iter" in report.clean.training_state and "lr" in report.clean.training_state

    converted = load_checkpoint(tmp_path / "model.pt")
    x = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        expected = model(x)
        assert torch.equal(converted(x), expected)
    assert not converted.training


def test_new_head_for_another_class_count_keeps_the_backbone(tmp_path):
    cfg = ModelConfig(width=8, num_classes=400)
    model = trained_model(cfg)
    write_official_pickle(tmp_path / "k400.pkl", model)
    classes = [f"class{i}" for i in range(101)]
    report = convert_caffe2_to_checkpoint(tmp_path / "k400.pkl", tmp_path / "ucf.pt", classes=classes, seed=3)
    assert report.head_reinitialised and report.source_classes == 400
    assert sorted(report.clean.head) == ["pred_b", "pred_w"]
    payload = read_checkpoint(tmp_path / "ucf.pt")
    assert payload["classes"] == classes and payload["model_config"]["num_classes"] == 101
    state = payload["state_dict"]
    assert state["head.fc.weight"].shape == (101, 256)
    assert torch.count_nonzero(state["head.fc.bias"]) == 0
    assert 0.008 < float(state["head.fc.weight"].std()) < 0.012
    for key, value in model.state_dict().items():
        if not key.startswith("head."):
            assert torch.equal(state[key], value), key
    # The same seed gives the same new head.
    convert_caffe2_to_checkpoint(tmp_path / "k400.pkl", tmp_path / "again.pt", classes=classes, seed=3)
    assert torch.equal(read_checkpoint(tmp_path / "again.pt")["state_dict"]["head.fc.weight"], state["head.fc.weight"])


def test_bn_statistics_can_be_dropped_and_an_explicit_config_is_honoured(tmp_path):
    cfg = ModelConfig(arch="c2d", width=8, num_classes=5, use_nonlocal=False)
    write_official_pickle(tmp_path / "w.pkl", trained_model(cfg))
    explicit = cfg.replace(video_length=4, sample_rate=16, pool1_padding=1)
    report = convert_caffe2_to_checkpoint(tmp_path / "w.pkl", tmp_path / "w.pt", model_cfg=explicit, keep_bn_stats=False)
    assert not report.inferred and report.model_config == explicit
    assert len(report.clean.bn_stats) > 0 and "stem.bn.running_var" in report.load.defaults
    state = read_checkpoint(tmp_path / "w.pt")["state_dict"]
    assert torch.equal(state["stem.bn.running_var"], torch.ones(8))


def test_conversion_errors_are_clear(tmp_path):
    cfg = ModelConfig(width=8, num_classes=5)
    write_official_pickle(tmp_path / "w.pkl", trained_model(cfg))
    with pytest.raises(ConvertError, match="give num_classes"):
        convert_caffe2_to_checkpoint(tmp_path / "w.pkl", tmp_path / "a.pt", drop_head=True)
    with pytest.raises(ConvertError, match=r"conv1_w.*needs \[8, 3, 1, 7, 7\]"):
        convert_caffe2_to_checkpoint(tmp_path / "w.pkl", tmp_path / "b.pt", model_cfg=cfg.replace(arch="c2d"))
    assert not (tmp_path / "a.pt").exists() and not (tmp_path / "b.pt").exists()

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"blobs": {"conv1_w": Evil()}}, protocol=2))
    with pytest.raises(UnsafePickleError):
        convert_caffe2_to_checkpoint(tmp_path / "evil.pkl", tmp_path / "c.pt")


def test_infer_model_config_from_shapes():
    blobs = state_dict_to_blobs(build_model(ModelConfig(arch="c2d", depth=101, use_nonlocal=False, width=4, num_classes=7)))
    cfg = infer_model_config(blobs)
    assert (cfg.arch, cfg.depth, cfg.use_nonlocal, cfg.width, cfg.num_classes) == ("c2d", 101, False, 4, 7)
    blobs["conv1_w"] = blobs["conv1_w"][:, :, 0]
    with pytest.raises(ConvertError, match="2-D"):
        infer_model_config(blobs)


def test_inspect_lists_pickles_and_checkpoints(tmp_path):
    cfg = ModelConfig(width=8, num_classes=5)
    write_official_pickle(tmp_path / "w.pkl", trained_model(cfg))
    text = inspect_weights(tmp_path / "w.pkl")
    assert "i3d-R50 non-local, width 8, 5 classes" in text
    assert "conv1_w_momentum" in text and "[dropped]" in text
    assert "res_conv1_bn_riv" in text and "8x3x5x7x7" in text
    assert len(read_caffe2_pickle(tmp_path / "w.pkl")) + 6 <= len(text.splitlines())
    convert_caffe2_to_checkpoint(tmp_path / "w.pkl", tmp_path / "w.pt")
    text = inspect_weights(tmp_path / "w.pt")
    assert "nlflow model checkpoint" in text and "num_classes=5" in text and "res3.nl1.theta.weight" in text


def test_a_released_model_keeps_its_kinetics_class_names(tmp_path):
    from nlflow.lists.kinetics_facts import kinetics400_classes

    cfg = ModelConfig(width=8, num_classes=400)  # i3d non-local 8x8, as i3d_nonlocal_8x8_IN_pretrain_400k
    released = tmp_path / "i3d_nonlocal_8x8_IN_pretrain_400k.pkl"
    write_official_pickle(released, trained_model(cfg))
    convert_caffe2_to_checkpoint(released, tmp_path / "named.pt")
    assert read_checkpoint(tmp_path / "named.pt")["classes"] == list(kinetics400_classes())
    assert load_checkpoint(tmp_path / "named.pt").classes[208] == "passing American football (in game)"
    # a new head is not the released one: no names; a file of no released model: no names
    convert_caffe2_to_checkpoint(released, tmp_path / "new_head.pt", num_classes=101)
    assert read_checkpoint(tmp_path / "new_head.pt")["classes"] is None
    write_official_pickle(tmp_path / "mine.pkl", trained_model(cfg))
    convert_caffe2_to_checkpoint(tmp_path / "mine.pkl", tmp_path / "mine.pt")
    assert read_checkpoint(tmp_path / "mine.pt")["classes"] is None


def test_a_network_evaluated_as_converted_must_keep_its_head(tmp_path):
    cfg = ModelConfig(width=8, num_classes=400)
    write_official_pickle(tmp_path / "k400.pkl", trained_model(cfg))
    with pytest.raises(ConvertError, match=r"keeps its own classifier, but it was dropped \(400 classes in the file, 101 wanted\)"):
        convert_caffe2_to_checkpoint(tmp_path / "k400.pkl", tmp_path / "out.pt", model_cfg=cfg, num_classes=101,
                                     require_head=True)
    assert not (tmp_path / "out.pt").exists()
    with pytest.raises(ConvertError, match=r"it was dropped \(requested\)"):
        convert_caffe2_to_checkpoint(tmp_path / "k400.pkl", tmp_path / "out.pt", drop_head=True, num_classes=400,
                                     require_head=True)
