"""ModelConfig and build_model: layout rules of the original, parameter counts, shapes."""

import numpy as np
import pytest
import torch

from nlflow.errors import ConfigError, NlflowError
from nlflow.evaluate.scorer import logit_map_to_view_scores
from nlflow.models.builder import (
    ModelConfig,
    build_model,
    count_parameters,
    nonlocal_positions,
    stage_layout,
    temporal_kernel_sizes,
)


def test_config_round_trip_and_validation():
    cfg = ModelConfig(arch="c2d", depth=101, use_nonlocal=False, num_classes=101, width=8)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert all(isinstance(v, (str, int, float, bool)) for v in cfg.to_dict().values())
    with pytest.raises(ConfigError, match="arch"):
        ModelConfig(arch="x3d")
    with pytest.raises(ConfigError, match="depth"):
        ModelConfig(depth=34)
    with pytest.raises(ConfigError, match="pool1_padding"):
        ModelConfig(pool1_padding=2)
    with pytest.raises(NlflowError, match="unknown model config keys: colour"):
        ModelConfig.from_dict({"colour": "red"})


def test_i3d_temporal_kernels_follow_the_original():
    r50 = temporal_kernel_sizes("i3d", 50)
    assert r50 == [[3, 3, 3], [3, 1, 3, 1], [3, 1, 3, 1, 3, 1], [1, 3, 1]]
    r101 = temporal_kernel_sizes("i3d", 101)
    assert [len(s) for s in r101] == [3, 4, 23, 3]
    assert r101[2][:4] == [3, 1, 3, 1] and r101[2][-1] == 3
    assert all(k == 1 for stage in temporal_kernel_sizes("c2d", 101) for k in stage)


def test_nonlocal_positions_r50_and_r101():
    assert nonlocal_positions(50, True) == [(), (1, 3), (1, 3, 5), ()]
    assert nonlocal_positions(101, True) == [(), (1, 3), (6, 13, 20), ()]
    assert nonlocal_positions(50, False) == [(), (), (), ()]


def test_stage_channels_scale_with_width():
    real = stage_layout(ModelConfig())
    assert [(s.dim_in, s.dim_inner, s.dim_out, s.stride) for s in real] == [
        (64, 64, 256, 1), (256, 128, 512, 2), (512, 256, 1024, 2), (1024, 512, 2048, 2)
    ]
    assert stage_layout(ModelConfig(width=8))[3].dim_out == 256


@pytest.mark.parametrize(
    "use_nonlocal, published_millions", [(False, 28.04), (True, 35.40)]
)
def test_parameter_counts_match_the_published_i3d_r50(use_nonlocal, published_millions):
    model = build_model(ModelConfig(arch="i3d", depth=50, use_nonlocal=use_nonlocal, num_classes=400, width=64))
    assert round(count_parameters(model) / 1e6, 2) == published_millions


def test_forward_shapes_for_an_8x224x224_clip():
    model = build_model(ModelConfig(width=8, num_classes=7)).eval()
    x = torch.randn(1, 3, 8, 224, 224)
    with torch.no_grad():
        assert model.stem(x).shape == (1, 8, 8, 55, 55)
        features = model.features(x)
        logits = model(x)
    assert features.shape == (1, 256, 4, 7, 7)  # pool2 halves time once
    assert logits.shape == (1, 7)
    assert model.config.num_classes == 7 and model.classes is None


def test_test_mode_of_a_256_view_is_the_original_fully_convolutional_head():
    """pool5 (kernel [T/2, 7, 7], stride 1) -> pred as a 1x1x1 conv -> softmax at each position ->
    mean over positions (resnet_video.py, split 'test'), written out here with plain loops."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(width=8, num_classes=5, use_nonlocal=True)).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.head.fc.weight, std=0.3)
        torch.nn.init.normal_(model.head.fc.bias, std=0.3)
        x = torch.randn(2, 3, 8, 256, 256)
        features = model.features(x).double().numpy()
        logits_map = model.forward_map(x)
    assert features.shape[2:] == (4, 8, 8) and logits_map.shape == (2, 5, 1, 2, 2)
    weight = model.head.fc.weight.detach().double().numpy()
    bias = model.head.fc.bias.detach().double().numpy()
    expected = np.zeros((2, 5))
    for n in range(2):
        for top in range(2):
            for left in range(2):
                pooled = features[n, :, 0:4, top : top + 7, left : left + 7].mean(axis=(1, 2, 3))
                logits = weight @ pooled + bias
                expected[n] += np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum() / 4
    probs, _ = logit_map_to_view_scores(logits_map)
    np.testing.assert_allclose(probs.numpy(), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch", ["i3d", "c2d"])
@pytest.mark.parametrize("depth", [50, 101])
@pytest.mark.parametrize("use_nonlocal", [False, True])
def test_every_variant_builds_and_runs(arch, depth, use_nonlocal):
    cfg = ModelConfig(arch=arch, depth=depth, use_nonlocal=use_nonlocal, num_classes=3, width=4)
    model = build_model(cfg).eval()
    assert model.stem.conv.weight.shape[2] == (5 if arch == "i3d" else 1)
    n_nonlocal = sum(1 for name, _ in model.named_modules() if name.rsplit(".", 1)[-1].startswith("nl"))
    assert n_nonlocal == (5 if use_nonlocal else 0)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 4, 32, 32)).shape == (1, 3)


def test_residual_blocks_start_as_identity_plus_shortcut():
    torch.manual_seed(0)
    model = build_model(ModelConfig(width=8, num_classes=3)).eval()
    final_bns = [m.bn_c.weight for name, m in model.named_modules() if hasattr(m, "bn_c")]
    assert len(final_bns) == 16 and all(torch.count_nonzero(w) == 0 for w in final_bns)
    nonlocal_bns = [m.bn.weight for name, m in model.named_modules() if name.rsplit(".", 1)[-1].startswith("nl")]
    assert len(nonlocal_bns) == 5 and all(torch.count_nonzero(w) == 0 for w in nonlocal_bns)
    # An identity block inside res3 returns its input unchanged at init.
    x = torch.relu(torch.randn(1, 64, 2, 8, 8))
    block = dict(model.res3.named_children())["1"]
    assert torch.equal(block(x), x)


def test_frozen_bn_variant_uses_affine_layers_without_statistics():
    model = build_model(ModelConfig(width=4, num_classes=3, frozen_bn=True))
    keys = model.state_dict().keys()
    assert not any(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in keys)
    assert "stem.bn.weight" in keys and "res3.nl1.bn.bias" in keys
