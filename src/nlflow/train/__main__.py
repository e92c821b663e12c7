"""``python -m nlflow.train`` (or ``torchrun --nproc-per-node N -m nlflow.train``): one training run."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from nlflow.errors import NlflowError
from nlflow.logs import setup_logging
from nlflow.train.loop import train
from nlflow.train.solver import TrainSettings


def load_settings(path: str | Path) -> TrainSettings:
    """A settings JSON: either TrainSettings' own keys or ``{"model": {...}, "train": {...}}``."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise NlflowError(f"cannot read settings {path}: {exc}; delete it and run the train job again "
                          "(the stage writes it anew)") from exc
    if isinstance(data, dict) and "train" in data:
        return TrainSettings.from_config(data.get("model", {}), data["train"])
    return TrainSettings.from_dict(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nlflow.train", description=__doc__)
    parser.add_argument("--settings", required=True, help="settings JSON")
    parser.add_argument("--train-lmdb", required=True)
    parser.add_argument("--val-lmdb", default=None)
    parser.add_argument("--init", required=True, help="initial model checkpoint (.pt, converted weights)")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--classes", required=True, help="classes.txt, one class name per line")
    parser.add_argument("--log-file", default=None)
    args = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    log_file = args.log_file if rank == 0 else None
    setup_logging(log_file, level=logging.INFO if rank == 0 else logging.WARNING)
    try:
        final = train(load_settings(args.settings), args.train_lmdb, args.val_lmdb, args.init, args.out_dir,
                      args.classes)
    except NlflowError as exc:
        logging.getLogger("nlflow.train").error("%s", exc)
        return 1
    if rank == 0:
        print(final)
    return 0


if __name__ == "__main__":
    sys.exit(main())
