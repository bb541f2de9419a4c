"""Real processes for fault-injection tests: :class:`ProcessRunner` (any Python program),
:class:`RegistryProcess` (``python -m vyked.registry``) and :class:`ServiceProcess` (a host).

Each keeps its child's output (stdout and stderr) in a file that survives restarts, so a test
can wait for a line and read everything afterwards. Hand-offs never rely on timing: a port is
read from the line that announces it, and :meth:`ProcessRunner.mark` lets a test wait for a
line printed after some point (after a restart, say), not an older one alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Self

Pattern = str | re.Pattern[str]
"""A regular expression, as text or compiled."""


def pause_process(process: subprocess.Popen[bytes]) -> None:
    """SIGSTOP ``process`` and wait until it has stopped (or exited): the signal is delivered
    asynchronously, and a test that goes on at once could still see it run."""
    process.send_signal(signal.SIGSTOP)
    if hasattr(os, "waitid"):
        with contextlib.suppress(ChildProcessError):  # WNOWAIT: Popen still reaps it itself
            os.waitid(os.P_PID, process.pid, os.WSTOPPED | os.WEXITED | os.WNOWAIT)


class ProcessRunner:
    """``python ARGS...`` (``"-m", "package.module"`` or a script path) as a child process.

    ``env`` adds to (and overrides) this process's environment. With ``ready``, :meth:`start`
    returns only once the child prints a line matching it (:attr:`ready_match` holds the
    match), and raises if the child exits first or ``ready_timeout`` passes.
    """

    def __init__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        ready: Pattern | None = None,
        ready_timeout: float = 30.0,
    ) -> None:
        self.args = [sys.executable, *args]
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.ready = ready
        self.ready_timeout = ready_timeout
        self.ready_match: re.Match[str] | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="vyked-proc-", suffix=".log", delete=False)  # noqa: SIM115
        self.process: subprocess.Popen[bytes] | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the child (output appended to the same log); with ``ready``, wait for it."""
        since = self.mark()
        self.process = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT, env=self.env)
        if self.ready is not None:
            self.ready_match = self.wait_for_line(self.ready, self.ready_timeout, since)
        return self

    def restart(self, *, kill: bool = False, timeout: float = 10.0) -> Self:
        """Stop the child (SIGTERM, or SIGKILL with ``kill``) and start it again with the same
        arguments; with ``ready``, returns once the new one is ready."""
        if kill:
            self.kill()
        else:
            self._terminate(timeout)
        return self.start()

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (SIGKILL after ``timeout`` seconds), then delete the log; returns the exit
        code (None if never started)."""
        self._terminate(timeout)
        self._log.close()
        with contextlib.suppress(OSError):
            os.unlink(self._log.name)
        return None if self.process is None else self.process.returncode

    def _terminate(self, timeout: float) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGCONT)  # a paused child cannot handle SIGTERM
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- faults ----------------------------------------------------------------------------------

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to the child, if it runs."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would: no cleanup, no goodbye to the registry."""
        self.send_signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    def pause(self) -> None:
        """SIGSTOP: the child keeps its sockets open and answers nothing (a frozen machine, a
        long GC pause) until :meth:`resume`. Returns once it has stopped."""
        if self.running:
            assert self.process is not None
            pause_process(self.process)

    def resume(self) -> None:
        """SIGCONT a paused child."""
        self.send_signal(signal.SIGCONT)

    @property
    def running(self) -> bool:
        """Started and not exited (a paused child is running)."""
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    # -- output ----------------------------------------------------------------------------------

    def output(self) -> str:
        """Everything the child (and its earlier runs) printed so far."""
        return Path(self._log.name).read_text(errors="replace")

    def mark(self) -> int:
        """Where the output stands now (the end of its last complete line): pass it as
        ``since`` to wait for a line printed after this point."""
        return self.output().rfind("\n") + 1

    def wait_for_line(self, pattern: Pattern, timeout: float = 30.0, since: int = 0) -> re.Match[str]:
        """Block until a complete line of output after the first ``since`` characters matches
        ``pattern`` (searched, not anchored); raise :class:`RuntimeError` at once if the child
        exits without printing one, :class:`TimeoutError` after ``timeout`` seconds."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            exited = self.process is not None and self.process.poll() is not None
            output = self.output()  # read after the exit check: an exited child has printed everything
            for line in output[since:].split("\n")[:-1]:  # the last piece is not a complete line yet
                if match := regex.search(line):
                    return match
            if exited:
                assert self.process is not None
                raise RuntimeError(f"{self.args} exited with {self.process.returncode}:\n{output}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no line matching {regex.pattern!r} from {self.args} after {timeout} s:\n{output}")
            time.sleep(0.02)

    async def wait_for_line_async(self, pattern: Pattern, timeout: float = 30.0, since: int = 0) -> re.Match[str]:
        """:meth:`wait_for_line` without blocking the event loop (hosts in it keep running)."""
        return await asyncio.to_thread(self.wait_for_line, pattern, timeout, since)

    def wait_for_output(self, text: str, timeout: float = 15.0, since: int = 0) -> None:
        """Block until ``text`` appears in a complete line of output after ``since``."""
        self.wait_for_line(re.escape(text), timeout, since)

    def __repr__(self) -> str:
        state = "running" if self.running else "not running"
        return f"<{type(self).__name__} {' '.join(self.args[1:])} pid {self.pid} {state}>"


REGISTRY_LISTENING = re.compile(r" listening on 127\.0\.0\.1:(\d+), ")
"""What ``python -m vyked.registry`` logs once it listens, with the port it bound."""


class RegistryProcess(ProcessRunner):
    """``python -m vyked.registry OPTIONS...`` on 127.0.0.1: a free port at first, the same port
    after :meth:`restart`, so that hosts reconnect as they would to a restarted registry.
    :meth:`start` returns once it listens; :attr:`address` is what hosts need
    (``VYKED_REGISTRY``, ``ServiceHost(registry=...)``). Needs ``vyked-registry``."""

    def __init__(self, *options: str, port: int = 0, env: dict[str, str] | None = None) -> None:
        self.port = port
        self.options = options
        super().__init__(env=env, ready=REGISTRY_LISTENING)

    def start(self) -> Self:
        self.args = [sys.executable, "-m", "vyked.registry", "--host", "127.0.0.1", "--port", str(self.port)]
        self.args += self.options
        super().start()
        assert self.ready_match is not None
        self.port = int(self.ready_match.group(1))
        return self

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, once started."""
        return f"127.0.0.1:{self.port}"


HOST_STARTED = re.compile(r"host started: ")
"""What a host logs once its services are registered (``Host.run()``, ``vyked run``)."""


class ServiceProcess(ProcessRunner):
    """A host run as its own process (``"-m", "myapp.identity"``, a script, or
    ``"-m", "vyked.core.cli", "run", "myapp.services"``) that finds the registry through
    ``VYKED_REGISTRY``: :meth:`start` (and :meth:`restart`) return once it logs ``host
    started``, so its services are registered. The program must leave ``Host.registry_host``
    unset for the variable to count (see ``docs/configuration.md``)."""

    def __init__(
        self, *args: str, registry: str, env: dict[str, str] | None = None, ready_timeout: float = 30.0
    ) -> None:
        env = {"VYKED_REGISTRY": registry, **(env or {})}
        super().__init__(*args, env=env, ready=HOST_STARTED, ready_timeout=ready_timeout)
