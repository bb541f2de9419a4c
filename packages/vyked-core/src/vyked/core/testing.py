"""Helpers of vyked's own test suites, beyond the public kit.

The kit for applications is :mod:`vyked.testing` (``docs/testing.md``); its process and port
helpers (:class:`ProcessRunner`, :class:`RedisServer`, :func:`free_port`...) are importable
from here too, for the suites that always did. What only vyked's suites need:

- :func:`http_get`: a blocking ``GET`` that returns the status and body whatever the status;
- :class:`RawClient`: a client that writes raw bytes, for testing how servers treat bad input;
- :class:`SteadyCaller`: a well-behaved caller that keeps calling while a test attacks or
  breaks something, and records its latencies and failures.
"""

from __future__ import annotations

import asyncio
import collections
import json
import statistics
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from vyked.core.exceptions import ConnectionLost, VykedError
from vyked.core.protocol.framing import FrameDecoder
from vyked.core.protocol.packets import Packet
from vyked.core.protocol.session import Session
from vyked.core.tasks import cancel_and_wait
from vyked.testing._net import free_port, wait_for_port
from vyked.testing._processes import ProcessRunner
from vyked.testing._redis import RedisServer, find_redis_server, redis_server_candidates, redis_supports_tls

__all__ = [
    "ProcessRunner",
    "RawClient",
    "RedisServer",
    "SteadyCaller",
    "find_redis_server",
    "frame",
    "free_port",
    "http_get",
    "redis_server_candidates",
    "redis_supports_tls",
    "wait_for_port",
]


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
