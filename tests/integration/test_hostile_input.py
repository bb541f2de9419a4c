"""Hostile peers against real registry and service processes on loopback (issue 9, "Hostile
input"): idle connections, connections dripping a 16 MiB frame, a client pipelining 200,000
requests without reading. Each test prints its figures; bounds are generous so that a loaded
machine does not flake, and far below what the defects they guard against cost.
"""

from __future__ import annotations

import asyncio
import re
import resource
import socket
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
from integration_support import output_mark, wait_for_line

from vyked import TCPServiceClient, request
from vyked.core.protocol.framing import DEFAULT_MAX_FRAME_SIZE, FrameDecoder, encode_frame
from vyked.core.protocol.packets import Error, Ping
from vyked.core.protocol.session import HANDSHAKE_MAX_FRAME_SIZE, Session
from vyked.core.service_host import ServiceHost
from vyked.core.testing import ProcessRunner, SteadyCaller
from vyked.registry.server import REGISTRY_MAX_FRAME_SIZE

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
TARGET = str(HERE / "hostile_service.py")
REGISTRY_HANDSHAKE_TIMEOUT = 1.0
"""The registry's handshake timeout in these tests (TCP services keep the default 5 s)."""
SERVICE_HANDSHAKE_TIMEOUT = 5.0
HEARTBEAT_TIMEOUT = 2.0
PING = bytes(encode_frame(Ping()))
HELLO = Session(accepting=False, node_id="hostile", role="client").start()


# -- processes and measurements -------------------------------------------------------------------


@dataclass
class Cluster:
    registry: ProcessRunner
    registry_port: int
    service: ProcessRunner
    service_port: int

    def target(self, name: str) -> tuple[ProcessRunner, int]:
        return (self.registry, self.registry_port) if name == "registry" else (self.service, self.service_port)


async def start_cluster(
    start_process: Callable[..., ProcessRunner], style: str = "async", max_in_flight: int = 1000
) -> Cluster:
    registry = start_process(TARGET, "registry", "--handshake-timeout", str(REGISTRY_HANDSHAKE_TIMEOUT))
    match = await asyncio.to_thread(wait_for_line, registry, r" listening on 127\.0\.0\.1:(\d+), ")
    registry_port = int(match.group(1))
    args = ["--registry", f"127.0.0.1:{registry_port}", "--style", style, "--max-in-flight", str(max_in_flight)]
    service = start_process(TARGET, "service", *args)
    match = await asyncio.to_thread(wait_for_line, service, r"tcp HostileTarget v1 serving on 127\.0\.0\.1:(\d+)")
    return Cluster(registry, registry_port, service, int(match.group(1)))


def pid(proc: ProcessRunner) -> int:
    assert proc.process is not None
    return proc.process.pid


def alive(proc: ProcessRunner) -> bool:
    return proc.process is not None and proc.process.poll() is None


