"""Training throughput: clips/s of the training step alone, and fed by nlflow's training loader.

For one configured network on the current device it times

* ``compute``: forward + loss + backward + SGD step (nlflow's optimizer: Nesterov, no weight
  decay on BN) on one batch that is already on the device -- the baseline, what the device can do;
* ``end to end``: the same step fed by the training loop's own DataLoader (TrainClipDataset +
  IterationSampler with the loop's loader settings and epoch handling, ``nlflow.train.loop``) over
  a train LMDB of demo-generator videos (keyframe every 12 frames, like the downscale stage's
  output) that it builds in a temporary folder;

and prints clips/s of both, their ratio (end to end / compute: 1.0 means the loader keeps up) and
the data-wait share of the end-to-end run (time blocked on the loader / wall time, the loop's
``data_wait``). With CUDA it also prints the peak GPU memory. Warm-up iterations are not timed.

The defaults are the figure to publish from a GPU: I3D non-local ResNet-50, 8 x 8 frames, 224
crop, bf16 autocast, channels-last, batch 32, 8 loader workers:
``python benchmarks/train_throughput.py``. A quick CPU run:
``python benchmarks/train_throughput.py --device cpu --width 8 --crop 96 --batch 4 --amp none
--iters 6 --warmup-iters 2 --workers 2 --videos 12 --channels-last off`` (about a minute on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from nlflow.demo.dataset import DEMO_CLASSES, render_class_frames, write_video
from nlflow.models import ModelConfig, build_model
from nlflow.store.torch_datasets import TrainClipDataset
from nlflow.store.lmdb_store import write_store
from nlflow.train import distributed as ddp
from nlflow.train.loop import _loader_kwargs, epoch_batches
from nlflow.train.runtime import amp_dtype
from nlflow.train.solver import TrainSettings, build_optimizer
from nlflow.video.views import to_network_input

ARCHS = {"r50": 50, "r101": 101}


def on_off(text: str) -> bool:
    if text.lower() in ("on", "true", "1", "yes"):
        return True
    if text.lower() in ("off", "false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected on or off, got {text!r}")


def even(x: float) -> int:
    return int(round(x / 2)) * 2


def scale_range_for(crop: int) -> tuple[int, int]:
    """The original's jitter [256, 320] for a 224 crop, scaled to other crops."""
    return even(crop * 256 / 224), even(crop * 320 / 224)


