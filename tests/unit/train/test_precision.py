"""Numerical precision and safety of training: TF32 as train.tf32 says, the CPU bf16 kernels that
compute wrong weight gradients refused before a run starts, and a step whose loss or gradients are
not finite never applied."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nlflow.errors import ConfigError
from nlflow.models import ModelConfig, build_model
from nlflow.train.precision import (
    check_cpu_bf16_kernels,
    conv_input_shapes,
    nonfinite_gradient,
    nonfinite_reason,
    tf32_allowed,
)

from helpers.training import CLASSES, tiny_data, tiny_settings  # noqa: F401  (module-scoped fixture)


def tiny_network() -> nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(width=4, num_classes=5, video_length=8, sample_rate=2))


def test_conv_input_shapes_follow_the_network_by_hand():
    shapes = {s.name: s for s in conv_input_shapes(tiny_network(), (3, 8, 96, 96))}
    # conv1 5x7x7 sees the clip; stride 2 then pool1 (3x3, stride 2, no padding): 96 -> 48 -> 23;
    # pool2 halves time after res2; res3 / res4 / res5 halve space in their first block's 3x3.
    assert shapes["stem.conv"].kernel == (5, 7, 7) and shapes["stem.conv"].input_size == (8, 96, 96)
    assert shapes["res2.0.conv_a"].input_size == (8, 23, 23)
    assert shapes["res3.0.conv_a"].input_size == (4, 23, 23)
    assert shapes["res4.0.conv_b"].input_size == (4, 12, 12)
    assert shapes["res5.1.conv_b"].input_size == (4, 3, 3)
    assert not any(s.kernel_exceeds_input for s in shapes.values())


def test_a_clip_shorter_than_a_temporal_kernel_is_refused_for_cpu_bf16_training():
    model = tiny_network()
    check_cpu_bf16_kernels(model, (3, 8, 96, 96))  # no kernel longer than its input: accepted
    # 4 frames: conv1's 5 frames are longer than the clip; after pool2 res3 sees 2 frames (kernel 3).
    with pytest.raises(ConfigError, match=r"first: stem.conv, kernel 5x7x7 over 4x96x96.*train.amp: none"):
        check_cpu_bf16_kernels(model, (3, 4, 96, 96))
    # 32 pixels: res5's 3x3 convs see 1 x 1 positions.
    with pytest.raises(ConfigError, match=r"res4\.\d\.conv_b, kernel 1x3x3 over 4x2x2"):
        check_cpu_bf16_kernels(model, (3, 8, 32, 32))
    assert model.training  # the check leaves the mode as it found it


def test_a_nan_gradient_is_named_by_its_parameter():
    model = tiny_network()
    model(torch.randn(1, 3, 8, 96, 96)).sum().backward()
    assert nonfinite_gradient(model) is None
    assert nonfinite_reason(torch.tensor(1.5), model, check_gradients=True) is None
    model.res3[0].conv_a.weight.grad[0, 0, 0, 0, 0] = float("nan")
    assert nonfinite_gradient(model) == "res3.0.conv_a.weight"
    assert nonfinite_reason(torch.tensor(1.5), model, check_gradients=True) == \
        "the gradient of res3.0.conv_a.weight is not finite"
    # Under a gradient scaler (fp16) the scaler skips such steps: only the loss is checked.
    assert nonfinite_reason(torch.tensor(1.5), model, check_gradients=False) is None
    assert nonfinite_reason(torch.tensor(float("inf")), model, check_gradients=False) == "the training loss is inf"


def test_every_conv_of_the_demo_network_gets_right_bf16_weight_gradients_on_the_cpu():
    """The shapes the check accepts are computed right: each conv of the demo's network (width 8,
    8 x 96 training clips), alone, on random data of its own input shape, gives a bf16 autocast weight
    gradient within 2% of the float32 one (about 0.3% measured; the faulty case is off by 50% to 1e36)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(width=8, num_classes=5, video_length=8, sample_rate=8))
    modules = dict(model.named_modules())
    for shape in conv_input_shapes(model, (3, 8, 96, 96)):
        conv = modules[shape.name]
        x = torch.randn(2, conv.in_channels, *shape.input_size)
        weight = conv.weight.detach().clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = torch.nn.functional.conv3d(x, weight, None, conv.stride, conv.padding)
        (out.float() * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        bf16 = weight.grad
        reference = weight.detach().clone().requires_grad_(True)
        out = torch.nn.functional.conv3d(x, reference, None, conv.stride, conv.padding)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        error = float((bf16 - reference.grad).norm() / reference.grad.norm())
        assert error < 0.02, (shape, error)


def _fp32_switches() -> tuple[str, str]:
    """cuDNN's convolution and cuBLAS's matmul float32 precision ("tf32" or "ieee"), whatever API
    this torch has (the switches exist on CPU builds too)."""
    backends = torch.backends
    if hasattr(backends.cudnn, "conv") and hasattr(backends.cudnn.conv, "fp32_precision"):
        return backends.cudnn.conv.fp32_precision, backends.cuda.matmul.fp32_precision
    return (("tf32" if backends.cudnn.allow_tf32 else "ieee"), ("tf32" if backends.cuda.matmul.allow_tf32 else "ieee"))


def test_tf32_is_switched_for_the_block_and_restored():
    before = _fp32_switches()
    with tf32_allowed(False):
        assert _fp32_switches() == ("ieee", "ieee")
        with tf32_allowed(True):
            assert _fp32_switches() == ("tf32", "tf32")
        assert _fp32_switches() == ("ieee", "ieee")
    assert _fp32_switches() == before


@pytest.mark.parametrize("tf32", [False, True])
def test_training_and_evaluation_run_under_the_configured_tf32_switch(tiny_data, tmp_path, tf32):  # noqa: F811
    """Every forward of a training run sees train.tf32's switch (PyTorch's own default lets cuDNN
    convolutions use TF32), and the scorer runs float32 views without TF32."""
    from nlflow.evaluate import ViewScorer
    from nlflow.models import load_checkpoint
    from nlflow.train import train

    seen: set[tuple[str, str]] = set()
    hook = torch.nn.modules.module.register_module_forward_pre_hook(lambda *_: seen.add(_fp32_switches()))
    try:
        final = train(tiny_settings(max_iter=2, val_period=1, precise_bn_iters=1, tf32=tf32), tiny_data["train"],
                      tiny_data["val"], tiny_data["init"], tmp_path / "run", CLASSES)
        assert seen == {("tf32", "tf32") if tf32 else ("ieee", "ieee")}
        seen.clear()
        with tf32_allowed(True):
            ViewScorer(load_checkpoint(final), batch_size=2).score(torch.zeros(2, 4, 32, 32, 3, dtype=torch.uint8))
        assert seen == {("ieee", "ieee")}
    finally:
        hook.remove()
