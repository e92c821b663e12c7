"""How the train stage starts its processes (nlflow.train.launch), and one real 2-process CPU run
through ``nlflow.workflow.stages.train`` compared with a single-process run of the same settings."""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import stat
import sys
import time
from pathlib import Path

import pytest
import torch

from nlflow.errors import ConfigError
from nlflow.logs import setup_logging
from nlflow.models import ModelConfig, build_model, read_checkpoint, save_checkpoint
from nlflow.train.launch import (
    LaunchError,
    LaunchPlan,
    choose_rendezvous_port,
    expand_nodelist,
    first_host,
    plan_launch,
    port_in_use,
    rendezvous_port,
    run_plan,
    torchrun_command,
)
from nlflow.train.solver import TRAINING_MODEL_KEYS
from nlflow.workflow import stages

from helpers.training import CLASSES, tiny_data, tiny_settings  # noqa: F401  (module-scoped fixture)

ARGS = ["--settings", "/runs/abc/settings.json", "--out-dir", "/runs/abc"]
TORCHRUN = ["/venv/bin/torchrun"]
SLURM = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "node[01-02]", "SLURM_JOB_NUM_NODES": "2"}


def plan(gpus, nodes=1, cuda=0, environ=None, threads=8, **kw) -> LaunchPlan:
    """A plan whose rendezvous port counts as free unless ``in_use`` says otherwise (no probing of
    made-up hosts such as node01)."""
    kw.setdefault("in_use", lambda host, port: False)
    return plan_launch(gpus, nodes, ARGS, cuda_devices=cuda, environ=environ or {}, threads=threads,
                       torchrun=TORCHRUN, **kw)


# ----------------------------------------------------------------------------- the plan

@pytest.mark.parametrize("gpus", [0, 1])
@pytest.mark.parametrize("cuda", [0, 1])
def test_zero_or_one_process_trains_in_process(gpus, cuda):
    p = plan(gpus, cuda=cuda)
    assert p.in_process and p.command is None and p.world_size == 1 and p.backend == "none"
    assert p.device == ("cuda" if cuda else "cpu") and not p.warnings


def test_n_processes_without_cuda_are_the_gloo_cpu_twin():
    p = plan(2, threads=8)
    assert p.command == [*TORCHRUN, "--standalone", "--nnodes", "1", "--nproc-per-node", "2",
                         "-m", "nlflow.train", *ARGS]
    assert (p.world_size, p.backend, p.device) == (2, "gloo", "cpu")
    assert p.env["OMP_NUM_THREADS"] == "4"  # the job's 8 cores shared by 2 processes
    assert len(p.warnings) == 1 and "gloo CPU processes" in p.warnings[0]


def test_n_processes_on_enough_gpus_use_nccl():
    p = plan(4, cuda=8, threads=2)
    assert p.command[p.command.index("--nproc-per-node") + 1] == "4"
    assert (p.world_size, p.backend) == (4, "nccl") and not p.warnings
    assert p.env["OMP_NUM_THREADS"] == "1"  # never 0


def test_more_processes_than_visible_gpus_is_a_config_error():
    with pytest.raises(ConfigError, match=r"train.gpus = 4 .* only 2 CUDA device\(s\) .*CUDA_VISIBLE_DEVICES=0,1"):
        plan(4, cuda=2, environ={"CUDA_VISIBLE_DEVICES": "0,1"})


@pytest.mark.parametrize("gpus, nodes", [(-1, 1), (2, 0), (1.5, 1), (True, 1)])
def test_bad_counts_are_config_errors(gpus, nodes):
    with pytest.raises(ConfigError, match="train.gpus|train.nodes"):
        plan(gpus, nodes)


def test_sync_bn_needs_cuda_with_several_processes():
    with pytest.raises(ConfigError, match="sync_bn needs CUDA"):
        plan(2, sync_bn=True)
    assert plan(1, sync_bn=True).in_process  # one process: nothing to synchronise
    assert plan(2, cuda=2, sync_bn=True).backend == "nccl"


