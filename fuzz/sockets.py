"""The socket phase of ``fuzz_wire.py``: hostile connections to real server processes on loopback.

Each scenario opens raw connections (no vyked client code on the hostile side), writes what a
stranger might, and records how the server ended the connection: an ``error`` packet and its
code, a silent close, a reset, or not at all within the wait.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from hostile import HELLO, Hostile

from vyked.core.protocol.framing import DEFAULT_MAX_FRAME_SIZE, FrameDecoder
from vyked.core.protocol.packets import Error
from vyked.core.protocol.session import HANDSHAKE_MAX_FRAME_SIZE, Session
from vyked.core.testing import ProcessRunner

LOOPBACK = "127.0.0.1"


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (``VmRSS`` in ``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def wait_for_line(proc: ProcessRunner, pattern: str, timeout: float = 30.0) -> re.Match[str]:
    regex = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while True:
        if match := regex.search(proc.output()):
            return match
        if proc.process is not None and proc.process.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.process.returncode}:\n{proc.output()[-3000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {pattern!r} from {proc.args} within {timeout} s")
        time.sleep(0.05)


@dataclass
class Target:
    name: str
    port: int
    proc: ProcessRunner

    @property
    def pid(self) -> int:
        assert self.proc.process is not None
        return self.proc.process.pid

    def alive(self) -> bool:
        return self.proc.process is not None and self.proc.process.poll() is None

    def log_bytes(self) -> int:
        return len(self.proc.output().encode(errors="replace"))


@dataclass
class Scenario:
    """What one scenario did, against one target."""

    name: str
    target: str
    connections: int = 0
    frames: int = 0
    bytes_sent: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    close_times: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    rss_after_kib: int = 0
    """The target's RSS when the scenario ended (later ones start from there)."""

    def line(self) -> str:
        times = ""
        if self.close_times:
            times = f", closed after {min(self.close_times):.1f}..{max(self.close_times):.1f} s"
        outcomes = ", ".join(f"{k} {v}" for k, v in self.outcomes.most_common())
        return (
            f"{self.name:>18} -> {self.target:<8} {self.connections:6d} conns {self.frames:9d} frames "
            f"{self.bytes_sent / 2**20:8.1f} MiB in {self.seconds:5.1f} s{times}; "
            f"target RSS then {self.rss_after_kib / 1024:.1f} MiB; {outcomes}"
        )


async def _read_until_closed(reader: asyncio.StreamReader, wait: float) -> tuple[str, float]:
    """How the server ended the connection within ``wait`` seconds, and after how long."""
    started = time.monotonic()
    decoder = FrameDecoder(max_frame_size=2**32 - 1)
    code = ""
    try:
        async with asyncio.timeout(wait):
            while True:
                data = await reader.read(256 * 1024)
                if not data:
                    break
                for packet in decoder.feed(data):
                    if isinstance(packet, Error) and packet.id is None:
                        code = packet.code
    except TimeoutError:
        return "open", time.monotonic() - started
    except OSError:
        return f"reset{' after ' + code if code else ''}", time.monotonic() - started
    return (f"error {code}" if code else "closed silently"), time.monotonic() - started


async def _write(writer: asyncio.StreamWriter, data: bytes, timeout: float = 3.0) -> bool:
    """Write and wait until the kernel took it; False once the server stops reading (or left)."""
    try:
        writer.write(data)
        async with asyncio.timeout(timeout):
            await writer.drain()
    except (OSError, TimeoutError):
        return False
    return True


def _abort(writer: asyncio.StreamWriter, rng: random.Random) -> None:
    """Close; half the time with a reset (SO_LINGER 0), as a crashed peer would."""
    sock = writer.get_extra_info("socket")
    if sock is not None and rng.random() < 0.5:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        writer.transport.abort()
    else:
        writer.close()


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    async with asyncio.timeout(10):
        return await asyncio.open_connection(LOOPBACK, port, limit=2**22)


