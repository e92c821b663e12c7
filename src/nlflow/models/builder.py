"""Model configuration and the layout rules of video-nonlocal-net's C2D / I3D ResNets.

Layout facts kept from the original (``resnet_video.py`` / ``resnet_helper.py``):

* blocks per stage: R50 (3, 4, 6, 3), R101 (3, 4, 23, 3);
* I3D temporal kernel 3 on ``branch2a`` in res2 [1,1,1], res3 [1,0,1,0], res4 [1,0,1,0,1,0]
  (R101: every other block, starting with the first), res5 [0,1,0]; conv1 5x7x7. C2D: all 1;
* stride 2 on the 3x3 conv of the first block of res3, res4, res5 (``STRIDE_1X1 = False``);
* non-local blocks after block i of a stage when ``i % mod == mod - 1``: mod 2 in res3 and res4
  (R50: res3 1,3 and res4 1,3,5); for R101 the original uses ``mod * 4 - 1 = 7`` in res4
  (blocks 6, 13, 20), so both depths carry 5 non-local blocks;
* two stems: ``resnet_video`` (the 8x8 / 32x4 models) keeps time in conv1 and pool1;
  ``resnet_video_org`` (the paper's 32x2 / 128x1 models) strides conv1 by 2 in time and pools
  pool1 over [2, 3, 3] with stride [2, 2, 2] (``stem_temporal_stride = 2``);
* the "affine" configuration (``DBG_kinetics_resnet_8gpu_c2d_nonlocal_affine_400k.yaml``):
  ``MODEL.USE_AFFINE`` (frozen BN everywhere), ``NONLOCAL.USE_BN False`` (no norm after the
  non-local out conv, which starts at zero instead) and res3's non-local blocks built by
  ``add_nonlocal_group`` with ``group_size = 4`` (attention within groups of 4 frames).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from nlflow.errors import ConfigError, check_known_fields
from nlflow.models.nonlocal_block import NonLocalSpec
from nlflow.models.norm import norm_factory
from nlflow.models.resnet3d import ResNet3D, make_head, make_stage, make_stem

BLOCKS_PER_STAGE = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
STAGE_NAMES = ("res2", "res3", "res4", "res5")
ARCHS = ("i3d", "c2d")
STEM_TEMPORAL_STRIDES = (1, 2)


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a network (stored in every checkpoint)."""

    arch: str = "i3d"
    depth: int = 50
    use_nonlocal: bool = True
    num_classes: int = 400
    width: int = 64
    video_length: int = 8
    sample_rate: int = 8
    pool1_padding: int = 0
    frozen_bn: bool = False
    dropout: float = 0.5
    zero_init_final_bn: bool = True
    bn_momentum: float = 0.1
    bn_eps: float = 1e-5
    # 2 = the original's resnet_video_org stem (conv1 temporal stride 2, pool1 [2, 3, 3] / [2, 2, 2]).
    stem_temporal_stride: int = 1
    # False = the affine configs' non-local block: no norm after the out conv (zero-initialised).
    nonlocal_norm: bool = True
    # > 0: res3's non-local blocks attend within consecutive groups of this many frames (the
    # affine configs' add_nonlocal_group, 4); 0 = over the whole clip (res4 always does).
    nonlocal_temporal_group: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.arch not in ARCHS:
            problems.append(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if self.depth not in BLOCKS_PER_STAGE:
            problems.append(f"depth must be 50 or 101, got {self.depth!r}")
        if not isinstance(self.num_classes, int) or self.num_classes < 1:
            problems.append(f"num_classes must be a positive integer, got {self.num_classes!r}")
        if not isinstance(self.width, int) or self.width < 1:
            problems.append(f"width must be a positive integer, got {self.width!r}")
        if not isinstance(self.nonlocal_norm, bool):
            problems.append(f"nonlocal_norm must be true or false, got {self.nonlocal_norm!r}")
        if self.pool1_padding not in (0, 1):
            problems.append(f"pool1_padding must be 0 (faithful) or 1, got {self.pool1_padding!r}")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.video_length < 1 or self.sample_rate < 1:
            problems.append("video_length and sample_rate must be positive")
        problems += self._temporal_problems()
        if problems:
            raise ConfigError("invalid model config: " + "; ".join(problems))

    def _temporal_problems(self) -> list[str]:
        """The clip must survive the stem's temporal strides, and res3 must split into whole groups."""
        if self.video_length < 1:
            return []  # already reported
        if self.stem_temporal_stride not in STEM_TEMPORAL_STRIDES:
            return [f"stem_temporal_stride must be 1 (resnet_video) or 2 (resnet_video_org), got {self.stem_temporal_stride!r}"]
        if not isinstance(self.nonlocal_temporal_group, int) or self.nonlocal_temporal_group < 0:
            return [f"nonlocal_temporal_group must be 0 (whole clip) or a positive group size, got {self.nonlocal_temporal_group!r}"]
        reduction = 2 * self.stem_temporal_stride**2
        if self.video_length < reduction:
            return [f"video_length {self.video_length} leaves no frame after the temporal strides (at least {reduction})"]
        if self.stem_temporal_stride == 2 and self.video_length % 2:
            # conv1 would round up and pool1/pool2 down: res5 would not hold video_length // 8 frames.
            return [f"video_length must be even with stem_temporal_stride 2, got {self.video_length}"]
        res3_frames = res5_temporal_length(self)
        group = self.nonlocal_temporal_group
        if self.use_nonlocal and group and res3_frames % group:
            return [
                f"nonlocal_temporal_group {group} does not divide res3's {res3_frames} frames "
                f"(video_length {self.video_length} // {reduction})"
            ]
        return []

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        check_known_fields(cls, data, "model config")
        return cls(**data)

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class StageSpec:
    """One residual stage, with every number a builder or the Caffe2 name map needs."""

    name: str  # "res2" .. "res5" (also the Caffe2 blob prefix)
    dim_in: int
    dim_inner: int
    dim_out: int
    stride: int
    temporal_kernels: tuple[int, ...]
    nonlocal_after: tuple[int, ...] = field(default=())

    @property
    def num_blocks(self) -> int:
        return len(self.temporal_kernels)


def _i3d_temporal_kernels(depth: int) -> list[list[int]]:
    counts = BLOCKS_PER_STAGE[depth]
    res4 = [1 if i % 2 == 0 else 0 for i in range(counts[2])]
    uses = [[1, 1, 1], [1, 0, 1, 0], res4, [0, 1, 0]]
    return [[1 + 2 * use for use in stage] for stage in uses]


def temporal_kernel_sizes(arch: str, depth: int) -> list[list[int]]:
    """branch2a temporal kernel size of every block, per stage (res2..res5)."""
    if arch == "c2d":
        return [[1] * n for n in BLOCKS_PER_STAGE[depth]]
    return _i3d_temporal_kernels(depth)


def conv1_temporal_kernel(arch: str) -> int:
    return 5 if arch == "i3d" else 1


def nonlocal_positions(depth: int, use_nonlocal: bool) -> list[tuple[int, ...]]:
    """Indices of the blocks followed by a non-local block, per stage (res2..res5)."""
    counts = BLOCKS_PER_STAGE[depth]
    if not use_nonlocal:
        return [(), (), (), ()]
    layer_mod = 2
    res4_mod = layer_mod * 4 - 1 if depth == 101 else layer_mod
    res3 = tuple(i for i in range(counts[1]) if i % layer_mod == layer_mod - 1)
    res4 = tuple(i for i in range(counts[2]) if i % res4_mod == res4_mod - 1)
    return [(), res3, res4, ()]


def nonlocal_temporal_group(cfg: ModelConfig, stage: str) -> int:
    """Frames per attention group of ``stage``'s non-local blocks (0 = the whole clip): only res3
    is grouped, as the original's res_stage_nonlocal_group is used for res3 alone."""
    return cfg.nonlocal_temporal_group if stage == "res3" else 0


def stage_layout(cfg: ModelConfig) -> list[StageSpec]:
    """The four residual stages of ``cfg``; channel counts scale with ``cfg.width`` (64 = real)."""
    kernels = temporal_kernel_sizes(cfg.arch, cfg.depth)
    nonlocals = nonlocal_positions(cfg.depth, cfg.use_nonlocal)
    specs = []
    dim_in = cfg.width
    for index, name in enumerate(STAGE_NAMES):
        dim_inner = cfg.width * 2**index
        dim_out = 4 * dim_inner
        specs.append(StageSpec(name, dim_in, dim_inner, dim_out, 1 if index == 0 else 2, tuple(kernels[index]), nonlocals[index]))
        dim_in = dim_out
    return specs


def res5_temporal_length(cfg: ModelConfig) -> int:
    """Frames left in res3..res5 for a ``cfg.video_length`` clip: pool2 halves time, and the
    resnet_video_org stem quarters it before that (the original's pool5 kernel, VIDEO_LENGTH / 2
    or / 8)."""
    return cfg.video_length // (2 * cfg.stem_temporal_stride**2)


def feature_dim(cfg: ModelConfig) -> int:
    """Channels of the final feature map (2048 at width 64)."""
    return cfg.width * 32


def build_model(cfg: ModelConfig) -> ResNet3D:
    """A freshly initialised network for ``cfg`` (``model.config`` is ``cfg``)."""
    norm = norm_factory(cfg.frozen_bn, eps=cfg.bn_eps, momentum=cfg.bn_momentum)
    stem = make_stem(
        dim_out=cfg.width, temporal_kernel=conv1_temporal_kernel(cfg.arch), norm=norm, pool_padding=cfg.pool1_padding,
        temporal_stride=cfg.stem_temporal_stride,
    )
    stages: OrderedDict[str, nn.Sequential] = OrderedDict()
    for spec in stage_layout(cfg):
        nonlocal_block = NonLocalSpec(norm if cfg.nonlocal_norm else None, nonlocal_temporal_group(cfg, spec.name))
        stages[spec.name] = make_stage(
            dim_in=spec.dim_in, dim_inner=spec.dim_inner, dim_out=spec.dim_out, stride=spec.stride,
            temporal_kernels=spec.temporal_kernels, nonlocal_after=spec.nonlocal_after, norm=norm,
            zero_init_final_bn=cfg.zero_init_final_bn, nonlocal_spec=nonlocal_block,
        )
    head = make_head(
        dim_in=feature_dim(cfg), num_classes=cfg.num_classes, dropout=cfg.dropout,
        pool_size=(max(1, res5_temporal_length(cfg)), 7, 7),
    )
    return ResNet3D(stem, stages, head, config=cfg)


def count_parameters(model: nn.Module) -> int:
    """Learnable parameters (what papers report; BN running statistics excluded)."""
    return sum(p.numel() for p in model.parameters())
