"""ResNet 3-D pieces: stem sizes, bottleneck strides, zero-initialised residual branches, head; the
same graph on every device (every conv through its module, torch.export, CPU bf16 autocast)."""

import torch
from torch import nn

from nlflow.models.norm import Affine3d, norm_factory
from nlflow.models.resnet3d import Bottleneck, make_head, make_stage, make_stem


BN = norm_factory(False)


def test_stem_pool1_without_padding_gives_55_from_112_and_56_with_padding():
    x = torch.randn(1, 3, 4, 224, 224)
    faithful = make_stem(dim_out=8, temporal_kernel=5, norm=BN, pool_padding=0).eval()
    padded = make_stem(dim_out=8, temporal_kernel=5, norm=BN, pool_padding=1).eval()
    assert faithful.conv(x).shape[-3:] == (4, 112, 112)
    assert faithful(x).shape == (1, 8, 4, 55, 55)
    assert padded(x).shape == (1, 8, 4, 56, 56)
    assert faithful.conv.weight.shape == (8, 3, 5, 7, 7)
    assert make_stem(dim_out=8, temporal_kernel=1, norm=BN).conv.weight.shape == (8, 3, 1, 7, 7)


def test_bottleneck_kernels_and_stride_on_the_3x3():
    block = Bottleneck(dim_in=16, dim_inner=8, dim_out=32, stride=2, temporal_kernel=3, norm=BN)
    assert block.conv_a.kernel_size == (3, 1, 1) and block.conv_a.stride == (1, 1, 1)
    assert block.conv_b.kernel_size == (1, 3, 3) and block.conv_b.stride == (1, 2, 2)
    assert block.shortcut is not None and block.shortcut.conv.stride == (1, 2, 2)
    y = block(torch.randn(2, 16, 4, 9, 9))
    assert y.shape == (2, 32, 4, 5, 5)  # time kept, space halved (ceil via padding 1)


def test_zero_initialised_final_bn_makes_blocks_identity_plus_shortcut():
    torch.manual_seed(0)
    identity_block = Bottleneck(dim_in=32, dim_inner=8, dim_out=32, stride=1, temporal_kernel=3, norm=BN).train()
    x = torch.relu(torch.randn(2, 32, 4, 6, 6))  # a block input is a ReLU output
    assert identity_block.shortcut is None
    assert torch.equal(identity_block(x), x)

    projection = Bottleneck(dim_in=16, dim_inner=8, dim_out=32, stride=2, temporal_kernel=1, norm=BN).eval()
    x = torch.randn(2, 16, 4, 6, 6)
    assert torch.equal(projection(x), torch.relu(projection.shortcut(x)))

    plain = Bottleneck(dim_in=32, dim_inner=8, dim_out=32, stride=1, temporal_kernel=1, norm=BN,
                       zero_init_final_bn=False).train()
    x = torch.relu(torch.randn(2, 32, 4, 6, 6))
    assert not torch.allclose(plain(x), x)


def test_stage_names_blocks_and_nonlocal_positions():
    stage = make_stage(dim_in=16, dim_inner=8, dim_out=32, stride=2, temporal_kernels=[3, 1, 3, 1],
                       nonlocal_after=[1, 3], norm=BN)
    assert list(dict(stage.named_children())) == ["0", "1", "nl1", "2", "3", "nl3"]
    blocks = dict(stage.named_children())
    assert blocks["0"].shortcut is not None and all(blocks[i].shortcut is None for i in ("1", "2", "3"))
    assert blocks["0"].conv_a.kernel_size[0] == 3 and blocks["1"].conv_a.kernel_size[0] == 1
    assert stage(torch.randn(1, 16, 2, 8, 8)).shape == (1, 32, 2, 4, 4)


