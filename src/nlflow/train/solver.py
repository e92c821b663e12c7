"""Training settings and the SGD solver of the original: Nesterov momentum, weight decay on every
parameter but the BN ones, step-wise relative learning rates with an optional linear warm-up."""

from __future__ import annotations

import bisect
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from nlflow.errors import ConfigError, check_known_fields

AMP_MODES = ("none", "bf16", "fp16")

# The original's solver (configs/*_400k.yaml): BASE_LR 0.01, LRS [1, 0.1, 0.01, 0.001] with the
# LR stepping down after 150k and 300k of 400k iterations (the 0.001 level is never reached there).
ORIGINAL_BASE_LR = 0.01
ORIGINAL_RELATIVE_LRS = (1.0, 0.1, 0.01, 0.001)
ORIGINAL_STEP_FRACTIONS = (0.0, 0.375, 0.75)

# The ``model:`` keys the training loop reads (the network itself comes from the init checkpoint):
# the clips' frames and the dropout rate, which has no weights. The train rule passes exactly these.
TRAINING_MODEL_KEYS = ("video_length", "sample_rate", "dropout")

# The original's BN batch: TRAIN.BATCH_SIZE / NUM_GPUS clips per GPU, 8 in every BN config
# (64 / 8 GPUs, 32 / 4 GPUs).
ORIGINAL_BN_BATCH = 8


# Settings that change how a run goes, never what it produces: processes and threads, logging,
# checkpoints, when validation runs (config/README.md gives the evidence for each borderline key).
OPERATIONAL = frozenset({"num_workers", "threads", "log_period", "checkpoint_period", "keep_checkpoints", "val_period",
                         "tensorboard"})


