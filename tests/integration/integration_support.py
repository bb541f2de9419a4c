"""Helpers shared by the cross-package tests, and by the processes they start.

Hand-offs between processes never rely on timing: another process's output counts only in
complete lines, a port is read from the line that announces it (no port picked in advance,
which someone else may take), and a file that one process writes for another appears with
all its content at once.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
import time
from pathlib import Path

from vyked.core.testing import ProcessRunner

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

REGISTRY_LISTENING = re.compile(r" listening on 127\.0\.0\.1:(\d+), ")
"""What ``python -m vyked.registry`` logs once it listens, with the port it bound."""


def output_mark(proc: ProcessRunner) -> int:
    """Where ``proc``'s output stands now (the end of its last complete line): pass it as
    ``since`` to wait for a line printed after this point, not an older one alike."""
    return proc.mark()


def wait_for_line(
    proc: ProcessRunner, pattern: str | re.Pattern[str], timeout: float = 30.0, since: int = 0
) -> re.Match[str]:
    """Block until a complete line of ``proc``'s output, after the first ``since`` characters,
    matches ``pattern``; raise at once if ``proc`` exits without printing one."""
    return proc.wait_for_line(pattern, timeout, since)


def registry_port(proc: ProcessRunner, timeout: float = 30.0) -> int:
    """The port a registry started with ``--port 0`` (or any port) listens on, once it does."""
    return int(wait_for_line(proc, REGISTRY_LISTENING, timeout).group(1))


def publish_file(path: Path, content: str) -> bool:
    """Create ``path`` holding ``content``, for another process to read, unless it exists
    already (then False: someone else published it first).

    The file never exists half written: the content goes to a temporary file in the same
    directory, which is then hard-linked as ``path``; the link fails if ``path`` exists.
    """
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as file:
            file.write(content)
        os.link(temporary, path)
    except FileExistsError:
        return False
    finally:
        os.unlink(temporary)
    return True


def wait_for_published_file(path: Path, timeout: float = 30.0) -> str:
    """Block until another process has published ``path`` (see :func:`publish_file`); its content."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout} s")
        time.sleep(0.02)
    return path.read_text()


async def read_published_file(path: Path, timeout: float = 30.0) -> str:
    """:func:`wait_for_published_file` without blocking the loop."""
    return await asyncio.to_thread(wait_for_published_file, path, timeout)


async def wait_output(proc: ProcessRunner, text: str, timeout: float = 15.0, since: int = 0) -> None:
    """Wait, without blocking the loop, until ``proc`` has printed a complete line holding
    ``text`` (after ``since``, an :func:`output_mark`)."""
    await proc.wait_for_line_async(re.escape(text), timeout, since)
