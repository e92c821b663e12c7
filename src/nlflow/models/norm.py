"""Norm layers of the network: BatchNorm3d, or the original's AffineNd (a frozen BN) in the
"affine" configurations, built through one ``(channels, zero_init) -> module`` factory."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

NormFactory = Callable[[int, bool], nn.Module]


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
        norm: nn.Module = Affine3d(channels) if frozen_bn else nn.BatchNorm3d(channels, eps=eps, momentum=momentum)
        if zero_init:
            nn.init.zeros_(norm.weight)
        return norm

    return make