@dataclass
class TrainSettings:
    """Everything ``train()`` needs besides the files. Iteration-based like the original."""

    batch_size: int = 8  # global: clips per SGD update, split over all processes
    # Micro-batches per update and process: memory for a smaller GPU, same update.
    accumulate: int = 1
    # Clips per BN normalisation group in training (0: each micro-batch as a whole); a micro-batch
    # larger than this is normalised group by group, so BN sees the original's 8 clips whatever
    # the process count and accumulate (nlflow.models.norm.BatchNorm3d).
    bn_batch: int = ORIGINAL_BN_BATCH
    max_iter: int = 1000
    base_lr: float = ORIGINAL_BASE_LR
    # None: the original's 400k schedule scaled to max_iter (see default_lr_steps).
    lr_steps: list[int] | None = None
    # None: the original's relative LRs, as many as there are steps.
    lr_relative: list[float] | None = None
    warmup_iters: int = 0
    warmup_start_factor: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    # The original decays every parameter whose name lacks "_bn" (WEIGHT_DECAY_BN 0): biases of the
    # non-local convs and of the classifier included. False exempts biases too (a common variant).
    weight_decay_bias: bool = True
    dropout: float = 0.5
    crop_size: int = 224
    scale_range: tuple[int, int] = (256, 320)
    video_length: int = 8
    sample_rate: int = 8
    num_workers: int = 2
    seed: int = 0
    checkpoint_period: int = 1000
    keep_checkpoints: int = 3
    log_period: int = 20
    val_period: int = 1000  # 0: validate only at the end
    # Videos per validation: None every video of the val store, N a seeded class-stratified subset, 0 none.
    val_videos: int | None = None
    precise_bn_iters: int = 200  # 0 disables precise BN
    amp: str = "none"
    # TF32 tensor cores for float32 convolutions and matmuls on CUDA (Ampere and newer); False
    # keeps them IEEE float32 like the original (PyTorch allows TF32 for cuDNN convolutions by default).
    tf32: bool = False
    channels_last: bool = False
    compile: bool = False
    deterministic: bool = False
    # Batch statistics over the whole global batch instead of each process's share (torch's
    # SyncBatchNorm: CUDA only); without it BN normalises each process's clips on their own.
    sync_bn: bool = False
    # torch intra-op threads of each training process; 0 leaves torch's default. On a small CPU
    # machine whose cores the loader workers share, 1 avoids OpenMP threads stalling each other.
    threads: int = 0
    # Also write metrics.jsonl's records as TensorBoard event files in the run folder.
    tensorboard: bool = False

    def __post_init__(self) -> None:
        if self.lr_steps is None:
            self.lr_steps = default_lr_steps(self.max_iter)
        self.lr_steps = [int(s) for s in self.lr_steps]
        if self.lr_relative is None:
            if len(self.lr_steps) > len(ORIGINAL_RELATIVE_LRS):
                raise ConfigError(f"train settings: {len(self.lr_steps)} lr_steps need their lr_relative "
                                  f"(the default has {len(ORIGINAL_RELATIVE_LRS)} values)")
            self.lr_relative = list(ORIGINAL_RELATIVE_LRS[:len(self.lr_steps)])
        self.lr_relative = [float(r) for r in self.lr_relative]
        self.scale_range = (int(self.scale_range[0]), int(self.scale_range[1]))
        self.validate()

    def validate(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(f"train settings: {message}")

        need(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        need(self.accumulate >= 1, f"accumulate must be >= 1, got {self.accumulate}")
        need(self.max_iter >= 1, f"max_iter must be >= 1, got {self.max_iter}")
        need(self.base_lr > 0, f"base_lr must be > 0, got {self.base_lr}")
        need(len(self.lr_steps) >= 1 and len(self.lr_steps) == len(self.lr_relative),
             f"lr_steps {self.lr_steps} and lr_relative {self.lr_relative} must be non-empty and of equal length")
        need(self.lr_steps[0] == 0, f"lr_steps must start at 0, got {self.lr_steps}")
        need(all(a < b for a, b in zip(self.lr_steps, self.lr_steps[1:])),
             f"lr_steps must increase strictly, got {self.lr_steps}")
        need(self.warmup_iters >= 0, "warmup_iters must be >= 0")
        need(0 < self.warmup_start_factor <= 1, "warmup_start_factor must be in (0, 1]")
        need(0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}")
        need(self.crop_size >= 1 and self.scale_range[0] >= self.crop_size
             and self.scale_range[1] >= self.scale_range[0],
             f"need crop_size <= scale_range[0] <= scale_range[1], got {self.crop_size} and {self.scale_range}")
        need(self.video_length >= 1 and self.sample_rate >= 1, "video_length and sample_rate must be >= 1")
        need(self.num_workers >= 0, "num_workers must be >= 0")
        need(self.checkpoint_period >= 1, "checkpoint_period must be >= 1")
        need(self.keep_checkpoints >= 1, "keep_checkpoints must be >= 1")
        need(self.log_period >= 1, "log_period must be >= 1")
        need(self.val_period >= 0, "val_period must be >= 0")
        need(self.val_videos is None or self.val_videos >= 0, "val_videos must be null (every video) or >= 0")
        need(self.bn_batch >= 0, f"bn_batch must be >= 0 (0: the whole micro-batch), got {self.bn_batch}")
        need(not (self.sync_bn and self.bn_batch), "sync_bn normalises over the global batch, bn_batch over groups "
             f"of {self.bn_batch} clips: set bn_batch to 0 to use sync_bn")
        need(self.precise_bn_iters >= 0, "precise_bn_iters must be >= 0")
        need(self.threads >= 0, "threads must be >= 0 (0: torch's default)")
        need(self.amp in AMP_MODES, f"amp must be one of {AMP_MODES}, got {self.amp!r}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["scale_range"] = list(self.scale_range)
        return d

    def result_dict(self) -> dict[str, Any]:
        """The settings that can change what training produces (see :data:`OPERATIONAL`): what
        names a run folder and what a resumed run must agree with."""
        return {key: value for key, value in self.to_dict().items() if key not in OPERATIONAL}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainSettings":
        check_known_fields(cls, d, "train settings")
        return cls(**dict(d))

    @classmethod
    def from_config(cls, model_cfg: Mapping[str, Any], train_cfg: Mapping[str, Any]) -> "TrainSettings":
        """Build from the ``model:`` and ``train:`` config sections.

        From ``model:`` only :data:`TRAINING_MODEL_KEYS` are taken; a key given in ``train:`` wins.
        """
        merged = {k: model_cfg[k] for k in TRAINING_MODEL_KEYS if k in model_cfg}
        merged.update(train_cfg)
        return cls.from_dict(merged)


def default_lr_steps(max_iter: int) -> list[int]:
    """The original's step iterations scaled to ``max_iter``: [0, 150000, 300000] for 400000."""
    return sorted({round(fraction * max_iter) for fraction in ORIGINAL_STEP_FRACTIONS})


def relative_lr(iteration: int, settings: TrainSettings) -> float:
    """Multiplier of ``base_lr`` at ``iteration`` (steps x linear warm-up)."""
    index = bisect.bisect_right(settings.lr_steps, iteration) - 1
    factor = settings.lr_relative[max(index, 0)]
    if iteration < settings.warmup_iters:
        # Linear ramp from start_factor to 1 over the warm-up, like the original's linear warm-up.
        alpha = iteration / settings.warmup_iters
        factor *= settings.warmup_start_factor * (1 - alpha) + alpha
    return factor


def lr_at(iteration: int, settings: TrainSettings) -> float:
    """Learning rate used for the update of ``iteration`` (0-based)."""
    return settings.base_lr * relative_lr(iteration, settings)


def _norm_types() -> tuple[type, ...]:
    from nlflow.models.norm import Affine3d  # the frozen-BN stand-in: a norm layer too

    return (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm,
            Affine3d)


def param_groups(model: nn.Module, weight_decay: float, decay_bias: bool = True) -> list[dict[str, Any]]:
    """Two groups: with weight decay, every parameter but the norm layers' (the original's
    ``'_bn' in name`` rule); without, the norm layers' parameters, and the biases unless ``decay_bias``."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    norm_types = _norm_types()
    for module in model.modules():
        is_norm = isinstance(module, norm_types)
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            if is_norm or (not decay_bias and (name == "bias" or name.endswith("_bias"))):
                no_decay.append(param)
            else:
                decay.append(param)
    return [
        {"params": decay, "weight_decay": weight_decay, "name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
    ]


def build_optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.SGD:
    return torch.optim.SGD(
        param_groups(model, settings.weight_decay, settings.weight_decay_bias),
        lr=lr_at(0, settings),
        momentum=settings.momentum,
        nesterov=settings.nesterov and settings.momentum > 0,
    )


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def epochs_for(iterations: int, batch_size: int, dataset_size: int) -> float:
    """How many passes over a dataset of ``dataset_size`` clips ``iterations`` batches make."""
    return iterations * batch_size / dataset_size if dataset_size else math.inf
