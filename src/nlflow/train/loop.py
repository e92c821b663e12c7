"""The iteration-based fine-tuning loop. :func:`train` reads top to bottom:

1. :func:`set_up`: the network from the init checkpoint, the optimizer, the resumed state, the loaders;
2. :func:`train_steps`: SGD steps up to the next event, each on one global batch, accumulated
   over ``train.accumulate`` micro-batches per process when memory needs it;
3. between them, when due: the log line (:mod:`nlflow.train.progress`), validation
   (:func:`validate`) and a snapshot (:func:`snapshot`) that a killed run resumes from;
4. :func:`finish`: precise BN, the finished snapshot, the last validation and the final model.

Works in one process (CPU or one GPU) and under torchrun (one process per GPU, or gloo on CPU).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from nlflow.device_memory import MemoryProbe, OutOfMemoryError
from nlflow.errors import ConfigError, TrainingError
from nlflow.train import distributed as ddp
from nlflow.train import precision, snapshots
from nlflow.train.measure import clip_accuracy, recompute_bn_stats, validation_videos
from nlflow.train.progress import MetricsLog, ProgressLog, Window, data_wait_advice, usable_cores
from nlflow.train.runtime import Runtime, fitting_accumulate, make_runtime, seed_everything, torch_threads
from nlflow.train.solver import TrainSettings, build_optimizer, epochs_for, lr_at, set_lr
from nlflow.train.tensorboard import require_tensorboard
from nlflow.video.views import to_network_input

log = logging.getLogger(__name__)

FINAL_NAME = "model_final.pt"
METRICS_NAME = "metrics.jsonl"


# ----------------------------------------------------------------------------- set-up

def _read_classes(classes: Sequence[str] | str | os.PathLike) -> list[str]:
    if isinstance(classes, (str, os.PathLike)):
        from nlflow.lists.listfiles import read_classes

        return read_classes(classes)
    return list(classes)


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


def micro_batch_size(settings: TrainSettings, world_size: int) -> int:
    """Clips per forward pass of each process: the global batch over processes and micro-batches."""
    local = ddp.per_rank_batch(settings.batch_size, world_size)
    if local % settings.accumulate:
        raise ConfigError(f"train.batch_size {settings.batch_size} over {world_size} process(es) gives {local} clips "
                          f"each, which train.accumulate {settings.accumulate} does not divide into equal micro-batches")
    micro = local // settings.accumulate
    if settings.bn_batch and micro > settings.bn_batch and micro % settings.bn_batch:
        raise ConfigError(f"micro-batches of {micro} clips (train.batch_size {settings.batch_size} over {world_size} "
                          f"process(es) and train.accumulate {settings.accumulate}) do not split into BN groups of "
                          f"train.bn_batch {settings.bn_batch} clips: choose accumulate so that they do")
    return micro


def set_up_bn_batch(model: nn.Module, settings: TrainSettings, micro: int, info: ddp.DistInfo) -> None:
    """BN statistics over groups of ``train.bn_batch`` clips of each micro-batch (see
    :class:`nlflow.models.norm.BatchNorm3d`); a smaller micro-batch is normalised as a whole."""
    from nlflow.models.norm import set_bn_batch

    if not set_bn_batch(model, settings.bn_batch) or not settings.bn_batch or not info.is_main:
        return
    if micro < settings.bn_batch:
        log.warning("BN normalises micro-batches of %d clips, fewer than train.bn_batch %d (the original's 8 per GPU): "
                    "lower train.accumulate if memory allows", micro, settings.bn_batch)
    elif micro > settings.bn_batch:
        log.info("BN statistics over %d groups of %d clips in each micro-batch of %d",
                 micro // settings.bn_batch, settings.bn_batch, micro)


@dataclasses.dataclass
class Run:
    """One training run in progress: what every step, validation and snapshot works on."""

    settings: TrainSettings
    rt: Runtime
    out_dir: Path
    class_names: list[str]
    model: nn.Module
    forward: nn.Module  # what the step calls: the model, wrapped for DDP / torch.compile
    optimizer: torch.optim.Optimizer
    model_config: dict
    train_set: Any
    batches: Iterator  # micro-batches of every remaining iteration, precise BN's included
    val_loader: DataLoader | None
    metrics: MetricsLog
    memory: MemoryProbe
    start_iter: int
    final_done: bool  # the finished snapshot exists: only the last validation and the model remain

    @property
    def ckpt_dir(self) -> Path:
        return self.out_dir / "checkpoints"

    @property
    def dataset_size(self) -> int:
        return len(self.train_set)


def _restore(state: dict, model: nn.Module, optimizer: torch.optim.Optimizer, rt: Runtime,
             settings: TrainSettings) -> int:
    """Load a training snapshot into model, optimizer, scaler and RNGs; return its iteration."""
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
        seed_everything(settings.seed + 1000 * state["iteration"] + rt.info.rank)
    return int(state["iteration"])


def _place(model: nn.Module, optimizer: torch.optim.Optimizer, rt: Runtime, settings: TrainSettings) -> nn.Module:
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


def _val_loader(val_lmdb: Any, settings: TrainSettings, rt: Runtime, batch: int) -> DataLoader | None:
    """One clip per video of the val store (every video, or ``val_videos`` of them stratified by
    class), sharded over ranks."""
    from nlflow.store.torch_datasets import ValClipDataset
    from nlflow.video.views import ViewSpec

    if val_lmdb is None or settings.val_videos == 0:
        return None
    spec = ViewSpec(video_length=settings.video_length, sample_rate=settings.sample_rate, num_clips=1,
                    num_crops=1, scale=settings.scale_range[0], crop_size=settings.crop_size)
    val_set = ValClipDataset(val_lmdb, spec)
    videos = validation_videos([label for _, label in val_set.reader.entries()], settings.val_videos, settings.seed)
    shard = videos[rt.info.rank::rt.info.world_size]
    # Its own generator: iterating a loader without one draws from the global torch RNG (the
    # one dropout uses), so validating would change the training that follows it.
    return DataLoader(Subset(val_set, shard), batch_size=batch, shuffle=False,
                      generator=torch.Generator().manual_seed(settings.seed),
                      **_loader_kwargs(settings, rt.device.type == "cuda"))


def set_up(settings: TrainSettings, rt: Runtime, state: dict | None, train_lmdb: str | os.PathLike,
           val_lmdb: str | os.PathLike | None, init_checkpoint: str | os.PathLike, out_dir: Path,
           class_names: list[str]) -> Run:
    """The network, optimizer and data of a run, resumed from ``state`` (a snapshot) when given."""
    from nlflow.store.torch_datasets import TrainClipDataset

    info = rt.info
    model, model_config = build_init_model(init_checkpoint, settings, len(class_names))
    if rt.device.type == "cpu" and rt.amp_dtype == torch.bfloat16:
        precision.check_cpu_bf16_kernels(model, (3, settings.video_length, settings.crop_size, settings.crop_size))
    optimizer = build_optimizer(model, settings)
    start_iter = 0
    if state is not None:
        _check_resumable(state, settings, model_config)
        start_iter = _restore(state, model, optimizer, rt, settings)
        if info.is_main:
            log.info("resuming from %s at iteration %d", snapshots.snapshot_path(out_dir / "checkpoints", start_iter),
                     start_iter)
    else:
        seed_everything(settings.seed + info.rank)
    if start_iter > settings.max_iter:
        raise TrainingError(f"{out_dir / 'checkpoints'} holds a checkpoint at iteration {start_iter}, past max_iter "
                            f"{settings.max_iter}: use a new output directory")
    forward = _place(model, optimizer, rt, settings)
    memory = MemoryProbe.start(rt.device)

    train_set = TrainClipDataset(train_lmdb, settings.video_length, settings.sample_rate,
                                 settings.scale_range, settings.crop_size, settings.seed)
    _check_store_classes(class_names, train_lmdb)
    micro = micro_batch_size(settings, info.world_size)
    set_up_bn_batch(model, settings, micro, info)
    final_done = state is not None and state.get("finished", False) and start_iter == settings.max_iter
    stop_iter = settings.max_iter + (0 if final_done else settings.precise_bn_iters)
    sampler = ddp.IterationSampler(len(train_set), settings.batch_size, settings.seed, info.rank, info.world_size)
    # Own generator: starting a loader pass must not draw from the global torch RNG (dropout's),
    # or a resumed run would diverge from an uninterrupted one. Each process's share of a global
    # batch arrives as train.accumulate consecutive micro-batches.
    loader = DataLoader(train_set, batch_size=micro, sampler=sampler, drop_last=False,
                        generator=torch.Generator().manual_seed(settings.seed),
                        **_loader_kwargs(settings, rt.device.type == "cuda"))
    metrics = MetricsLog(out_dir / METRICS_NAME, info.is_main, start_iter, tensorboard=settings.tensorboard)
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        log.info(
            "training %s: %d clips in the training set, global batch %d over %d process(es) on %s%s%s, "
            "%d iterations = %.1f epochs (%d iterations each), starting at %d",
            model_config.get("arch"), len(train_set), settings.batch_size, info.world_size, rt.device,
            # On some CPUs the thread count changes oneDNN's summation order, hence the weights.
            f" ({torch.get_num_threads()} threads each)" if rt.device.type == "cpu" else "",
            f" in {settings.accumulate} micro-batches of {micro}" if settings.accumulate > 1 else "",
            settings.max_iter, epochs_for(settings.max_iter, settings.batch_size, len(train_set)),
            sampler.iters_per_epoch, start_iter)
    return Run(
        settings=settings, rt=rt, out_dir=out_dir, class_names=class_names, model=model, forward=forward,
        optimizer=optimizer, model_config=model_config, train_set=train_set,
        batches=epoch_batches(loader, sampler, train_set, start_iter, stop_iter),
        val_loader=_val_loader(val_lmdb, settings, rt, micro), metrics=metrics, memory=memory,
        start_iter=start_iter, final_done=final_done,
    )


# ----------------------------------------------------------------------------- steps

def train_step(run: Run, micro_batches: Sequence[tuple[torch.Tensor, torch.Tensor]], iteration: int) -> tuple[Any, Any, int]:
    """SGD update ``iteration`` on one global batch, given as this process's micro-batches; returns
    the (mean loss, correct predictions, clips) of this process's share, still on the device.

    A loss or gradient that is not finite stops the run before the update (every process sees the
    same averaged gradients, so all of them stop at the same iteration)."""
    rt, settings = run.rt, run.settings
    set_lr(run.optimizer, lr_at(iteration, settings))
    run.optimizer.zero_grad(set_to_none=True)
    loss_sum, correct, clips = 0.0, 0, 0
    for index, (frames, labels) in enumerate(micro_batches):
        # DDP averages gradients over processes once, after the last micro-batch.
        last = index == len(micro_batches) - 1
        no_sync = run.forward.no_sync() if rt.info.enabled and not last else contextlib.nullcontext()
        with no_sync:
            inputs = to_network_input(frames, rt.device, settings.channels_last)
            labels = labels.to(rt.device, non_blocking=True)
            with rt.autocast():
                logits = run.forward(inputs)
            # The mean over the whole share: each micro-batch's mean weighted by 1 / accumulate.
            loss = F.cross_entropy(logits.float(), labels) / len(micro_batches)
            rt.scaler.scale(loss).backward()
        loss_sum = loss_sum + loss.detach()
        correct = correct + (logits.detach().argmax(1) == labels).sum()
        clips += len(labels)
    reason = precision.nonfinite_reason(loss_sum, run.model, check_gradients=not rt.scaler.is_enabled())
    if reason is not None:
        raise TrainingError(diverged_message(run, iteration + 1, reason))
    rt.scaler.step(run.optimizer)
    rt.scaler.update()
    return loss_sum, correct, clips


def train_steps(run: Run, it: int, stop: int, window: Window, bar: tqdm) -> int:
    """SGD steps from iteration ``it`` up to ``stop``; returns ``stop``."""
    while it < stop:
        t0 = time.perf_counter()
        micro_batches = [next(run.batches) for _ in range(run.settings.accumulate)]
        window.data_s += time.perf_counter() - t0
        loss, correct, clips = train_step(run, micro_batches, it)
        it += 1
        window.iters += 1
        window.loss_sum = window.loss_sum + loss
        window.correct = window.correct + correct
        window.clips += clips
        bar.update(1)
    return it


def validate(run: Run, iteration: int) -> float | None:
    """Clip top-1 on the validation store (logged and written to metrics.jsonl); None without one."""
    if run.val_loader is None:
        return None
    top1, clips = clip_accuracy(run.model, run.val_loader, run.rt.device, run.rt.autocast,
                                run.settings.channels_last, run.rt.info)
    if run.rt.info.is_main:
        log.info("iter %d: validation clip top-1 %.4f on %d clips", iteration, top1, clips)
        run.metrics.write({"iter": iteration, "val_top1": top1, "val_clips": clips})
    return top1


def snapshot(run: Run, iteration: int, finished: bool, extra: dict | None = None) -> None:
    """What a killed run resumes from: weights, optimizer, scaler, every process's RNG states."""
    rt = run.rt
    rng = ddp.all_gather_objects(snapshots.capture_rng_state(), rt.info)
    if rt.info.is_main:
        path = snapshots.save_snapshot(run.ckpt_dir, iteration, {
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scaler": rt.scaler.state_dict() if rt.scaler.is_enabled() else {},
            "rng": rng,
            "settings": run.settings.to_dict(),
            "model_config": run.model_config,
            "world_size": rt.info.world_size,
            "finished": finished,
            **(extra or {}),
        }, run.settings.keep_checkpoints)
        log.info("checkpoint %s", path)
    ddp.barrier(rt.info)


