"""The two passes a training run makes over data without learning from it: clip accuracy on the
validation store, and precise BN (the original's ``COMPUTE_PRECISE_BN``: running statistics
recomputed as the average over a number of training batches before the final checkpoint)."""

from __future__ import annotations

from typing import Any, Iterable, Iterator

import torch
from torch import nn
from tqdm import tqdm

from nlflow.train import distributed as ddp
from nlflow.video.views import to_network_input


@torch.no_grad()
def clip_accuracy(model: nn.Module, loader: Iterable, device: torch.device, autocast: Any,
                  channels_last: bool, info: ddp.DistInfo) -> tuple[float, int]:
    """Top-1 over all ranks' clips; returns (accuracy, number of clips)."""
    was_training = model.training
    model.eval()
    correct = total = 0
    for clips, labels in loader:
        with autocast():
            logits = model(to_network_input(clips, device, channels_last))
        correct += int((logits.argmax(1).cpu() == labels).sum())
        total += len(labels)
    model.train(was_training)
    correct, total = ddp.all_reduce_sum([correct, total], info, device)
    return (correct / total if total else float("nan")), int(total)


@torch.no_grad()
def recompute_bn_stats(model: nn.Module, batches: Iterator, num_batches: int, device: torch.device,
                       autocast: Any, channels_last: bool, info: ddp.DistInfo) -> int:
    """Precise BN: replace the running statistics by their average over ``num_batches`` batches.

    Running stats are reset and accumulated with a cumulative average (momentum None) in train
    mode without gradients; BN momenta and the training flag are restored afterwards. Frozen BN
    layers (not in training mode) are left alone. Returns the number of batches used.
    """
    was_training = model.training
    model.train()
    bns = [m for m in model.modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats]
    if not bns or num_batches <= 0:
        model.train(was_training)
        return 0
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    used = 0
    try:
        for _ in tqdm(range(num_batches), desc="precise BN", unit="batch", disable=None if info.is_main else True,
                      leave=False):
            clips, _labels = next(batches)
            with autocast():
                model(to_network_input(clips, device, channels_last))
            used += 1
    finally:
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum
        model.train(was_training)
    if info.enabled:
        for m in bns:
            for buf in (m.running_mean, m.running_var):
                torch.distributed.all_reduce(buf)
                buf.div_(info.world_size)
    return used