def test_several_nodes_outside_slurm_is_a_config_error():
    with pytest.raises(ConfigError, match="train.nodes = 2 needs a SLURM allocation"):
        plan(2, nodes=2)


def test_several_nodes_run_torchrun_under_srun(tmp_path):
    env = dict(SLURM, PATH=str(tmp_path))  # no scontrol here: nlflow's own hostlist parser
    p = plan(4, nodes=2, cuda=4, environ=env)
    port = 20000 + 4242 % 10000
    assert p.command == [
        "srun", "--overlap", "--nodes=2", "--ntasks-per-node=1", "--ntasks=2", "--kill-on-bad-exit=1",
        *TORCHRUN, "--nnodes", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"node01:{port}",
        "--rdzv-id", "4242", "--nproc-per-node", "4", "-m", "nlflow.train", *ARGS]
    assert (p.world_size, p.backend) == (8, "nccl")
    # CPU nodes: one gloo process per node
    p = plan(0, nodes=2, environ=env)
    assert p.command[p.command.index("--nproc-per-node") + 1] == "1" and p.world_size == 2
    assert p.backend == "gloo" and p.warnings


def test_allocation_with_fewer_nodes_is_a_config_error(tmp_path):
    env = dict(SLURM, SLURM_JOB_NUM_NODES="1", PATH=str(tmp_path))
    with pytest.raises(ConfigError, match="has 1 node"):
        plan(1, nodes=2, environ=env)


def test_first_host_asks_scontrol_when_it_is_on_path(tmp_path):
    scontrol = tmp_path / "scontrol"
    scontrol.write_text('#!/bin/sh\n[ "$1 $2" = "show hostnames" ] || exit 2\necho "hostA-$3"\necho hostB\n')
    scontrol.chmod(scontrol.stat().st_mode | stat.S_IEXEC)
    assert first_host("whatever[1-2]", {"PATH": str(tmp_path)}) == "hostA-whatever[1-2]"
    p = plan(1, nodes=2, environ=dict(SLURM, PATH=str(tmp_path)))
    assert "hostA-node[01-02]:" in p.command[p.command.index("--rdzv-endpoint") + 1]
    scontrol.write_text("#!/bin/sh\necho 'invalid hostlist' >&2\nexit 1\n")
    with pytest.raises(LaunchError, match="invalid hostlist"):
        first_host("bad[", {"PATH": str(tmp_path)})


def test_a_job_without_its_node_list_asks_scontrol(tmp_path):
    """snakemake-executor-plugin-slurm-jobstep removes every SLURM_* variable but the job id: the
    nodes then come from `scontrol show job`."""
    scontrol = tmp_path / "scontrol"
    scontrol.write_text('#!/bin/sh\n'
                        'if [ "$1 $2 $3 $4" = "--oneliner show job 4242" ]; then\n'
                        '  echo "JobId=4242 JobName=x NumNodes=2 NumCPUs=16 NodeList=gpu[07-08] BatchHost=gpu07"; exit 0\n'
                        'fi\n'
                        '[ "$1 $2" = "show hostnames" ] && [ "$3" = "gpu[07-08]" ] && { echo gpu07; echo gpu08; exit 0; }\n'
                        'exit 2\n')
    scontrol.chmod(scontrol.stat().st_mode | stat.S_IEXEC)
    p = plan(1, nodes=2, environ={"SLURM_JOB_ID": "4242", "PATH": str(tmp_path)})
    assert p.command[p.command.index("--rdzv-endpoint") + 1] == "gpu07:24242"
    with pytest.raises(ConfigError, match=r"train.nodes = 3 but this SLURM allocation \(4242\) has 2 node"):
        plan(1, nodes=3, environ={"SLURM_JOB_ID": "4242", "PATH": str(tmp_path)})
    with pytest.raises(LaunchError, match=r"`scontrol show job 99` failed \(exit status 2\)"):
        plan(1, nodes=2, environ={"SLURM_JOB_ID": "99", "PATH": str(tmp_path)})
    with pytest.raises(ConfigError, match="SLURM_JOB_NODELIST is not set and scontrol is not on PATH"):
        plan(1, nodes=2, environ={"SLURM_JOB_ID": "4242", "PATH": str(tmp_path / "nowhere")})


