"""The network variants the released models need: the paper's stem, norm-free and grouped non-local blocks."""

import pytest
import torch

from nlflow.errors import ConfigError
from nlflow.models import ModelConfig, build_model, load_checkpoint, save_checkpoint
from nlflow.models.builder import res5_temporal_length
from nlflow.models.nonlocal_block import NonLocalBlock
from nlflow.models.norm import Affine3d, norm_factory
from nlflow.models.resnet3d import make_stem

from helpers.nonlocal_reference import reference_attend

BN = norm_factory(False)


@pytest.mark.parametrize("temporal_kernel", [5, 1])
def test_stride_2_stem_gives_the_original_resnet_video_org_sizes(temporal_kernel):
    # resnet_video_org.py: conv1 strides [2, 2, 2] (pads [k // 2, 3, 3]); pool1 kernels [2, 3, 3], strides [2, 2, 2].
    stem = make_stem(dim_out=4, temporal_kernel=temporal_kernel, norm=BN, temporal_stride=2).eval()
    assert stem.conv.stride == (2, 2, 2) and stem.conv.padding == (temporal_kernel // 2, 3, 3)
    assert stem.pool.kernel_size == (2, 3, 3) and stem.pool.stride == (2, 2, 2)
    x = torch.randn(1, 3, 32, 64, 64)
    assert stem.conv(x).shape[2:] == (16, 32, 32)
    assert stem(x).shape == (1, 4, 8, 15, 15)
    plain = make_stem(dim_out=4, temporal_kernel=temporal_kernel, norm=BN).eval()  # resnet_video: time untouched
    assert plain(x).shape == (1, 4, 32, 15, 15)


@pytest.mark.parametrize("arch", ["i3d", "c2d"])
@pytest.mark.parametrize(("video_length", "stride"), [(32, 2), (128, 2), (8, 1), (32, 1)])
def test_res5_holds_the_frames_of_the_original_pool5_kernel(arch, video_length, stride):
    cfg = ModelConfig(arch=arch, width=4, num_classes=3, video_length=video_length, stem_temporal_stride=stride)
    model = build_model(cfg).eval()
    with torch.no_grad():
        features = model.features(torch.randn(1, 3, video_length, 32, 32))
    # obtain_arc: pool_stride = VIDEO_LENGTH / 2 (resnet_video), VIDEO_LENGTH / 8 (resnet_video_org).
    expected = video_length // 2 if stride == 1 else video_length // 8
    assert features.shape[2] == expected == res5_temporal_length(cfg)


def test_norm_free_block_starts_as_the_identity_with_a_zero_out_conv():
    torch.manual_seed(0)
    block = NonLocalBlock(16, None).train()
    assert isinstance(block.bn, torch.nn.Identity) and not list(block.bn.parameters())
    assert torch.count_nonzero(block.out.weight) == 0 and torch.count_nonzero(block.out.bias) == 0
    assert torch.count_nonzero(block.theta.weight) > 0  # the other projections keep their Gaussian init
    x = torch.randn(2, 16, 4, 4, 4)
    assert torch.equal(block(x), x)


def test_norm_free_block_adds_the_out_conv_of_the_attention():
    torch.manual_seed(0)
    block = NonLocalBlock(16, None).eval()
    torch.nn.init.normal_(block.out.weight, std=0.1)
    torch.nn.init.normal_(block.out.bias, std=0.1)
    x = torch.randn(2, 16, 4, 4, 4)
    with torch.no_grad():
        expected = x + block.out(reference_attend(block, x))  # nonlocal_helper: Sum(blob_in, out(y)), no BN
        torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("norm", [None, BN, norm_factory(True)])
def test_grouped_block_equals_the_plain_block_on_each_4_frame_chunk(norm):
    torch.manual_seed(0)
    grouped = NonLocalBlock(16, norm, temporal_group=4).eval()
    plain = NonLocalBlock(16, norm).eval()
    with torch.no_grad():
        for module in (grouped, plain):
            for parameter in module.parameters():
                parameter.normal_(std=0.2)  # nothing at zero: the attention must matter
        plain.load_state_dict(grouped.state_dict())
        x = torch.randn(2, 16, 12, 4, 6)
        y = grouped(x)
        chunks = [plain(x[:, :, start:start + 4]) for start in range(0, 12, 4)]
        torch.testing.assert_close(y, torch.cat(chunks, dim=2), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(y, plain(x), atol=1e-3)  # whole-clip attention is something else


def test_grouped_block_refuses_a_frame_count_that_does_not_split():
    block = NonLocalBlock(8, None, temporal_group=4)
    with pytest.raises(ValueError, match="groups of 4 got 6 frames"):
        block(torch.randn(1, 8, 6, 4, 4))


def test_affine_network_groups_res3_only_and_has_no_nonlocal_norm():
    cfg = ModelConfig(width=4, num_classes=3, video_length=32, frozen_bn=True, nonlocal_norm=False, nonlocal_temporal_group=4)
    model = build_model(cfg)
    assert [model.res3.nl1.temporal_group, model.res3.nl3.temporal_group] == [4, 4]
    assert all(getattr(model.res4, f"nl{i}").temporal_group == 0 for i in (1, 3, 5))
    assert all(isinstance(m.bn, torch.nn.Identity) for m in model.modules() if isinstance(m, NonLocalBlock))
    assert isinstance(model.stem.bn, Affine3d) and isinstance(model.res5[2].bn_c, Affine3d)
    assert not any(".nl" in key and ".bn." in key for key in model.state_dict())
    # Fresh norm-free blocks are the identity: the network computes what its backbone alone does.
    baseline = build_model(cfg.replace(use_nonlocal=False)).eval()
    baseline.load_state_dict({k: v for k, v in model.state_dict().items() if ".nl" not in k})
    x = torch.randn(1, 3, 32, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), baseline(x))


def test_new_fields_are_validated():
    with pytest.raises(ConfigError, match="stem_temporal_stride must be 1"):
        ModelConfig(stem_temporal_stride=3)
    with pytest.raises(ConfigError, match="nonlocal_temporal_group must be 0"):
        ModelConfig(nonlocal_temporal_group=-1)
    with pytest.raises(ConfigError, match="nonlocal_norm must be true or false"):
        ModelConfig(nonlocal_norm="no")
    with pytest.raises(ConfigError, match="video_length 4 leaves no frame"):
        ModelConfig(video_length=4, stem_temporal_stride=2)
    with pytest.raises(ConfigError, match="even with stem_temporal_stride 2"):
        ModelConfig(video_length=33, stem_temporal_stride=2)
    with pytest.raises(ConfigError, match=r"nonlocal_temporal_group 4 does not divide res3's 6 frames"):
        ModelConfig(video_length=12, nonlocal_temporal_group=4)
    ModelConfig(video_length=12, nonlocal_temporal_group=4, use_nonlocal=False)  # no block to group
    ModelConfig(video_length=128, stem_temporal_stride=2, nonlocal_temporal_group=4)


def test_checkpoints_without_the_new_fields_still_load(tmp_path):
    cfg = ModelConfig(width=4, num_classes=3, video_length=4)
    path = save_checkpoint(tmp_path / "old.pt", build_model(cfg).eval())
    payload = torch.load(path, weights_only=True)
    for key in ("stem_temporal_stride", "nonlocal_norm", "nonlocal_temporal_group"):
        del payload["model_config"][key]  # as written before the variants existed
    torch.save(payload, path)
    loaded = load_checkpoint(path)
    assert loaded.config == cfg
    assert (cfg.stem_temporal_stride, cfg.nonlocal_norm, cfg.nonlocal_temporal_group) == (1, True, 0)
