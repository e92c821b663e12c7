"""The iteration-based fine-tuning loop: SGD over random training clips, periodic clip accuracy,
resumable checkpoints, precise BN at the end, the final model for evaluate and predict.

Works in one process (CPU or one GPU) and under torchrun (one process per GPU, or gloo on CPU).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import platform
import random
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from nlflow.errors import ConfigError, NlflowError
from nlflow.fileio import write_text_atomic
from nlflow.train import snapshots
from nlflow.train import distributed as ddp
from nlflow.train.solver import TrainSettings, build_optimizer, epochs_for, lr_at, set_lr
from nlflow.video.views import to_network_input

log = logging.getLogger(__name__)

FINAL_NAME = "model_final.pt"
METRICS_NAME = "metrics.jsonl"


class TrainingError(NlflowError):
    """Training cannot start or went wrong (diverged, inconsistent inputs)."""


# ----------------------------------------------------------------------------- set-up helpers

def _read_classes(classes: Sequence[str] | str | os.PathLike) -> list[str]:
    if isinstance(classes, (str, os.PathLike)):
        from nlflow.acquire.ucf101 import read_classes

        return read_classes(classes)
    return list(classes)


def _configure_determinism(settings: TrainSettings, use_cuda: bool) -> None:
    # CPU kernels are deterministic for a fixed thread count (and the switch below imports
    # torch._inductor: seconds on a small machine), so it is only thrown on CUDA.
    if use_cuda and settings.deterministic:
        # cuBLAS needs this set before its first use to be deterministic.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    if use_cuda:
        torch.backends.cudnn.deterministic = settings.deterministic
        torch.backends.cudnn.benchmark = not settings.deterministic


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def amp_dtype(amp: str) -> torch.dtype | None:
    """The autocast dtype of a ``train.amp`` mode (None: no autocast)."""
    return {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def build_init_model(init_checkpoint: str | os.PathLike, settings: TrainSettings, num_classes: int) -> tuple[nn.Module, dict]:
    """The network described by the init checkpoint's model_config, with its weights loaded.

    Only the dropout rate comes from the training settings (it has no parameters).
    """
    from nlflow.models import ModelConfig, build_model, read_checkpoint

    data = read_checkpoint(init_checkpoint)
    config_dict = dict(data["model_config"])
    config_dict["dropout"] = settings.dropout
    cfg = ModelConfig.from_dict(config_dict)
    if cfg.num_classes != num_classes:
        raise TrainingError(
            f"{init_checkpoint} has a {cfg.num_classes}-class head but the dataset has {num_classes} classes: "
            "convert the pretrained weights with num_classes set to the dataset's classes")
    if (cfg.video_length, cfg.sample_rate) != (settings.video_length, settings.sample_rate):
        log.warning("model was built for %dx%d clips, training uses %dx%d",
                    cfg.video_length, cfg.sample_rate, settings.video_length, settings.sample_rate)
    model = build_model(cfg)
    missing, unexpected = model.load_state_dict(data["state_dict"], strict=False)
    # Cleaned weights may lack BN running statistics (the original deleted them); those start fresh.
    missing = [k for k in missing if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    if missing or unexpected:
        raise TrainingError(
            f"{init_checkpoint} does not match its model_config: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model, cfg.to_dict()


def epoch_batches(loader: DataLoader, sampler: ddp.IterationSampler, dataset: Any,
                  start_iter: int, stop_iter: int) -> Iterator[Any]:
    """Batches of iterations ``start_iter .. stop_iter-1``, one DataLoader pass per epoch.

    The dataset's epoch (its augmentation seed, shared with persistent workers) changes only
    between passes, when no worker is still busy with the previous epoch.
    """
    it = start_iter
    while it < stop_iter:
        epoch = sampler.epoch_of(it)
        end = min(stop_iter, (epoch + 1) * sampler.iters_per_epoch)
        sampler.set_range(it, end)
        dataset.set_epoch(epoch)
        yield from loader
        it = end


def _loader_kwargs(settings: TrainSettings, use_cuda: bool) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"num_workers": settings.num_workers, "pin_memory": use_cuda}
    if settings.num_workers > 0:
        kwargs.update(persistent_workers=True, prefetch_factor=4)
    return kwargs


# ----------------------------------------------------------------------------- evaluation pieces

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
def recompute_bn_stats(model: nn.Module, batches: Iterator, num_iters: int, device: torch.device,
                       autocast: Any, channels_last: bool, info: ddp.DistInfo) -> int:
    """Precise BN: replace the running statistics by their average over ``num_iters`` batches.

    Running stats are reset and accumulated with a cumulative average (momentum None) in train
    mode without gradients; BN momenta and the training flag are restored afterwards. Frozen BN
    layers (not in training mode) are left alone. Returns the number of batches used.
    """
    was_training = model.training
    model.train()
    bns = [m for m in model.modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats]
    if not bns or num_iters <= 0:
        model.train(was_training)
        return 0
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    used = 0
    try:
        for _ in tqdm(range(num_iters), desc="precise BN", unit="batch", disable=None if info.is_main else True,
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


# ----------------------------------------------------------------------------- metrics

class _MetricsLog:
    """``metrics.jsonl``: one JSON object per line; only rank 0 writes."""

    def __init__(self, path: Path, enabled: bool, resume_iter: int):
        self.path = path
        self.enabled = enabled
        if not enabled:
            return
        kept: list[str] = []
        if resume_iter > 0 and path.exists():
            # Lines a killed run wrote after its last checkpoint would be written again: drop them.
            for line in path.read_text().splitlines():
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    if json.loads(line)["iter"] <= resume_iter:
                        kept.append(line)
        write_text_atomic(path, "".join(line + "\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(record, sort_keys=True) + "\n")


def _cuda_memory_gb(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    try:
        return round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
    except Exception:  # stats unavailable (e.g. some MIG/driver set-ups): never worth a crash
        return None


# Share of a log window the GPU may wait for clips before the run says how to feed it faster.
DATA_WAIT_ADVICE_ABOVE = 0.2


def data_wait_advice(data_wait: float | None, num_workers: int, cores: int, processes_on_node: int) -> str | None:
    """What to change when the device waits for the loader, or None when it hardly waits."""
    if data_wait is None or data_wait <= DATA_WAIT_ADVICE_ABOVE:
        return None
    waited = f"the GPU waited for training clips {data_wait:.0%} of the time"
    cores_each = max(1, cores // max(1, processes_on_node))
    if num_workers < cores_each:
        return (f"{waited}: raise train.num_workers (now {num_workers} loader workers per process; "
                f"{cores} CPU cores for {processes_on_node} process(es) here)")
    return (f"{waited} although its {num_workers} loader workers already fill the {cores_each} CPU cores each "
            f"process has: decoding is the limit; give the train job more CPU cores per GPU "
            f"(snakemake --set-threads train=N, SLURM's --cpus-per-task)")


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the job's CPU set under SLURM or taskset
    except AttributeError:
        return os.cpu_count() or 1


def _format_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


# ----------------------------------------------------------------------------- the loop

@dataclasses.dataclass
class _Runtime:
    """Where and how this process computes."""

    info: ddp.DistInfo
    device: torch.device
    amp_dtype: torch.dtype | None
    scaler: torch.amp.GradScaler
    channels_last: bool

    def autocast(self) -> Any:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)


def _make_runtime(settings: TrainSettings) -> _Runtime:
    use_cuda = torch.cuda.is_available()
    # Checked before joining the process group, so a bad set-up fails with one clear line.
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda and world_size > 1 and local_rank >= torch.cuda.device_count():
        raise ConfigError(f"process {local_rank} of this node needs GPU {local_rank}, but only "
                          f"{torch.cuda.device_count()} CUDA device(s) are visible on {platform.node()}")
    ddp.check_sync_bn(settings.sync_bn, world_size, use_cuda)
    info = ddp.init_distributed(use_cuda)
    device = torch.device("cuda", info.local_rank) if use_cuda else torch.device("cpu")
    _configure_determinism(settings, use_cuda)
    dtype = amp_dtype(settings.amp)
    if dtype == torch.float16 and device.type != "cuda":
        log.warning("amp fp16 on %s: fp16 autocast with a CPU gradient scaler, the twin of the CUDA fp16 path "
                    "(bf16 needs no scaler)", device.type)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    return _Runtime(info, device, dtype, scaler, settings.channels_last)


def _restore(state: dict, model: nn.Module, optimizer: torch.optim.Optimizer, rt: _Runtime,
             settings: TrainSettings) -> int:
    """Load a training checkpoint into model, optimizer, scaler and RNGs; return its iteration."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if state.get("scaler"):
        rt.scaler.load_state_dict(state["scaler"])
    rng_states = state["rng"]
    if len(rng_states) == rt.info.world_size:
        snapshots.restore_rng_state(rng_states[rt.info.rank])
    else:
        log.warning("checkpoint was written by %d processes, now %d: RNG states reseeded",
                    len(rng_states), rt.info.world_size)
        _seed_everything(settings.seed + 1000 * state["iteration"] + rt.info.rank)
    return int(state["iteration"])


