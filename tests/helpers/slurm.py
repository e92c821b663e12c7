"""Real SLURM test clusters (tests/e2e/slurm/) and Snakemake runs through the project's SLURM
profile, shared by tests/e2e/test_slurm.py (one node) and tests/e2e/test_slurm_two_nodes.py.

A cluster is started and stopped by its scripts (daemons by PID, never by name); the evidence
that rules ran as SLURM jobs is slurmctld's own job records (`scontrol show job`, also what
`squeue --states=all` lists), its job-completion log and the plugin's per-job logs; `sacct`
cannot answer because the clusters have no slurmdbd.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest
import yaml

from helpers import REPO

SLURM_SCRIPTS = REPO / "tests" / "e2e" / "slurm"
PROFILE = REPO / "profiles" / "slurm"
# Set by .ci/run after it installed slurm-wlm and munge: a test cluster that cannot start fails.
REQUIRED = os.environ.get("NLFLOW_REQUIRE_SLURM") == "1"

# Command-line additions to the profile that these clusters, not a real site, need:
SLURM_TEST_OPTIONS = [
    # No slurmdbd here, so `sacct` fails, yet the plugin picks it whenever the binary exists;
    # squeue sees finished jobs for MinJobAge = 300 s (tests/e2e/slurm/slurm.conf.in).
    "--slurm-status-command", "squeue",
    # The plugin's status-check interval: 40 s by default (sized for busy clusters), growing by
    # 10 s per check that finds nothing finished; most jobs here take 6-9 s. MinJobAge 300 >= 3 x 10,
    # as the plugin asks for squeue-based status.
    "--slurm-init-seconds-before-status-checks", "10",
    # The plugin deletes the logs of successful jobs; they are part of the evidence.
    "--slurm-keep-successful-logs",
]
# A lost job makes Snakemake wait for ever, and it ignores SIGTERM while it waits: hence -k. A hang
# backstop, not a speed test: 300 s ran out for `lists weights` at load average 17-21 on the 2-core
# machine (2026-12-03; each job's own Snakemake start-up took 70-130 s there).
SNAKEMAKE_TIMEOUT_S = 600


def profile() -> dict:
    return yaml.safe_load((PROFILE / "config.yaml").read_text())


def profile_partitions() -> list[str]:
    """The partitions the profile names, its default first: the test clusters get exactly these."""
    config = profile()
    names = [config["default-resources"]["slurm_partition"]]
    for resources in (config.get("set-resources") or {}).values():
        name = resources.get("slurm_partition")
        if name and name not in names:
            names.append(name)
    return names


def unavailable(*check_args: str) -> str | None:
    """Why no test cluster can run here (tests/e2e/slurm/check.sh CHECK_ARGS), or None."""
    check = subprocess.run(["bash", str(SLURM_SCRIPTS / "check.sh"), *check_args], capture_output=True, text=True)
    if check.returncode != 0:
        return (check.stdout + check.stderr).strip()
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm is not installed (pip install -e '.[test]')"
    return None


def fields(line: str) -> dict[str, str]:
    """KEY=VALUE fields of one line of `scontrol --oneliner` output or of the job completion log."""
    return dict(field.split("=", 1) for field in line.split() if "=" in field)


@dataclass
class Cluster:
    state: Path
    env: dict[str, str]

    def jobs(self, run_id: str) -> list[dict[str, str]]:
        """slurmctld's records of one Snakemake run's jobs (job name = the plugin's run ID)."""
        # --details adds JOB_GRES, the generic resources actually allocated to the job.
        out = subprocess.run(["scontrol", "--details", "--oneliner", "show", "job"], env=self.env,
                             capture_output=True, text=True, check=True).stdout
        records = [fields(line) for line in out.splitlines()]
        return sorted((record for record in records if record.get("JobName") == run_id),
                      key=lambda record: int(record["JobId"]))

    def squeue(self, run_id: str) -> str:
        return subprocess.run(
            ["squeue", "--states=all", f"--name={run_id}",
             "--Format=JobID:6,Comment:46,Partition:6,State:10,NumCPUs:5,NumNodes:6,NodeList:14,MinMemory:8,"
             "TimeLimit:11,tres-per-job:11,SubmitTime:20,StartTime:20,EndTime:20"],
            env=self.env, capture_output=True, text=True, check=True,
        ).stdout

    def completion_records(self) -> dict[str, dict[str, str]]:
        """JobId -> the fields of slurmctld's job completion log (jobcomp/filetxt)."""
        lines = (self.state / "log" / "jobcomp.txt").read_text().splitlines()
        return {record["JobId"]: record for record in map(fields, lines) if "JobId" in record}

    def completion_log(self) -> dict[str, str]:
        """JobId -> JobState from slurmctld's job completion log."""
        return {job: record.get("JobState", "") for job, record in self.completion_records().items()}


@contextmanager
def running_cluster(state: Path, start_script: str, run_dir: str, *check_args: str) -> Iterator[Cluster]:
    """A test cluster from tests/e2e/slurm/START_SCRIPT, skipped (or failed, when REQUIRED) where
    it cannot run, stopped by tests/e2e/slurm/stop.sh RUN_DIR afterwards."""
    reason = unavailable(*check_args)
    if reason:
        if REQUIRED:
            pytest.fail(f"NLFLOW_REQUIRE_SLURM=1 but no test cluster can run: {reason}")
        pytest.skip(reason)
    started = time.monotonic()
    start = subprocess.run(["bash", str(SLURM_SCRIPTS / start_script), str(state), *profile_partitions()],
                           capture_output=True, text=True, timeout=240)
    print(start.stdout, start.stderr, f"cluster up in {time.monotonic() - started:.1f} s", sep="\n")
    try:
        assert start.returncode == 0, f"tests/e2e/slurm/{start_script} failed:\n{start.stdout}\n{start.stderr}"
        yield Cluster(state, dict(os.environ, SLURM_CONF=str(state / "slurm.conf")))
    finally:
        stop = subprocess.run(["bash", str(SLURM_SCRIPTS / "stop.sh"), run_dir], capture_output=True, text=True,
                              timeout=120)
        print(stop.stdout, stop.stderr)
        assert stop.returncode == 0, f"tests/e2e/slurm/stop.sh could not stop the cluster:\n{stop.stdout}\n{stop.stderr}"


@dataclass
class Run:
    result: subprocess.CompletedProcess
    run_id: str
    seconds: float

    @property
    def output(self) -> str:
        return self.result.stdout + self.result.stderr


def snakemake_command(workdir: Path, *args: str, timeout_s: int = SNAKEMAKE_TIMEOUT_S) -> list[str]:
    """What a user types on a login node (`snakemake --profile profiles/slurm ...`) + SLURM_TEST_OPTIONS,
    wrapped in `timeout -k`."""
    return [
        "timeout", "-k", "10", str(timeout_s),
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
        "--configfile", str(workdir / "config.yaml"), "--profile", str(PROFILE), *SLURM_TEST_OPTIONS, *args,
    ]


def snakemake_slurm(cluster: Cluster, workdir: Path, *targets: str,
                    watch: Callable[[], None] | None = None, timeout_s: int = SNAKEMAKE_TIMEOUT_S) -> Run:
    """Run Snakemake through the profile until it exits; ``watch`` is called about twice a second
    meanwhile (to look at, or interfere with, the jobs while they run)."""
    started = time.monotonic()
    # Files, not pipes: nobody reads a pipe while ``watch`` runs, and a full one would stall Snakemake.
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(snakemake_command(workdir, *targets, timeout_s=timeout_s), cwd=workdir,
                                env=cluster.env, stdout=out, stderr=err, text=True)
        try:
            while proc.poll() is None and time.monotonic() - started < timeout_s + 30:
                if watch is not None:
                    watch()
                time.sleep(0.5)
        finally:
            if proc.poll() is None:  # `timeout -k` should have ended it: it is the backstop
                proc.kill()
            proc.wait()
        out.seek(0)
        err.seek(0)
        result = subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), err.read())
    run = Run(result, "", time.monotonic() - started)
    assert result.returncode == 0, f"snakemake exited {result.returncode} after {run.seconds:.0f} s:\n{run.output[-6000:]}"
    match = re.search(r"SLURM run ID: (\S+)", run.output)
    assert match, run.output[-3000:]
    run.run_id = match.group(1)
    return run


def rule_of(job: dict[str, str]) -> str:
    """The rule name from the job comment the plugin sets (`rule_NAME` or `rule_NAME_wildcards_...`)."""
    return job["Comment"].removeprefix("rule_").split("_wildcards_")[0]


def job_log(workdir: Path, job: dict[str, str]) -> Path:
    """The plugin's per-job log: .snakemake/slurm_logs/rule_NAME/[WILDCARDS/]JOBID.log"""
    logs = list((workdir / ".snakemake" / "slurm_logs").glob(f"rule_{rule_of(job)}/**/{job['JobId']}.log"))
    assert len(logs) == 1, (job["JobId"], logs)
    return logs[0]


def assert_all_completed(cluster: Cluster, jobs: list[dict[str, str]], workdir: Path) -> None:
    completed = cluster.completion_log()
    for job in jobs:
        assert job["JobState"] == "COMPLETED" and job["ExitCode"] == "0:0", job
        assert completed.get(job["JobId"]) == "COMPLETED", (job["JobId"], completed)
        assert f"rule {rule_of(job)}:" in job_log(workdir, job).read_text(), job["JobId"]