def rss_mib(proc: ProcessRunner) -> float:
    for line in Path(f"/proc/{pid(proc)}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@contextmanager
def rss_peak(proc: ProcessRunner, interval: float = 0.05) -> Iterator[list[float]]:
    """Samples ``proc``'s RSS from a thread (the test's loop may be busy); yields ``[peak]``."""
    peak = [rss_mib(proc)]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(interval):
            try:
                peak[0] = max(peak[0], rss_mib(proc))
            except (OSError, RuntimeError):
                return

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()


def raise_fd_limit(needed: int) -> None:
    """Raise this process's descriptor limit (the processes it starts inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"needs {needed} file descriptors; the hard limit is {hard} (raise it with ulimit -Hn)")
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else needed, hard))


def log_since(proc: ProcessRunner, mark: int) -> str:
    return proc.output()[mark:]


HANDSHAKE_CLOSE = re.compile(r"closing connection with 127\.0\.0\.1:(\d+): no complete handshake")
HEARTBEAT_CLOSE = re.compile(r"127\.0\.0\.1:(\d+) sent nothing for [\d.]+ s \(heartbeat timeout")


def closed_ports(log: str, pattern: re.Pattern[str]) -> set[int]:
    return {int(m.group(1)) for m in pattern.finditer(log)}


class HostileClient(TCPServiceClient):
    def __init__(self) -> None:
        super().__init__("HostileTarget", 1)

    @request(timeout=10)
    def echo(self, value: Any) -> dict[str, Any]:
        return locals()

    @request(timeout=30)
    def slow(self, seconds: float) -> dict[str, Any]:
        return locals()


async def serves_normally(cluster: Cluster) -> None:
    """A new host connects to the registry, finds the service and calls it."""
    host = ServiceHost(f"127.0.0.1:{cluster.registry_port}")
    client = HostileClient()
    host.bind_client(client)
    try:
        async with asyncio.timeout(15):
            await host.start()
            assert await client.echo({"still": "serving"}) == {"still": "serving"}
    finally:
        await host.stop()


async def complete_handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Say hello and wait for ``welcome``, as a well-behaved client does."""
    session = Session(accepting=False, node_id="hostile", role="client")
    writer.write(session.start())
    async with asyncio.timeout(10):
        while not session.ready:
            data = await reader.read(65536)
            assert data, "the server closed the connection during the handshake"
            session.receive_data(data)
            assert session.failure is None, session.failure


async def read_until_closed(reader: asyncio.StreamReader, limit: float) -> str:
    """How the server ended the connection: ``error <code>``, ``closed``, ``reset`` or ``open``."""
    decoder = FrameDecoder()
    code = ""
    try:
        async with asyncio.timeout(limit):
            while data := await reader.read(65536):
                for packet in decoder.feed(data):
                    if isinstance(packet, Error) and packet.id is None:
                        code = packet.code
    except TimeoutError:
        return "open"
    except OSError:
        return "reset"
    return f"error {code}" if code else "closed"


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{min(values):.1f} / {statistics.median(values):.1f} / {max(values):.1f} s (min/median/max)"


# -- a. idle connections ------------------------------------------------------------------------

IDLE_CONNECTIONS = 2000


@pytest.mark.timeout(180)
@pytest.mark.parametrize("behaviour", ["silent", "pinging"])
@pytest.mark.parametrize("target", ["registry", "service"])
async def test_idle_connections_are_closed(
    start_process: Callable[..., ProcessRunner], target: str, behaviour: str
) -> None:
    """2,000 connections that never say hello: ``silent`` ones send nothing (the heartbeat or the
    handshake timeout closes them), ``pinging`` ones keep pinging so that only the handshake
    timeout can. All must be closed, and the process must serve a normal client afterwards."""
    raise_fd_limit(2 * IDLE_CONNECTIONS + 1000)
    cluster = await start_cluster(start_process)
    proc, port = cluster.target(target)
    mark = output_mark(proc)
    rss_before = rss_mib(proc)
    handshake_timeout = REGISTRY_HANDSHAKE_TIMEOUT if target == "registry" else SERVICE_HANDSHAKE_TIMEOUT
    gate = asyncio.Semaphore(100)  # do not overflow the listen backlog
    outcomes: Counter[str] = Counter()
    lifetimes: list[float] = []
    ports: set[int] = set()
    started = time.monotonic()

    async def idle() -> None:
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        opened = time.monotonic()
        ports.add(writer.get_extra_info("sockname")[1])
        pinger = None
        if behaviour == "pinging":

            async def ping() -> None:
                while True:
                    writer.write(PING)
                    await asyncio.sleep(0.5)

            pinger = asyncio.ensure_future(ping())
        outcome = await read_until_closed(reader, handshake_timeout + 20)
        lifetimes.append(time.monotonic() - opened)
        outcomes[outcome] += 1
        if pinger is not None:
            pinger.cancel()
        writer.close()

    with rss_peak(proc) as peak:
        await asyncio.gather(*(idle() for _ in range(IDLE_CONNECTIONS)))
    elapsed = time.monotonic() - started
    log = log_since(proc, mark)
    by_handshake = len(closed_ports(log, HANDSHAKE_CLOSE) & ports)
    by_heartbeat = len(closed_ports(log, HEARTBEAT_CLOSE) & ports)
    print(
        f"\n{IDLE_CONNECTIONS} {behaviour} connections to the {target} (handshake timeout {handshake_timeout} s, "
        f"heartbeat timeout {HEARTBEAT_TIMEOUT} s): {dict(outcomes)} in {elapsed:.1f} s; "
        f"closed by the handshake timeout {by_handshake}, by the heartbeat {by_heartbeat}; "
        f"lifetime {spread(lifetimes)}; RSS {rss_before:.1f} -> peak {peak[0]:.1f} MiB"
    )
    assert outcomes["open"] == 0, f"{outcomes['open']} idle connections were never closed"
    if behaviour == "pinging":  # pings are signs of life: only the handshake timeout applies
        # (counted from the server's log: a peer still pinging may see a reset instead of the
        # error packet, when its last ping is unread as the server closes)
        assert by_handshake == IDLE_CONNECTIONS
        assert max(lifetimes) < handshake_timeout + 10
    assert alive(proc)
    await serves_normally(cluster)


# -- b. drips ---------------------------------------------------------------------------------------

DRIPPERS = 200


@pytest.mark.timeout(180)
@pytest.mark.parametrize("target", ["registry", "service"])
async def test_connections_dripping_a_16_mib_frame(start_process: Callable[..., ProcessRunner], target: str) -> None:
    """Each dripper announces a large frame and sends one byte every 0.25 s: half after a valid
    handshake (a 16 MiB frame), half before it (the largest frame a stranger may announce; a
    16 MiB header is refused at once then). The server holds memory only for the bytes
    received, innocent peers' heartbeats do not time out meanwhile, and the drippers are closed."""
    raise_fd_limit(2 * DRIPPERS + 1000)
    cluster = await start_cluster(start_process)
    proc, port = cluster.target(target)
    marks = {"registry": output_mark(cluster.registry), "service": output_mark(cluster.service)}
    host = ServiceHost(f"127.0.0.1:{cluster.registry_port}")
    client = HostileClient()
    host.bind_client(client)
    await host.start()
    innocent = SteadyCaller(client.echo, interval=0.1).start()
    rss_before = rss_mib(proc)
    outcomes: Counter[str] = Counter()
    lifetimes: list[float] = []
    ports: set[int] = set()
    dripped = 0

    async def drip(handshake: bool) -> None:
        nonlocal dripped
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        opened = time.monotonic()
        ports.add(writer.get_extra_info("sockname")[1])
        if handshake:
            await complete_handshake(reader, writer)
        largest = REGISTRY_MAX_FRAME_SIZE if target == "registry" else DEFAULT_MAX_FRAME_SIZE
        announced = largest if handshake else HANDSHAKE_MAX_FRAME_SIZE
        writer.write(announced.to_bytes(4, "big"))
        closing = asyncio.ensure_future(read_until_closed(reader, 20.0))
        while not closing.done():
            await asyncio.sleep(0.25)
            if writer.is_closing():
                break
            writer.write(b"x")
            dripped += 1
        outcomes[f"{'after' if handshake else 'before'} the handshake: {await closing}"] += 1
        lifetimes.append(time.monotonic() - opened)
        writer.close()

    with rss_peak(proc) as peak:
        await asyncio.gather(*(drip(i % 2 == 0) for i in range(DRIPPERS)))
    await innocent.stop()
    await host.stop()
    grown = peak[0] - rss_before
    logs = {
        name: log_since(p, marks[name]) for name, p in (("registry", cluster.registry), ("service", cluster.service))
    }
    innocent_timeouts = {name: sorted(closed_ports(log, HEARTBEAT_CLOSE) - ports) for name, log in logs.items()}
    print(
        f"\n{DRIPPERS} connections dripping a frame of the largest size into the {target}: {dripped} bytes dripped; "
        f"{dict(outcomes)}; lifetime {spread(lifetimes)}; RSS {rss_before:.1f} -> peak {peak[0]:.1f} MiB "
        f"(+{grown:.1f} MiB, {grown * 1024 / DRIPPERS:.0f} KiB per dripper); innocent caller: {innocent.summary()}; "
        f"innocent heartbeat timeouts: {innocent_timeouts}"
    )
    assert not any(k.endswith("open") for k in outcomes), "drippers must be closed: a drip is no sign of life"
    assert not any(k.endswith("frame_too_large") for k in outcomes), "the frames announced are within the limits"
    assert grown < 48, "the server must hold about what drippers sent, not what they announced"
    assert not innocent.failures
    assert innocent_timeouts == {"registry": [], "service": []}
    assert "lost the registry connection" not in logs["service"]
    assert alive(proc)
    await serves_normally(cluster)


# -- c. a client that never reads ---------------------------------------------------------------------

PIPELINED = 200_000


@dataclass
class Flood:
    sent: int = 0
    connections: int = 0
    ended: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


def flood(port: int, total: int, endpoint: str, params: dict[str, Any], patience: float = 120.0) -> Flood:
    """Pipeline ``total`` requests without reading a byte of the answers, reconnecting when the
    server gives up on a connection; blocking sockets, run in a thread."""
    result = Flood()
    started = time.monotonic()
    encoder = msgspec.json.Encoder()
    while result.sent < total and time.monotonic() - started < patience:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        result.connections += 1
        session = Session(accepting=False, node_id="flood", role="client")
        sock.sendall(session.start())
        while not session.ready:
            session.receive_data(sock.recv(65536))
            assert session.failure is None, session.failure
        sock.settimeout(3.0)  # the server stops reading us: that is the point
        try:
            while result.sent < total and time.monotonic() - started < patience:
                batch = bytearray()
                for i in range(result.sent, min(total, result.sent + 500)):
                    body = encoder.encode(
                        {"type": "request", "id": i, "service": "HostileTarget", "endpoint": endpoint, "params": params}
                    )
                    batch += len(body).to_bytes(4, "big") + body
                sock.sendall(batch)
                result.sent += 500
        except TimeoutError:
            result.ended["the server stopped reading"] += 1
        except OSError as exc:
            result.ended[f"the server closed it ({type(exc).__name__})"] += 1
        else:
            result.ended["all requests written"] += 1
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
    result.seconds = time.monotonic() - started
    return result


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("style", "endpoint", "params"),
    [("async", "blob", {"size": 4096}), ("sync", "blob", {"size": 4096}), ("async", "slow", {"seconds": 0.25})],
    ids=["async-blob", "sync-blob", "async-slow"],
)
async def test_a_client_that_never_reads_its_answers(
    start_process: Callable[..., ProcessRunner], style: str, endpoint: str, params: dict[str, Any]
) -> None:
    """200,000 pipelined requests whose answers are never read: 4 KiB answers (the service stops
    reading the peer once 1 MiB waits unsent) or slow ones (at most ``max_in_flight`` run at
    once). The service does not buffer without bound, and serves another client meanwhile."""
    cluster = await start_cluster(start_process, style=style)
    host = ServiceHost(f"127.0.0.1:{cluster.registry_port}")
    client = HostileClient()
    host.bind_client(client)
    await host.start()
    await client.echo(0)
    rss_before = rss_mib(cluster.service)
    innocent = SteadyCaller(client.echo, interval=0.02).start()
    with rss_peak(cluster.service) as peak:
        figures = await asyncio.to_thread(flood, cluster.service_port, PIPELINED, endpoint, params)
    await innocent.stop()
    await asyncio.sleep(3)
    rss_after = rss_mib(cluster.service)
    print(
        f"\n{figures.sent} pipelined {style} {endpoint!r} requests over {figures.connections} connections in "
        f"{figures.seconds:.1f} s, never read ({dict(figures.ended)}); service RSS {rss_before:.1f} -> peak "
        f"{peak[0]:.1f} MiB (+{peak[0] - rss_before:.1f}), {rss_after:.1f} MiB 3 s later; "
        f"the other client meanwhile: {innocent.summary()}"
    )
    assert figures.sent >= PIPELINED
    assert peak[0] - rss_before < 64, "unread answers must not pile up in the service"
    assert not innocent.failures
    assert max(innocent.latencies) < 5.0
    assert alive(cluster.service)
    await serves_normally(cluster)
    await host.stop()