def test_first_host_without_scontrol_parses_the_hostlist(tmp_path):
    assert first_host("gpu-[07-09],login1", {"PATH": str(tmp_path)}) == "gpu-07"


@pytest.mark.parametrize("nodelist, hosts", [
    ("node01", ["node01"]),
    ("node[01-02]", ["node01", "node02"]),
    ("node[8-10]", ["node8", "node9", "node10"]),
    ("gpu[1,3-4],login7", ["gpu1", "gpu3", "gpu4", "login7"]),
    ("a[1-2]-b[01-02]", ["a1-b01", "a1-b02", "a2-b01", "a2-b02"]),
    ("n-1,n-2", ["n-1", "n-2"]),
])
def test_expand_nodelist(nodelist, hosts):
    assert expand_nodelist(nodelist) == hosts


@pytest.mark.parametrize("nodelist", ["node[01-", "node]1[", "node[a-b]", "node[3-1]", ""])
def test_expand_nodelist_refuses_what_it_cannot_read(nodelist):
    with pytest.raises(ConfigError, match="node list"):
        expand_nodelist(nodelist)


def test_rendezvous_port_follows_the_job_and_can_be_set():
    assert rendezvous_port("123456", {}) == 20000 + 3456
    assert rendezvous_port("123456", {"NLFLOW_RDZV_PORT": "29999"}) == 29999
    assert 20000 <= rendezvous_port("12_3", {}) < 30000
    with pytest.raises(ConfigError, match="NLFLOW_RDZV_PORT"):
        rendezvous_port("1", {"NLFLOW_RDZV_PORT": "x"})


@pytest.fixture
def listener():
    """A real socket listening on 127.0.0.1, at a port the test asks for (None: the OS chooses)."""
    sockets = []

    def listen(port: int | None = None) -> int | None:
        sock = socket.socket()
        try:
            sock.bind(("127.0.0.1", port or 0))
        except OSError:
            sock.close()
            return None  # taken by someone else
        sock.listen()
        sockets.append(sock)
        return sock.getsockname()[1]

    yield listen
    for sock in sockets:
        sock.close()


def _job_whose_port_listens(listen) -> tuple[str, int]:
    """A job id whose derived rendezvous port a listener of this test holds, and that port."""
    for job in range(4242, 4242 + 200):
        port = rendezvous_port(str(job), {})
        if listen(port) == port and not port_in_use("127.0.0.1", port + 1):
            return str(job), port
    pytest.skip("no free port in 24242-24442 on 127.0.0.1 to occupy")


def test_port_in_use_probes_a_real_listener(listener):
    port = listener()
    assert port_in_use("127.0.0.1", port)
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))  # bound, not listening: a connection is refused
    try:
        assert not port_in_use("127.0.0.1", probe.getsockname()[1])
    finally:
        probe.close()
    assert not port_in_use("no-such-host.invalid", 20000)


def test_a_taken_job_port_moves_to_the_next_free_one(listener):
    job, port = _job_whose_port_listens(listener)
    chosen, warnings = choose_rendezvous_port(job, "127.0.0.1", {})
    assert chosen == port + 1
    assert warnings == [f"rendezvous port {port} on 127.0.0.1 is already in use (another job or service listens "
                        f"there): using port {port + 1} instead"]
    # Through the plan: the command line every node gets carries the new port, the log the warning.
    p = plan(1, nodes=2, environ=dict(SLURM, SLURM_JOB_ID=job), resolve_host=lambda nodelist: "127.0.0.1",
             in_use=port_in_use)
    assert p.command[p.command.index("--rdzv-endpoint") + 1] == f"127.0.0.1:{port + 1}"
    assert warnings[0] in p.warnings


