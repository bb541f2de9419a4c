"""Helpers of the vyked 2.x compatibility tests, shared by the tests and their fixtures."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from vyked.core.testing import ProcessRunner

HERE = Path(__file__).resolve().parent
# The line-waiting helpers of the integration tests; --import-mode=importlib does not put
# test folders on sys.path by itself.
sys.path.insert(0, str(HERE.parent / "integration"))

from integration_support import registry_port, wait_for_line  # noqa: E402

__all__ = ["registry_port", "script", "served_ports", "wait_for_line"]

SERVING = re.compile(r" (tcp|http) (\w+) v\S+ serving on 127\.0\.0\.1:(\d+)")
"""What ``Host.run()`` logs for each service it serves."""


def script(name: str) -> str:
    return str(HERE / name)


def served_ports(proc: ProcessRunner, count: int) -> dict[str, int]:
    """``{kind: port}`` of the first ``count`` services ``proc`` logs as serving."""
    ports: dict[str, int] = {}
    since = 0
    while len(ports) < count:
        match = wait_for_line(proc, SERVING, since=since)
        ports[match.group(1)] = int(match.group(3))
        since = proc.output().find(match.group(0), since) + len(match.group(0))
    return ports
