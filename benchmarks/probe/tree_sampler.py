"""What a process and everything it started cost: wall and CPU time, peak memory, bytes written.

CPU time and bytes written are exact: ``getrusage`` of the process itself plus its reaped children
(DataLoader and joblib workers are reaped before the job ends), plus the CPU time of descendants
still alive at the end. Peak memory is sampled (every ``interval`` seconds) over the whole process
tree and summed across processes, so concurrent workers add up; a peak shorter than the interval
can be missed. Two memory numbers: RSS (what ``top`` shows, including pages of memory-mapped files,
which the kernel can drop again) and anonymous RSS (``rss - shared``: heap, the memory that cannot
be dropped without swap and that an out-of-memory killer counts first).
"""

from __future__ import annotations

import os
import resource
import threading
import time

import psutil


class TreeSampler:
    """Samples the memory of ``pid`` (default: this process) and its descendants in a daemon thread."""

    def __init__(self, pid: int | None = None, interval: float = 0.1):
        self.root = psutil.Process(pid or os.getpid())
        self.interval = interval
        self.peak_rss = 0
        self.peak_anon = 0
        self.peak_processes = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-sampler", daemon=True)

    def start(self) -> "TreeSampler":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def tree(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return []

    def sample(self) -> None:
        rss = anon = count = 0
        for process in self.tree():
            try:
                memory = process.memory_info()
            except psutil.Error:  # exited between listing and reading
                continue
            rss += memory.rss
            anon += memory.rss - memory.shared
            count += 1
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_anon = max(self.peak_anon, anon)
        self.peak_processes = max(self.peak_processes, count)
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)


def system_busy_seconds() -> float:
    """CPU seconds all processes of the machine have used since boot (``/proc/stat``): the busy
    time of the whole machine, so that what others ran during a measurement can be told apart."""
    try:
        fields = open("/proc/stat").readline().split()[1:]
    except OSError:
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def others_cores(busy_before: float, cpu_seconds: float, wall_seconds: float) -> float:
    """Cores that other processes kept busy, on average, while a measurement used ``cpu_seconds``."""
    others = system_busy_seconds() - busy_before - cpu_seconds
    return round(max(others, 0.0) / wall_seconds, 2) if wall_seconds > 0 else float("nan")


def cpu_seconds_of_live_descendants(process: psutil.Process) -> float:
    total = 0.0
    try:
        children = process.children(recursive=True)
    except psutil.Error:
        return 0.0
    for child in children:
        try:
            times = child.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def own_cost(sampler: TreeSampler, started: float, busy_at_start: float) -> dict:
    """This process's cost so far, its reaped children included (see the module docstring), and
    how many cores other processes used meanwhile (``busy_at_start``: system_busy_seconds then)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime
    cpu += cpu_seconds_of_live_descendants(sampler.root)
    sampler.sample()
    return _cost(sampler, time.time() - started, cpu, busy_at_start, me.ru_oublock + children.ru_oublock)


def _cost(sampler: TreeSampler, wall: float, cpu: float, busy_before: float, written_blocks: int) -> dict:
    return {
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "others_cores": others_cores(busy_before, cpu, wall),
        "peak_rss_mb": round(sampler.peak_rss / 2**20, 1),
        "peak_anon_mb": round(sampler.peak_anon / 2**20, 1),
        "peak_processes": sampler.peak_processes,
        "written_mb": round(written_blocks * 512 / 2**20, 1),  # rusage counts 512-byte blocks
        "samples": sampler.samples,
    }


def measure_command(command: list[str], env: dict | None = None, log: str | os.PathLike | None = None,
                    interval: float = 0.1) -> dict:
    """Run ``command`` to its end (output to ``log`` when given) and return its cost (the fields of
    :func:`own_cost`) and return code. The caller must run no other child process meanwhile: CPU
    time is the change in this process's reaped children."""
    import subprocess

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy_before = system_busy_seconds()
    started = time.time()
    with open(log or os.devnull, "w") as output:
        process = subprocess.Popen(command, env=env, stdout=output if log else None, stderr=subprocess.STDOUT if log else None)
        sampler = TreeSampler(process.pid, interval).start()
        code = process.wait()
    sampler.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"returncode": code,
            **_cost(sampler, time.time() - started, cpu, busy_before, after.ru_oublock - before.ru_oublock)}
