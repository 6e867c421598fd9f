"""What a process costs the machine, read from ``/proc``: CPU seconds and resident memory (Linux)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["cpu_seconds", "peak_rss_bytes", "pin_apart", "postgres_backends", "rss_bytes"]

_TICKS = os.sysconf("SC_CLK_TCK")
_PROC = Path("/proc")


def cpu_seconds(pids: Iterable[int]) -> float:
    """CPU time the processes used so far, to the nanosecond (a process that is gone counts 0).

    ``schedstat`` counts nanoseconds on the CPU for each thread; ``stat`` only 10 ms ticks, which
    is too coarse for a few hundred requests, so it serves only where ``schedstat`` is missing."""
    total = 0.0
    for pid in pids:
        tasks = _PROC / str(pid) / "task"
        try:
            total += sum(int((task / "schedstat").read_text().split()[0]) for task in tasks.iterdir()) / 1e9
            continue
        except (OSError, ValueError, IndexError):
            pass
        try:
            stat = (_PROC / str(pid) / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the fields start after the last ")".
        fields = stat[stat.rindex(")") + 2 :].split()
        total += (int(fields[11]) + int(fields[12])) / _TICKS
    return total


def _status_kib(pid: int, field: str) -> int:
    for line in (_PROC / str(pid) / "status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def rss_bytes(pid: int) -> int:
    """Resident memory now."""
    return _status_kib(pid, "VmRSS") * 1024


def peak_rss_bytes(pid: int) -> int:
    """The most resident memory the process ever had."""
    return _status_kib(pid, "VmHWM") * 1024


def postgres_backends(database: str) -> list[int]:
    """The server processes serving connections to ``database`` (their CPU is the database's share)."""
    pids: list[int] = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        # A backend's title: "postgres: 15/main: <user> <database> 127.0.0.1(port) idle".
        if title.startswith("postgres: ") and f" {database} " in title:
            pids.append(int(entry.name))
    return pids


def _pin(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` onto ``cpus`` (a thread made later inherits its maker's CPUs)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), cpus)


def pin_apart(others: list[int], proxies: list[int]) -> str:
    """The proxies on the last CPU; the load generator (this process) and ``others`` (the fake
    upstreams) on the rest. A reply's reader then never waits for the proxy that wrote it to
    finish what it does after, as a client on another machine would not. Says what it did."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return "not pinned (one CPU)"
    last, rest = {cpus[-1]}, set(cpus[:-1])
    for pid in proxies:
        _pin(pid, last)
    for pid in [*others, os.getpid()]:
        _pin(pid, rest)
    listed = ", ".join(str(cpu) for cpu in cpus[:-1])
    return f"pinned: every proxy on CPU {cpus[-1]}, the load generator and the fake upstream on CPU {listed}"