def _place(model: nn.Module, optimizer: torch.optim.Optimizer, rt: _Runtime, settings: TrainSettings) -> nn.Module:
    """Move model and optimizer state to the device; return what the training step calls."""
    model.to(rt.device)
    if settings.channels_last:
        model.to(memory_format=torch.channels_last_3d)
    model.train()
    for opt_state in optimizer.state.values():  # moment buffers follow the parameters
        for key, value in opt_state.items():
            if torch.is_tensor(value):
                opt_state[key] = value.to(rt.device)
    forward: nn.Module = model
    if settings.sync_bn and rt.info.enabled:
        # Replaces the BatchNorm modules inside ``model`` (same parameters and buffers, so the
        # optimizer and the state_dict keys are unchanged).
        converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        assert converted is model
        if rt.info.is_main:
            log.info("SyncBatchNorm: BN statistics over the global batch of all %d processes", rt.info.world_size)
    if rt.info.enabled:
        forward = nn.parallel.DistributedDataParallel(
            model, device_ids=[rt.info.local_rank] if rt.device.type == "cuda" else None)
    if settings.compile:
        forward = torch.compile(forward)  # type: ignore[assignment]
    return forward


def _val_loader(val_lmdb: Any, settings: TrainSettings, rt: _Runtime, local_batch: int) -> DataLoader | None:
    """Centre clips of the first ``val_batches`` global batches of the val store, sharded over ranks."""
    from nlflow.store.torch_datasets import ValClipDataset
    from nlflow.video.views import ViewSpec

    if val_lmdb is None or settings.val_batches == 0:
        return None
    spec = ViewSpec(video_length=settings.video_length, sample_rate=settings.sample_rate, num_clips=1,
                    num_crops=1, scale=settings.scale_range[0], crop_size=settings.crop_size)
    val_set = ValClipDataset(val_lmdb, spec)
    shard = ddp.shard_indices(len(val_set), settings.val_batches * settings.batch_size, rt.info)
    return DataLoader(Subset(val_set, shard), batch_size=local_batch, shuffle=False,
                      **_loader_kwargs(settings, rt.device.type == "cuda"))


