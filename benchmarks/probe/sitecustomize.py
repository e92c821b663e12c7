"""Per-job cost of a real Snakemake run, measured inside each job (benchmarks/bench_scale.py).

Python imports ``sitecustomize`` at start-up from the first folder on its path that has one, so
every Python process started with this folder on PYTHONPATH runs this file. It acts only in the
process of a Snakemake ``script:`` job (its command line names ``.snakemake/scripts/``) and only
when ``NLFLOW_STAGE_STATS`` names a folder: it samples the job's process tree from the start and,
at exit, writes ``<rule>[-<wildcards>].json`` there with the job's cost (tree_sampler.own_cost), its
outputs and their size on disk. Snakemake's own ``benchmark:`` directive samples only every 30 s
after the first 15 s, which misses the peaks of a long job.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import time
from pathlib import Path


def _command_line() -> list[str]:
    try:
        return Path("/proc/self/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _disk_bytes(path: Path) -> int:
    """Bytes a file or folder occupies (allocated blocks, so sparse files count what they use)."""
    if path.is_file():
        return path.stat().st_blocks * 512
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _job_name(job) -> str:
    wildcards = "-".join(str(value) for value in dict(job.wildcards).values())
    return f"{job.rule}-{wildcards}" if wildcards else str(job.rule)


def _record(out_dir: Path, sampler, started: float, busy_at_start: float) -> None:
    from tree_sampler import own_cost

    cost = own_cost(sampler, started, busy_at_start)
    sampler.stop()
    job = getattr(sys.modules.get("__main__"), "snakemake", None)
    if job is None:
        return
    outputs = [Path(p) for p in job.output]
    cost.update(
        rule=str(job.rule), job=_job_name(job), threads=int(job.threads),
        wildcards={k: str(v) for k, v in dict(job.wildcards).items()},
        outputs=[str(p) for p in outputs],
        output_mb=round(sum(_disk_bytes(p) for p in outputs if p.exists()) / 2**20, 1),
        finished=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{cost['job']}.json").write_text(json.dumps(cost, indent=1) + "\n")


def _install() -> None:
    stats_dir = os.environ.get("NLFLOW_STAGE_STATS")
    if not stats_dir or not any("/.snakemake/scripts/" in arg for arg in _command_line()):
        return
    import psutil

    from tree_sampler import TreeSampler, system_busy_seconds

    started = psutil.Process().create_time()
    sampler = TreeSampler(interval=float(os.environ.get("NLFLOW_STAGE_STATS_INTERVAL", "0.1"))).start()
    atexit.register(_record, Path(stats_dir), sampler, started, system_busy_seconds())


_install()