def test_a_taken_port_the_user_chose_is_an_error(listener):
    port = listener()
    with pytest.raises(LaunchError, match=rf"rendezvous port {port} on 127.0.0.1 \(NLFLOW_RDZV_PORT\) is already in "
                                          "use: set NLFLOW_RDZV_PORT to a free port"):
        plan(1, nodes=2, environ=dict(SLURM, NLFLOW_RDZV_PORT=str(port)), resolve_host=lambda nodelist: "127.0.0.1",
             in_use=port_in_use)


def test_rendezvous_ports_all_taken_is_an_error():
    with pytest.raises(LaunchError, match="rendezvous port 24242 on node01 and the 20 ports after it are all in use"):
        choose_rendezvous_port("4242", "node01", {}, in_use=lambda host, port: True)
    # The range wraps around instead of leaving it.
    tried = []
    choose_rendezvous_port("9999", "node01", {}, in_use=lambda host, port: tried.append(port) or len(tried) < 3)
    assert tried == [29999, 20000, 20001]


def test_torchrun_is_the_one_next_to_the_interpreter():
    command = torchrun_command()
    if len(command) == 1:
        assert Path(command[0]).parent == Path(sys.executable).parent
    else:
        assert command == [sys.executable, "-m", "torch.distributed.run"]


# ----------------------------------------------------------------------------- running a plan

def _script_plan(code: str) -> LaunchPlan:
    return LaunchPlan(nproc_per_node=2, nodes=1, device="cpu", command=[sys.executable, "-c", code],
                      env={"NLFLOW_TEST_VALUE": "seen"})


def test_run_plan_streams_output_and_passes_env():
    lines: list[str] = []
    run_plan(_script_plan("import os, sys; print('out', os.environ['NLFLOW_TEST_VALUE']); "
                          "print('err line', file=sys.stderr)"), relay=lines.append)
    assert sorted(lines) == ["err line", "out seen"]


def test_run_plan_failure_is_one_clear_error_naming_the_last_logged_error():
    code = ("import sys; print('2026-01-01 10:00:00,000 ERROR nlflow.train: train settings: bad value'); "
            "print('Traceback (most recent call last): ...'); sys.exit(3)")
    lines: list[str] = []
    with pytest.raises(LaunchError) as info:
        run_plan(_script_plan(code), relay=lines.append)
    message = str(info.value)
    assert "\n" not in message
    assert message == "training with 2 processes failed (torchrun exit status 3): train settings: bad value"
    assert len(lines) == 2
    with pytest.raises(LaunchError, match=r"exit status 1\); see the lines above in the log"):
        run_plan(_script_plan("raise SystemExit(1)"), relay=lines.append)


# ----------------------------------------------------------------------------- a real 2-process run

@pytest.fixture
def log_file(tmp_path):
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    path = tmp_path / "train.log"
    setup_logging(path)
    yield path
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])


def _stage(data: dict, init: Path, out: Path, gpus: int, settings, threads: int = 1) -> Path:
    stages.train(str(data["train"]), str(data["val"]), str(init), str(data["classes"]),
                 model_out=str(out / "model_final.pt"), metrics_out=str(out / "metrics.jsonl"),
                 checkpoint_dir=str(out / "checkpoints"), train_config=settings.to_dict(), model={}, gpus=gpus,
                 threads=threads)
    return out / "model_final.pt"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU twin; on a GPU machine gpus=2 means 2 GPUs")
