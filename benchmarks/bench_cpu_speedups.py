"""CPU speed-ups that nlflow's model once took on the CPU, timed against the plain model.

Until 2026-11-30 ``resnet3d.py`` and ``nonlocal_block.py`` took other code paths on a CPU; they
were measured here on the demo's training step, gained nothing at its settings (2 threads), and
were removed (docs/benchmarks.md has the numbers). They live on here as ``nn.Conv3d``
subclasses, swapped in place into copies of one network (same parameters), so that the
measurement can be repeated on another machine or PyTorch version:

* ``plain``: the model as defined -- the baseline;
* ``conv1``: conv1's weight gradient as one 2-D weight gradient per temporal tap;
* ``2d-blocks``: the bottlenecks' Tx1x1 / 1x1x1 convs as 2-D convs over (t, h*w);
* ``2d-nonlocal``: the non-local blocks' 1x1x1 convs likewise (they ran as conv1d: same kernels);
* ``2d``: both of the last two; ``all``: every one.

Before timing, every variant's logits and gradients are checked against the plain model's.
``--mode train`` times nlflow's training step (forward, cross-entropy, backward, SGD step) on one
batch in memory; ``--mode eval`` the evaluation's ``forward_map`` under ``inference_mode``. One
round runs one step of every variant, in an order rotated each round, so that all see the same
machine load; a variant's speed-up is the median over rounds of (plain's step time / its own) in
the same round. CPU time (the thread's with ``--threads 1``, the process's otherwise) is timed too:
unlike wall time it does not grow while other processes hold the cores, but with several threads
it counts OpenMP's spin-waiting unless ``OMP_WAIT_POLICY=PASSIVE`` is set. The defaults are the
demo's training (config/demo.yaml): I3D-NL R50, width 8, 8 x 8 frames, 96-pixel crops, batch 8,
fp32, 2 threads. Run: ``python benchmarks/bench_cpu_speedups.py`` (about 2 minutes on 2 idle cores).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from datetime import date
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nlflow.models import ModelConfig, build_model
from nlflow.models.nonlocal_block import NonLocalBlock
from nlflow.models.resnet3d import Bottleneck
from nlflow.train.loop import amp_dtype
from nlflow.train.solver import TrainSettings, build_optimizer

VARIANTS = ("plain", "conv1", "2d-blocks", "2d-nonlocal", "2d", "all")


class Conv3dAs2d(nn.Conv3d):
    """A conv with a 1x1 spatial kernel (no spatial stride or padding) as a 2-D conv over (t, h*w).

    The input is only viewed; where PyTorch picks its slow_conv3d for the 3-D conv (one thread,
    batch under 16) oneDNN's 2-D kernel is faster.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x.flatten(3), self.weight.squeeze(-1), self.bias, padding=(self.padding[0], 0))
        return y.unflatten(3, x.shape[3:])


class _PlanarWeightGrad(torch.autograd.Function):
    """``F.conv3d`` whose weight gradient is one 2-D weight gradient per temporal tap; no input gradient."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, ...], padding: tuple[int, ...]) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.config = (tuple(weight.shape), stride, padding)
        return F.conv3d(x, weight, stride=stride, padding=padding)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[None, torch.Tensor, None, None]:
        (x,) = ctx.saved_tensors
        # Under autocast the forward ran in bf16 but saved the fp32 input (this once crashed).
        grad_out = grad_out.to(x.dtype)
        (c_out, c_in, taps, kh, kw), stride, padding = ctx.config
        n, _, _, h, w = x.shape
        t_out = grad_out.shape[2]
        padded = F.pad(x, (0, 0, 0, 0, padding[0], padding[0]))
        grad_planar = grad_out.transpose(1, 2).reshape(n * t_out, c_out, *grad_out.shape[3:])
        grads = []
        for tap in range(taps):
            frames = padded[:, :, tap : tap + (t_out - 1) * stride[0] + 1 : stride[0]]
            frames = frames.transpose(1, 2).reshape(n * t_out, c_in, h, w)
            grads.append(torch.nn.grad.conv2d_weight(frames, (c_out, c_in, kh, kw), grad_planar,
                                                     stride=stride[1:], padding=padding[1:]))
        return None, torch.stack(grads, dim=2), None, None


class Conv3dPlanarWeightGrad(nn.Conv3d):
    """conv1 on the raw frames (which need no gradient), its weight gradient as 2-D weight gradients."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and self.weight.requires_grad and not x.requires_grad:
            return _PlanarWeightGrad.apply(x, self.weight, self.stride, self.padding)
        return super().forward(x)


def swap_pointwise(module: nn.Module) -> None:
    for conv in module.modules():
        if type(conv) is nn.Conv3d and conv.kernel_size[1:] == (1, 1) and conv.stride == (1, 1, 1) \
                and conv.padding[1:] == (0, 0):
            conv.__class__ = Conv3dAs2d  # in place: same parameters


def speed_up(model: nn.Module, variant: str) -> nn.Module:
    if variant in ("conv1", "all"):
        model.stem.conv.__class__ = Conv3dPlanarWeightGrad
    kinds = {"2d-blocks": (Bottleneck,), "2d-nonlocal": (NonLocalBlock,)}.get(variant, (Bottleneck, NonLocalBlock))
    if variant != "plain" and variant != "conv1":
        for module in model.modules():
            if isinstance(module, kinds):
                swap_pointwise(module)
    return model


