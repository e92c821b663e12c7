"""TensorBoard event files of a training run (``train.tensorboard: true``), in ``<run folder>/tensorboard/``.

Every record training writes to ``metrics.jsonl`` also goes there, as the scalars of
:data:`SCALARS` at its iteration; evaluation adds its confusion matrix and top-1 / top-5 at the
run's last iteration (:mod:`nlflow.evaluate.tensorboard_log`). A resumed run first drops the
events after the iteration it resumes from, as ``metrics.jsonl`` drops its lines, so a killed and
resumed run shows one curve. ``tensorboard --logdir results/train/checkpoints`` shows every run.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, Mapping

from nlflow.errors import TrainingError

TENSORBOARD_DIR = "tensorboard"
INSTALL_HINT = 'pip install -e ".[tensorboard]"'
# metrics.jsonl key -> TensorBoard tag
SCALARS = {
    "loss": "train/loss",
    "lr": "train/lr",
    "top1": "train/clip_top1",
    "clips_per_s": "train/clips_per_s",
    "data_wait": "train/data_wait",
    "val_top1": "val/clip_top1",
}


def require_tensorboard() -> None:
    """One clear error, before training starts, when the ``[tensorboard]`` extra is not installed."""
    if importlib.util.find_spec("tensorboard") is None:
        raise TrainingError(f"train.tensorboard is true but the tensorboard package is not installed: {INSTALL_HINT}")


def open_writer(run_dir: str | os.PathLike, purge_after: int | None = None) -> Any:
    """A SummaryWriter on ``run_dir/tensorboard``; ``purge_after``: drop the events after that
    iteration (a resumed run's own events follow)."""
    require_tensorboard()
    from torch.utils.tensorboard import SummaryWriter

    purge_step = purge_after + 1 if purge_after else None
    return SummaryWriter(log_dir=str(Path(run_dir) / TENSORBOARD_DIR), purge_step=purge_step)


def write_record(writer: Any, record: Mapping[str, Any]) -> None:
    """The scalars of one metrics.jsonl record at its iteration."""
    for key, tag in SCALARS.items():
        value = record.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            writer.add_scalar(tag, value, global_step=int(record["iter"]))
    writer.flush()
