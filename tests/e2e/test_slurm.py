"""The SLURM profile against a real SLURM: Debian's slurm-wlm + munge as a single-node cluster on
127.0.0.1 (tests/e2e/slurm/start.sh), demo targets run with `snakemake --profile profiles/slurm`.

The profile is used unchanged; the command line adds only what this test cluster needs (see
SLURM_TEST_OPTIONS). The evidence that rules ran as SLURM jobs is slurmctld's own job records
(`scontrol show job`, also what `squeue --states=all` lists), its job-completion log and the
plugin's per-job logs; `sacct` cannot answer here because the cluster has no slurmdbd.

Skips when SLURM, munge, root or the Snakemake plugin is missing, unless NLFLOW_REQUIRE_SLURM=1
(set by .ci/run after it installed them): then it fails instead.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from helpers.e2e import REPO, demo_config, write_config

pytestmark = pytest.mark.e2e

SLURM_SCRIPTS = REPO / "tests" / "e2e" / "slurm"
PROFILE = REPO / "profiles" / "slurm"
REQUIRED = os.environ.get("NLFLOW_REQUIRE_SLURM") == "1"

# Command-line additions to the profile that this cluster, not a real site, needs:
SLURM_TEST_OPTIONS = [
    # No slurmdbd here, so `sacct` fails, yet the plugin picks it whenever the binary exists;
    # squeue sees finished jobs for MinJobAge = 300 s (tests/e2e/slurm/slurm.conf.in).
    "--slurm-status-command", "squeue",
    # The plugin's status-check interval: 40 s by default (sized for busy clusters), growing by
    # 10 s per check that finds nothing finished; most jobs here take 6-9 s. MinJobAge 300 >= 3 x 10,
    # as the plugin asks for squeue-based status.
    "--slurm-init-seconds-before-status-checks", "10",
    # The plugin deletes the logs of successful jobs; they are part of the evidence below.
    "--slurm-keep-successful-logs",
]
# A lost job makes Snakemake wait for ever, and it ignores SIGTERM while it waits: hence -k.
SNAKEMAKE_TIMEOUT_S = 300

# The demo, smaller and with a 2-iteration training that asks for one GPU: train.gpus only sets
# the rule's `gpu` resource (the SLURM request); without CUDA the job trains on the CPU.
TEST_CONFIG = demo_config(
    demo={"clips_per_group": 1},
    train={
        "gpus": 1, "max_iter": 2, "batch_size": 2, "lr_steps": [0], "lr_relative": [1.0], "warmup_iters": 0,
        "checkpoint_period": 2, "log_period": 1, "val_period": 0, "val_videos": 2, "precise_bn_iters": 0,
        "num_workers": 0,
    },
)


def profile() -> dict:
    return yaml.safe_load((PROFILE / "config.yaml").read_text())


def profile_partitions() -> list[str]:
    """The partitions the profile names, its default first: the test cluster gets exactly these."""
    config = profile()
    names = [config["default-resources"]["slurm_partition"]]
    for resources in (config.get("set-resources") or {}).values():
        name = resources.get("slurm_partition")
        if name and name not in names:
            names.append(name)
    return names


def unavailable() -> str | None:
    check = subprocess.run(["bash", str(SLURM_SCRIPTS / "check.sh")], capture_output=True, text=True)
    if check.returncode != 0:
        return (check.stdout + check.stderr).strip()
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm is not installed (pip install -e '.[test]')"
    return None


@dataclass
class Cluster:
    state: Path
    env: dict[str, str]

    def jobs(self, run_id: str) -> list[dict[str, str]]:
        """slurmctld's records of one Snakemake run's jobs (job name = the plugin's run ID)."""
        # --details adds JOB_GRES, the generic resources actually allocated to the job.
        out = subprocess.run(["scontrol", "--details", "--oneliner", "show", "job"], env=self.env,
                             capture_output=True, text=True, check=True).stdout
        records = []
        for line in out.splitlines():
            record = dict(field.split("=", 1) for field in line.split() if "=" in field)
            if record.get("JobName") == run_id:
                records.append(record)
        return sorted(records, key=lambda record: int(record["JobId"]))

    def squeue(self, run_id: str) -> str:
        return subprocess.run(
            ["squeue", "--states=all", f"--name={run_id}",
             "--Format=JobID:6,Comment:46,Partition:6,State:10,NumCPUs:5,MinMemory:8,TimeLimit:11,tres-per-job:11,"
             "SubmitTime:20,StartTime:20,EndTime:20"],
            env=self.env, capture_output=True, text=True, check=True,
        ).stdout

    def completion_log(self) -> dict[str, str]:
        """JobId -> JobState from slurmctld's job completion log (jobcomp/filetxt)."""
        text = (self.state / "log" / "jobcomp.txt").read_text()
        return dict(re.findall(r"JobId=(\d+) .*?JobState=(\S+)", text))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = unavailable()
    if reason:
        if REQUIRED:
            pytest.fail(f"NLFLOW_REQUIRE_SLURM=1 but no test cluster can run: {reason}")
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("slurm_state")
    started = time.monotonic()
    start = subprocess.run(["bash", str(SLURM_SCRIPTS / "start.sh"), str(state), *profile_partitions()],
                           capture_output=True, text=True, timeout=240)
    print(start.stdout, start.stderr, f"cluster up in {time.monotonic() - started:.1f} s", sep="\n")
    try:
        assert start.returncode == 0, f"tests/e2e/slurm/start.sh failed:\n{start.stdout}\n{start.stderr}"
        yield Cluster(state, dict(os.environ, SLURM_CONF=str(state / "slurm.conf")))
    finally:
        stop = subprocess.run(["bash", str(SLURM_SCRIPTS / "stop.sh")], capture_output=True, text=True, timeout=120)
        print(stop.stdout, stop.stderr)
        assert stop.returncode == 0, f"tests/e2e/slurm/stop.sh could not stop the daemons:\n{stop.stdout}\n{stop.stderr}"


@dataclass
class Run:
    result: subprocess.CompletedProcess
    run_id: str
    seconds: float


def snakemake_slurm(cluster: Cluster, workdir: Path, *targets: str) -> Run:
    """What a user types on a login node (`snakemake --profile profiles/slurm TARGET`) + SLURM_TEST_OPTIONS."""
    command = [
        "timeout", "-k", "10", str(SNAKEMAKE_TIMEOUT_S),
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
        "--configfile", str(workdir / "config.yaml"), "--profile", str(PROFILE), *SLURM_TEST_OPTIONS, *targets,
    ]
    started = time.monotonic()
    result = subprocess.run(command, cwd=workdir, env=cluster.env, capture_output=True, text=True,
                            timeout=SNAKEMAKE_TIMEOUT_S + 30)
    seconds = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"snakemake exited {result.returncode} after {seconds:.0f} s:\n{output[-6000:]}"
    match = re.search(r"SLURM run ID: (\S+)", output)
    assert match, output[-3000:]
    return Run(result, match.group(1), seconds)


def rule_of(job: dict[str, str]) -> str:
    """The rule name from the job comment the plugin sets (`rule_NAME` or `rule_NAME_wildcards_...`)."""
    return job["Comment"].removeprefix("rule_").split("_wildcards_")[0]


def assert_all_completed(cluster: Cluster, jobs: list[dict[str, str]], workdir: Path) -> None:
    completed = cluster.completion_log()
    for job in jobs:
        assert job["JobState"] == "COMPLETED" and job["ExitCode"] == "0:0", job
        assert completed.get(job["JobId"]) == "COMPLETED", (job["JobId"], completed)
        # The plugin's per-job log: .snakemake/slurm_logs/rule_NAME/[WILDCARDS/]JOBID.log
        logs = list((workdir / ".snakemake" / "slurm_logs").glob(f"rule_{rule_of(job)}/**/{job['JobId']}.log"))
        assert logs and f"rule {rule_of(job)}:" in logs[0].read_text(), (job["JobId"], logs)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("slurm_demo")
    write_config(workdir, TEST_CONFIG)
    return workdir


@pytest.fixture(scope="module")
def cpu_run(cluster, workdir):
    run = snakemake_slurm(cluster, workdir, "lists", "weights")
    print(f"`lists weights` through SLURM: {run.seconds:.1f} s\n{cluster.squeue(run.run_id)}")
    return run


def test_cpu_rules_run_as_slurm_jobs(cluster, workdir, cpu_run):
    lists = workdir / "results" / "lists" / "split1"
    for name in ("train.txt", "val.txt", "test.txt", "classes.txt"):
        assert (lists / name).stat().st_size > 0
    assert (workdir / "results" / "weights" / "init.pt").stat().st_size > 0

    jobs = cluster.jobs(cpu_run.run_id)
    rules = sorted(rule_of(job) for job in jobs)
    # One SLURM job per rule instance; the target rules `lists` and `weights` run on the login node.
    assert rules == sorted(["make_demo_dataset", "download_dataset", "download_dataset", "extract_dataset",
                            "extract_dataset", "make_lists", "make_demo_weights", "clean_weights"]), rules
    assert_all_completed(cluster, jobs, workdir)

    default_partition = profile()["default-resources"]["slurm_partition"]
    set_threads = profile().get("set-threads") or {}
    for job in jobs:
        assert job["Partition"] == default_partition, job
        assert job.get("TresPerJob", "(null)") in ("(null)", ""), job  # no GPU for CPU rules
        # threads -> --cpus-per-task: 1 for single-threaded rules, the profile's set-threads else.
        assert job["NumCPUs"] == str(set_threads.get(rule_of(job), 1)), job
    # mem_mb -> --mem and runtime (minutes) -> -t, from the rule itself (rules/lists.smk: 1000, 10).
    make_lists = next(job for job in jobs if rule_of(job) == "make_lists")
    assert make_lists["MinMemoryNode"] == "1000M" and make_lists["TimeLimit"] == "00:10:00", make_lists


def test_gpu_rule_gets_a_gpu_in_the_gpu_partition(cluster, workdir, cpu_run):
    # train's inputs (the LMDB stores) are made without SLURM: the CPU rules' path through SLURM is
    # covered above, and this keeps the test short.
    local = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
         "--configfile", str(workdir / "config.yaml"), "--cores", "2", "lmdb"],
        capture_output=True, text=True, timeout=300,
    )
    assert local.returncode == 0, local.stderr[-4000:]

    run = snakemake_slurm(cluster, workdir, "train")
    print(f"`train` through SLURM: {run.seconds:.1f} s\n{cluster.squeue(run.run_id)}")
    assert (workdir / "results" / "train" / "model_final.pt").stat().st_size > 0

    jobs = cluster.jobs(run.run_id)
    assert [rule_of(job) for job in jobs] == ["train"], jobs
    assert_all_completed(cluster, jobs, workdir)
    train = jobs[0]
    gpu_partition = profile()["set-resources"]["train"]["slurm_partition"]
    assert train["Partition"] == gpu_partition, train
    # The rule's `gpu` resource (train.gpus x train.nodes = 1) became `sbatch --gpus=1`, and
    # Slurm allocated the node's (fake) GPU to the job.
    assert train["TresPerJob"] == "gres:gpu:1" and train["JOB_GRES"] == "gpu:1", train
    assert train["NumCPUs"] == str(profile()["set-threads"]["train"]), train
    assert train["MinMemoryNode"] == "16000M", train  # rules/train.smk: mem_mb=16000


def test_evaluate_is_planned_with_a_gpu_in_the_gpu_partition(cluster, workdir):
    """evaluate is not run here (30 views x every test video on the CPU); a dry run shows the
    resources the profile gives it, which the plugin turns into the same sbatch options as train's."""
    dry = subprocess.run(
        ["timeout", "-k", "10", "120", sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
         "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"), "--profile", str(PROFILE),
         *SLURM_TEST_OPTIONS, "--dry-run", "evaluate"],
        cwd=workdir, env=cluster.env, capture_output=True, text=True, timeout=150,
    )
    output = dry.stdout + dry.stderr
    assert dry.returncode == 0, output[-3000:]
    block = output[output.index("rule evaluate:"):]
    resources = block[block.index("resources:"):].splitlines()[0]
    gpu_partition = profile()["set-resources"]["evaluate"]["slurm_partition"]
    assert f"slurm_partition={gpu_partition}" in resources and "gpu=1" in resources.split(", "), resources