def _next_stop(it: int, settings: TrainSettings) -> int:
    """The next iteration after ``it`` at which something besides a step happens."""
    periods = [settings.log_period, settings.checkpoint_period] + ([settings.val_period] if settings.val_period else [])
    return min([settings.max_iter] + [(it // period + 1) * period for period in periods])


def finish(run: Run) -> Path:
    """Precise BN and the finished snapshot (unless a killed run got that far), the last
    validation, and ``model_final.pt``."""
    from nlflow.models import save_checkpoint

    settings, rt = run.settings, run.rt
    if not run.final_done:
        extra = {}
        if settings.precise_bn_iters > 0:
            # A longer run continues from the state before precise BN (nlflow.train.continuation).
            extra["before_precise_bn"] = state_before_precise_bn(run)
            used = recompute_bn_stats(run.model, run.batches, settings.precise_bn_iters * settings.accumulate,
                                      rt.device, rt.autocast, settings.channels_last, rt.info)
            if rt.info.is_main:
                log.info("precise BN: running statistics recomputed over %d batches", used)
        _check_ranks_agree(run.model, rt.info)
        snapshot(run, settings.max_iter, finished=True, extra=extra)
    val_top1 = validate(run, settings.max_iter)
    final_path = run.out_dir / FINAL_NAME
    if rt.info.is_main:
        extra = {"iterations": settings.max_iter, "settings": settings.to_dict(), "dataset_size": run.dataset_size}
        if val_top1 is not None and math.isfinite(val_top1):
            extra["val_top1"] = val_top1
        save_checkpoint(final_path, run.model, run.class_names, extra=extra)
        log.info("final model written to %s", final_path)
    ddp.barrier(rt.info)
    return final_path


def state_before_precise_bn(run: Run) -> dict[str, Any]:
    """What precise BN changes, as it was after the last step: the buffers (BN running statistics)
    and every process's RNG states (precise BN's forward passes draw dropout masks)."""
    names = {name for name, _ in run.model.named_buffers()}
    buffers = {key: value.detach().clone().cpu() for key, value in run.model.state_dict().items() if key in names}
    return {"buffers": buffers, "rng": ddp.all_gather_objects(snapshots.capture_rng_state(), run.rt.info)}


# ----------------------------------------------------------------------------- the run

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
    out_dir = Path(out_dir)
    class_names = _read_classes(classes)
    rt = make_runtime(settings)
    try:
        with torch_threads(settings.threads), precision.tf32_allowed(settings.tf32):
            state = snapshots.load_latest_snapshot(out_dir / "checkpoints")
            if _finished(state, settings, out_dir):
                log.info("training in %s already finished at iteration %d", out_dir, state["iteration"])
                return out_dir / FINAL_NAME
            if settings.tensorboard:
                require_tensorboard()  # before any work, not after the first window
            run = set_up(settings, rt, state, train_lmdb, val_lmdb, init_checkpoint, out_dir, class_names)
            try:
                _run_windows(run)
                return finish(run)
            except OutOfMemoryError as exc:
                raise TrainingError(out_of_memory_message(run, exc)) from None
            finally:
                run.metrics.close()
    finally:
        ddp.shutdown(rt.info)


def _run_windows(run: Run) -> None:
    """Steps until ``max_iter``, with the log line, validation and snapshots when they are due."""
    settings, info = run.settings, run.rt.info
    it = run.start_iter
    bar = tqdm(total=settings.max_iter, initial=it, desc="train", unit="it",
               disable=None if info.is_main else True, dynamic_ncols=True)
    progress = ProgressLog(settings=settings, dataset_size=run.dataset_size, info=info, device=run.rt.device,
                           metrics=run.metrics, bar=bar, start_iter=run.start_iter)
    window, advised = Window(), False
    try:
        while it < settings.max_iter:
            it = train_steps(run, it, _next_stop(it, settings), window, bar)
            if it % settings.log_period == 0 or it == settings.max_iter:
                record = progress.log_window(window, it, lr=lr_at(it - 1, settings), failures=run.train_set.failures)
                window = Window()
                # The first window includes the workers' start-up: judge the loader after it.
                if run.rt.device.type == "cuda" and info.is_main and not advised and it - run.start_iter > settings.log_period:
                    advice = data_wait_advice(record["data_wait"], settings.num_workers, usable_cores(),
                                              int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
                    if advice:
                        log.warning(advice)
                        advised = True
            if settings.val_period and it % settings.val_period == 0 and it < settings.max_iter:
                started = time.perf_counter()
                validate(run, it)
                window.pause(time.perf_counter() - started)
            if it % settings.checkpoint_period == 0 and it < settings.max_iter:
                snapshot(run, it, finished=False)
    finally:
        bar.close()


def diverged_message(run: Run, iteration: int, reason: str) -> str:
    """One line: where the run stopped, why, and the last good state on disk."""
    kept = snapshots.list_snapshots(run.ckpt_dir)
    where = (f"the last good checkpoint {kept[-1][1]} (iteration {kept[-1][0]}) is kept" if kept
             else "no checkpoint had been written yet")
    return (f"training stopped at iteration {iteration}: {reason}, so the update was not applied; {where}. "
            "Lower train.base_lr (or use train.amp: none) and run again")


def out_of_memory_message(run: Run, error: BaseException) -> str:
    """One line: the micro-batch that did not fit and the ``train.accumulate`` that would."""
    settings, world = run.settings, run.rt.info.world_size
    local = ddp.per_rank_batch(settings.batch_size, world)
    micro = local // settings.accumulate
    head = (f"{run.rt.device.type.upper()} out of memory with micro-batches of {micro} clips (train.batch_size "
            f"{settings.batch_size} over {world} process(es), train.accumulate {settings.accumulate})")
    fits = run.memory.fitting_batch(micro, error)
    if fits is None:
        return f"{head}: raise train.accumulate to split each process's {local} clips into smaller micro-batches"
    accumulate = fitting_accumulate(local, settings.accumulate, fits)
    if accumulate is None:
        return f"{head}: not even one clip fits next to the weights; use a GPU with more memory or more GPUs"
    return (f"{head}: set train.accumulate to {accumulate} (micro-batches of {local // accumulate} clips; "
            f"estimated from the memory this one needed)")


# ----------------------------------------------------------------------------- checks

def _finished(state: dict | None, settings: TrainSettings, out_dir: Path) -> bool:
    return (state is not None and state["iteration"] == settings.max_iter and bool(state.get("finished"))
            and (out_dir / FINAL_NAME).exists())


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
    changed = sorted(k for k, v in settings.result_dict().items() if k in old and old[k] != v)
    if changed:
        log.warning("resuming with changed settings %s; the result will differ from an uninterrupted run", changed)


def _check_store_classes(class_names: list[str], train_lmdb: Any) -> None:
    from nlflow.store.lmdb_store import LmdbReader

    with LmdbReader(train_lmdb) as reader:
        stored = reader.classes
    if stored and list(stored) != class_names:
        raise TrainingError(f"{train_lmdb} was built for other classes than the given class list "
                            f"({len(stored)} vs {len(class_names)} classes)")