# -- defects these probes found --------------------------------------------------------------------


@pytest.mark.timeout(120)
async def test_calls_beyond_max_in_flight_to_slow_handlers_all_succeed(
    start_process: Callable[..., ProcessRunner],
) -> None:
    """A well-behaved client with more calls running than ``max_in_flight`` (10 here, 1,000 by
    default) to a handler slower than the heartbeat timeout: the service stops reading the
    connection, which must not make it take the client for dead (its pongs wait unread)."""
    cluster = await start_cluster(start_process, max_in_flight=10)
    host = ServiceHost(f"127.0.0.1:{cluster.registry_port}")
    client = HostileClient()
    host.bind_client(client)
    await host.start()
    mark = output_mark(cluster.service)
    started = time.monotonic()
    results = await asyncio.gather(*(client.slow(3.0) for _ in range(30)), return_exceptions=True)
    elapsed = time.monotonic() - started
    await host.stop()
    failed = Counter(type(r).__name__ for r in results if isinstance(r, BaseException))
    log = log_since(cluster.service, mark).strip()[-300:]
    answered = 30 - sum(failed.values())
    print(
        f"\n30 calls of 3 s, max_in_flight 10: {answered} answered, failures {dict(failed)}, "
        f"{elapsed:.1f} s; service log: {log!r}"
    )
    assert not failed