@dataclasses.dataclass
class _Window:
    """Statistics accumulated between two log lines."""

    start: float = dataclasses.field(default_factory=time.perf_counter)
    iters: int = 0
    data_s: float = 0.0
    loss_sum: float = 0.0
    correct: int = 0
    clips: int = 0


def train(
    settings: TrainSettings,
    train_lmdb: str | os.PathLike,
    val_lmdb: str | os.PathLike | None,
    init_checkpoint: str | os.PathLike,
    out_dir: str | os.PathLike,
    classes: Sequence[str] | str | os.PathLike,
) -> Path:
    """Fine-tune from ``init_checkpoint``; return the path of ``{out_dir}/model_final.pt``.

    A call on an ``out_dir`` that holds checkpoints resumes from the newest readable one; a call
    on a finished ``out_dir`` returns at once.
    """
    from nlflow.models import save_model_checkpoint
    from nlflow.store.torch_datasets import TrainClipDataset

    out_dir = Path(out_dir)
    ckpt_dir = out_dir / "checkpoints"
    final_path = out_dir / FINAL_NAME
    class_names = _read_classes(classes)
    rt = _make_runtime(settings)
    info, device, scaler, autocast = rt.info, rt.device, rt.scaler, rt.autocast
    previous_threads = torch.get_num_threads()
    if settings.threads > 0:
        torch.set_num_threads(settings.threads)
    try:
        state = snapshots.load_latest(ckpt_dir)
        if state is not None and state["iteration"] == settings.max_iter and state.get("finished") \
                and final_path.exists():
            log.info("training in %s already finished at iteration %d", out_dir, state["iteration"])
            return final_path

        model, model_config = build_init_model(init_checkpoint, settings, len(class_names))
        optimizer = build_optimizer(model, settings)
        start_iter = 0
        if state is not None:
            _check_resumable(state, settings, model_config)
            start_iter = _restore(state, model, optimizer, rt, settings)
            if info.is_main:
                log.info("resuming from %s at iteration %d", snapshots.checkpoint_path(ckpt_dir, start_iter), start_iter)
        else:
            _seed_everything(settings.seed + info.rank)
        forward = _place(model, optimizer, rt, settings)

        train_set = TrainClipDataset(train_lmdb, settings.video_length, settings.sample_rate,
                                     settings.scale_range, settings.crop_size, settings.seed)
        _check_classes(class_names, train_lmdb)
        dataset_size = len(train_set)
        local_batch = ddp.per_rank_batch(settings.batch_size, info.world_size)
        final_done = state is not None and state.get("finished", False) and start_iter == settings.max_iter
        if start_iter > settings.max_iter:
            raise TrainingError(f"{ckpt_dir} holds a checkpoint at iteration {start_iter}, past max_iter "
                                f"{settings.max_iter}: use a new output directory")
        stop_iter = settings.max_iter + (0 if final_done else settings.precise_bn_iters)
        sampler = ddp.IterationSampler(dataset_size, settings.batch_size, settings.seed, info.rank,
                                       info.world_size)
        # Own generator: starting a loader pass must not draw from the global torch RNG (dropout's),
        # or a resumed run would diverge from an uninterrupted one.
        loader = DataLoader(train_set, batch_size=local_batch, sampler=sampler, drop_last=False,
                            generator=torch.Generator().manual_seed(settings.seed),
                            **_loader_kwargs(settings, device.type == "cuda"))
        val_loader = _val_loader(val_lmdb, settings, rt, local_batch)

        metrics = _MetricsLog(out_dir / METRICS_NAME, info.is_main, start_iter)
        iters_per_epoch = sampler.iters_per_epoch
        if info.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            log.info(
                "training %s: %d clips in the training set, global batch %d over %d process(es) on %s, "
                "%d iterations = %.1f epochs (%d iterations each), starting at %d",
                model_config.get("arch"), dataset_size, settings.batch_size, info.world_size, device,
                settings.max_iter, epochs_for(settings.max_iter, settings.batch_size, dataset_size),
                iters_per_epoch, start_iter)

        def snapshot(iteration: int, finished: bool) -> None:
            rng = ddp.all_gather_objects(snapshots.capture_rng_state(), info)
            if info.is_main:
                path = snapshots.save_checkpoint(ckpt_dir, iteration, {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict() if scaler.is_enabled() else {},
                    "rng": rng,
                    "settings": settings.to_dict(),
                    "model_config": model_config,
                    "world_size": info.world_size,
                    "finished": finished,
                }, settings.keep_checkpoints)
                log.info("checkpoint %s", path)
            ddp.barrier(info)

        def validate(iteration: int) -> float | None:
            if val_loader is None:
                return None
            top1, n = clip_accuracy(model, val_loader, device, autocast, settings.channels_last, info)
            if info.is_main:
                log.info("iter %d: validation clip top-1 %.4f on %d clips", iteration, top1, n)
                metrics.write({"iter": iteration, "val_top1": top1, "val_clips": n})
            return top1

        batches = epoch_batches(loader, sampler, train_set, start_iter, stop_iter)
        it = start_iter
        bar = tqdm(total=settings.max_iter, initial=start_iter, desc="train", unit="it",
                   disable=None if info.is_main else True, dynamic_ncols=True)
        window = _Window()
        advised = False
        run_start = time.perf_counter()
        try:
            while it < settings.max_iter:
                t0 = time.perf_counter()
                clips, labels = next(batches)
                window.data_s += time.perf_counter() - t0
                lr = lr_at(it, settings)
                set_lr(optimizer, lr)
                clips = to_network_input(clips, device, settings.channels_last)
                labels = labels.to(device, non_blocking=True)
                with autocast():
                    logits = forward(clips)
                loss = F.cross_entropy(logits.float(), labels)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                it += 1
                window.iters += 1
                window.loss_sum += loss.detach()  # stays on the device until the log line
                window.correct += (logits.detach().argmax(1) == labels).sum()
                window.clips += len(labels)
                bar.update(1)

                if it % settings.log_period == 0 or it == settings.max_iter:
                    record = _log_window(window, it, lr, settings, dataset_size, info, device, metrics, bar,
                                         run_start, start_iter, train_set.failures)
                    window = _Window()
                    # The first window includes the workers' start-up: judge the loader after it.
                    if device.type == "cuda" and info.is_main and not advised and it - start_iter > settings.log_period:
                        advice = data_wait_advice(record["data_wait"], settings.num_workers, _usable_cores(),
                                                  int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
                        if advice:
                            log.warning(advice)
                            advised = True
                if settings.val_period and it % settings.val_period == 0 and it < settings.max_iter:
                    val_start = time.perf_counter()
                    validate(it)
                    window.start += time.perf_counter() - val_start  # keep it out of the training speed
                if it % settings.checkpoint_period == 0 and it < settings.max_iter:
                    snapshot(it, finished=False)
        finally:
            bar.close()

        if not final_done:
            if settings.precise_bn_iters > 0:
                used = recompute_bn_stats(model, batches, settings.precise_bn_iters, device, autocast,
                                          settings.channels_last, info)
                if info.is_main:
                    log.info("precise BN: running statistics recomputed over %d batches", used)
            _check_ranks_agree(model, info)
            snapshot(settings.max_iter, finished=True)
        val_top1 = validate(settings.max_iter)
        if info.is_main:
            extra = {"iterations": settings.max_iter, "settings": settings.to_dict(),
                     "dataset_size": dataset_size}
            if val_top1 is not None and math.isfinite(val_top1):
                extra["val_top1"] = val_top1
            save_model_checkpoint(final_path, model, class_names, extra=extra)
            log.info("final model written to %s", final_path)
        ddp.barrier(info)
        return final_path
    finally:
        torch.set_num_threads(previous_threads)
        ddp.shutdown(info)


def _log_window(window: _Window, it: int, lr: float, settings: TrainSettings, dataset_size: int,
                info: ddp.DistInfo, device: torch.device, metrics: _MetricsLog, bar: tqdm,
                run_start: float, start_iter: int, failures: int) -> dict[str, Any]:
    elapsed = time.perf_counter() - window.start
    loss_sum, correct, clips, data_s = ddp.all_reduce_sum(
        [float(window.loss_sum), float(window.correct), float(window.clips), window.data_s], info, device)
    loss = loss_sum / (window.iters * info.world_size)
    if not math.isfinite(loss):
        raise TrainingError(f"training diverged at iteration {it} (loss {loss}): lower base_lr or check the data")
    total_elapsed = time.perf_counter() - run_start
    eta = total_elapsed / (it - start_iter) * (settings.max_iter - it) if it > start_iter else math.inf
    record: dict[str, Any] = {
        "iter": it,
        "epoch": round(epochs_for(it, settings.batch_size, dataset_size), 3),
        "loss": round(loss, 5),
        "lr": lr,
        "top1": round(correct / clips, 4) if clips else None,
        "clips_per_s": round(clips / elapsed, 2) if elapsed > 0 else None,
        "data_wait": round(data_s / info.world_size / elapsed, 3) if elapsed > 0 else None,
        "elapsed_s": round(total_elapsed, 1),
        "eta_s": round(eta, 1) if math.isfinite(eta) else None,
    }
    if failures:
        record["decode_failures"] = failures  # this process's loader, since the start of this call
    memory = _cuda_memory_gb(device)
    if memory is not None:
        record["max_memory_gb"] = memory
    if info.is_main:
        metrics.write(record)
        bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.3g}", top1=record["top1"], refresh=False)
        log.info(
            "iter %d/%d (epoch %.2f of %.1f) loss %.4f lr %.4g top1 %.3f | %.1f clips/s, data wait %.0f%%%s | ETA %s",
            it, settings.max_iter, record["epoch"], epochs_for(settings.max_iter, settings.batch_size, dataset_size),
            loss, lr, record["top1"] or 0.0, record["clips_per_s"] or 0.0, 100 * (record["data_wait"] or 0.0),
            f", max memory {memory:.2f} GiB" if memory is not None else "", _format_eta(eta))
    return record


