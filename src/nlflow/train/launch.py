"""How the train stage starts its processes: in this process, under torchrun, or under srun + torchrun.

``train.gpus`` is the number of training processes per node (one per GPU) and ``train.nodes`` the
number of nodes of one SLURM allocation:

* ``gpus`` 0 or 1 and ``nodes`` 1: the training loop runs in the calling process (no launcher);
* ``gpus`` N > 1 and ``nodes`` 1: ``torchrun --standalone --nproc-per-node N -m nlflow.train ...``;
  on a machine without CUDA that is N gloo CPU processes (the CPU twin of multi-GPU training);
* ``nodes`` M > 1: ``srun --nodes M --ntasks-per-node=1 torchrun --nnodes M --nproc-per-node N
  --rdzv-backend c10d --rdzv-endpoint <first host of the allocation>:<port> --rdzv-id <job id> ...``,
  only inside a SLURM allocation; the port is the job's own unless something already listens
  there (:func:`choose_rendezvous_port`).

``plan_launch`` is pure (environment, device count, host lookup and port probe are arguments) so
every case is unit-tested; ``run_plan`` runs the command, relays its output into this process's
log and turns a failure into one line naming the process that failed (:mod:`nlflow.train.failures`).
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import zlib
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from nlflow.errors import ConfigError, NlflowError
from nlflow.train.distributed import check_sync_bn
from nlflow.train.failures import FailureReport

log = logging.getLogger(__name__)

TRAIN_MODULE = "nlflow.train"
# Rendezvous ports are derived from the SLURM job id so that two jobs sharing a node do not
# collide; the range stays below Linux's ephemeral ports (32768-60999). NLFLOW_RDZV_PORT wins.
_PORT_BASE, _PORT_SPAN = 20000, 10000
# Ports tried after the job's own one when something already listens there.
_PORT_TRIES = 20


class LaunchError(NlflowError):
    """The training processes could not be started or one of them failed."""


@dataclass(frozen=True)
class LaunchPlan:
    """What the train stage runs: ``command`` None means the loop runs in this process."""

    nproc_per_node: int
    nodes: int
    device: str  # "cuda" or "cpu"
    command: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)  # set on top of the current environment
    warnings: list[str] = field(default_factory=list)

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nodes

    @property
    def in_process(self) -> bool:
        return self.command is None

    @property
    def backend(self) -> str:
        if self.world_size == 1:
            return "none"
        return "nccl" if self.device == "cuda" else "gloo"

    def describe(self) -> str:
        if self.in_process:
            return "one training process (in the job's own process)"
        where = f"{self.nodes} nodes x {self.nproc_per_node}" if self.nodes > 1 else f"{self.nproc_per_node}"
        return f"{where} training processes ({self.world_size} in all, {self.backend} on {self.device})"


# ----------------------------------------------------------------------------- helpers

def torchrun_command(python: str | None = None) -> list[str]:
    """The torchrun next to the interpreter (same environment), else ``python -m torch.distributed.run``.

    Both are the same entry point; the module form needs no script on PATH.
    """
    python = python or sys.executable
    found = shutil.which("torchrun", path=os.path.dirname(python))
    return [found] if found else [python, "-m", "torch.distributed.run"]


def split_nodelist(nodelist: str) -> list[str]:
    """Top-level comma-separated items of a SLURM hostlist (commas inside brackets kept)."""
    items, depth, current = [], 0, []
    for char in nodelist:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise ConfigError(f"cannot parse SLURM node list {nodelist!r}: unbalanced ']'")
        if char == "," and depth == 0:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise ConfigError(f"cannot parse SLURM node list {nodelist!r}: unbalanced '['")
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def _expand_item(item: str, whole: str) -> list[str]:
    start = item.find("[")
    if start < 0:
        return [item]
    end = item.find("]", start)
    prefix, body, rest = item[:start], item[start + 1:end], item[end + 1:]
    values: list[str] = []
    for part in body.split(","):
        m = _RANGE.match(part.strip())
        if not m:
            raise ConfigError(f"cannot parse SLURM node list {whole!r}: range {part!r} is not 'a' or 'a-b'")
        low, high = m.group(1), m.group(2) or m.group(1)
        if int(high) < int(low):
            raise ConfigError(f"cannot parse SLURM node list {whole!r}: empty range {part!r}")
        width = len(low)  # SLURM keeps the zero padding of the lower bound
        values += [str(v).zfill(width) for v in range(int(low), int(high) + 1)]
    return [prefix + value + tail for value in values for tail in _expand_item(rest, whole)]


def expand_nodelist(nodelist: str) -> list[str]:
    """Host names of a SLURM hostlist such as ``gpu[01-03,07],login1`` (what ``scontrol show
    hostnames`` prints), for machines where ``scontrol`` is not on PATH."""
    hosts = [host for item in split_nodelist(nodelist) for host in _expand_item(item, nodelist)]
    if not hosts:
        raise ConfigError(f"SLURM node list {nodelist!r} names no host")
    return hosts


def first_host(nodelist: str, environ: Mapping[str, str] | None = None,
               run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> str:
    """The first host of the allocation: ``scontrol show hostnames`` when scontrol is on PATH,
    else nlflow's own parser of the hostlist syntax."""
    environ = os.environ if environ is None else environ
    scontrol = shutil.which("scontrol", path=environ.get("PATH", os.defpath))
    if scontrol is None:
        return expand_nodelist(nodelist)[0]
    try:
        result = run([scontrol, "show", "hostnames", nodelist], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise LaunchError(f"`scontrol show hostnames {nodelist}` failed: {exc}") from exc
    hosts = result.stdout.split()
    if result.returncode != 0 or not hosts:
        raise LaunchError(f"`scontrol show hostnames {nodelist}` failed (exit status {result.returncode}): "
                          f"{(result.stderr or result.stdout).strip()[:300]}")
    return hosts[0]


def job_allocation(job_id: str, environ: Mapping[str, str],
                   run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> tuple[str, str]:
    """The node list and node count of SLURM job ``job_id`` from ``scontrol show job``: for a
    job whose environment lost SLURM_JOB_NODELIST (snakemake-executor-plugin-slurm-jobstep
    starts the job with every SLURM_* variable but the job id removed)."""
    scontrol = shutil.which("scontrol", path=environ.get("PATH", os.defpath))
    if scontrol is None:
        raise ConfigError(f"SLURM job {job_id}: SLURM_JOB_NODELIST is not set and scontrol is not on PATH, so the "
                          "nodes of the allocation are unknown")
    try:
        result = run([scontrol, "--oneliner", "show", "job", job_id], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise LaunchError(f"`scontrol show job {job_id}` failed: {exc}") from exc
    record = dict(item.split("=", 1) for item in result.stdout.split() if "=" in item)
    if result.returncode != 0 or not record.get("NodeList"):
        raise LaunchError(f"`scontrol show job {job_id}` failed (exit status {result.returncode}): "
                          f"{(result.stderr or result.stdout).strip()[:300]}")
    return record["NodeList"], record.get("NumNodes", "")


def rendezvous_port(job_id: str, environ: Mapping[str, str]) -> int:
    if environ.get("NLFLOW_RDZV_PORT"):
        try:
            return int(environ["NLFLOW_RDZV_PORT"])
        except ValueError as exc:
            raise ConfigError(f"NLFLOW_RDZV_PORT must be a port number, got {environ['NLFLOW_RDZV_PORT']!r}") from exc
    number = int(job_id) if job_id.isdigit() else zlib.crc32(job_id.encode())
    return _PORT_BASE + number % _PORT_SPAN


def port_in_use(host: str, port: int, timeout: float = 3.0) -> bool:
    """Whether something on ``host`` already accepts connections on ``port``. A host that cannot be
    reached or resolved counts as free: torchrun then reports that itself."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def choose_rendezvous_port(job_id: str, host: str, environ: Mapping[str, str],
                           in_use: Callable[[str, int], bool] = port_in_use) -> tuple[int, list[str]]:
    """The rendezvous port on ``host`` and what to warn about.

    torchrun's agent on ``host`` listens on the port; where something else already does (another
    job's rendezvous, a service), the agent silently becomes a client of that stranger instead,
    and the job hangs until torchrun's read timeout (60 s) or depends on the other job. So the
    job's own port is probed first: taken, the next free one of the range is used (every node
    gets the port on its command line); NLFLOW_RDZV_PORT taken is an error, since the user chose
    it. (Between the probe and torchrun's start another program could still take the port.)
    """
    port = rendezvous_port(job_id, environ)
    if not in_use(host, port):
        return port, []
    if environ.get("NLFLOW_RDZV_PORT"):
        raise LaunchError(f"rendezvous port {port} on {host} (NLFLOW_RDZV_PORT) is already in use: set "
                          "NLFLOW_RDZV_PORT to a free port, or unset it to let nlflow pick one")
    for step in range(1, _PORT_TRIES + 1):
        candidate = _PORT_BASE + (port - _PORT_BASE + step) % _PORT_SPAN
        if not in_use(host, candidate):
            return candidate, [f"rendezvous port {port} on {host} is already in use (another job or service "
                               f"listens there): using port {candidate} instead"]
    raise LaunchError(f"rendezvous port {port} on {host} and the {_PORT_TRIES} ports after it are all in use: "
                      "set NLFLOW_RDZV_PORT to a free port")


def threads_per_process(total_threads: int, nproc_per_node: int) -> int:
    """Intra-op threads of each process, so N processes on a node share its cores, not N times them."""
    return max(1, int(total_threads) // max(1, nproc_per_node))


# ----------------------------------------------------------------------------- the plan

def _check_counts(gpus: object, nodes: object) -> None:
    """GPU and node counts are whole numbers, at least 0 and 1 (the one place that checks them)."""
    if isinstance(gpus, bool) or not isinstance(gpus, (int, float)) or int(gpus) != gpus or gpus < 0:
        raise ConfigError(f"train.gpus must be an integer >= 0 (processes per node), got {gpus!r}")
    if isinstance(nodes, bool) or not isinstance(nodes, (int, float)) or int(nodes) != nodes or nodes < 1:
        raise ConfigError(f"train.nodes must be an integer >= 1, got {nodes!r}")


def gpus_per_node(job_gpus: int | None, nodes: int | None) -> int:
    """Training processes per node for a job with ``job_gpus`` GPUs in all on ``nodes`` nodes (the
    rule's ``gpu`` resource is SLURM's per-job ``--gpus``: train.gpus x train.nodes)."""
    job_gpus, nodes = job_gpus or 0, nodes or 1
    _check_counts(job_gpus, nodes)
    if job_gpus % nodes:
        raise ConfigError(f"the train job has {job_gpus} GPUs over {nodes} node(s): the GPUs must split evenly "
                          "over the nodes (the rule asks for train.gpus x train.nodes)")
    return int(job_gpus) // int(nodes)


def plan_launch(
    gpus: int,
    nodes: int,
    train_args: Sequence[str],
    *,
    cuda_devices: int,
    environ: Mapping[str, str],
    threads: int,
    torchrun: Sequence[str] | None = None,
    resolve_host: Callable[[str], str] | None = None,
    sync_bn: bool = False,
    in_use: Callable[[str, int], bool] = port_in_use,
) -> LaunchPlan:
    """Decide how training runs.

    ``gpus``: processes per node (the rule's ``train.gpus``); ``nodes``: nodes of the SLURM
    allocation; ``train_args``: the ``python -m nlflow.train`` arguments; ``cuda_devices``: CUDA
    devices visible here (0: no CUDA); ``threads``: cores this job may use on each node;
    ``in_use``: whether a port on a host is taken (the rendezvous port, several nodes only).
    """
    _check_counts(gpus, nodes)
    gpus, nodes = int(gpus), int(nodes)
    nproc = max(gpus, 1)
    world_size = nproc * nodes
    device, warnings = _device(gpus, world_size, cuda_devices, environ)
    check_sync_bn(sync_bn, world_size, use_cuda=device == "cuda")

    if nodes == 1 and nproc == 1:
        return LaunchPlan(nproc_per_node=1, nodes=1, device=device, warnings=warnings)

    torchrun = list(torchrun) if torchrun is not None else torchrun_command()
    env = {
        "OMP_NUM_THREADS": str(threads_per_process(threads, nproc)),
        "PYTHONUNBUFFERED": "1",  # every log line reaches the job's log as it is written
    }
    tail = ["--nproc-per-node", str(nproc), "-m", TRAIN_MODULE, *train_args]
    if nodes == 1:
        # --standalone: a private rendezvous on a free local port (no clash with other jobs).
        return LaunchPlan(nproc, 1, device, [*torchrun, "--standalone", "--nnodes", "1", *tail], env, warnings)

    command, port_warnings = _srun_command(nodes, torchrun, tail, environ, resolve_host, in_use)
    return LaunchPlan(nproc, nodes, device, command, env, warnings + port_warnings)


def _device(gpus: int, world_size: int, cuda_devices: int, environ: Mapping[str, str]) -> tuple[str, list[str]]:
    """Where the processes train ("cuda" or "cpu") and what to warn about; an error when this node
    shows fewer GPUs than ``gpus`` processes need."""
    if cuda_devices == 0:
        if world_size > 1:
            return "cpu", [f"no CUDA device visible: running {world_size} gloo CPU processes instead of GPUs "
                           "(the CPU twin of multi-GPU training; correct but slow)"]
        return "cpu", []
    if max(gpus, 1) > cuda_devices:
        raise ConfigError(
            f"train.gpus = {gpus} asks for {gpus} training processes (one per GPU) per node, but only "
            f"{cuda_devices} CUDA device(s) are visible here (CUDA_VISIBLE_DEVICES="
            f"{environ.get('CUDA_VISIBLE_DEVICES', 'unset')}): lower train.gpus or ask the scheduler for more GPUs")
    return "cuda", []


def _srun_command(nodes: int, torchrun: list[str], tail: list[str], environ: Mapping[str, str],
                  resolve_host: Callable[[str], str] | None,
                  in_use: Callable[[str, int], bool]) -> tuple[list[str], list[str]]:
    """srun + torchrun on every node of this SLURM allocation, meeting at its first host; and
    the warnings about the rendezvous port."""
    job_id = environ.get("SLURM_JOB_ID")
    if not job_id:
        raise ConfigError(
            f"train.nodes = {nodes} needs a SLURM allocation of {nodes} nodes (SLURM_JOB_ID is not set): run the "
            "workflow with the SLURM executor (snakemake --profile profiles/slurm) or set train.nodes to 1")
    nodelist = environ.get("SLURM_JOB_NODELIST") or environ.get("SLURM_NODELIST")
    allocated = environ.get("SLURM_JOB_NUM_NODES") or environ.get("SLURM_NNODES")
    if not nodelist:
        nodelist, allocated = job_allocation(job_id, environ)
    if allocated and allocated.isdigit() and int(allocated) < nodes:
        raise ConfigError(f"train.nodes = {nodes} but this SLURM allocation ({job_id}) has {allocated} node(s)")
    host = (resolve_host or (lambda text: first_host(text, environ)))(nodelist)
    port, warnings = choose_rendezvous_port(job_id, host, environ, in_use)
    command = [
        "srun",
        # Where the job itself runs inside a job step (the SLURM executor's `srun -n1` of a
        # one-node job, a user's own srun), the new step would otherwise wait for the CPUs and
        # GPUs that step holds.
        "--overlap",
        f"--nodes={nodes}",
        "--ntasks-per-node=1",
        f"--ntasks={nodes}",
        "--kill-on-bad-exit=1",
        *torchrun,
        "--nnodes", str(nodes),
        "--rdzv-backend", "c10d",
        "--rdzv-endpoint", f"{host}:{port}",
        "--rdzv-id", str(job_id),
        *tail,
    ]
    return command, warnings


# ----------------------------------------------------------------------------- running it

def _relay(line: str) -> None:
    """Write one line of the children's output, as is, to every handler of the root logger
    (the rule's log file and stderr); their lines already carry time stamps and levels."""
    handlers = [h for h in logging.getLogger().handlers if getattr(h, "stream", None) is not None]
    if not handlers:
        sys.stderr.write(line + "\n")
        return
    for handler in handlers:
        handler.acquire()
        try:
            handler.stream.write(line + "\n")  # type: ignore[attr-defined]
            handler.flush()
        finally:
            handler.release()


_ERROR_LINE = re.compile(r"\sERROR\s+[\w.]+:\s(.*)$")


class _Stopped(Exception):
    pass


def run_plan(plan: LaunchPlan, relay: Callable[[str], None] = _relay) -> None:
    """Run ``plan.command``, streaming its stdout and stderr line by line into ``relay``.

    A non-zero exit becomes one :class:`LaunchError` naming the process that failed (host and
    rank, from torchrun's report) and the last error a training process logged; SIGTERM (a
    cancelled job) is passed on to the launcher, which stops its workers.
    """
    if plan.command is None:
        raise ValueError("an in-process plan has no command to run")
    log.info("launching: %s", shlex.join(plan.command))
    env = dict(os.environ, **plan.env)
    try:
        proc = subprocess.Popen(plan.command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace", bufsize=1)
    except OSError as exc:
        raise LaunchError(f"cannot start {plan.command[0]}: {exc}") from exc

    previous = None
    if threading.current_thread() is threading.main_thread():
        def stop(signum, _frame):
            raise _Stopped(signal.Signals(signum).name)
        previous = signal.signal(signal.SIGTERM, stop)
    last_error, report = None, FailureReport()
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            relay(line)
            report.read(line)
            m = _ERROR_LINE.search(line)
            if m:
                last_error = m.group(1).strip()
        status = proc.wait()
    except _Stopped as stopped:
        raise LaunchError(f"training stopped by {stopped} (the {plan.world_size} processes were told to stop)") from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # torchrun passes it to its workers and waits for them
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if status != 0:
        raise LaunchError(_failure_message(plan, status, report, last_error))


def _failure_message(plan: LaunchPlan, status: int, report: FailureReport, last_error: str | None) -> str:
    """One line: which process failed (host and rank) and the error a process logged. The logged
    error is left out when the cause is a process killed by a signal: it can only come from a
    peer, failing because that process went away."""
    launcher = "srun/torchrun" if plan.nodes > 1 else "torchrun"
    head = f"training with {plan.world_size} processes failed ({launcher} exit status {status})"
    cause = report.cause()
    if cause is not None and cause.killed:
        return f"{head}: {cause.describe()}"
    reason = last_error or "see the lines above in the log"
    if cause is not None:
        return f"{head}: {cause.describe()}: {reason}"
    return f"{head}: {last_error}" if last_error else f"{head}; see the lines above in the log"


def visible_cuda_devices() -> int:
    """CUDA devices this process sees (0 without CUDA); does not create a CUDA context."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0