@pytest.mark.timeout(120)
async def test_one_huge_watch_neither_stalls_nor_bloats_the_registry(
    start_process: Callable[..., ProcessRunner],
) -> None:
    """A stranger's single ``watch`` naming a million services (a 9.5 MiB frame, within the
    limit) that never reads the answers: the registry must not answer with a million snapshots
    at once, nor stall its loop past innocent peers' heartbeat timeout."""
    body = msgspec.json.encode({"type": "watch", "services": [f"{i:07d}" for i in range(1_000_000)]})
    cluster = await start_cluster(start_process)
    marks = {"registry": output_mark(cluster.registry), "service": output_mark(cluster.service)}
    host = ServiceHost(f"127.0.0.1:{cluster.registry_port}")
    client = HostileClient()
    host.bind_client(client)
    await host.start()
    innocent = SteadyCaller(client.echo, interval=0.1).start()
    rss_before = rss_mib(cluster.registry)
    reader, writer = await asyncio.open_connection("127.0.0.1", cluster.registry_port)
    stranger = writer.get_extra_info("sockname")[1]
    await complete_handshake(reader, writer)
    with rss_peak(cluster.registry) as peak:
        writer.write(len(body).to_bytes(4, "big") + body)
        await asyncio.sleep(8)
    writer.transport.abort()
    await innocent.stop()
    await host.stop()
    await asyncio.sleep(3)
    rss_after = rss_mib(cluster.registry)
    logs = {
        "registry": log_since(cluster.registry, marks["registry"]),
        "service": log_since(cluster.service, marks["service"]),
    }
    timeouts = {name: sorted(closed_ports(log, HEARTBEAT_CLOSE) - {stranger}) for name, log in logs.items()}
    stalls = [float(s) for s in re.findall(r"sent nothing for ([\d.]+) s", logs["registry"])]
    print(
        f"\none watch of 1,000,000 services ({len(body) / 2**20:.1f} MiB): registry RSS {rss_before:.1f} -> peak "
        f"{peak[0]:.1f} MiB, {rss_after:.1f} MiB 3 s after the stranger left; heartbeat silences seen by the registry "
        f"{stalls} s (timeout {HEARTBEAT_TIMEOUT} s); innocent heartbeat timeouts {timeouts}; innocent caller: "
        f"{innocent.summary()}"
    )
    assert peak[0] - rss_before < 100
    assert not innocent.failures
    assert timeouts == {"registry": [], "service": []}
    assert max(stalls, default=0.0) < HEARTBEAT_TIMEOUT + 1.0, "the registry's loop stalled"
    assert "lost the registry connection" not in logs["service"]


@pytest.mark.timeout(120)
async def test_departed_registrations_do_not_pin_their_size_in_memory(
    start_process: Callable[..., ProcessRunner],
) -> None:
    """Strangers registering instances with 1 MB fields and leaving: the registry remembers
    departed instances (for status), which must not keep megabytes per stranger."""
    cluster = await start_cluster(start_process)
    rss_before = rss_mib(cluster.registry)
    for i in range(50):
        _, writer = await asyncio.open_connection("127.0.0.1", cluster.registry_port)
        instance = {"service": "Big", "version": "1", "host": "h" * 1_000_000, "port": 1, "node_id": f"big-{i}"}
        body = msgspec.json.encode({"type": "register", "instance": instance})
        writer.write(HELLO + len(body).to_bytes(4, "big") + body)
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()
    await asyncio.sleep(3)
    grown = rss_mib(cluster.registry) - rss_before
    print(f"\n50 departed registrations with a 1 MB host field: registry RSS +{grown:.1f} MiB, 3 s after they left")
    assert grown < 20
    await serves_normally(cluster)
