"""Benchmarks run their servers in a child process, so client and server get a core each."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def server_process(script: str, *args: str) -> Iterator[list[int]]:
    """Run ``python SCRIPT --serve ARGS...``; yield the ports it prints on its first line.

    The child serves until its standard input closes, which leaving the block does.
    """
    server = subprocess.Popen(
        [sys.executable, script, "--serve", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        yield [int(port) for port in server.stdout.readline().split()]
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(10)