class Runner:
    """One variant's network, optimizer and step."""

    def __init__(self, model: nn.Module, args: argparse.Namespace):
        self.model = model
        self.mode = args.mode
        self.dtype = amp_dtype(args.amp)
        self.optimizer = build_optimizer(model, TrainSettings(batch_size=args.batch, base_lr=0.01, crop_size=args.crop,
                                                              scale_range=(args.crop, args.crop)))

    def __call__(self, clips: torch.Tensor, labels: torch.Tensor) -> None:
        with torch.autocast("cpu", dtype=self.dtype, enabled=self.dtype is not None):
            if self.mode == "eval":
                with torch.inference_mode():
                    self.model.forward_map(clips)
                return
            logits = self.model(clips)
        loss = F.cross_entropy(logits.float(), labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def logits_and_grads(model: nn.Module, clips: torch.Tensor, labels: torch.Tensor) -> list[torch.Tensor]:
    model.eval().zero_grad(set_to_none=True)  # eval: no dropout, BN statistics left alone
    logits = model(clips)
    F.cross_entropy(logits, labels).backward()
    return [logits.detach()] + [p.grad.clone() for p in model.parameters()]


def check_same(runners: dict[str, Runner], clips: torch.Tensor, labels: torch.Tensor) -> None:
    expected = logits_and_grads(runners["plain"].model, clips, labels)
    for name, runner in runners.items():
        for got, want in zip(logits_and_grads(runner.model, clips, labels), expected):
            # The floor: phi's bias has a zero gradient (softmax ignores a shift), seen as float noise.
            torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-4 * float(want.abs().max()) + 1e-8, msg=name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("train", "eval"), default="train")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {', '.join(VARIANTS)} "
                        "(plain is always run)")
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--video-length", type=int, default=8)
    parser.add_argument("--crop", type=int, default=96, help="96: the demo's training crop; 112: its test views")
    parser.add_argument("--batch", type=int, default=8, help="8: the demo's training batch; 30: its test batch")
    parser.add_argument("--amp", choices=("none", "bf16"), default="none")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (the demo: 2, all cores)")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--warmup-rounds", type=int, default=2)
    args = parser.parse_args()
    variants = ["plain"] + [v for v in args.variants.split(",") if v and v != "plain"]
    if unknown := set(variants) - set(VARIANTS):
        parser.error(f"unknown variants {sorted(unknown)}")

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = ModelConfig(arch="i3d", depth=50, use_nonlocal=True, width=args.width, num_classes=5,
                      video_length=args.video_length, sample_rate=8)
    base = build_model(cfg)
    for module in base.modules():  # non-zero residual branches: every conv reaches the logits
        if isinstance(module, nn.BatchNorm3d):
            nn.init.uniform_(module.weight, 0.5, 1.5)
    runners = {v: Runner(speed_up(copy.deepcopy(base), v), args) for v in variants}
    clips = torch.randn(args.batch, 3, args.video_length, args.crop, args.crop)
    labels = torch.randint(0, cfg.num_classes, (args.batch,))
    check_same(runners, clips[:2], labels[:2])
    for runner in runners.values():
        runner.model.train(args.mode == "train")

    for _ in range(args.warmup_rounds):
        for runner in runners.values():
            runner(clips, labels)
    wall: dict[str, list[float]] = {v: [] for v in variants}
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    cpu_clock = time.thread_time if args.threads == 1 else time.process_time
    loads = [os.getloadavg()[0]]
    started = time.perf_counter()
    for r in range(args.rounds):
        for v in variants[r % len(variants):] + variants[:r % len(variants)]:
            w0, c0 = time.perf_counter(), cpu_clock()
            runners[v](clips, labels)
            wall[v].append(time.perf_counter() - w0)
            cpu[v].append(cpu_clock() - c0)
        loads.append(os.getloadavg()[0])

    print(f"{date.today()}: {args.mode}, I3D-NL R50 width {args.width}, {args.video_length} frames, crop {args.crop}, "
          f"batch {args.batch}, amp {args.amp}, {args.threads} thread(s), torch {torch.__version__}; {args.rounds} rounds "
          f"in {time.perf_counter() - started:.0f} s; 1-min load average {min(loads):.2f}-{max(loads):.2f} "
          f"(median {statistics.median(loads):.2f}) on {os.cpu_count()} CPUs; "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; every variant checked against plain")
    timers = [("wall", wall), ("thread CPU" if args.threads == 1 else "process CPU", cpu)]
    print(f"{'variant':<12}" + "".join(f" | {name + ' ms/step':>19} {'clips/s':>7} {'speed-up (IQR)':>20}"
                                       for name, _ in timers))
    for v in variants:
        row = f"{v:<12}"
        for _, times in timers:
            ratios = [a / b for a, b in zip(times["plain"], times[v])]
            q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0],) * 3
            step = statistics.median(times[v])
            row += f" | {1000 * step:>19.0f} {args.batch / step:>7.1f} {f'x{statistics.median(ratios):.3f} ({q1:.2f}-{q3:.2f})':>20}"
        print(row)


if __name__ == "__main__":
    main()
