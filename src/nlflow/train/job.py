"""One train job as the workflow runs it: a run folder named by what can change the result, the
training processes started on it (in this process, or torchrun / srun + torchrun:
:mod:`nlflow.train.launch`), and the finished model and metrics copied to the job's outputs."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

from nlflow.errors import NlflowError
from nlflow.fileio import atomic_path, file_digest, write_text_atomic
from nlflow.train import continuation
from nlflow.train.continuation import Start, lineage_settings
from nlflow.train.launch import LaunchError, LaunchPlan, run_plan
from nlflow.train.loop import FINAL_NAME, train
from nlflow.train.snapshots import list_snapshots
from nlflow.train.solver import TrainSettings

SETTINGS_NAME = "settings.json"


def settings_digest(settings: Mapping[str, Any], *files: str | os.PathLike) -> str:
    """A short name for one training configuration, so checkpoints of another run are never resumed."""
    payload = {"settings": settings, "inputs": [(Path(f).name, os.path.getsize(f), os.path.getmtime(f)) for f in files]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def run_folder(checkpoint_dir: str | os.PathLike, settings: TrainSettings, *inputs: str | os.PathLike) -> Path:
    """The run's folder below ``checkpoint_dir``, named by what can change the result: a run with other
    workers or log periods resumes there, one with another learning rate or other inputs does not."""
    return Path(checkpoint_dir) / settings_digest(settings.result_dict(), *inputs)


def prepare_run_folder(checkpoint_dir: str | os.PathLike, settings: TrainSettings,
                       *inputs: str | os.PathLike) -> tuple[Path, Start | None]:
    """The run folder (:func:`run_folder`), created; a new one continues an earlier run of the same
    settings but a longer or later-changing schedule when there is one (returned, else None)."""
    run_dir = run_folder(checkpoint_dir, settings, *inputs)
    lineage = settings_digest(lineage_settings(settings), *inputs)
    return run_dir, continuation.prepare(checkpoint_dir, run_dir, settings, lineage)


def launch_arguments(run_dir: Path, train_lmdb: str, val_lmdb: str, init: str, classes_file: str) -> list[str]:
    """The ``python -m nlflow.train`` command line every process gets: absolute paths, because the
    processes of another node start elsewhere (the run folder must be on a shared filesystem)."""
    return ["--settings", str((run_dir / SETTINGS_NAME).resolve()), "--train-lmdb", os.path.abspath(train_lmdb),
            "--val-lmdb", os.path.abspath(val_lmdb), "--init", os.path.abspath(init),
            "--out-dir", str(run_dir.resolve()), "--classes", os.path.abspath(classes_file)]


def run_training(plan: LaunchPlan, settings: TrainSettings, run_dir: Path, train_lmdb: str, val_lmdb: str,
                 init: str, classes_file: str) -> Path:
    """Train in ``run_dir`` as ``plan`` says; returns the final model's path there."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if plan.in_process:
        return train(settings, train_lmdb, val_lmdb, init, run_dir, classes_file)
    # Every process reads the same settings file, inputs and run folder; rank 0 writes
    # checkpoints, metrics and the final model there.
    write_text_atomic(run_dir / SETTINGS_NAME, json.dumps(settings.to_dict(), indent=2, sort_keys=True) + "\n")
    try:
        run_plan(plan)
    except LaunchError as error:
        raise LaunchError(f"{error}; {resume_hint(run_dir)}") from None
    final = run_dir / FINAL_NAME
    if not final.exists():
        raise NlflowError(f"the training processes finished without writing {final}")
    return final


def resume_hint(run_dir: Path) -> str:
    """What running the train job again does after a failure: resume from the newest checkpoint."""
    kept = list_snapshots(run_dir / "checkpoints")
    if not kept:
        return "no checkpoint had been written: running the train job again starts from the beginning"
    iteration, path = kept[-1]
    return f"running the train job again resumes from its newest checkpoint, iteration {iteration} ({path})"


def publish(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy a finished artefact to its rule output atomically (the run folder keeps the original)."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def find_run_folder(checkpoint_dir: str | os.PathLike, model: str | os.PathLike) -> Path | None:
    """The run folder below ``checkpoint_dir`` whose final model has ``model``'s bytes (the train job
    publishes a copy of it), or None."""
    model = Path(model)
    size, digest = model.stat().st_size, None
    for candidate in sorted(Path(checkpoint_dir).glob(f"*/{FINAL_NAME}")):
        if candidate.stat().st_size == size:
            digest = digest or file_digest(model)
            if file_digest(candidate) == digest:
                return candidate.parent
    return None


def checkpoint_bytes(model_bytes: int, keep_checkpoints: int) -> int:
    """What a training run writes, for a network whose weights take ``model_bytes``: the newest
    ``keep_checkpoints`` snapshots plus the one being written (weights and SGD momentum each),
    the final model and its published copy."""
    return (keep_checkpoints + 1) * 2 * model_bytes + 2 * model_bytes
