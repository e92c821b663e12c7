"""Which training process failed: torchrun's failure report read line by line
(nlflow.train.failures), and a real torchrun whose worker is killed ending in one line that names
its host and rank (nlflow.train.launch.run_plan)."""

from __future__ import annotations

import socket
import sys
import textwrap

import pytest

from nlflow.train.failures import FailureReport, ProcessFailure
from nlflow.train.launch import LaunchError, LaunchPlan, run_plan, torchrun_command

# What the two-node test cluster printed (torch 2.13, 2026-12-03) after rank 1's process on
# nlfnode2 was sent SIGKILL: that node's torchrun report, then rank 0's error from the lost peer.
KILLED_ON_NODE2 = """\
E1203 13:11:39.939000 25170 torch/distributed/elastic/multiprocessing/api.py:1002] failed (exitcode: -9) local_rank: 0 (pid: 25245) of binary: /venv/bin/python3
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
======================================================
/tmp/ar2.py FAILED
------------------------------------------------------
Failures:
  <NO_OTHER_FAILURES>
------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-12-03_13:11:39
  host      : nlfnode2
  rank      : 1 (local_rank: 0)
  exitcode  : -9 (pid: 25245)  (SIGKILL)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 25245
======================================================
[rank0]: RuntimeError: [../third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer [10.213.0.3]:13546.
srun: error: nlfnode2: task 1: Exited with exit code 1
"""


def entry(time: str, host: str, rank: int, exitcode: str, traceback: str) -> str:
    return textwrap.dedent(f"""\
        [0]:
          time      : {time}
          host      : {host}
          rank      : {rank} (local_rank: 0)
          exitcode  : {exitcode}
          error_file: <N/A>
          traceback : {traceback}
        """)


def read(text: str) -> FailureReport:
    report = FailureReport()
    for line in text.splitlines():
        report.read(line)
    return report


def test_the_report_names_host_rank_and_signal():
    report = read(KILLED_ON_NODE2)
    assert report.failures == [ProcessFailure(host="nlfnode2", rank=1, exitcode=-9, time="2026-12-03_13:11:39",
                                              root_cause=True)]
    assert report.cause().describe() == "rank 1 on nlfnode2 was killed by SIGKILL"


def test_a_killed_process_explains_its_peers_failures():
    # The peer's report can come first (its node noticed the lost connection first) and be as early.
    text = (entry("2026-12-03_13:11:39", "nlfnode1", 0, "1 (pid: 11)", "To enable traceback see: ...")
            + entry("2026-12-03_13:11:39", "nlfnode2", 1, "-15 (pid: 12)  (SIGTERM)", "Signal 15 (SIGTERM) received"))
    cause = read(text).cause()
    assert (cause.host, cause.rank, cause.killed) == ("nlfnode2", 1, True)
    assert cause.describe() == "rank 1 on nlfnode2 was killed by SIGTERM"


def report_of_one_node(failures: str, root_cause: str) -> str:
    """One torchrun's report: its other workers (which it stopped itself), then the first failure."""
    return ("=" * 20 + "\nscript FAILED\n" + "-" * 20 + "\nFailures:\n" + failures + "-" * 20
            + "\nRoot Cause (first observed failure):\n" + root_cause + "=" * 20 + "\n")


def test_the_workers_a_torchrun_stopped_itself_are_no_cause():
    # One node, 2 workers: rank 1 was killed, then torchrun sent rank 0 SIGTERM; the report lists
    # rank 0 first, as a failure, and rank 1 as the root cause.
    text = report_of_one_node(entry("2026-12-03_13:17:46", "gpu1", 0, "-15 (pid: 1)  (SIGTERM)", "Signal 15"),
                              entry("2026-12-03_13:17:46", "gpu1", 1, "-9 (pid: 2)  (SIGKILL)", "Signal 9"))
    report = read(text)
    assert [(f.rank, f.root_cause) for f in report.failures] == [(0, False), (1, True)]
    assert report.cause().describe() == "rank 1 on gpu1 was killed by SIGKILL"
    # Two nodes: node 1's root cause is its worker that lost the connection to the killed one.
    text = (report_of_one_node("  <NO_OTHER_FAILURES>\n", entry("2026-12-03_13:17:45", "gpu1", 0, "1 (pid: 1)", "..."))
            + report_of_one_node("  <NO_OTHER_FAILURES>\n",
                                 entry("2026-12-03_13:17:46", "gpu2", 1, "-9 (pid: 2)  (SIGKILL)", "Signal 9")))
    assert read(text).cause().describe() == "rank 1 on gpu2 was killed by SIGKILL"


def test_without_a_signal_the_earliest_failure_is_the_cause():
    text = (entry("2026-12-03_13:11:41", "nlfnode1", 0, "1 (pid: 11)", "...")
            + entry("2026-12-03_13:11:40", "nlfnode2", 3, "2 (pid: 12)", "...")
            + entry("2026-12-03_13:11:40", "nlfnode2", 2, "1 (pid: 13)", "..."))
    assert read(text).cause().describe() == "rank 3 on nlfnode2 exited with status 2"
    assert ProcessFailure("h", 0, -99).describe() == "rank 0 on h was killed by signal 99"


def test_lines_that_are_no_report_find_nothing():
    report = read("host : not a report\nrank: 3\nexitcode: 1\n2026 ERROR nlflow.train: bad value\n")
    assert report.failures == [] and report.cause() is None


# torchrun's report names a host by its fully qualified name.
HOST = socket.getfqdn(socket.gethostname())


def _torchrun_plan(script: str) -> LaunchPlan:
    return LaunchPlan(nproc_per_node=2, nodes=1, device="cpu",
                      command=[*torchrun_command(), "--standalone", "--nnodes", "1", "--nproc-per-node", "2",
                               "--no-python", sys.executable, "-c", script],
                      env={"OMP_NUM_THREADS": "1"})


def test_a_killed_worker_of_a_real_torchrun_is_named_in_one_line():
    """Two gloo processes; rank 1 kills itself with SIGKILL once both have joined, rank 0 waits in
    an all-reduce it can never finish: the launch fails with one line naming rank 1 and this host."""
    script = textwrap.dedent("""\
        import os, signal, torch, torch.distributed as dist
        dist.init_process_group("gloo")
        dist.barrier()
        if dist.get_rank() == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        dist.all_reduce(torch.ones(1))
        """)
    lines: list[str] = []
    with pytest.raises(LaunchError) as info:
        run_plan(_torchrun_plan(script), relay=lines.append)
    message = str(info.value)
    assert "\n" not in message
    assert message == (f"training with 2 processes failed (torchrun exit status 1): rank 1 on {HOST} "
                       "was killed by SIGKILL"), "\n".join(lines[-40:])


def test_a_real_worker_that_fails_is_named_with_its_logged_error():
    script = textwrap.dedent("""\
        import os, sys
        if os.environ["RANK"] == "1":
            print("2026-12-03 10:00:00,000 ERROR nlflow.train: train settings: bad value", flush=True)
            sys.exit(3)
        """)
    lines: list[str] = []
    with pytest.raises(LaunchError) as info:
        run_plan(_torchrun_plan(script), relay=lines.append)
    assert str(info.value) == (f"training with 2 processes failed (torchrun exit status 1): rank 1 on "
                               f"{HOST} exited with status 3: train settings: bad value"), lines[-30:]