async def generic(target: Target, count: int, seed: int, concurrency: int = 256) -> Scenario:
    """Connections each writing one to three generated hostile inputs (half after a valid hello)."""
    result = Scenario("generated inputs", target.name)
    gen = Hostile(seed)
    gate = asyncio.Semaphore(concurrency)
    started = time.monotonic()

    async def one() -> None:
        pieces, frames = [], 0
        if gen.random() < 0.5:
            pieces.append(HELLO)
            frames += 1
        for _ in range(gen.randrange(1, 4)):
            _, data, n = gen.next_input()
            pieces.append(data)
            frames += n
        payload = b"".join(pieces)
        cut = gen.randrange(len(payload) + 1)
        async with gate:
            try:
                reader, writer = await _connect(target.port)
            except (OSError, TimeoutError) as exc:
                result.failures.append(f"could not connect: {exc!r}")
                return
            result.connections += 1
            result.frames += frames
            result.bytes_sent += len(payload)
            if await _write(writer, payload[:cut]):
                await asyncio.sleep(0)
                await _write(writer, payload[cut:])
            outcome, _ = await _read_until_closed(reader, 0.3)
            result.outcomes[outcome] += 1
            _abort(writer, gen)

    await asyncio.gather(*(one() for _ in range(count)))
    result.seconds = time.monotonic() - started
    result.rss_after_kib = rss_kib(target.pid) if target.alive() else 0
    return result


async def oversized(target: Target, count: int, seed: int) -> Scenario:
    """A header announcing more than the limit: the answer must be ``frame_too_large``, at once."""
    result = Scenario("oversized header", target.name)
    rng = random.Random(seed)
    started = time.monotonic()

    async def one() -> None:
        size = rng.randrange(DEFAULT_MAX_FRAME_SIZE + 1, 2**32)
        payload = (HELLO if rng.random() < 0.5 else b"") + size.to_bytes(4, "big") + rng.randbytes(rng.randrange(64))
        reader, writer = await _connect(target.port)
        result.connections += 1
        result.frames += 1 + payload.startswith(HELLO)
        result.bytes_sent += len(payload)
        await _write(writer, payload)
        outcome, seconds = await _read_until_closed(reader, 3.0)
        result.outcomes[outcome] += 1
        result.close_times.append(seconds)
        if outcome != "error frame_too_large":
            result.failures.append(f"oversized header ({size} bytes) ended with {outcome!r}")
        _abort(writer, rng)

    await asyncio.gather(*(one() for _ in range(count)))
    result.seconds = time.monotonic() - started
    result.rss_after_kib = rss_kib(target.pid) if target.alive() else 0
    return result


