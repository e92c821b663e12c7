"""ResNet 3-D building blocks (C2D / I3D, as in video-nonlocal-net) and the network that strings them.

Small composable pieces: ``make_stem``, ``make_stage`` (of ``Bottleneck`` blocks), ``make_head``,
whose arguments are keyword-only so that every number is named at the call site. Layout facts (kernel
sizes, where non-local blocks go) live in ``builder.py``; this file only knows how to build one
piece from explicit numbers.

Initialisation follows the original: convolutions MSRA (Caffe2 ``MSRAFill`` = Kaiming normal,
fan-out), BN gamma 1 / beta 0 except the last BN of each residual branch (gamma 0 when
``zero_init_final_bn``), classifier normal std 0.01 with zero bias.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nlflow.models.nonlocal_block import NonLocalBlock, NonLocalSpec
from nlflow.models.norm import NormFactory


def _conv(dim_in: int, dim_out: int, kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int]) -> nn.Conv3d:
    conv = nn.Conv3d(dim_in, dim_out, tuple(kernel), stride=tuple(stride), padding=tuple(padding), bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


class Stem(nn.Module):
    """conv1 (T x 7 x 7, stride s x 2 x 2) -> BN -> ReLU -> max pool s x 3 x 3, stride s x 2 x 2.

    ``temporal_stride`` s: 1 in the original's ``resnet_video`` (time untouched), 2 in its
    ``resnet_video_org`` (the paper's 32x2 / 128x1 models: conv1 and pool1 each halve time).
    """

    def __init__(
        self, dim_out: int, temporal_kernel: int, norm: NormFactory, pool_padding: int = 0, temporal_stride: int = 1
    ) -> None:
        super().__init__()
        s = temporal_stride
        self.conv = _conv(3, dim_out, (temporal_kernel, 7, 7), (s, 2, 2), (temporal_kernel // 2, 3, 3))
        self.bn = norm(dim_out, False)
        self.pool = nn.MaxPool3d((s, 3, 3), stride=(s, 2, 2), padding=(0, pool_padding, pool_padding))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(F.relu(self.bn(self.conv(x)), inplace=True))


class Shortcut(nn.Module):
    """The projection shortcut (Caffe2 ``branch1``) of a stage's first block."""

    def __init__(self, dim_in: int, dim_out: int, stride: int, norm: NormFactory) -> None:
        super().__init__()
        self.conv = _conv(dim_in, dim_out, (1, 1, 1), (1, stride, stride), (0, 0, 0))
        self.bn = norm(dim_out, False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class Bottleneck(nn.Module):
    """Residual bottleneck: a (Tx1x1) -> b (1x3x3, carries the spatial stride) -> c (1x1x1).

    The stride sits on the 3x3 conv (the original's ``RESNETS.STRIDE_1X1 = False``); the
    temporal kernel (1 or 3) sits on the first 1x1 conv, as in the original's I3D.
    """

    def __init__(
        self,
        *,
        dim_in: int,
        dim_inner: int,
        dim_out: int,
        stride: int,
        temporal_kernel: int,
        norm: NormFactory,
        zero_init_final_bn: bool = True,
    ) -> None:
        super().__init__()
        self.conv_a = _conv(dim_in, dim_inner, (temporal_kernel, 1, 1), (1, 1, 1), (temporal_kernel // 2, 0, 0))
        self.bn_a = norm(dim_inner, False)
        self.conv_b = _conv(dim_inner, dim_inner, (1, 3, 3), (1, stride, stride), (0, 1, 1))
        self.bn_b = norm(dim_inner, False)
        self.conv_c = _conv(dim_inner, dim_out, (1, 1, 1), (1, 1, 1), (0, 0, 0))
        self.bn_c = norm(dim_out, zero_init_final_bn)
        needs_projection = dim_in != dim_out or stride != 1
        self.shortcut = Shortcut(dim_in, dim_out, stride, norm) if needs_projection else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn_a(self.conv_a(x)), inplace=True)
        y = F.relu(self.bn_b(self.conv_b(y)), inplace=True)
        y = self.bn_c(self.conv_c(y))
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(y + identity, inplace=True)


def make_stem(
    *, dim_out: int, temporal_kernel: int, norm: NormFactory, pool_padding: int = 0, temporal_stride: int = 1
) -> Stem:
    return Stem(dim_out, temporal_kernel, norm, pool_padding, temporal_stride)


def make_stage(
    *,
    dim_in: int,
    dim_inner: int,
    dim_out: int,
    stride: int,
    temporal_kernels: Sequence[int],
    nonlocal_after: Sequence[int],
    norm: NormFactory,
    zero_init_final_bn: bool = True,
    nonlocal_spec: NonLocalSpec | None = None,
) -> nn.Sequential:
    """Blocks named ``"0"``, ``"1"``, ...; a non-local block after block i is named ``"nl<i>"``.

    Only the first block strides and projects (as the original's ``res_stage_nonlocal``).
    ``nonlocal_spec`` None: non-local blocks with ``norm`` over the whole clip.
    """
    nonlocal_spec = nonlocal_spec or NonLocalSpec(norm)
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for index, temporal_kernel in enumerate(temporal_kernels):
        block_stride = stride if index == 0 else 1
        layers[str(index)] = Bottleneck(
            dim_in=dim_in if index == 0 else dim_out, dim_inner=dim_inner, dim_out=dim_out, stride=block_stride,
            temporal_kernel=temporal_kernel, norm=norm, zero_init_final_bn=zero_init_final_bn,
        )
        if index in nonlocal_after:
            layers[f"nl{index}"] = NonLocalBlock(dim_out, nonlocal_spec.norm, temporal_group=nonlocal_spec.temporal_group)
    return nn.Sequential(layers)


class Head(nn.Module):
    """The original's head: ``pool5`` (average, kernel ``pool_size``, stride 1) -> dropout -> ``pred``.

    ``pool_size`` is the original's ``[pool_stride, 7, 7]``: the res5 length of a training clip in
    time and 7 x 7 in space. On a 224-pixel training clip res5 is exactly that size, so pool5 is
    the global average and ``pred`` a linear layer (:meth:`forward`). At test time
    (:meth:`forward_map`) the original keeps pool5 and runs ``pred`` as a 1x1x1 convolution over
    what pool5 leaves (2 x 2 positions on a 256-pixel view).
    """

    def __init__(self, dim_in: int, num_classes: int, dropout: float, pool_size: Sequence[int] = (4, 7, 7)) -> None:
        super().__init__()
        self.pool_size = tuple(int(k) for k in pool_size)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(dim_in, num_classes)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(features.mean(dim=(2, 3, 4))))

    def pool5(self, features: torch.Tensor) -> torch.Tensor:
        """The original's pool5 on a feature map of any size; a kernel side longer than the map
        (a view smaller than 224 pixels, which the original cannot test) is cut to the map."""
        kernel = tuple(min(k, size) for k, size in zip(self.pool_size, features.shape[2:]))
        return F.avg_pool3d(features, kernel, stride=1)

    def forward_map(self, features: torch.Tensor) -> torch.Tensor:
        """Test mode: pool5, then ``pred`` as a 1x1x1 convolution: logits [N, C, t, h, w] per pool5 position."""
        weight = self.fc.weight.view(*self.fc.weight.shape, 1, 1, 1)
        return F.conv3d(self.pool5(features), weight, self.fc.bias)


def make_head(*, dim_in: int, num_classes: int, dropout: float, pool_size: Sequence[int] = (4, 7, 7)) -> Head:
    return Head(dim_in, num_classes, dropout, pool_size)


class ResNet3D(nn.Module):
    """stem -> res2 -> pool2 (temporal 2x1x1) -> res3 -> res4 -> res5 -> head."""

    def __init__(self, stem: Stem, stages: "OrderedDict[str, nn.Sequential]", head: Head, config: Any = None) -> None:
        super().__init__()
        if list(stages) != ["res2", "res3", "res4", "res5"]:
            raise ValueError(f"expected stages res2..res5, got {list(stages)}")
        self.stem = stem
        self.res2 = stages["res2"]
        self.pool2 = nn.MaxPool3d((2, 1, 1), stride=(2, 1, 1))
        self.res3 = stages["res3"]
        self.res4 = stages["res4"]
        self.res5 = stages["res5"]
        self.head = head
        self.config = config
        self.classes: list[str] | None = None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The final (res5) feature map [N, C, t, h, w]."""
        x = self.res2(self.stem(x))
        x = self.res3(self.pool2(x))
        return self.res5(self.res4(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        """The original's fully-convolutional test mode: logits [N, C, t, h, w] at every position pool5
        leaves (1 x 2 x 2 for an 8-frame 256-pixel view); the test score of a view is the mean over
        positions of the softmax at each position."""
        return self.head.forward_map(self.features(x))
