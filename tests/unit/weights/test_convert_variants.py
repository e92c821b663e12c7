"""The released "affine" and paper-stem models convert: blobs -> network, inferred or taken from the zoo."""

import logging

import numpy as np
import pytest
import torch

from nlflow.models import ModelConfig, build_model, load_checkpoint
from nlflow.weights.caffe2_pickle import write_caffe2_pickle
from nlflow.weights.convert import ConvertError, convert_caffe2_to_checkpoint, infer_model_config
from nlflow.weights.name_map import state_dict_to_blobs, tensor_names

from helpers.weights import trained_model, write_official_pickle

WIDTH = 4
AFFINE = dict(frozen_bn=True, nonlocal_norm=False, nonlocal_temporal_group=4)


def _official_affine_blobs(width: int, num_classes: int, use_nonlocal: bool, seed: int = 0) -> dict[str, np.ndarray]:
    """A released affine I3D R50 checkpoint, written from the original's code, not from ours.

    resnet_video.py / resnet_helper.py with MODEL.USE_AFFINE: conv1 [5, 7, 7] -> AffineNd
    'res_conv1_bn' (_s, _b); Conv3dAffine(prefix) = prefix_w + AffineNd prefix_bn (_s, _b);
    branch2a temporal kernels res2 [1,1,1] res3 [1,0,1,0] res4 [1,0,1,0,1,0] res5 [0,1,0] (x2+1);
    branch1 on block 0; nonlocal_helper with NONLOCAL.USE_BN False / USE_AFFINE False:
    theta/phi/g/out conv weights and biases only, after blocks 1, 3 (res3) and 1, 3, 5 (res4);
    pred as an FC. Plus the solver state: *_momentum for every parameter, model_iter, lr.
    """
    rng = np.random.default_rng(seed)
    shapes: dict[str, tuple[int, ...]] = {"conv1_w": (width, 3, 5, 7, 7)}

    def affine(name: str, channels: int) -> None:
        shapes[f"{name}_s"] = shapes[f"{name}_b"] = (channels,)

    affine("res_conv1_bn", width)
    temporal = {2: [1, 1, 1], 3: [1, 0, 1, 0], 4: [1, 0, 1, 0, 1, 0], 5: [0, 1, 0]}
    dim_in = width
    for stage, uses in temporal.items():
        inner = width * 2 ** (stage - 2)
        dim_out = 4 * inner
        for block, use in enumerate(uses):
            prefix = f"res{stage}_{block}"
            block_in = dim_in if block == 0 else dim_out
            for branch, shape in (("branch2a", (inner, block_in, 1 + 2 * use, 1, 1)),
                                  ("branch2b", (inner, inner, 1, 3, 3)),
                                  ("branch2c", (dim_out, inner, 1, 1, 1))):
                shapes[f"{prefix}_{branch}_w"] = shape
                affine(f"{prefix}_{branch}_bn", shape[0])
            if block == 0:
                shapes[f"{prefix}_branch1_w"] = (dim_out, block_in, 1, 1, 1)
                affine(f"{prefix}_branch1_bn", dim_out)
            if use_nonlocal and stage in (3, 4) and block % 2 == 1:
                name = f"nonlocal_conv{stage}_{block}"
                for part, (c_out, c_in) in (("theta", (dim_out // 2, dim_out)), ("phi", (dim_out // 2, dim_out)),
                                            ("g", (dim_out // 2, dim_out)), ("out", (dim_out, dim_out // 2))):
                    shapes[f"{name}_{part}_w"] = (c_out, c_in, 1, 1, 1)
                    shapes[f"{name}_{part}_b"] = (c_out,)
        dim_in = dim_out
    shapes["pred_w"], shapes["pred_b"] = (num_classes, dim_in), (num_classes,)
    blobs = {name: rng.standard_normal(shape).astype(np.float32) * 0.1 for name, shape in shapes.items()}
    blobs.update({f"{name}_momentum": np.full(shape, 0.5, np.float32) for name, shape in shapes.items()})
    blobs["model_iter"] = np.array([400000], dtype=np.int64)
    blobs["lr"] = np.array([0.00025], dtype=np.float32)
    return blobs


@pytest.mark.parametrize("use_nonlocal", [True, False])
def test_our_names_are_the_affine_checkpoints_names(use_nonlocal):
    official = _official_affine_blobs(WIDTH, 5, use_nonlocal)
    parameters = {name for name in official if not name.endswith("_momentum") and name not in ("model_iter", "lr")}
    cfg = ModelConfig(width=WIDTH, num_classes=5, use_nonlocal=use_nonlocal, video_length=32, **AFFINE)
    assert {n.blob for n in tensor_names(cfg)} == parameters
    assert not any(name.startswith("nonlocal_") and "_bn_" in name for name in parameters)


def test_an_official_affine_file_converts_completely_and_exports_back_unchanged(tmp_path):
    blobs = _official_affine_blobs(WIDTH, 400, use_nonlocal=True)
    write_caffe2_pickle(tmp_path / "affine.pkl", blobs)
    report = convert_caffe2_to_checkpoint(tmp_path / "affine.pkl", tmp_path / "affine.pt")
    cfg = report.model_config
    assert (cfg.frozen_bn, cfg.nonlocal_norm, cfg.nonlocal_temporal_group) == (True, False, 4)
    assert not report.load.leftover and not report.load.defaults and not report.load.folded_bn
    assert "model_iter" in report.clean.training_state and "lr" in report.clean.training_state
    assert sum(name.endswith("_momentum") for name in report.clean.training_state) == len(blobs) // 2 - 1
    exported = state_dict_to_blobs(load_checkpoint(tmp_path / "affine.pt"))
    assert exported.keys() == {n for n in blobs if not n.endswith("_momentum") and n not in ("model_iter", "lr")}
    for name, value in exported.items():
        np.testing.assert_array_equal(value, blobs[name], err_msg=name)


@pytest.mark.parametrize(("zoo_name", "video_length", "sample_rate", "stem_stride"), [
    ("i3d_nonlocal_32x4_I3D_pretrain_400k", 32, 4, 1),
    ("i3d_nonlocal_128x1_I3D_pretrain_400k", 128, 1, 2),
])
def test_affine_nonlocal_file_gives_the_network_that_wrote_it(tmp_path, zoo_name, video_length, sample_rate, stem_stride):
    cfg = ModelConfig(width=WIDTH, num_classes=400, video_length=video_length, sample_rate=sample_rate,
                      stem_temporal_stride=stem_stride, **AFFINE)
    source = trained_model(cfg)
    written = write_official_pickle(tmp_path / f"{zoo_name}.pkl", source)
    assert not any(name.endswith(("_rm", "_riv")) or name.startswith("nonlocal_conv3_1_bn") for name in written)

    report = convert_caffe2_to_checkpoint(tmp_path / f"{zoo_name}.pkl", tmp_path / "model.pt")
    assert report.inferred and report.model_config == cfg and not report.notes  # the zoo name settles the clip
    assert not report.load.leftover and not report.load.defaults
    converted = load_checkpoint(tmp_path / "model.pt")
    x = torch.randn(1, 3, video_length, 32, 32)  # res3 holds 16 frames: 4 attention groups of 4
    with torch.no_grad():
        expected = source(x)
        assert torch.equal(converted(x), expected)
        ungrouped = build_model(cfg.replace(nonlocal_temporal_group=0)).eval()
        ungrouped.load_state_dict(source.state_dict())
        assert not torch.allclose(ungrouped(x), expected, atol=1e-4)  # the grouping is part of the network


def test_affine_variant_is_inferred_from_the_blobs_alone_with_a_note_for_the_clip(tmp_path, caplog):
    cfg = ModelConfig(width=WIDTH, num_classes=400, **AFFINE)
    write_official_pickle(tmp_path / "renamed.pkl", trained_model(cfg))
    with caplog.at_level(logging.WARNING):
        report = convert_caffe2_to_checkpoint(tmp_path / "renamed.pkl", tmp_path / "model.pt")
    assert report.model_config == cfg  # 8x8 and the resnet_video stem: the defaults
    assert len(report.notes) == 1 and "clip shape is not in the file" in report.notes[0]
    assert "clip shape is not in the file" in caplog.text and len(caplog.records) == 1


def test_a_statistics_free_baseline_needs_the_zoo_to_be_affine(tmp_path):
    cfg = ModelConfig(width=WIDTH, num_classes=400, use_nonlocal=False, video_length=32, sample_rate=4, frozen_bn=True)
    source = trained_model(cfg)
    write_official_pickle(tmp_path / "baseline.pkl", source)
    guessed = convert_caffe2_to_checkpoint(tmp_path / "baseline.pkl", tmp_path / "guess.pt")
    assert not guessed.model_config.frozen_bn  # ambiguous: a BN file cleaned by modify_blob_rm.py looks the same
    assert any("no BN statistics and no non-local blocks" in note for note in guessed.notes)

    write_official_pickle(tmp_path / "i3d_baseline_32x4_I3D_pretrain_400k.pkl", source)
    named = convert_caffe2_to_checkpoint(tmp_path / "i3d_baseline_32x4_I3D_pretrain_400k.pkl", tmp_path / "zoo.pt")
    assert named.model_config == cfg and not named.notes
    x = torch.randn(1, 3, 32, 32, 32)
    with torch.no_grad():
        assert torch.equal(load_checkpoint(tmp_path / "zoo.pt")(x), source(x))
    # --zoo-name does the same for a renamed file.
    again = convert_caffe2_to_checkpoint(tmp_path / "baseline.pkl", tmp_path / "again.pt",
                                         zoo_name="i3d_baseline_32x4_I3D_pretrain_400k")
    assert again.model_config == cfg


def test_dropped_statistics_do_not_make_a_bn_baseline_ambiguous(tmp_path):
    cfg = ModelConfig(width=WIDTH, num_classes=400, use_nonlocal=False)
    write_official_pickle(tmp_path / "bn.pkl", trained_model(cfg))
    report = convert_caffe2_to_checkpoint(tmp_path / "bn.pkl", tmp_path / "bn.pt", keep_bn_stats=False)
    assert report.model_config == cfg and report.clean.bn_stats
    assert not any("no BN statistics" in note for note in report.notes)


def test_bn_models_with_the_paper_stem_take_it_from_the_zoo(tmp_path):
    cfg = ModelConfig(width=WIDTH, num_classes=400, arch="c2d", video_length=32, sample_rate=2, stem_temporal_stride=2)
    source = trained_model(cfg)
    write_official_pickle(tmp_path / "c2d_nonlocal_32x2_IN_pretrain_400k.pkl", source)
    report = convert_caffe2_to_checkpoint(tmp_path / "c2d_nonlocal_32x2_IN_pretrain_400k.pkl", tmp_path / "m.pt")
    assert report.model_config == cfg and not report.load.folded_bn
    x = torch.randn(1, 3, 32, 32, 32)
    with torch.no_grad():
        assert torch.equal(load_checkpoint(tmp_path / "m.pt")(x), source(x))


def test_a_file_named_like_another_zoo_model_is_refused(tmp_path):
    bn_nonlocal = ModelConfig(width=WIDTH, num_classes=400)
    write_official_pickle(tmp_path / "i3d_nonlocal_32x4_I3D_pretrain_400k.pkl", trained_model(bn_nonlocal))
    with pytest.raises(ConvertError, match="named like the zoo model i3d_nonlocal_32x4_I3D_pretrain_400k.*nonlocal_norm True"):
        convert_caffe2_to_checkpoint(tmp_path / "i3d_nonlocal_32x4_I3D_pretrain_400k.pkl", tmp_path / "a.pt")
    c2d = bn_nonlocal.replace(arch="c2d")
    write_official_pickle(tmp_path / "i3d_nonlocal_8x8_IN_pretrain_400k.pkl", trained_model(c2d))
    with pytest.raises(ConvertError, match="blobs show arch 'c2d'"):
        convert_caffe2_to_checkpoint(tmp_path / "i3d_nonlocal_8x8_IN_pretrain_400k.pkl", tmp_path / "b.pt")
    with pytest.raises(Exception, match="neither a released video-nonlocal-net model"):
        convert_caffe2_to_checkpoint(tmp_path / "i3d_nonlocal_8x8_IN_pretrain_400k.pkl", tmp_path / "c.pt", zoo_name="i3d_nl")


def test_an_explicit_config_that_differs_from_the_zoo_entry_is_noted(tmp_path):
    cfg = ModelConfig(width=WIDTH, num_classes=400, video_length=8, sample_rate=8)
    write_official_pickle(tmp_path / "i3d_nonlocal_8x8_IN_pretrain_400k.pkl", trained_model(cfg))
    same = convert_caffe2_to_checkpoint(tmp_path / "i3d_nonlocal_8x8_IN_pretrain_400k.pkl", tmp_path / "a.pt", model_cfg=cfg)
    assert not same.notes
    longer = convert_caffe2_to_checkpoint(tmp_path / "i3d_nonlocal_8x8_IN_pretrain_400k.pkl", tmp_path / "b.pt",
                                          model_cfg=cfg.replace(video_length=16))
    assert longer.notes == ["model video_length is 16 but the zoo model i3d_nonlocal_8x8_IN_pretrain_400k was trained with 8"]


def test_infer_model_config_without_a_file_name():
    blobs = _official_affine_blobs(WIDTH, 7, use_nonlocal=True)
    cfg = infer_model_config(blobs)
    assert (cfg.width, cfg.num_classes, cfg.frozen_bn, cfg.nonlocal_norm, cfg.nonlocal_temporal_group) == (WIDTH, 7, True, False, 4)


def test_cli_convert_names_the_variant_and_prints_the_notes(tmp_path, capsys):
    from nlflow.cli import main

    cfg = ModelConfig(width=WIDTH, num_classes=400, video_length=128, sample_rate=1, stem_temporal_stride=2, **AFFINE)
    write_official_pickle(tmp_path / "i3d_nonlocal_128x1_I3D_pretrain_400k.pkl", trained_model(cfg))
    assert main(["weights", "convert", str(tmp_path / "i3d_nonlocal_128x1_I3D_pretrain_400k.pkl"), str(tmp_path / "a.pt")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "i3d-R50-NL width 4, 128x1 clips, resnet_video_org stem, affine, 400 classes" in out[0]
    (tmp_path / "i3d_nonlocal_128x1_I3D_pretrain_400k.pkl").rename(tmp_path / "mine.pkl")
    assert main(["weights", "convert", str(tmp_path / "mine.pkl"), str(tmp_path / "b.pt")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert "8x8 clips" in out[0] and out[1].startswith("note: the clip shape is not in the file")
    assert main(["weights", "convert", str(tmp_path / "mine.pkl"), str(tmp_path / "c.pt"),
                 "--zoo-name", "i3d_nonlocal_128x1_I3D_pretrain_400k"]) == 0
    assert "128x1 clips" in capsys.readouterr().out
