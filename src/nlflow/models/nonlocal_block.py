"""The space-time non-local block (embedded-Gaussian form, as in video-nonlocal-net).

Every position attends to every position of a 1x2x2 max-pooled copy of the input:
``y = softmax(theta(x)^T phi(pool(x)) / sqrt(d)) g(pool(x))``, then ``x + BN(out(y))``.
The BN's gamma starts at 0, so a new block is the identity and cannot disturb a pretrained net.

The "affine" configurations differ in two ways (``nonlocal_helper.py``): no norm after the out
conv (``NONLOCAL.USE_BN False``), whose weights then start at 0 (``USE_ZERO_INIT_CONV``) so the
block is still the identity; and, in res3, ``add_nonlocal_group``: time is cut into consecutive
groups of ``temporal_group`` frames and each group attends only within itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nlflow.models.norm import NormFactory


def _pointwise_conv(dim_in: int, dim_out: int) -> nn.Conv3d:
    conv = nn.Conv3d(dim_in, dim_out, kernel_size=1, bias=True)
    # The original's NONLOCAL.CONV_INIT_STD: small Gaussian, zero bias.
    nn.init.normal_(conv.weight, std=0.01)
    nn.init.zeros_(conv.bias)
    return conv


@dataclass(frozen=True)
class NonLocalSpec:
    """How a stage builds its non-local blocks: the norm after the out conv (None: none) and
    the attention's temporal group size (0: the whole clip)."""

    norm: NormFactory | None
    temporal_group: int = 0


class NonLocalBlock(nn.Module):
    """Residual non-local block over [N, C, T, H, W] features; keeps the shape.

    ``norm`` None: no norm after the out conv, which then starts at zero. ``temporal_group``
    g > 0: the T frames are split into T / g consecutive groups attended separately.
    """

    def __init__(
        self, channels: int, norm: NormFactory | None, dim_inner: int | None = None, pool_size: int = 2,
        temporal_group: int = 0,
    ) -> None:
        super().__init__()
        dim_inner = dim_inner if dim_inner is not None else channels // 2
        if dim_inner < 1:
            raise ValueError(f"non-local block needs at least 2 channels, got {channels}")
        if temporal_group < 0:
            raise ValueError(f"temporal_group must be 0 (whole clip) or positive, got {temporal_group}")
        self.dim_inner = dim_inner
        self.pool_size = pool_size
        self.temporal_group = temporal_group
        self.theta = _pointwise_conv(channels, dim_inner)
        self.phi = _pointwise_conv(channels, dim_inner)
        self.g = _pointwise_conv(channels, dim_inner)
        self.out = _pointwise_conv(dim_inner, channels)
        # Either the norm's gamma or (without a norm) the out conv starts at 0: the block starts as the identity.
        self.bn = norm(channels, True) if norm is not None else nn.Identity()
        if norm is None:
            nn.init.zeros_(self.out.weight)

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """The non-local response y (before the out conv), [N, dim_inner, T, H, W]."""
        n, _, t, h, w = x.shape
        pooled = x
        if self.pool_size > 1:
            k = (1, self.pool_size, self.pool_size)
            pooled = F.max_pool3d(x, kernel_size=k, stride=k)
        # [N, 1, L, d] layout: one "head" so the fused attention kernel can be used.
        query = self.theta(x).flatten(2).transpose(1, 2).unsqueeze(1)
        key = self.phi(pooled).flatten(2).transpose(1, 2).unsqueeze(1)
        value = self.g(pooled).flatten(2).transpose(1, 2).unsqueeze(1)
        y = F.scaled_dot_product_attention(query, key, value, scale=self.dim_inner**-0.5)
        return y.squeeze(1).transpose(1, 2).reshape(n, self.dim_inner, t, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = split_time(x, self.temporal_group)
        y = groups + self.bn(self.out(self.attend(groups)))
        return merge_time(y, x.shape[0])


def split_time(x: torch.Tensor, group: int) -> torch.Tensor:
    """[N, C, T, H, W] -> [N * T/group, C, group, H, W]: consecutive frames, sample-major, as the
    original's transpose / reshape / transpose in add_nonlocal_group. ``group`` 0: unchanged."""
    n, c, t, h, w = x.shape
    if group == 0 or group == t:
        return x
    if t % group:
        raise ValueError(f"a non-local block with temporal groups of {group} got {t} frames (not a multiple)")
    return x.view(n, c, t // group, group, h, w).transpose(1, 2).reshape(n * (t // group), c, group, h, w)


def merge_time(groups: torch.Tensor, n: int) -> torch.Tensor:
    """The inverse of :func:`split_time` for a batch of ``n`` clips."""
    if groups.shape[0] == n:
        return groups
    num_groups = groups.shape[0] // n
    _, c, group, h, w = groups.shape
    return groups.view(n, num_groups, c, group, h, w).transpose(1, 2).reshape(n, c, num_groups * group, h, w)
