"""Norm layers of the network: BatchNorm3d (with the original's per-GPU BN batch kept whatever
the forward batch), or the original's AffineNd (a frozen BN) in the "affine" configurations, built
through one ``(channels, zero_init) -> module`` factory."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

NormFactory = Callable[[int, bool], nn.Module]


class BatchNorm3d(nn.BatchNorm3d):
    """``nn.BatchNorm3d`` that, in training, can normalise each group of ``batch_group``
    consecutive clips with that group's own statistics ("ghost" batch norm).

    The original normalised over the 8 clips of one GPU; with group 8, a forward pass over 32 clips
    gives what four forward passes of 8 give (outputs, gradients, and the running statistics,
    updated once per group in order). 0, or a batch no larger than the group: PyTorch's BN over
    the whole batch. Evaluation (running statistics) is unaffected. Parameters and buffers are
    those of ``nn.BatchNorm3d``, so checkpoints do not change.
    """

    batch_group: int = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        group = self.batch_group
        if not self.training or group <= 0 or x.shape[0] <= group:
            return super().forward(x)
        if x.shape[0] % group:
            raise ValueError(f"a batch of {x.shape[0]} clips does not split into BN groups of {group}")
        return torch.cat([super(BatchNorm3d, self).forward(part) for part in x.split(group)])


def set_bn_batch(model: nn.Module, clips: int) -> int:
    """Make every BN layer of ``model`` normalise over groups of ``clips`` clips in training
    (0: the whole forward batch); returns how many layers it set."""
    layers = [module for module in model.modules() if isinstance(module, BatchNorm3d)]
    for module in layers:
        module.batch_group = int(clips)
    return len(layers)


class Affine3d(nn.Module):
    """Per-channel ``x * weight + bias``: a BN frozen into an affine map (Caffe2 ``AffineNd``).

    Used by the "affine" configurations, where batches are too small for batch statistics.
    ``weight``/``bias`` are ordinary parameters (whether they train is the solver's choice).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * self.weight.view(shape) + self.bias.view(shape)

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}"


def norm_factory(frozen_bn: bool, eps: float = 1e-5, momentum: float = 0.1) -> NormFactory:
    """A ``(channels, zero_init) -> module`` callable: BatchNorm3d, or Affine3d when frozen."""

    def make(channels: int, zero_init: bool) -> nn.Module:
        norm: nn.Module = Affine3d(channels) if frozen_bn else BatchNorm3d(channels, eps=eps, momentum=momentum)
        if zero_init:
            nn.init.zeros_(norm.weight)
        return norm

    return make
