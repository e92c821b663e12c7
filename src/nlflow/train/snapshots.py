"""Training snapshots for resume (model, optimizer, scaler and RNG states at an iteration):
written atomically, the last K kept, the newest readable one found.

A snapshot is a training state, not a model file (that is :mod:`nlflow.models.checkpoint`); it
holds plain types and tensors only, so it loads with ``torch.load(weights_only=True)``. Messages
call it a training checkpoint, the word a user knows from the ``checkpoints/`` folder.
"""

from __future__ import annotations

import logging
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nlflow.errors import NlflowError
from nlflow.fileio import atomic_path, zip_damage

log = logging.getLogger(__name__)

FORMAT = "nlflow-train-state"
VERSION = 1
_NAME = re.compile(r"^iter_(\d{8})\.pt$")


class SnapshotError(NlflowError):
    """A training snapshot cannot be used."""


def snapshot_path(ckpt_dir: str | os.PathLike, iteration: int) -> Path:
    return Path(ckpt_dir) / f"iter_{iteration:08d}.pt"


def list_snapshots(ckpt_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Finished snapshots (temporary files of an interrupted write are ignored), oldest first."""
    d = Path(ckpt_dir)
    if not d.is_dir():
        return []
    found = []
    for p in d.iterdir():
        m = _NAME.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def save_snapshot(ckpt_dir: str | os.PathLike, iteration: int, state: dict[str, Any], keep: int) -> Path:
    """Write ``state`` for ``iteration`` atomically, then delete all but the newest ``keep``."""
    final = snapshot_path(ckpt_dir, iteration)
    payload = {"format": FORMAT, "version": VERSION, "iteration": int(iteration), **state}
    with atomic_path(final) as tmp:
        torch.save(payload, tmp)
    for _, old in list_snapshots(ckpt_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return final


def load_snapshot(path: str | os.PathLike) -> dict[str, Any]:
    """The training state in one snapshot file; SnapshotError when it is damaged or foreign."""
    damage = zip_damage(path)  # torch.load does not check the CRC-32s: a flipped bit would resume from it
    if damage:
        raise SnapshotError(f"training checkpoint {path} is damaged ({damage})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: the caller may fall back to an older one
        raise SnapshotError(f"cannot read training checkpoint {path}: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise SnapshotError(f"{path} is not an nlflow training checkpoint")
    if state.get("version") != VERSION:
        raise SnapshotError(f"{path} has checkpoint version {state.get('version')}, expected {VERSION}")
    return state


def load_latest_snapshot(ckpt_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The newest snapshot that loads; unreadable newer ones are skipped with a warning."""
    for iteration, path in reversed(list_snapshots(ckpt_dir)):
        try:
            return load_snapshot(path)
        except SnapshotError as exc:
            log.warning("skipping unreadable checkpoint (%s)", exc)
    return None


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) generator states, as plain types and tensors."""
    py_version, py_keys, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": py_version, "keys": torch.tensor(py_keys, dtype=torch.int64), "gauss": py_gauss},
        "numpy": {"kind": np_kind, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(int(k) for k in py["keys"].tolist()), py["gauss"]))
    npst = state["numpy"]
    np.random.set_state((npst["kind"], npst["keys"].numpy().astype(np.uint32), npst["pos"],
                         npst["has_gauss"], npst["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        else:
            log.warning("checkpoint has %d CUDA RNG states, this machine %d GPUs: CUDA RNG not restored",
                        len(cuda_states), torch.cuda.device_count())