def weights_digest(model: nn.Module) -> str:
    """SHA-256 over every parameter and buffer: equal digests mean bit-identical networks."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _check_ranks_agree(model: nn.Module, info: ddp.DistInfo) -> None:
    """Every process must end with the same weights (DDP keeps them in step; this proves it)."""
    if not info.enabled:
        return
    digests = ddp.all_gather_objects(weights_digest(model), info)
    if len(set(digests)) != 1:
        raise TrainingError(f"the {info.world_size} training processes ended with different weights")
    if info.is_main:
        log.info("weights identical on all %d processes (sha256 %s)", info.world_size, digests[0][:16])


def _check_resumable(state: dict, settings: TrainSettings, model_config: dict) -> None:
    if state.get("model_config") != model_config:
        raise TrainingError(
            "the checkpoints in this output directory were made for another model configuration: "
            "use a new output directory or delete the old checkpoints")
    old = state.get("settings", {})
    changed = sorted(k for k, v in settings.to_dict().items() if k in old and old[k] != v)
    if changed:
        log.warning("resuming with changed settings %s; the result will differ from an uninterrupted run", changed)


def _check_classes(class_names: list[str], train_lmdb: Any) -> None:
    from nlflow.store.lmdb_store import LmdbReader

    with LmdbReader(train_lmdb) as reader:
        stored = reader.classes
    if stored and list(stored) != class_names:
        raise TrainingError(f"{train_lmdb} was built for other classes than the given class list "
                            f"({len(stored)} vs {len(class_names)} classes)")