def test_stage_with_two_cpu_processes_matches_one_process(tiny_data, tmp_path, log_file):  # noqa: F811
    """gpus=2 on CPU: torchrun, 2 gloo processes, the published model equals the 1-process model.

    Equal up to float summation order only where nothing depends on the split: frozen (affine)
    BN and no dropout. Trainable BN normalises each process's half-batch with its own statistics
    and dropout masks come from per-rank seeds, so those runs differ (docs/cluster.md).
    """
    torch.manual_seed(0)
    init = tmp_path / "init_affine.pt"
    save_checkpoint(init, build_model(ModelConfig(width=4, num_classes=len(CLASSES), video_length=4,
                                                        sample_rate=2, frozen_bn=True, dropout=0.0)), CLASSES)
    settings = tiny_settings(max_iter=4, checkpoint_period=2, log_period=2, val_period=2, dropout=0.0,
                             precise_bn_iters=0)

    started = time.perf_counter()
    two = _stage(tiny_data, init, tmp_path / "two", 2, settings, threads=2)  # the rule's threads
    two_s = time.perf_counter() - started
    text = log_file.read_text()
    assert "2 training processes (2 in all, gloo on cpu)" in text
    assert "running 2 gloo CPU processes instead of GPUs" in text  # the CPU twin's warning
    assert "launching: " in text and "--nproc-per-node 2 -m nlflow.train" in text
    # Relayed from the children: rank 0 joined a gloo group of 2, and rank 1 took part in the
    # all-gather of weight digests.
    assert "rank 0/2 joined the process group (gloo)" in text
    assert f"2 processes on 1 host(s): rank 0 on {socket.gethostname()}, rank 1 on {socket.gethostname()}" in text
    assert "over 2 process(es)" in text and "weights identical on all 2 processes" in text
    run_dirs = list((tmp_path / "two" / "checkpoints").iterdir())
    assert len(run_dirs) == 1 and json.loads((run_dirs[0] / "settings.json").read_text()) == settings.to_dict()
    assert read_checkpoint(two)["extra"]["iterations"] == 4
    assert (tmp_path / "two" / "metrics.jsonl").read_text() == (run_dirs[0] / "metrics.jsonl").read_text()

    one = _stage(tiny_data, init, tmp_path / "one", 1, settings)
    assert "one training process" in log_file.read_text()
    a, b = read_checkpoint(one)["state_dict"], read_checkpoint(two)["state_dict"]
    assert a.keys() == b.keys()
    init_state = read_checkpoint(init)["state_dict"]
    assert any(not torch.equal(a[k], init_state[k]) for k in a)  # it trained
    worst = max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())
    # Measured 7.5e-9 on the 2-core dev machine (gradient all-reduce sums in another order).
    assert worst <= 1e-6, worst
    losses = [[m["loss"] for m in map(json.loads, (tmp_path / d / "metrics.jsonl").read_text().splitlines())
               if "loss" in m] for d in ("one", "two")]
    assert losses[0] == pytest.approx(losses[1], abs=1e-4)
    print(f"2-process stage run {two_s:.1f} s, max |difference| {worst:.3g}")


def test_stage_two_cpu_processes_failure_is_one_clear_error(tiny_data, tmp_path, log_file):  # noqa: F811
    """A batch that does not split over the processes fails in the children: one clear line."""
    if torch.cuda.is_available():
        pytest.skip("checks the CPU twin")
    settings = tiny_settings(batch_size=3, max_iter=2, val_period=0, precise_bn_iters=0)
    # Both processes fail alike; the one torchrun saw first is named, with the error it logged, and
    # what running the job again would do.
    with pytest.raises(LaunchError, match=r"torchrun exit status \d+\): rank [01] on \S+ exited with status 1: "
                                          r"batch_size 3 \(global\) cannot be split evenly over 2 processes; no "
                                          r"checkpoint had been written: running the train job again starts from "
                                          r"the beginning$"):
        _stage(tiny_data, tiny_data["init"], tmp_path / "bad", 2, settings)


