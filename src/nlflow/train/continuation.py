"""A longer run continues a shorter one: raising ``train.max_iter`` (or training with a schedule
that only differs after some point) starts from the newest state of an earlier run whose training
up to there was the same, instead of from iteration 0.

Run folders are named by every result setting (:func:`nlflow.train.job.run_folder`), so a run with
another ``max_iter`` gets a folder of its own. Each folder records its *lineage* in ``run.json``:
a digest of the result settings without the schedule (``max_iter``, ``lr_steps``, ``lr_relative``)
and of the inputs. A new folder of the same lineage takes the newest snapshot of an earlier
folder at an iteration ``k`` up to its own ``max_iter`` whose learning rate was the same at every
iteration before ``k`` (:func:`same_schedule`). Everything else that shapes the weights up to
``k`` (data order, augmentation, dropout, the RNG states) depends on the iteration, the seed and
the settings in the lineage, never on ``max_iter``: the continued run ends with the weights of a
run trained from scratch with the longer schedule.

The finished snapshot of a run holds its state after precise BN, which a longer run must not
start from: it also keeps the BN buffers and RNG states from before precise BN
(``before_precise_bn``, written by the training loop), and that state is what continues.
A schedule whose steps scale with ``max_iter`` (``lr_steps: null``, the original's 400k schedule
scaled) changes the LR before the old end, so such a run cannot continue and starts from 0.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from nlflow.fileio import write_text_atomic
from nlflow.train import snapshots
from nlflow.train.loop import METRICS_NAME
from nlflow.train.solver import TrainSettings, lr_at

log = logging.getLogger(__name__)

RUN_RECORD = "run.json"
# The settings a longer run may change: the schedule. Every other result setting must be equal.
SCHEDULE_KEYS = ("max_iter", "lr_steps", "lr_relative")


def lineage_settings(settings: TrainSettings) -> dict:
    """The result settings that must be equal for one run to continue another."""
    return {key: value for key, value in settings.result_dict().items() if key not in SCHEDULE_KEYS}


def write_run_record(run_dir: Path, settings: TrainSettings, lineage: str) -> None:
    """``run.json``: the run's lineage and result settings, read by later runs looking for a start."""
    record = {"lineage": lineage, "settings": settings.result_dict()}
    write_text_atomic(run_dir / RUN_RECORD, json.dumps(record, indent=2, sort_keys=True) + "\n")


def same_schedule(first: TrainSettings, second: TrainSettings, iterations: int) -> bool:
    """Whether both settings give the same learning rate at every iteration before ``iterations``."""
    return all(lr_at(i, first) == lr_at(i, second) for i in range(iterations))


@dataclass(frozen=True)
class Start:
    """A snapshot of an earlier run that a new run can start from."""

    run_dir: Path
    iteration: int
    path: Path


def find_start(checkpoint_dir: Path, run_dir: Path, settings: TrainSettings, lineage: str) -> Start | None:
    """The newest snapshot, among the other run folders of ``lineage``, that ``settings`` can
    continue (at most ``max_iter``, the same learning rates before it); None when there is none."""
    best: Start | None = None
    for other in sorted(path for path in checkpoint_dir.iterdir() if path.is_dir() and path != run_dir):
        earlier = _read_settings(other, lineage)
        if earlier is None:
            continue
        for iteration, path in reversed(snapshots.list_snapshots(other / "checkpoints")):
            if best is not None and iteration <= best.iteration:
                break
            if iteration <= settings.max_iter and same_schedule(earlier, settings, iteration):
                best = Start(other, iteration, path)
                break
    return best


def _read_settings(run_dir: Path, lineage: str) -> TrainSettings | None:
    try:
        record = json.loads((run_dir / RUN_RECORD).read_text(encoding="utf-8"))
        if record.get("lineage") != lineage:
            return None
        return TrainSettings.from_dict(record["settings"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if (run_dir / RUN_RECORD).exists():
            log.warning("%s: unreadable (%s); not considered as a start for this run", run_dir / RUN_RECORD, exc)
        return None


def continue_from(start: Start, run_dir: Path, settings: TrainSettings) -> bool:
    """Put ``start``'s training state into ``run_dir`` as this run's snapshot at its iteration
    (the state before precise BN when the snapshot is a finished one), with the metrics logged up
    to there. False when the snapshot cannot be used (damaged, or finished without its
    pre-precise-BN state): the run then starts from 0."""
    try:
        state = snapshots.load_snapshot(start.path)
    except snapshots.SnapshotError as exc:
        log.warning("cannot continue from %s (%s); training from iteration 0", start.path, exc)
        return False
    finished = bool(state.get("finished"))
    if finished:
        before = state.get("before_precise_bn")
        if before is None and state["settings"].get("precise_bn_iters", 0) > 0:
            log.warning("%s holds only the state after precise BN; training from iteration 0", start.path)
            return False
        if before is not None:
            state["model"] = {**state["model"], **before["buffers"]}
            state["rng"] = before["rng"]
    state.pop("before_precise_bn", None)
    state.update(finished=False, settings=settings.to_dict(),
                 continued_from={"run": str(start.run_dir), "iteration": start.iteration})
    payload = {key: value for key, value in state.items() if key not in ("format", "version", "iteration")}
    snapshots.save_snapshot(run_dir / "checkpoints", start.iteration, payload, settings.keep_checkpoints)
    _copy_metrics(start.run_dir / METRICS_NAME, run_dir / METRICS_NAME, start.iteration,
                  drop_last_validation=finished)
    return True


def _copy_metrics(source: Path, target: Path, iteration: int, drop_last_validation: bool) -> None:
    """The earlier run's metrics up to ``iteration``; its last validation, measured after precise BN
    on a finished run, is not part of the longer run."""
    if not source.exists():
        return
    kept = []
    for line in source.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
            at = int(record["iter"])
        except (ValueError, KeyError, TypeError):
            continue
        if at < iteration or (at == iteration and not (drop_last_validation and "val_top1" in record)):
            kept.append(line)
    write_text_atomic(target, "".join(line + "\n" for line in kept))


def prepare(checkpoint_dir: str | os.PathLike, run_dir: Path, settings: TrainSettings, lineage: str) -> Start | None:
    """Create ``run_dir`` with its ``run.json``; a folder without snapshots continues the best
    earlier run of its lineage (:func:`find_start`). Returns that start, or None."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_run_record(run_dir, settings, lineage)
    if snapshots.list_snapshots(run_dir / "checkpoints"):
        return None  # a run of its own to resume
    start = find_start(Path(checkpoint_dir), run_dir, settings, lineage)
    if start is None or not continue_from(start, run_dir, settings):
        return None
    return start