def build_store(root: Path, videos: int, frames: int, short_side: int) -> tuple[Path, float]:
    """A train LMDB of demo-class videos (4:3, short side ``short_side``, GOP 12); returns (path, MiB)."""
    size = (even(short_side * 4 / 3), even(short_side))
    entries, counts = [], {}
    for i in range(videos):
        name = DEMO_CLASSES[i % len(DEMO_CLASSES)]
        rel = f"{name}/v_{name}_g{i // len(DEMO_CLASSES) + 1:02d}_c01.avi"
        (root / "videos" / name).mkdir(parents=True, exist_ok=True)
        counts[rel] = write_video(root / "videos" / rel, render_class_frames(name, np.random.default_rng(i), frames, size),
                                  keyframe_interval=12, qscale=2)
        entries.append((rel, i % len(DEMO_CLASSES)))
    store = root / "train.lmdb"
    write_store(store, entries, root / "videos", "train", list(DEMO_CLASSES), {}, counts)
    return store, store.stat().st_size / 2**20


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Step:
    """One training step of nlflow's loop: autocast forward, fp32 loss, backward, (scaled) SGD step."""

    def __init__(self, args: argparse.Namespace, device: torch.device):
        cfg = ModelConfig(arch=args.model_type, depth=ARCHS[args.arch], use_nonlocal=args.nonlocal_blocks,
                          width=args.width, num_classes=args.classes, video_length=args.video_length,
                          sample_rate=args.sample_rate)
        self.device = device
        self.channels_last = args.channels_last
        model = build_model(cfg).to(device).train()
        if args.channels_last:
            model = model.to(memory_format=torch.channels_last_3d)
        self.optimizer = build_optimizer(model, TrainSettings(batch_size=args.batch, base_lr=0.01, crop_size=args.crop,
                                                              scale_range=scale_range_for(args.crop)))
        self.forward = torch.compile(model) if args.compile else model
        self.dtype = amp_dtype(args.amp)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)

    def to_device(self, clips: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The training loop's own transfer: uint8 loader clips are normalised on the device."""
        return to_network_input(clips, self.device, self.channels_last), labels.to(self.device, non_blocking=True)

    def __call__(self, clips: torch.Tensor, labels: torch.Tensor) -> None:
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            logits = self.forward(clips)
        loss = F.cross_entropy(logits.float(), labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()


def time_compute(step: Step, args: argparse.Namespace) -> float:
    """Clips/s of the step on one batch already on the device."""
    # What the loader hands over: uint8 frames, normalised by the transfer like the loop's.
    clips = torch.randint(0, 256, (args.batch, args.video_length, args.crop, args.crop, 3), dtype=torch.uint8)
    labels = torch.randint(0, args.classes, (args.batch,))
    clips, labels = step.to_device(clips, labels)
    for _ in range(args.warmup_iters):
        step(clips, labels)
    sync(step.device)
    start = time.perf_counter()
    for _ in range(args.iters):
        step(clips, labels)
    sync(step.device)
    return args.iters * args.batch / (time.perf_counter() - start)


def time_end_to_end(step: Step, args: argparse.Namespace, store: Path) -> tuple[float, float, int]:
    """(clips/s, data-wait share, decode failures) with the training loop's loader feeding the step."""
    settings = TrainSettings(batch_size=args.batch, crop_size=args.crop, scale_range=scale_range_for(args.crop),
                             video_length=args.video_length, sample_rate=args.sample_rate,
                             num_workers=args.workers, seed=0)
    dataset = TrainClipDataset(store, settings.video_length, settings.sample_rate, settings.scale_range,
                               settings.crop_size, settings.seed)
    sampler = ddp.IterationSampler(len(dataset), settings.batch_size, settings.seed)
    loader = DataLoader(dataset, batch_size=settings.batch_size, sampler=sampler, drop_last=False,
                        generator=torch.Generator().manual_seed(settings.seed),
                        **_loader_kwargs(settings, step.device.type == "cuda"))
    batches = epoch_batches(loader, sampler, dataset, 0, args.warmup_iters + args.iters)
    for _ in range(args.warmup_iters):  # includes starting the workers
        step(*step.to_device(*next(batches)))
    sync(step.device)
    waited = 0.0
    start = time.perf_counter()
    for _ in range(args.iters):
        t0 = time.perf_counter()
        clips, labels = next(batches)
        waited += time.perf_counter() - t0
        step(*step.to_device(clips, labels))
    sync(step.device)
    elapsed = time.perf_counter() - start
    del batches, loader  # stops the workers
    return args.iters * args.batch / elapsed, waited / elapsed, dataset.failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=sorted(ARCHS), default="r50", help="ResNet depth")
    parser.add_argument("--model-type", choices=("i3d", "c2d"), default="i3d")
    parser.add_argument("--nonlocal", dest="nonlocal_blocks", type=on_off, default=True, metavar="{on,off}")
    parser.add_argument("--width", type=int, default=64, help="base channel width (64: the published network)")
    parser.add_argument("--classes", type=int, default=101)
    parser.add_argument("--video-length", type=int, default=8)
    parser.add_argument("--sample-rate", type=int, default=8)
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32, help="clips per step (one device)")
    parser.add_argument("--amp", choices=("none", "bf16", "fp16"), default="bf16")
    parser.add_argument("--iters", type=int, default=50, help="timed iterations per measurement")
    parser.add_argument("--warmup-iters", type=int, default=10)
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers (decoding)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--channels-last", type=on_off, default=True, metavar="{on,off}")
    parser.add_argument("--compile", type=on_off, default=False, metavar="{on,off}")
    parser.add_argument("--videos", type=int, default=64, help="videos in the generated store")
    parser.add_argument("--frames", type=int, default=96, help="frames per generated video (25 fps)")
    args = parser.parse_args()

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but no CUDA device is visible")
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    if args.frames < args.video_length * args.sample_rate:
        raise SystemExit(f"--frames must be at least video_length x sample_rate = {args.video_length * args.sample_rate}")
    torch.backends.cudnn.benchmark = True
    name = (f"{args.model_type.upper()}{'-NL' if args.nonlocal_blocks else ''} {args.arch.upper()} width {args.width}, "
            f"{args.video_length}x{args.sample_rate}, crop {args.crop}, batch {args.batch}, amp {args.amp}, "
            f"channels-last {'on' if args.channels_last else 'off'}, compile {'on' if args.compile else 'off'}")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{name}\ndevice: {where}; torch {torch.__version__}")

    with tempfile.TemporaryDirectory(prefix="nlflow_bench_") as tmp:
        started = time.perf_counter()
        store, mib = build_store(Path(tmp), args.videos, args.frames, scale_range_for(args.crop)[0])
        print(f"store: {args.videos} videos x {args.frames} frames, short side {scale_range_for(args.crop)[0]}, "
              f"scale jitter {list(scale_range_for(args.crop))}, {mib:.1f} MiB, built in {time.perf_counter() - started:.1f} s")
        step = Step(args, device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        compute = time_compute(step, args)
        memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        end_to_end, wait, failures = time_end_to_end(step, args, store)

    print(f"\n{'measurement':<34} {'clips/s':>8} {'x compute':>9} {'data wait':>9}")
    print(f"{'compute (batch on the device)':<34} {compute:>8.1f} {1.0:>9.2f} {'-':>9}")
    print(f"{f'end to end ({args.workers} loader workers)':<34} {end_to_end:>8.1f} {end_to_end / compute:>9.2f} "
          f"{100 * wait:>8.0f}%")
    print(f"{args.iters} timed iterations after {args.warmup_iters} warm-up; "
          + (f"peak GPU memory {memory:.2f} GiB" if memory is not None else "no GPU: GPU memory not measured"))
    if failures:
        print(f"warning: {failures} decode failures in the generated store")
    print(f"load average during the run: {os.getloadavg()[0]:.1f} (on {os.cpu_count()} CPUs; other load skews clips/s)")


if __name__ == "__main__":
    main()
