"""The two passes a training run makes over data without learning from it: clip accuracy on the
validation store, and precise BN (the original's ``COMPUTE_PRECISE_BN``: running statistics
recomputed as the mean and variance of each BN's input over a number of training batches before
the final checkpoint)."""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from nlflow.train import distributed as ddp
from nlflow.video.views import to_network_input


def validation_videos(labels: Sequence[int], limit: int | None, seed: int) -> list[int]:
    """The val store's videos each validation scores, in store order: every one (``limit`` None),
    or a seeded subset of ``limit`` videos stratified by class (each class's share of the subset
    is its share of the store, rounded by largest remainder; its videos drawn at random)."""
    if limit is None or limit >= len(labels):
        return list(range(len(labels)))
    rng = np.random.default_rng(seed)
    members: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        members.setdefault(int(label), []).append(index)
    classes = sorted(members)
    exact = np.array([limit * len(members[c]) / len(labels) for c in classes])
    quota = np.floor(exact).astype(int)
    # The remaining videos go to the largest remainders; a seeded tie-break among equal ones.
    order = np.lexsort((rng.permutation(len(classes)), -(exact - quota)))
    quota[order[:limit - int(quota.sum())]] += 1
    chosen = [int(index) for c, count in zip(classes, quota)
              for index in rng.permutation(members[c])[:count]]
    return sorted(chosen)


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


class _PooledMoments:
    """Per-channel sums over every batch one BN layer sees: the activations' count, sum and sum of
    squares (float64), from each batch's mean and biased variance."""

    def __init__(self) -> None:
        self.count: torch.Tensor | None = None
        self.sum: torch.Tensor | None = None
        self.sum_squares: torch.Tensor | None = None

    def add(self, x: torch.Tensor) -> None:
        dims = [0, *range(2, x.dim())]
        var, mean = torch.var_mean(x.float(), dim=dims, correction=0)
        count = torch.tensor(float(x.numel() // x.shape[1]), dtype=torch.float64, device=x.device)
        mean, var = mean.double(), var.double()
        # The original's per-batch E[x^2]: its variance (from the saved inverse std) plus its mean squared.
        parts = (count, mean * count, (var + mean * mean) * count)
        if self.count is None:
            self.count, self.sum, self.sum_squares = parts
        else:
            self.count, self.sum, self.sum_squares = (a + b for a, b in zip((self.count, self.sum, self.sum_squares), parts))

    def all_reduce(self, info: ddp.DistInfo) -> None:
        if info.enabled:
            for buf in (self.count, self.sum, self.sum_squares):
                torch.distributed.all_reduce(buf)

    def mean_and_variance(self) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.sum / self.count
        return mean, (self.sum_squares / self.count - mean * mean).clamp_min(0.0)


@torch.no_grad()
def recompute_bn_stats(model: nn.Module, batches: Iterator, num_batches: int, device: torch.device,
                       autocast: Any, channels_last: bool, info: ddp.DistInfo) -> int:
    """Precise BN as the original's ``bn_helper.py``: every BN's running statistics become the
    mean and variance of its input over ``num_batches`` training batches of every process.

    The original pools E[x] and E[x^2] over all batches of all GPUs, each batch's E[x^2] being its
    biased variance plus its mean squared, and stores E[x^2] - E[x]^2: the mean of the batch
    variances plus the variance of the batch means. Its batches are all the same size, so this is
    the biased variance of all the activations together, which is what is computed here (sums
    weighted by each batch's count). The network runs in training mode without gradients, so each
    BN normalises with its batch's statistics as it does in training (the original's BN auxiliary
    net); the training flag is restored and ``num_batches_tracked`` counts the batches used.
    Frozen (affine) layers are not BN layers and are left alone. Returns the number of batches used.
    """
    was_training = model.training
    model.train()
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns or num_batches <= 0:
        model.train(was_training)
        return 0
    moments = [_PooledMoments() for _ in bns]
    hooks = [bn.register_forward_pre_hook(lambda _module, args, pooled=pooled: pooled.add(args[0]))
             for bn, pooled in zip(bns, moments)]
    for m in bns:
        m.reset_running_stats()
    used = 0
    try:
        for _ in tqdm(range(num_batches), desc="precise BN", unit="batch", disable=None if info.is_main else True,
                      leave=False):
            clips, _labels = next(batches)
            with autocast():
                model(to_network_input(clips, device, channels_last))
            used += 1
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    for bn, pooled in zip(bns, moments):
        pooled.all_reduce(info)
        mean, var = pooled.mean_and_variance()
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
    return used
