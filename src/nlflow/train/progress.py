"""What a training run reports: ``metrics.jsonl`` (one JSON object per log window or validation),
the log line of each window, and advice when the device waits for its data."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from nlflow.device_memory import cuda_memory_gb
from nlflow.errors import TrainingError
from nlflow.fileio import write_text_atomic
from nlflow.train import distributed as ddp
from nlflow.train.solver import TrainSettings, epochs_for
from nlflow.train.tensorboard import open_writer, write_record

log = logging.getLogger("nlflow.train.loop")

# Share of a log window the GPU may wait for clips before the run says how to feed it faster.
DATA_WAIT_ADVICE_ABOVE = 0.2


class MetricsLog:
    """``metrics.jsonl``: one JSON object per line; only rank 0 writes. With ``tensorboard`` every
    record also goes to TensorBoard event files in the run folder (:mod:`nlflow.train.tensorboard`)."""

    def __init__(self, path: Path, enabled: bool, resume_iter: int, tensorboard: bool = False):
        self.path = path
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        if tensorboard:
            self.writer = open_writer(path.parent, purge_after=resume_iter)
        kept: list[str] = []
        if resume_iter > 0 and path.exists():
            # Lines a killed run wrote after its last checkpoint would be written again: drop them,
            # and damaged ones (a byte that is not UTF-8 is a ValueError too).
            for raw in path.read_bytes().splitlines():
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    line = raw.decode("utf-8")
                    if json.loads(line)["iter"] <= resume_iter:
                        kept.append(line)
        write_text_atomic(path, "".join(line + "\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(record, sort_keys=True) + "\n")
        if self.writer is not None:
            write_record(self.writer, record)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


@dataclasses.dataclass
class Window:
    """Statistics accumulated between two log lines."""

    start: float = dataclasses.field(default_factory=time.perf_counter)
    iters: int = 0
    data_s: float = 0.0
    loss_sum: Any = 0.0  # a device tensor while the window runs: no sync per step
    correct: Any = 0
    clips: int = 0

    def pause(self, seconds: float) -> None:
        """Keep ``seconds`` of other work (validation, a snapshot) out of the training speed."""
        self.start += seconds


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


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the job's CPU set under SLURM or taskset
    except AttributeError:
        return os.cpu_count() or 1


def format_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


@dataclasses.dataclass(kw_only=True)
class ProgressLog:
    """What every log window of one run reports against: the settings, the training set's size,
    the processes, where records and the progress bar go, and where the run started."""

    settings: TrainSettings
    dataset_size: int
    info: ddp.DistInfo
    device: torch.device
    metrics: MetricsLog
    bar: tqdm
    start_iter: int
    run_start: float = dataclasses.field(default_factory=time.perf_counter)

    def log_window(self, window: Window, it: int, lr: float, failures: int) -> dict[str, Any]:
        """Reduce a window's statistics over all processes, write its metrics record and log line.
        ``failures``: decode failures of this process's loader so far."""
        settings, info = self.settings, self.info
        elapsed = time.perf_counter() - window.start
        loss_sum, correct, clips, data_s = ddp.all_reduce_sum(
            [float(window.loss_sum), float(window.correct), float(window.clips), window.data_s], info, self.device)
        loss = loss_sum / (window.iters * info.world_size)
        if not math.isfinite(loss):
            raise TrainingError(f"training diverged at iteration {it} (loss {loss}): lower base_lr or check the data")
        total_elapsed = time.perf_counter() - self.run_start
        eta = total_elapsed / (it - self.start_iter) * (settings.max_iter - it) if it > self.start_iter else math.inf
        record: dict[str, Any] = {
            "iter": it,
            "epoch": round(epochs_for(it, settings.batch_size, self.dataset_size), 3),
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
        memory = cuda_memory_gb(self.device)
        if memory is not None:
            record["max_memory_gb"] = memory
        if info.is_main:
            self.metrics.write(record)
            self.bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.3g}", top1=record["top1"], refresh=False)
            log.info(
                "iter %d/%d (epoch %.2f of %.1f) loss %.4f lr %.4g top1 %.3f | %.1f clips/s, data wait %.0f%%%s | ETA %s",
                it, settings.max_iter, record["epoch"], epochs_for(settings.max_iter, settings.batch_size, self.dataset_size),
                loss, lr, record["top1"] or 0.0, record["clips_per_s"] or 0.0, 100 * (record["data_wait"] or 0.0),
                f", max memory {memory:.2f} GiB" if memory is not None else "", format_eta(eta))
        return record