def test_affine_norm_equals_batchnorm_in_eval_when_built_from_its_statistics():
    torch.manual_seed(0)
    bn = nn.BatchNorm3d(6).eval()
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 2.0)
    bn.weight.data.normal_()
    bn.bias.data.normal_()
    affine = Affine3d(6)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    affine.weight.data.copy_(scale)
    affine.bias.data.copy_(bn.bias - bn.running_mean * scale)
    x = torch.randn(2, 6, 2, 3, 3)
    torch.testing.assert_close(affine(x), bn(x))


def test_head_map_is_pool5_then_the_fc_at_every_position():
    torch.manual_seed(0)
    head = make_head(dim_in=32, num_classes=7, dropout=0.5, pool_size=(2, 7, 7)).eval()
    assert float(head.fc.bias.detach().abs().sum()) == 0.0
    assert 0.005 < float(head.fc.weight.detach().std()) < 0.02
    # A 256-pixel view of an 8-frame model: res5 is 2 (here) x 8 x 8; pool5 leaves 1 x 2 x 2 positions.
    features = torch.randn(2, 32, 2, 8, 8)
    logits_map = head.forward_map(features)
    assert logits_map.shape == (2, 7, 1, 2, 2)
    window = features[:, :, :, 1:8, 0:7].mean(dim=(2, 3, 4))  # position (h=1, w=0): rows 1..7, columns 0..6
    torch.testing.assert_close(logits_map[:, :, 0, 1, 0], head.fc(window), rtol=1e-5, atol=1e-6)
    # On a training-size map (224 pixels: res5 is exactly the kernel) pool5 is the global average.
    features = torch.randn(2, 32, 2, 7, 7)
    torch.testing.assert_close(head.forward_map(features).flatten(1), head(features), rtol=1e-5, atol=1e-6)
    # A map smaller than the kernel (views under 224 pixels) is pooled whole.
    features = torch.randn(2, 32, 2, 3, 3)
    assert head.forward_map(features).shape == (2, 7, 1, 1, 1)
    torch.testing.assert_close(head.forward_map(features).flatten(1), head(features), rtol=1e-5, atol=1e-6)


def small_network() -> nn.Module:
    from nlflow.models import ModelConfig, build_model

    torch.manual_seed(0)
    return build_model(ModelConfig(width=4, num_classes=5, video_length=4, sample_rate=2))


def test_every_conv_runs_through_its_module_on_the_cpu():
    # The same graph on every device: hooks (and quantisation) see every conv, in training too.
    model = small_network().train()
    convs = {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv3d)}
    called = []
    for name, conv in convs.items():
        conv.register_forward_hook(lambda module, args, out, name=name: called.append(name))
    model(torch.randn(2, 3, 4, 32, 32)).sum().backward()
    assert sorted(called) == sorted(convs)


def test_torch_export_sees_one_conv3d_per_conv_module():
    model = small_network().eval()
    x = torch.randn(1, 3, 4, 32, 32)
    exported = torch.export.export(model, (x,))
    conv3d_nodes = [n for n in exported.graph.nodes if n.target == torch.ops.aten.conv3d.default]
    # The head's forward is pool + linear; every other conv is an nn.Conv3d.
    assert len(conv3d_nodes) == sum(isinstance(m, nn.Conv3d) for m in model.modules())
    torch.testing.assert_close(exported.module()(x), model(x))


def test_cpu_bf16_autocast_training_step_gives_fp32_gradients():
    # train.amp bf16 on a CPU, on a clip where no kernel is longer than its input (8 frames, 96
    # pixels: res5 is 4 x 3 x 3); shorter clips are refused and real shapes compute the right
    # weight gradients (tests/unit/train/test_precision.py).
    model = small_network().train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(torch.randn(2, 3, 8, 96, 96))
    torch.nn.functional.cross_entropy(logits.float(), torch.tensor([1, 3])).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad.dtype == torch.float32 and bool(parameter.grad.isfinite().all()), name
    assert float(model.stem.conv.weight.grad.abs().max()) > 0
