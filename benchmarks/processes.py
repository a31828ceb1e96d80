"""CPU time and memory of running processes, read from /proc (Linux)."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024


def cpu_seconds(pid: int, reaped_children: bool = False) -> float:
    """User + system CPU time of one process (its threads included), in seconds; with
    `reaped_children`, plus that of its children that ended and were waited for."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return 0.0
    # The command name may hold spaces: the fields that follow start after its ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    used = int(fields[11]) + int(fields[12])
    if reaped_children:
        used += int(fields[13]) + int(fields[14])
    return used / CLOCK_TICKS


def parent_pid(pid: int) -> int | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(raw[raw.rindex(")") + 2 :].split()[1])


def children(pid: int) -> list[int]:
    """Direct children of `pid` (gunicorn's workers under its master)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and parent_pid(int(entry)) == pid:
            found.append(int(entry))
    return sorted(found)


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def rss_bytes(pid: int) -> int:
    return _status_kib(pid, "VmRSS") * 1024


def peak_rss_bytes(pid: int) -> int:
    """VmHWM: the highest RSS since start, or since `reset_peak_rss`."""
    return _status_kib(pid, "VmHWM") * 1024


def pss_bytes(pid: int) -> int:
    """Proportional set size: shared pages split between the processes sharing them."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, PermissionError):
        pass
    return 0


def reset_peak_rss(pid: int) -> None:
    """Start VmHWM over from the current RSS (writing 5 to clear_refs; own processes only)."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


@dataclass
class ProcessGroup:
    """A set of processes measured together: a gunicorn master and its workers, or the DB.

    With `root` (the master), CPU time is that of the root, of its children alive at the time
    asked, and of those that ended (a worker replaced after MAX_REQUESTS during a run): the
    difference of two readings is then all the tree spent in between.
    """

    pids: list[int]
    root: int | None = None

    def cpu_seconds(self) -> float:
        if self.root is None:
            return sum(cpu_seconds(pid) for pid in self.pids)
        alive = children(self.root)
        return cpu_seconds(self.root, reaped_children=True) + sum(map(cpu_seconds, alive))

    def rss_bytes(self) -> int:
        return sum(rss_bytes(pid) for pid in self.pids)

    def pss_bytes(self) -> int:
        return sum(pss_bytes(pid) for pid in self.pids)

    def peak_rss_bytes(self) -> int:
        return sum(peak_rss_bytes(pid) for pid in self.pids)

    def reset_peak_rss(self) -> None:
        for pid in self.pids:
            reset_peak_rss(pid)


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])