def test_stage_bf16_autocast_on_cpu(tiny_data, tmp_path, log_file):  # noqa: F811
    """The CPU twin of bf16 training: autocast on the CPU, in the job's own process, on clips where
    no kernel is longer than its input (8 frames, 96 pixels)."""
    settings = tiny_settings(amp="bf16", max_iter=2, log_period=1, val_period=0, precise_bn_iters=1,
                             video_length=8, crop_size=96, scale_range=(96, 100))
    final = _stage(tiny_data, tiny_data["init"], tmp_path / "bf16", 1, settings)
    state = read_checkpoint(final)["state_dict"]
    init_state = read_checkpoint(tiny_data["init"])["state_dict"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    assert all(v.dtype == init_state[k].dtype for k, v in state.items())  # weights stay fp32
    assert any(not torch.equal(v, init_state[k]) for k, v in state.items() if v.is_floating_point())
    losses = [m["loss"] for m in map(json.loads, (tmp_path / "bf16" / "metrics.jsonl").read_text().splitlines())
              if "loss" in m]
    assert len(losses) == 2 and all(0 < loss < 10 for loss in losses)


def test_stage_refuses_cpu_bf16_where_a_kernel_is_longer_than_its_input(tiny_data, tmp_path, log_file):  # noqa: F811
    """4-frame clips: conv1's 5-frame kernel covers the clip, where oneDNN's bf16 weight gradients
    are wrong. One line before any step, nothing written."""
    if torch.cuda.is_available():
        pytest.skip("checks the CPU path")
    settings = tiny_settings(amp="bf16", max_iter=2, val_period=0, precise_bn_iters=0)
    with pytest.raises(ConfigError, match=r"train.amp bf16 on a CPU: .* \(first: stem.conv, kernel 5x7x7 over 4x32x32\)"):
        _stage(tiny_data, tiny_data["init"], tmp_path / "refused", 1, settings)
    assert not list((tmp_path / "refused").rglob("iter_*.pt")) and not (tmp_path / "refused" / "model_final.pt").exists()


def _losses(out: Path) -> list[float]:
    return [m["loss"] for m in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in m]


def test_model_dropout_reaches_training_through_the_rules_params(tiny_data, tmp_path, log_file):  # noqa: F811
    """The train rule hands the model keys the loop reads (dropout with the clip's frames) apart
    from the train section, which has no dropout: 0.0 and 0.9 must train differently, and the
    rate must reach the published model."""
    train_section = {key: value for key, value in tiny_settings(max_iter=4, log_period=1, val_period=0,
                                                                 precise_bn_iters=0).result_dict().items()
                     if key not in TRAINING_MODEL_KEYS}
    losses = {}
    for dropout in (0.0, 0.9, 0.0):
        out = tmp_path / f"dropout{dropout}-{len(losses)}"
        stages.train(str(tiny_data["train"]), str(tiny_data["val"]), str(tiny_data["init"]), str(tiny_data["classes"]),
                     model_out=str(out / "model_final.pt"), metrics_out=str(out / "metrics.jsonl"),
                     checkpoint_dir=str(out / "checkpoints"), train_config=train_section,
                     model={"video_length": 4, "sample_rate": 2, "dropout": dropout})
        assert read_checkpoint(out / "model_final.pt")["model_config"]["dropout"] == dropout
        losses.setdefault(dropout, []).append(_losses(out))
    assert losses[0.0][0] == losses[0.0][1]  # the same rate trains the same: the difference is dropout's
    assert losses[0.0][0] != losses[0.9][0], losses


def test_an_operational_change_keeps_the_run_folder_a_result_change_starts_a_new_one(tiny_data, tmp_path, log_file):  # noqa: F811
    settings = tiny_settings(max_iter=2, val_period=0, precise_bn_iters=0)
    out = tmp_path / "run"
    _stage(tiny_data, tiny_data["init"], out, 0, settings)
    (first,) = (out / "checkpoints").iterdir()
    # Other workers, log and checkpoint periods: the same run folder, found finished, nothing retrained.
    stages.train(str(tiny_data["train"]), str(tiny_data["val"]), str(tiny_data["init"]), str(tiny_data["classes"]),
                 model_out=str(out / "model_final.pt"), metrics_out=str(out / "metrics.jsonl"),
                 checkpoint_dir=str(out / "checkpoints"), train_config=settings.result_dict(), model={},
                 operational={"num_workers": 1, "log_period": 1, "checkpoint_period": 1, "gpus": 0, "nodes": 1})
    assert list((out / "checkpoints").iterdir()) == [first]
    assert "already finished at iteration 2" in log_file.read_text()
    _stage(tiny_data, tiny_data["init"], out, 0, dataclasses.replace(settings, base_lr=0.02))
    assert len(list((out / "checkpoints").iterdir())) == 2
