"""Multi-node training for real: the SLURM profile, unchanged, on a two-node SLURM made of two
network namespaces on this machine (tests/e2e/slurm/start_two_nodes.sh: nodes nlfnode1 and
nlfnode2, each with its own address and host name, slurmctld on the machine itself), the demo's
train rule with `train.nodes: 2, train.gpus: 1` (one gloo CPU process per node).

1. The train job gets both nodes (slurmctld's job record and completion log; the job step that
   runs torchrun, captured while it ran, spans both) and trains as rank 0 on nlfnode1 and rank 1
   on nlfnode2 (the training log).
2. Its weights equal those of the same run as 1 node x 2 processes (torchrun --standalone, as
   `train.gpus: 2` runs it) within float noise: frozen BN and no dropout, so nothing depends on
   how the global batch is split.
3. A training process killed on nlfnode2 mid-run ends the job, within KILL_BOUND_S, with one line
   naming the rank and the node; the same command (the profile's one retry) resumes from the
   newest checkpoint and finishes with the uninterrupted run's weights. The job's rendezvous port,
   taken on nlfnode1 by a listener of this test, is replaced by a free one.

Skips when SLURM, munge, root, network namespaces or the Snakemake plugin are missing, unless
NLFLOW_REQUIRE_SLURM=1 (set by .ci/run after it installed them): then it fails instead.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import torch

from nlflow.models import read_checkpoint
from nlflow.train.job import launch_arguments
from nlflow.train.launch import plan_launch, rendezvous_port, run_plan

from helpers.e2e import demo_config, snakemake, write_config
from helpers.slurm import SLURM_SCRIPTS, fields, job_log, running_cluster, snakemake_slurm

# Under load (other test suites on the 2 cores) one train job here took up to 2 minutes, and
# the killed run is two of them plus Snakemake's status checks: more than the default 900 s per test.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]
# Each Snakemake run through SLURM, wrapped in `timeout -k` (helpers.slurm.snakemake_slurm).
SNAKEMAKE_TIMEOUT_S = 600

RUN_DIR = Path("/run/nlflow-slurm-two-nodes")  # start_two_nodes.sh keeps the daemons' PIDs there
NODES = ["nlfnode1", "nlfnode2"]
MAX_ITER = 24
# The demo network, smaller data, no dropout and frozen BN (the weights must not depend on how
# the global batch of 2 is split over the processes), a checkpoint every 2 iterations.
TEST_CONFIG = demo_config(
    demo={"clips_per_group": 1, "num_frames": 48},  # plumbing, not learning: short videos
    model={"frozen_bn": True, "dropout": 0.0},
    train={
        "gpus": 1, "nodes": 2, "max_iter": MAX_ITER, "batch_size": 2, "lr_steps": [0], "lr_relative": [1.0],
        "warmup_iters": 0, "checkpoint_period": 2, "keep_checkpoints": 2, "log_period": 1, "val_period": 0,
        "val_videos": 2, "precise_bn_iters": 0, "num_workers": 0,
    },
)
# The most a dead training process may take to end its job (a hang detector, not a speed test):
# its torchrun notices the death, srun --kill-on-bad-exit then stops the other node's task
# (SIGKILL after KillWait: 5 s on this cluster, 30 s by SLURM's default), and the job's Snakemake
# writes the error and exits. docs/cluster.md states it; measured 12.5 s (2026-12-03, load 8-18).
KILL_BOUND_S = 120
# Float summation order only, with the same threads per process (3.0e-8 on an Intel Xeon, 0 on
# an AMD EPYC, 2026-12-03).
WEIGHT_TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running_cluster(tmp_path_factory.mktemp("slurm_two_nodes_state"), "start_two_nodes.sh", str(RUN_DIR),
                         "--two-nodes") as cluster:
        yield cluster


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, cluster):
    """The demo folder with everything train needs, made without SLURM (the CPU rules' path through
    SLURM is tests/e2e/test_slurm.py's)."""
    workdir = tmp_path_factory.mktemp("slurm_two_nodes_demo")
    config = write_config(workdir, TEST_CONFIG)
    local = snakemake(workdir, config, "lmdb", "weights", timeout=600)
    assert local.returncode == 0, local.stderr[-4000:]
    return workdir


def train_log(workdir: Path) -> str:
    return (workdir / "results" / "logs" / "train.log").read_text()


def run_folder(workdir: Path) -> Path:
    (folder,) = (workdir / "results" / "train" / "checkpoints").iterdir()
    return folder


def state_dict(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["state_dict"]


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())


class StepRecorder:
    """slurmctld's records of the running job steps (`scontrol show step`), sampled while Snakemake runs."""

    def __init__(self, cluster):
        self.cluster, self.steps = cluster, {}

    def __call__(self) -> None:
        out = subprocess.run(["scontrol", "--oneliner", "show", "step"], env=self.cluster.env, capture_output=True,
                             text=True).stdout
        for record in map(fields, out.splitlines()):
            if "StepId" in record:
                self.steps[record["StepId"]] = record


@pytest.fixture(scope="module")
def two_node_run(cluster, workdir):
    steps = StepRecorder(cluster)
    run = snakemake_slurm(cluster, workdir, "train", watch=steps, timeout_s=SNAKEMAKE_TIMEOUT_S)
    print(f"`train` on 2 nodes through SLURM: {run.seconds:.1f} s\n{cluster.squeue(run.run_id)}")
    (job,) = cluster.jobs(run.run_id)
    model = workdir / "results" / "train" / "model_final.pt"
    return {"run": run, "job": job, "steps": steps.steps, "log": train_log(workdir), "weights": state_dict(model),
            "settings": (run_folder(workdir) / "settings.json").read_text()}


def test_one_train_job_trains_on_both_nodes(cluster, workdir, two_node_run):
    job = two_node_run["job"]
    assert job["JobState"] == "COMPLETED" and job["ExitCode"] == "0:0", job
    # The rule's resources became `sbatch --nodes=2 --gpus=2`, and SLURM gave the job both nodes,
    # one fake GPU on each.
    assert job["NumNodes"] == "2" and job["NodeList"] == "nlfnode[1-2]" and job["BatchHost"] == "nlfnode1", job
    assert job["TresPerJob"] == "gres:gpu:2" and job["JOB_GRES"] == "gpu:2", job
    completion = cluster.completion_records()[job["JobId"]]
    assert completion["JobState"] == "COMPLETED" and completion["NodeCnt"] == "2", completion
    assert completion["NodeList"] == "nlfnode[1-2]", completion
    # The training step, seen while it ran: srun's torchrun step, one task on each node.
    torchrun_steps = [step for step in two_node_run["steps"].values()
                      if step["StepId"].startswith(job["JobId"] + ".") and step["Name"] == "torchrun"]
    assert len(torchrun_steps) == 1, two_node_run["steps"]
    step = torchrun_steps[0]
    assert step["NodeList"] == "nlfnode[1-2]" and step["Nodes"] == "2" and step["Tasks"] == "2", step

    log = two_node_run["log"]
    assert "training with 2 nodes x 1 training processes (2 in all, gloo on cpu)" in log
    port = rendezvous_port(job["JobId"], {})
    launching = next(line for line in log.splitlines() if "launching: " in line)
    assert launching.split("launching: ")[1].startswith("srun --overlap --nodes=2 --ntasks-per-node=1"), launching
    assert f"--rdzv-endpoint nlfnode1:{port} --rdzv-id {job['JobId']}" in launching, launching
    # Every rank reports its host name to rank 0: two processes on two different machines.
    assert "2 processes on 2 host(s): rank 0 on nlfnode1, rank 1 on nlfnode2" in log
    assert f"{MAX_ITER} iterations" in log and "weights identical on all 2 processes" in log
    assert read_checkpoint(workdir / "results" / "train" / "model_final.pt")["extra"]["iterations"] == MAX_ITER


def test_two_nodes_end_with_the_weights_of_one_node_with_two_processes(workdir, two_node_run, tmp_path):
    """The same settings file and inputs, trained by 2 gloo processes on this machine the way
    `train.gpus: 2, train.nodes: 1` runs them (torchrun --standalone)."""
    one_node = tmp_path / "one_node"
    one_node.mkdir()
    (one_node / "settings.json").write_text(two_node_run["settings"])
    results = workdir / "results"
    arguments = launch_arguments(one_node, str(results / "lmdb" / "split1" / "train.lmdb"),
                                 str(results / "lmdb" / "split1" / "val.lmdb"), str(results / "weights" / "init.pt"),
                                 str(results / "lists" / "split1" / "classes.txt"))
    # The same intra-op threads per process as on each node: on an AMD EPYC (2026-12-03) one
    # thread instead of two changed these weights by 6.4e-4 (oneDNN's summation order), on an
    # Intel Xeon by 3e-8.
    per_process = int(re.search(r"on cpu \((\d+) threads each\)", two_node_run["log"]).group(1))
    plan = plan_launch(2, 1, arguments, cuda_devices=0, environ=os.environ, threads=2 * per_process)
    assert "--standalone" in plan.command and plan.world_size == 2
    lines: list[str] = []
    run_plan(plan, relay=lines.append)
    assert any("2 processes on 1 host(s)" in line for line in lines), lines[-20:]
    one = state_dict(one_node / "model_final.pt")
    init = state_dict(results / "weights" / "init.pt")
    assert any(not torch.equal(one[k], init[k]) for k in one if k in init)  # it trained
    worst = max_difference(one, two_node_run["weights"])
    print(f"2 nodes x 1 process vs 1 node x 2 processes: max |weight difference| {worst:.3g}")
    assert worst <= WEIGHT_TOLERANCE, worst


# ----------------------------------------------------------------------------- faults

def training_process(node: str, rank: int) -> int | None:
    """The PID of the training process of ``rank`` on ``node``: a process in that node's network
    namespace (its slurmd's; job processes are not the slurmd's descendants, slurmstepd
    double-forks), started by torchrun (which sets RANK and LOCAL_RANK), running nlflow.train."""
    slurmd = (RUN_DIR / f"slurmd-{node}.pid").read_text().strip()
    node_net = os.readlink(f"/proc/{slurmd}/ns/net")
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if os.readlink(proc / "ns" / "net") != node_net:
                continue
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            environ = set((proc / "environ").read_bytes().split(b"\0"))
        except OSError:
            continue
        if b"nlflow.train" in cmdline and f"RANK={rank}".encode() in environ and b"LOCAL_RANK=0" in environ:
            return int(proc.name)
    return None


class Killer:
    """Kills the training process of rank 1 on nlfnode2 (SIGKILL, as the kernel's out-of-memory
    killer or a crash would end it) once the run has written a checkpoint."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.killed_at: float | None = None
        self.checkpoint: str | None = None

    def __call__(self) -> None:
        if self.killed_at is not None:
            return
        checkpoints = sorted(self.workdir.glob("results/train/checkpoints/*/checkpoints/iter_*.pt"))
        if not checkpoints:
            return
        pid = training_process("nlfnode2", rank=1)
        if pid is None:
            return
        os.kill(pid, signal.SIGKILL)
        self.killed_at, self.checkpoint = time.time(), checkpoints[-1].name


def next_job_id(cluster) -> int:
    """The id slurmctld gives the next job: one above every job it knows or has finished."""
    known = [int(job) for job in cluster.completion_records()]
    out = subprocess.run(["scontrol", "--oneliner", "show", "job"], env=cluster.env, capture_output=True,
                         text=True).stdout
    known += [int(record["JobId"]) for record in map(fields, out.splitlines()) if "JobId" in record]
    return max(known, default=0) + 1


LISTEN = """\
import socket, sys, time
held = []
for port in map(int, sys.argv[1:]):
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a finished job's port may be in TIME_WAIT
    sock.bind(("0.0.0.0", port))
    sock.listen()
    held.append(sock)
print("listening", flush=True)
time.sleep(3600)
"""


@pytest.fixture
def ports_taken_on_nlfnode1(cluster):
    """A program on nlfnode1 listening on the rendezvous ports of the next 3 jobs, as another job's
    rendezvous or a service would."""
    first = next_job_id(cluster)
    ports = [rendezvous_port(str(job), {}) for job in range(first, first + 3)]
    listener = subprocess.Popen(["bash", str(SLURM_SCRIPTS / "on_node.sh"), "nlfnode1", sys.executable, "-c", LISTEN,
                                 *map(str, ports)], stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline().strip() == "listening"
        yield ports
    finally:
        listener.terminate()  # on_node.sh execs nsenter, which execs python: this PID is the listener
        listener.wait(timeout=30)


def test_a_killed_process_ends_the_job_with_one_line_and_the_same_command_resumes(
        cluster, workdir, two_node_run, ports_taken_on_nlfnode1):
    shutil.rmtree(workdir / "results" / "train")  # start over: same settings, same run folder name
    killer = Killer(workdir)
    run = snakemake_slurm(cluster, workdir, "train", watch=killer, timeout_s=SNAKEMAKE_TIMEOUT_S)
    print(f"`train` on 2 nodes, killed and retried: {run.seconds:.1f} s\n{cluster.squeue(run.run_id)}")
    assert killer.killed_at is not None, "the training finished before the test could kill a process"

    failed, resumed = cluster.jobs(run.run_id)  # the profile's `retries: 1` resubmitted the job
    assert failed["JobState"] == "FAILED" and failed["NumNodes"] == "2", failed
    assert resumed["JobState"] == "COMPLETED" and resumed["NumNodes"] == "2", resumed
    ended = datetime.fromisoformat(failed["EndTime"]).timestamp()
    print(f"the killed job ended {ended - killer.killed_at:.1f} s after the kill (EndTime, 1 s resolution)")
    assert ended - killer.killed_at <= KILL_BOUND_S, (failed["EndTime"], killer.killed_at)

    # One line ends the job, naming rank and node, and what running it again does.
    failed_log = job_log(workdir, failed).read_text()
    errors = [line for line in failed_log.splitlines() if "train failed:" in line]
    assert len(errors) == 1, failed_log[-6000:]
    match = re.search(r"ERROR nlflow: train failed: training with 2 processes failed \(srun/torchrun exit status \d+\): "
                      r"rank 1 on nlfnode2 was killed by SIGKILL; running the train job again resumes from its newest "
                      r"checkpoint, iteration (\d+) \((\S+)\)$", errors[0])
    assert match, errors[0]
    iteration = int(match.group(1))
    assert int(killer.checkpoint[5:13]) <= iteration < MAX_ITER, (killer.checkpoint, errors[0])

    # The retry resumed there and trained to the end, to the uninterrupted run's weights.
    resumed_log = job_log(workdir, resumed).read_text()
    assert re.search(rf"resuming from \S+/{Path(match.group(2)).name} at iteration {iteration}$", resumed_log,
                     re.MULTILINE), resumed_log[-4000:]
    assert "2 processes on 2 host(s): rank 0 on nlfnode1, rank 1 on nlfnode2" in resumed_log
    worst = max_difference(state_dict(workdir / "results" / "train" / "model_final.pt"), two_node_run["weights"])
    print(f"killed at {killer.checkpoint}, resumed at iteration {iteration}: max |weight difference| {worst:.3g}")
    assert worst <= WEIGHT_TOLERANCE, worst

    # The rendezvous port of each job was taken on nlfnode1: each job warned and used a free one.
    for job, log in ((failed, failed_log), (resumed, resumed_log)):
        port = rendezvous_port(job["JobId"], {})
        assert port in ports_taken_on_nlfnode1, (job["JobId"], ports_taken_on_nlfnode1)
        warning = re.search(rf"rendezvous port {port} on nlfnode1 is already in use \(another job or service listens "
                            r"there\): using port (\d+) instead", log)
        assert warning, log[-4000:]
        chosen = int(warning.group(1))
        assert chosen not in ports_taken_on_nlfnode1 and f"--rdzv-endpoint nlfnode1:{chosen} " in log
