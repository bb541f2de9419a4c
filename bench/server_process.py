"""Benchmarks run their servers in a child process, so client and server get a core each."""

from __future__ import annotations

import glob
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager


class Ports(list[int]):
    """The ports a child printed; :attr:`pid` is the child's process id."""

    pid: int


@contextmanager
def server_process(script: str, *args: str) -> Iterator[Ports]:
    """Run ``python SCRIPT --serve ARGS...``; yield the ports it prints on its first line.

    The child serves until its standard input closes, which leaving the block does.
    """
    server = subprocess.Popen(
        [sys.executable, script, "--serve", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        ports = Ports(int(port) for port in server.stdout.readline().split())
        ports.pid = server.pid
        yield ports
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(10)


def cpu_seconds(pid: int) -> float | None:
    """The CPU time process ``pid`` has used, all its threads, in seconds with nanosecond
    resolution (Linux's ``/proc/PID/task/*/schedstat``); None where there is no such file."""
    total = 0
    files = glob.glob(f"/proc/{pid}/task/*/schedstat")
    for path in files:
        try:
            with open(path) as stats:
                total += int(stats.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # a thread that ended meanwhile
    return total / 1e9 if files else None
