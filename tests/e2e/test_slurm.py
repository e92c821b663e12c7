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

import subprocess
import sys

import pytest

from helpers.e2e import REPO, demo_config, write_config
from helpers.slurm import (
    PROFILE,
    SLURM_TEST_OPTIONS,
    assert_all_completed,
    profile,
    rule_of,
    running_cluster,
    snakemake_slurm,
)

# The cluster's start and a Snakemake run (up to helpers.slurm.SNAKEMAKE_TIMEOUT_S) can share one
# test's setup: more than the default 900 s per test under load.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

# The demo, smaller and with a 2-iteration training that asks for one GPU: train.gpus only sets
# the rule's `gpu` resource (the SLURM request); without CUDA the job trains on the CPU.
TEST_CONFIG = demo_config(
    demo={"clips_per_group": 1, "num_frames": 48},  # plumbing, not learning: short videos
    train={
        "gpus": 1, "max_iter": 2, "batch_size": 2, "lr_steps": [0], "lr_relative": [1.0], "warmup_iters": 0,
        "checkpoint_period": 2, "log_period": 1, "val_period": 0, "val_videos": 2, "precise_bn_iters": 0,
        "num_workers": 0,
    },
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running_cluster(tmp_path_factory.mktemp("slurm_state"), "start.sh", "/run/nlflow-slurm-test") as cluster:
        yield cluster


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
    # A hang backstop: the dry run ran past 120 s at load average 20 on the 2-core machine (2026-12-03).
    dry = subprocess.run(
        ["timeout", "-k", "10", "300", sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
         "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"), "--profile", str(PROFILE),
         *SLURM_TEST_OPTIONS, "--dry-run", "evaluate"],
        cwd=workdir, env=cluster.env, capture_output=True, text=True, timeout=330,
    )
    output = dry.stdout + dry.stderr
    assert dry.returncode == 0, output[-3000:]
    block = output[output.index("rule evaluate:"):]
    resources = block[block.index("resources:"):].splitlines()[0]
    gpu_partition = profile()["set-resources"]["evaluate"]["slurm_partition"]
    assert f"slurm_partition={gpu_partition}" in resources and "gpu=1" in resources.split(", "), resources
