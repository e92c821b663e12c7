"""Solver: learning-rate schedule, parameter groups, settings parsing."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nlflow.errors import ConfigError
from nlflow.train.distributed import IterationSampler, epoch_order, per_rank_batch
from nlflow.train.solver import TrainSettings, build_optimizer, epochs_for, lr_at, param_groups


def settings(**kw) -> TrainSettings:
    base = dict(base_lr=0.1, lr_steps=[0, 600, 900], lr_relative=[1, 0.1, 0.01], max_iter=1000)
    base.update(kw)
    return TrainSettings(**base)


def test_steps_without_warmup():
    s = settings()
    assert lr_at(0, s) == pytest.approx(0.1)
    assert lr_at(599, s) == pytest.approx(0.1)
    assert lr_at(600, s) == pytest.approx(0.01)
    assert lr_at(899, s) == pytest.approx(0.01)
    assert lr_at(900, s) == pytest.approx(0.001)
    assert lr_at(5000, s) == pytest.approx(0.001)


def test_linear_warmup_multiplies_the_steps():
    s = settings(warmup_iters=100, warmup_start_factor=0.1)
    assert lr_at(0, s) == pytest.approx(0.01)
    assert lr_at(50, s) == pytest.approx(0.1 * (0.1 * 0.5 + 0.5))
    assert lr_at(100, s) == pytest.approx(0.1)
    lrs = [lr_at(i, s) for i in range(101)]
    assert all(a < b for a, b in zip(lrs, lrs[1:]))
    # Warm-up longer than the first step: the step still applies underneath.
    s2 = settings(lr_steps=[0, 10], lr_relative=[1, 0.1], warmup_iters=20, warmup_start_factor=0.5)
    assert lr_at(10, s2) == pytest.approx(0.1 * 0.1 * (0.5 * 0.5 + 0.5))


def test_defaults_are_the_original_solver():
    s = TrainSettings(max_iter=400000)
    assert s.base_lr == 0.01 and s.momentum == 0.9 and s.nesterov and s.weight_decay == 1e-4
    assert s.dropout == 0.5 and s.warmup_iters == 0 and s.precise_bn_iters == 200
    # The original's 400k schedule: steps at 150k and 300k, relative LRs 1, 0.1, 0.01 (0.001 unreached).
    assert s.lr_steps == [0, 150000, 300000] and s.lr_relative == [1.0, 0.1, 0.01]
    assert lr_at(149999, s) == pytest.approx(0.01) and lr_at(150000, s) == pytest.approx(0.001)
    assert lr_at(399999, s) == pytest.approx(0.0001)
    # Scaled to the configured length; given steps take the original's relative LRs in order.
    assert TrainSettings(max_iter=6000).lr_steps == [0, 2250, 4500]
    assert TrainSettings(max_iter=1000, lr_steps=[0, 10, 20, 30]).lr_relative == [1.0, 0.1, 0.01, 0.001]
    assert TrainSettings(max_iter=1).lr_steps == [0, 1]
    with pytest.raises(ConfigError, match="5 lr_steps need their lr_relative"):
        TrainSettings(max_iter=1000, lr_steps=[0, 1, 2, 3, 4])
    # The round trip through a checkpoint's settings keeps the resolved schedule.
    assert TrainSettings.from_dict(s.to_dict()) == s


def test_bad_schedules_are_config_errors():
    with pytest.raises(ConfigError, match="lr_steps"):
        settings(lr_steps=[0, 600], lr_relative=[1, 0.1, 0.01])
    with pytest.raises(ConfigError, match="start at 0"):
        settings(lr_steps=[10, 600, 900])
    with pytest.raises(ConfigError, match="increase"):
        settings(lr_steps=[0, 900, 600])
    with pytest.raises(ConfigError, match="amp"):
        settings(amp="fp8")
    with pytest.raises(ConfigError, match="crop_size"):
        settings(crop_size=300, scale_range=(256, 320))


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 3, bias=False)
        self.bn = nn.BatchNorm3d(4)
        self.fc = nn.Linear(4, 2)
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)


def test_param_groups_exempt_only_bn_by_default_and_biases_on_request():
    model = Tiny()
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    decay, no_decay = param_groups(model, 1e-4)
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0.0
    assert ids(decay["params"]) == {id(model.conv.weight), id(model.fc.weight), id(model.fc.bias)}
    assert ids(no_decay["params"]) == {id(model.bn.weight), id(model.bn.bias)}
    decay, no_decay = param_groups(model, 1e-4, decay_bias=False)
    assert ids(decay["params"]) == {id(model.conv.weight), id(model.fc.weight)}
    assert ids(no_decay["params"]) == {id(model.bn.weight), id(model.bn.bias), id(model.fc.bias)}


@pytest.mark.parametrize("frozen_bn", [False, True])
def test_weight_decay_follows_the_original_bn_name_rule(frozen_bn):
    """model_builder_video.py: a parameter is decayed unless its Caffe2 name contains "_bn"
    (WEIGHT_DECAY_BN 0), so non-local conv biases and pred_b are decayed."""
    from nlflow.models import ModelConfig, build_model
    from nlflow.weights.name_map import tensor_names

    model = build_model(ModelConfig(width=4, num_classes=3, frozen_bn=frozen_bn))
    blob_of = {name.key: name.blob for name in tensor_names(model.config)}
    params = dict(model.named_parameters())
    decay, no_decay = param_groups(model, 1e-4)
    names_of = lambda group: {key for key, p in params.items() if any(p is q for q in group["params"])}  # noqa: E731
    assert names_of(decay) == {key for key in params if "_bn" not in blob_of[key]}
    assert names_of(no_decay) == {key for key in params if "_bn" in blob_of[key]}
    assert "res3.nl1.theta.bias" in names_of(decay) and "head.fc.bias" in names_of(decay)


def test_optimizer_is_nesterov_sgd():
    opt = build_optimizer(Tiny(), settings(warmup_iters=10, warmup_start_factor=0.2))
    assert isinstance(opt, torch.optim.SGD)
    assert opt.defaults["nesterov"] is True and opt.defaults["momentum"] == 0.9
    assert all(g["lr"] == pytest.approx(0.02) for g in opt.param_groups)


def test_from_config_merges_model_and_train_sections():
    s = TrainSettings.from_config(
        {"arch": "i3d", "video_length": 4, "sample_rate": 2, "dropout": 0.3},
        {"batch_size": 4, "scale_range": [40, 48], "crop_size": 32, "amp": "bf16"},
    )
    assert (s.video_length, s.sample_rate, s.dropout, s.batch_size) == (4, 2, 0.3, 4)
    assert s.scale_range == (40, 48)
    assert TrainSettings.from_dict(s.to_dict()) == s
    with pytest.raises(ConfigError, match="unknown train settings keys: batchsize"):
        TrainSettings.from_config({}, {"batchsize": 4})


def test_epochs_for_uses_dataset_size():
    assert epochs_for(1000, 8, 200) == pytest.approx(40.0)
    assert math.isinf(epochs_for(10, 8, 0))


def sample(n, batch, start, stop, seed, rank=0, world_size=1):
    sampler = IterationSampler(n, batch, seed, rank, world_size)
    sampler.set_range(start, stop)
    assert len(list(sampler)) == len(sampler)
    return list(sampler)


def test_sampler_splits_global_batches_and_resumes_exactly():
    n, batch = 13, 4  # 3 whole batches per epoch, one clip dropped
    full = sample(n, batch, 0, 9, seed=3)
    assert len(full) == 9 * 4
    assert IterationSampler(n, batch, 3).epoch_of(2) == 0 and IterationSampler(n, batch, 3).epoch_of(3) == 1
    assert len(set(full[:12])) == 12  # no repeats inside an epoch
    assert full[:12] == epoch_order(n, 3, 0)[:12].tolist()
    assert full[12:24] == epoch_order(n, 3, 1)[:12].tolist()
    # Resuming at iteration 5 continues the same stream.
    assert sample(n, batch, 5, 9, seed=3) == full[5 * 4:]
    # Two ranks together see exactly the single-process global batches.
    r0 = sample(n, batch, 0, 9, seed=3, rank=0, world_size=2)
    r1 = sample(n, batch, 0, 9, seed=3, rank=1, world_size=2)
    merged = [x for k in range(9) for x in r0[2 * k:2 * k + 2] + r1[2 * k:2 * k + 2]]
    assert merged == full
    # A different seed shuffles differently.
    assert sample(n, batch, 0, 3, seed=4) != full[:12]


def test_tiny_dataset_smaller_than_a_batch_still_fills_batches():
    items = sample(3, 8, 0, 2, seed=0)
    assert len(items) == 16 and set(items) == {0, 1, 2}


def test_batch_must_split_over_processes():
    assert per_rank_batch(8, 2) == 4
    with pytest.raises(ConfigError, match="cannot be split"):
        per_rank_batch(6, 4)