async def handshake_with(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Complete the handshake as a well-behaved client would (wait for ``welcome``)."""
    session = Session(accepting=False, node_id="fuzz-client", role="client")
    writer.write(session.start())
    async with asyncio.timeout(10):
        while not session.ready:
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("the server closed the connection during the handshake")
            session.receive_data(data)
            if session.failure is not None:
                raise session.failure


async def drip(target: Target, count: int, seed: int, every: float = 0.2, patience: float = 12.0) -> Scenario:
    """Connections announcing a large frame, then sending one byte every ``every`` seconds: half
    after a valid handshake (a 16 MiB frame), half before it (the largest frame a stranger may
    announce). Each must be closed (handshake timeout, or the heartbeat, since drips are no
    sign of life) within ``patience`` seconds."""
    result = Scenario("drip", target.name)
    rng = random.Random(seed)
    started = time.monotonic()

    async def one(handshake: bool) -> None:
        reader, writer = await _connect(target.port)
        result.connections += 1
        if handshake:
            await handshake_with(reader, writer)
            result.bytes_sent += len(HELLO)
        announced = DEFAULT_MAX_FRAME_SIZE if handshake else HANDSHAKE_MAX_FRAME_SIZE
        result.frames += 1 + handshake
        await _write(writer, announced.to_bytes(4, "big"))
        result.bytes_sent += 4
        closing = asyncio.ensure_future(_read_until_closed(reader, patience))
        while not closing.done():
            await asyncio.sleep(every)
            if not await _write(writer, b"x", timeout=1.0):
                break
            result.bytes_sent += 1
        outcome, seconds = await closing
        result.outcomes[outcome] += 1
        result.close_times.append(seconds)
        if outcome == "open":
            result.failures.append(f"a dripper ({'after' if handshake else 'before'} the handshake) was never closed")
        _abort(writer, rng)

    await asyncio.gather(*(one(i % 2 == 0) for i in range(count)))
    result.seconds = time.monotonic() - started
    result.rss_after_kib = rss_kib(target.pid) if target.alive() else 0
    return result


async def unread(target: Target, name: str, count: int, frame: bytes, frames: int, seed: int) -> Scenario:
    """Connections writing ``frames`` copies of ``frame`` after a hello and never reading."""
    result = Scenario(name, target.name)
    rng = random.Random(seed)
    started = time.monotonic()

    async def one() -> None:
        _, writer = await _connect(target.port)
        result.connections += 1
        await _write(writer, HELLO)
        sent = 1
        batch = 1000
        for _ in range(0, frames, batch):
            if not await _write(writer, frame * batch, timeout=2.0):
                break  # the server stopped reading us: flow control works
            sent += batch
        result.frames += sent
        result.bytes_sent += len(HELLO) + (sent - 1) * len(frame)
        result.outcomes["server stopped reading" if sent < frames else "all written"] += 1
        _abort(writer, rng)

    await asyncio.gather(*(one() for _ in range(count)))
    result.seconds = time.monotonic() - started
    result.rss_after_kib = rss_kib(target.pid) if target.alive() else 0
    return result


async def legit(target: Target, count: int, frame: bytes, per_connection: int) -> None:
    """Well-behaved connections, all open at once: a handshake, ``per_connection`` packets
    pipelined, every answer read, then a clean close (the warm-up's share of real load)."""

    async def one() -> None:
        reader, writer = await _connect(target.port)
        session = Session(accepting=False, node_id="legit", role="client")
        writer.write(session.start())
        answers = 0
        async with asyncio.timeout(30):
            while not session.ready:
                session.receive_data(await reader.read(65536))
            writer.write(frame * per_connection)
            while answers < per_connection:
                data = await reader.read(256 * 1024)
                if not data:
                    raise ConnectionError("the server closed a well-behaved connection")
                answers += len(session.receive_data(data))
                writer.write(session.data_to_send())
        writer.close()

    await asyncio.gather(*(one() for _ in range(count)))


def request_frame(endpoint: str, params: dict[str, Any], service: str = "FuzzService") -> bytes:
    body = msgspec.json.encode({"type": "request", "id": 1, "service": service, "endpoint": endpoint, "params": params})
    return len(body).to_bytes(4, "big") + body


def packet_frame(packet: dict[str, Any]) -> bytes:
    body = msgspec.json.encode(packet)
    return len(body).to_bytes(4, "big") + body


async def flood_packets(target: Target, name: str, count: int, make: Any, per_connection: int, seed: int) -> Scenario:
    """Connections sending ``per_connection`` packets from ``make(rng)`` after a hello, then
    leaving (the registrations and subscriptions they made must go with them)."""
    result = Scenario(name, target.name)
    rng = random.Random(seed)
    started = time.monotonic()

    async def one() -> None:
        reader, writer = await _connect(target.port)
        result.connections += 1
        payload = HELLO + b"".join(make(rng) for _ in range(per_connection))
        result.frames += 1 + per_connection
        result.bytes_sent += len(payload)
        await _write(writer, payload)
        outcome, _ = await _read_until_closed(reader, 0.5)
        result.outcomes[outcome] += 1
        _abort(writer, rng)

    await asyncio.gather(*(one() for _ in range(count)))
    result.seconds = time.monotonic() - started
    result.rss_after_kib = rss_kib(target.pid) if target.alive() else 0
    return result


def random_registration(rng: random.Random) -> bytes:
    node = rng.randbytes(8).hex()
    instance = {"service": f"Fake{rng.randrange(50)}", "version": "1", "host": LOOPBACK, "port": 1, "node_id": node}
    deps = [{"service": f"Dep{rng.randrange(50)}", "version": "1"}]
    if rng.random() < 0.5:
        return packet_frame({"type": "register", "instance": instance, "dependencies": deps})
    return packet_frame({"type": "watch", "services": [f"W{rng.randrange(10**6)}" for _ in range(20)]})


def huge_watch(names: int) -> Any:
    """A maker of one ``watch`` naming ``names`` made-up services."""

    def make(rng: random.Random) -> bytes:
        return packet_frame({"type": "watch", "services": [f"{rng.randrange(10**9):09d}" for _ in range(names)]})

    return make


def random_subscription(rng: random.Random) -> bytes:
    subscriptions = [{"event": f"e{rng.randrange(5)}", "group": rng.randbytes(6).hex()} for _ in range(5)]
    return packet_frame({"type": "subscribe", "service": "FuzzService", "subscriptions": subscriptions})


class RssSampler:
    """Samples the RSS of some processes every ``interval`` seconds, keeping the peak."""

    def __init__(self, pids: dict[str, int], interval: float = 0.1) -> None:
        self.pids = pids
        self.interval = interval
        self.peak: dict[str, int] = dict.fromkeys(pids, 0)
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            for name, pid in self.pids.items():
                try:
                    self.peak[name] = max(self.peak[name], rss_kib(pid))
                except (OSError, RuntimeError):
                    pass
            await asyncio.sleep(self.interval)

    def __enter__(self) -> RssSampler:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()


def raise_fd_limit(wanted: int = 65536) -> int:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def pid_of(proc: ProcessRunner) -> int:
    assert proc.process is not None
    return proc.process.pid
