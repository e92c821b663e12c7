"""The one bridge from a Snakemake `script:` to a stage function.

The adapters in workflow/scripts/ only translate `snakemake.input/output/params` into keyword
arguments; this module gives every stage the same logging and the same clean failure: a user
mistake, bad data or a full disk ends the job with one clear line in the rule's log, not a
traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Callable

from nlflow.diskspace import fault_message, storage_fault
from nlflow.errors import NlflowError, one_line
from nlflow.logs import setup_logging


def run_stage(snakemake: Any, stage: Callable[..., Any], **kwargs: Any) -> Any:
    log_file = snakemake.log[0] if len(snakemake.log) else None
    log = setup_logging(log_file)
    # Read by torch when a stage first imports it; stages that never need torch do not pay for
    # importing it here.
    os.environ["OMP_NUM_THREADS"] = str(int(getattr(snakemake, "threads", 1) or 1))
    try:
        return stage(**kwargs)
    except Exception as error:
        # A full or failing disk is no bug of the stage, whatever layer it surfaced in (Python,
        # FFmpeg, LMDB, the RAR extractor, torch.save): one line with the free space.
        fault = storage_fault(error)
        if fault is not None:
            message = fault_message(fault, snakemake.output[0] if len(snakemake.output) else None)
        elif isinstance(error, NlflowError):
            message = one_line(error)
        else:
            raise
        log.error("%s failed: %s", snakemake.rule, message)
        logging.shutdown()
        sys.exit(1)
