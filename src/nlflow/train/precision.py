"""Numerical precision and safety: whether float32 math may use TF32, kernels known to compute
wrong gradients, and the check that stops a run whose loss or gradients stop being finite."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Iterator, Sequence

import torch
from torch import nn

from nlflow.errors import ConfigError


@contextlib.contextmanager
def tf32_allowed(allowed: bool) -> Iterator[None]:
    """TF32 for float32 convolutions (cuDNN) and matrix products (cuBLAS) inside the block, or
    IEEE float32; the previous switches are restored afterwards.

    PyTorch allows TF32 for cuDNN convolutions by default, so float32 work on an Ampere or newer
    GPU is not the original's float32 unless this turns it off. CPUs are unaffected.
    """
    backends = torch.backends
    if hasattr(backends.cudnn, "conv") and hasattr(backends.cudnn.conv, "fp32_precision"):
        # torch >= 2.9: the per-backend switches (mixing them with the legacy flags is an error,
        # and cuDNN's convolution and RNN switches must agree for the legacy getter to work).
        switches = [backends.cudnn.conv, backends.cudnn.rnn, backends.cuda.matmul]
        saved = [switch.fp32_precision for switch in switches]
        for switch in switches:
            switch.fp32_precision = "tf32" if allowed else "ieee"
        try:
            yield
        finally:
            for switch, value in zip(switches, saved):
                switch.fp32_precision = value
        return
    legacy = (backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32)
    backends.cudnn.allow_tf32 = backends.cuda.matmul.allow_tf32 = allowed
    try:
        yield
    finally:
        backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32 = legacy


@dataclasses.dataclass(frozen=True)
class ConvShape:
    name: str
    kernel: tuple[int, ...]
    input_size: tuple[int, ...]  # T, H, W of the conv's input, before padding

    @property
    def kernel_exceeds_input(self) -> bool:
        return any(k > size for k, size in zip(self.kernel, self.input_size))


def conv_input_shapes(model: nn.Module, clip_shape: Sequence[int]) -> list[ConvShape]:
    """Kernel and input size of every Conv3d when ``model`` sees one clip of ``clip_shape`` (C, T, H, W)."""
    shapes: list[ConvShape] = []
    hooks = [
        module.register_forward_pre_hook(
            lambda module, args, name=name: shapes.append(
                ConvShape(name, tuple(module.kernel_size), tuple(args[0].shape[2:]))))
        for name, module in model.named_modules() if isinstance(module, nn.Conv3d)
    ]
    was_training = model.training
    try:
        # Eval mode: the shapes are the same, and BN's running statistics stay untouched.
        model.eval()
        device = next(model.parameters()).device
        with torch.no_grad():
            model(torch.zeros(1, *clip_shape, device=device))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return shapes


def check_cpu_bf16_kernels(model: nn.Module, clip_shape: Sequence[int]) -> None:
    """Refuse bf16 autocast training on a CPU where a convolution's kernel is longer than its input.

    oneDNN's bf16 Conv3d weight gradient is wrong in exactly that case (torch 2.13 CPU builds,
    measured on Intel Xeon and AMD EPYC machines: NaN, infinities, relative errors up to 1e36, and
    once a heap corruption), while forward and input gradients stay right; see docs/cluster.md,
    "Precision". Checked once at start-up with one forward pass of a single clip.
    """
    faulty = [shape for shape in conv_input_shapes(model, clip_shape) if shape.kernel_exceeds_input]
    if faulty:
        first = faulty[0]
        raise ConfigError(
            f"train.amp bf16 on a CPU: {len(faulty)} convolution(s) have a kernel longer than their input at this "
            f"clip size (first: {first.name}, kernel {'x'.join(map(str, first.kernel))} over "
            f"{'x'.join(map(str, first.input_size))}), where the CPU's bf16 weight gradients are wrong; "
            "train with train.amp: none on a CPU (faster there too), or use longer clips or larger crops")


def nonfinite_gradient(model: nn.Module) -> str | None:
    """The name of the first parameter whose gradient holds a NaN or an infinity (None: all finite)."""
    named = [(name, p.grad) for name, p in model.named_parameters() if p.grad is not None]
    if not named:
        return None
    norms = torch._foreach_norm([grad for _, grad in named])
    # One reduction and one host sync per step; the names are looked up only on failure.
    if bool(torch.isfinite(torch.stack(norms)).all()):
        return None
    for (name, grad), norm in zip(named, norms):
        if not bool(torch.isfinite(norm)):
            return name
    return None


def nonfinite_reason(loss: torch.Tensor, model: nn.Module, check_gradients: bool) -> str | None:
    """Why a step must not be applied: a loss or a gradient that is not finite (None: it may).

    ``check_gradients`` is False under a gradient scaler (fp16), which skips such steps itself.
    """
    if not bool(torch.isfinite(loss)):
        return f"the training loss is {float(loss)}"
    bad = nonfinite_gradient(model) if check_gradients else None
    return None if bad is None else f"the gradient of {bad} is not finite"
