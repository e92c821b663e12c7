"""Which training process failed, read from torchrun's failure report, so that a failed
multi-process run ends with one line naming the host and the rank.

When a worker dies, the torchrun of its node prints a report (``ChildFailedError``) whose entries
look like::

    [0]:
      time      : 2026-12-03_13:11:39
      host      : nlfnode2
      rank      : 1 (local_rank: 0)
      exitcode  : -9 (pid: 25245)  (SIGKILL)
      error_file: <N/A>
      traceback : Signal 9 (SIGKILL) received by PID 25245

A report lists, under "Failures:", the node's other workers, which its torchrun stopped itself
(SIGTERM), and under "Root Cause (first observed failure):" the one that failed first. With
several nodes every node's torchrun may print a report: the one whose process died, and those
whose processes then failed because their peer went away ("Connection closed by peer").
:class:`FailureReport` collects every entry from the launcher's output, line by line;
:meth:`FailureReport.cause` picks the one that explains the others.
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass, field

_FIELD = re.compile(r"^\s*(time|host|rank|exitcode|error_file|traceback)\s*:\s?(.*)$")
_ROOT_CAUSE = "Root Cause (first observed failure):"
_SECTION_END = ("Failures:", "=====", "-----")
_NUMBER = re.compile(r"-?\d+")


@dataclass(frozen=True)
class ProcessFailure:
    """One entry of torchrun's failure report."""

    host: str
    rank: int
    exitcode: int
    time: str = ""
    root_cause: bool = False  # listed as its torchrun's first observed failure

    @property
    def killed(self) -> bool:
        """Ended by a signal (torchrun reports the negated signal number), not by its own exit."""
        return self.exitcode < 0

    def describe(self) -> str:
        if self.killed:
            try:
                name = signal.Signals(-self.exitcode).name
            except ValueError:
                name = f"signal {-self.exitcode}"
            return f"rank {self.rank} on {self.host} was killed by {name}"
        return f"rank {self.rank} on {self.host} exited with status {self.exitcode}"


@dataclass
class FailureReport:
    """Feed it every line of the launcher's output (:meth:`read`); ask :meth:`cause` at the end."""

    failures: list[ProcessFailure] = field(default_factory=list)
    _fields: dict[str, str] = field(default_factory=dict)
    _in_root_cause: bool = False

    def read(self, line: str) -> None:
        stripped = line.strip()
        if stripped == _ROOT_CAUSE:
            self._in_root_cause = True
        elif stripped.startswith(_SECTION_END):
            self._in_root_cause = False
        match = _FIELD.match(line)
        if not match:
            return
        key, value = match.group(1), match.group(2).strip()
        if key == "time":  # the first field of an entry
            self._fields = {}
        self._fields[key] = value
        if key == "traceback":  # the last one
            self._finish()

    def _finish(self) -> None:
        fields, self._fields = self._fields, {}
        rank, exitcode = _NUMBER.search(fields.get("rank", "")), _NUMBER.search(fields.get("exitcode", ""))
        if not fields.get("host") or rank is None or exitcode is None:
            return
        failure = ProcessFailure(host=fields["host"], rank=int(rank.group()), exitcode=int(exitcode.group()),
                                 time=fields.get("time", ""), root_cause=self._in_root_cause)
        if failure not in self.failures:
            self.failures.append(failure)

    def cause(self) -> ProcessFailure | None:
        """The failure that explains the others: of the reports' root causes (every entry where
        no report says which came first), a process killed by a signal, whose peers on other nodes
        then fail on the lost connection; else the earliest one (times are to the second; ties
        keep the order of the output)."""
        candidates = [failure for failure in self.failures if failure.root_cause] or self.failures
        killed = [failure for failure in candidates if failure.killed]
        return min(killed or candidates, key=lambda failure: failure.time, default=None)
