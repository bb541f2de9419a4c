"""Every failure of docs/failures.md, driven through the public API over real sockets.

Each case does one thing that must fail and returns nothing; :func:`failure_of` runs it and
hands back what reached the caller, which must be a ``vyked.VykedError`` and the class the
table documents. A registry process (``python -m vyked.registry``) serves every case; service
instances run in this process, or in a child process where the case kills or freezes it.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from integration_support import wait_output

import vyked
from vyked import (
    ConnectionLost,
    HostNotRunning,
    InvalidParams,
    RegistryUnavailable,
    RemoteError,
    RequestTimeout,
    ServiceHost,
    ServiceUnavailable,
    TCPService,
    TCPServiceClient,
    UnknownEndpoint,
    VykedError,
    api,
    publish,
    request,
)
from vyked.core.exceptions import PublishError
from vyked.core.protocol.packets import Packet
from vyked.core.testing import ProcessRunner, RawClient, frame, free_port
from vyked.core.transport import Connection, PacketServer
from vyked.tcp.pool import POOL

SERVICE = "FailureTree"


class FailureService(TCPService):
    def __init__(self, version: object = 1) -> None:
        super().__init__(SERVICE, version, "127.0.0.1", 0)
        self.calls = 0

    @api
    async def add(self, a: int, b: int) -> int:
        self.calls += 1
        return a + b

    @api
    async def boom(self, message: str) -> None:
        raise ValueError(message, 7)

    @api(timeout=0.2)
    async def stuck(self) -> None:
        await asyncio.sleep(30)

    @api
    async def slow(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"

    @api
    async def unserialisable(self) -> object:
        return {"socket": object()}

    @api(max_concurrency=1)
    async def exclusive(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"

    @publish
    def happened(self, what: object) -> dict[str, Any]:
        return locals()


class FailureClient(TCPServiceClient):
    def __init__(self, service: str = SERVICE, version: object = 1) -> None:
        super().__init__(service, version)

    @request
    def add(self, a: object, b: object) -> dict[str, Any]:
        return locals()

    @request
    def boom(self, message: str) -> dict[str, Any]:
        return locals()

    @request
    def stuck(self) -> dict[str, Any]:
        return locals()

    @request(timeout=0.3)
    def slow(self, seconds: float) -> dict[str, Any]:
        return locals()

    @request
    def unserialisable(self) -> dict[str, Any]:
        return locals()

    @request
    def missing(self) -> dict[str, Any]:
        return locals()

    @request
    def exclusive(self, seconds: float) -> dict[str, Any]:
        return locals()


class SloppyClient(TCPServiceClient):
    def __init__(self) -> None:
        super().__init__(SERVICE, 1)

    @request
    def add(self, a: int) -> dict[str, Any]:
        return {"a": a, "c": 3}


class SleeperClient(TCPServiceClient):
    def __init__(self) -> None:
        super().__init__("Sleeper", 1)

    @request(timeout=60)
    def sleep(self, seconds: float) -> dict[str, Any]:
        return locals()


# A service in a child process, so that a case can SIGKILL or SIGSTOP it.
SLEEPER = """
import asyncio, sys
from vyked import Host, TCPService, api

class Sleeper(TCPService):
    def __init__(self):
        super().__init__("Sleeper", 1, "127.0.0.1", 0)

    @api
    async def sleep(self, seconds):
        await asyncio.sleep(seconds)
        return "slept"

Host.registry_host = sys.argv[1]
Host.attach_service(Sleeper())
Host.run()
"""


class Mute:
    """A registry that completes the handshake and never answers anything."""

    def packet_received(self, conn: Connection, packet: Packet) -> None:
        pass

    def connection_lost(self, conn: Connection, exc: BaseException | None) -> None:
        pass


@dataclass
class World:
    registry_port: int
    start_process: Callable[..., ProcessRunner]
    hosts: list[ServiceHost] = field(default_factory=list)
    cleanups: list[Callable[[], Awaitable[object]]] = field(default_factory=list)
    started_at: float = 0.0
    addresses: list[str] = field(default_factory=list)
    """Addresses a case tried, for its check."""

    @property
    def registry(self) -> str:
        return f"127.0.0.1:{self.registry_port}"

    async def host(self, *services: TCPService, clients: tuple[TCPServiceClient, ...] = ()) -> ServiceHost:
        host = ServiceHost(self.registry)
        for service in services:
            host.attach(service)
        for client in clients:
            host.bind_client(client)
        self.hosts.append(host)
        await host.start()
        return host

    async def serving(self, client: TCPServiceClient | None = None) -> tuple[FailureService, TCPServiceClient]:
        """A FailureService instance and a client (a FailureClient unless given) on its own host."""
        service = FailureService()
        await self.host(service)
        client = client or FailureClient()
        await self.host(clients=(client,))
        return service, client

    async def sleeper(self) -> tuple[ProcessRunner, SleeperClient]:
        proc = self.start_process("-c", SLEEPER, self.registry)
        await wait_output(proc, "tcp Sleeper v1 serving on")
        client = SleeperClient()
        await self.host(clients=(client,))
        assert len(client.host.directory.instances("Sleeper")) == 1  # type: ignore[union-attr]
        return proc, client

    def start_clock(self) -> None:
        self.started_at = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started_at


@pytest.fixture
async def world(registry_process: int, start_process: Callable[..., ProcessRunner]) -> AsyncIterator[World]:
    w = World(registry_process, start_process)
    yield w
    for host in reversed(w.hosts):
        await host.stop()
    for cleanup in reversed(w.cleanups):
        await cleanup()


async def failure_of(case: Callable[[World], Awaitable[object]], world: World, timeout: float = 30) -> BaseException:
    """Run ``case`` and return the exception that reached the caller; fail if there was none."""
    try:
        async with asyncio.timeout(timeout):
            await case(world)
    except Exception as exc:
        return exc
    pytest.fail(f"{case.__name__} raised nothing")


# -- the cases, one per row of docs/failures.md (and a few more) --------------------------------


async def remote_handler_raises(w: World) -> None:
    _, client = await w.serving()
    await client.boom("kaput")  # type: ignore[attr-defined]


async def handler_timeout(w: World) -> None:
    _, client = await w.serving()
    w.start_clock()
    await client.stuck()  # type: ignore[attr-defined]


async def request_timeout(w: World) -> None:
    _, client = await w.serving()
    w.start_clock()
    await client.slow(10)  # type: ignore[attr-defined]


async def unknown_endpoint(w: World) -> None:
    _, client = await w.serving()
    await client.missing()  # type: ignore[attr-defined]


async def invalid_params(w: World) -> None:
    _, client = await w.serving(SloppyClient())
    await client.add(1)  # type: ignore[attr-defined]


async def non_json_param(w: World) -> None:
    service, client = await w.serving()
    assert await client.add(1, 1) == 2  # type: ignore[attr-defined]  # connected: the fast path
    try:
        await client.add(1, object())  # type: ignore[attr-defined]
    finally:
        assert service.calls == 1  # nothing was sent


async def non_json_param_first_call(w: World) -> None:
    service, client = await w.serving()
    try:
        await client.add(object(), 1)  # type: ignore[attr-defined]  # no connection yet: the slow path
    finally:
        assert service.calls == 0


async def non_json_result(w: World) -> None:
    _, client = await w.serving()
    await client.unserialisable()  # type: ignore[attr-defined]


async def no_instance_at_all(w: World) -> None:
    client = FailureClient()
    await w.host(clients=(client,))
    w.start_clock()
    await client.add(1, 2)


async def no_instance_of_the_version(w: World) -> None:
    await w.host(FailureService(version="1.4"))
    client = FailureClient(version=2)
    await w.host(clients=(client,))
    w.start_clock()
    await client.add(1, 2)


async def dependency_lost_its_last_instance(w: World) -> None:
    service = FailureService()
    service_host = await w.host(service)
    client = FailureClient()
    await w.host(clients=(client,))
    assert await client.add(1, 2) == 3
    await service_host.stop()
    for _ in range(100):  # the registry pushes the removal
        if not client.host.directory.instances(SERVICE):  # type: ignore[union-attr]
            break
        await asyncio.sleep(0.02)
    w.start_clock()
    await client.add(1, 2)


async def connection_dies_in_flight(w: World) -> None:
    proc, client = await w.sleeper()
    pending = [asyncio.ensure_future(client.sleep(30)) for _ in range(3)]  # type: ignore[attr-defined]
    await asyncio.sleep(0.3)
    assert not any(p.done() for p in pending)
    w.start_clock()
    proc.kill()
    results = await asyncio.gather(*pending, return_exceptions=True)
    assert all(type(r) is type(results[0]) for r in results), results
    raise results[0]  # type: ignore[misc]


async def every_instance_refuses(w: World) -> None:
    _, client = await w.serving()
    busy = asyncio.ensure_future(client.exclusive(0.5))  # type: ignore[attr-defined]
    await asyncio.sleep(0.1)
    w.cleanups.append(lambda: asyncio.gather(busy, return_exceptions=True))
    w.started_at = time.monotonic()
    await client.exclusive(0)  # type: ignore[attr-defined]  # over max_concurrency: refused


async def instance_freezes(w: World) -> None:
    proc, client = await w.sleeper()
    pending = asyncio.ensure_future(client.sleep(30))  # type: ignore[attr-defined]
    await asyncio.sleep(0.3)
    w.start_clock()
    proc.send_signal(signal.SIGSTOP)
    await pending


async def register_dead(w: World, count: int) -> None:
    """Register ``count`` FailureTree instances at ports nobody listens on, kept registered (a
    task answers the registry's pings) until the test ends."""
    raw = await RawClient.connect(w.registry_port)

    async def keep_alive() -> None:
        while True:
            await raw.receive(timeout=3600)

    async def close() -> None:
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
        await raw.close()

    for _ in range(count):
        node_id = uuid.uuid4().hex
        instance = {"service": SERVICE, "version": "1", "host": "127.0.0.1", "port": free_port(), "node_id": node_id}
        raw.send({"type": "register", "instance": instance})
        while (packet := await raw.receive()) != {"type": "registered", "node_id": node_id}:
            assert packet["type"] == "service_state", packet
    keeper = asyncio.get_running_loop().create_task(keep_alive())
    w.cleanups.append(close)


async def instance_unreachable(w: World) -> None:
    await register_dead(w, 2)
    client = FailureClient()
    host = await w.host(clients=(client,))
    assert len(host.directory.instances(SERVICE)) == 2
    w.start_clock()
    await client.add(1, 2)


async def no_registry_reachable(w: World) -> None:
    w.addresses = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    host = ServiceHost(",".join(w.addresses))
    host.attach(FailureService())
    await host.start()


async def no_registry_reachable_for_a_script_client(w: World) -> None:
    vyked.Host.registry_host = "127.0.0.1"
    vyked.Host.registry_port = free_port()
    await FailureClient().add(1, 2)


async def registry_never_answers(w: World) -> None:
    server = PacketServer(Mute(), node_id="mute")
    _, port = await server.start("127.0.0.1", 0)
    w.cleanups.append(server.close)
    host = ServiceHost(f"127.0.0.1:{port}")
    host.attach(FailureService())
    w.start_clock()
    await host.start()


async def registry_of_another_version(w: World) -> None:
    refusal = frame({"type": "error", "code": "protocol_version", "message": "this peer speaks protocol 2"})

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(refusal)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)

    async def close() -> None:
        server.close()
        await server.wait_closed()

    w.cleanups.append(close)
    host = ServiceHost(f"127.0.0.1:{server.sockets[0].getsockname()[1]}")
    host.attach(FailureService())
    await host.start()


async def host_not_running(w: World) -> None:
    await w.host(FailureService())
    client = FailureClient()
    ServiceHost(w.registry).bind_client(client)  # never started
    await client.add(1, 2)


async def host_stopped(w: World) -> None:
    _, client = await w.serving()
    assert await client.add(1, 2) == 3  # type: ignore[attr-defined]
    await client.host.stop()  # type: ignore[union-attr]
    await client.add(1, 2)  # type: ignore[attr-defined]


async def publish_bad_payload(w: World) -> None:
    service = FailureService()
    await w.host(service)
    service.happened(object())


async def publish_not_a_dict(w: World) -> None:
    class Wrong(FailureService):
        @publish
        def happened(self, what: object) -> Any:
            return [what]

    service = Wrong()
    await w.host(service)
    service.happened(1)


async def publish_without_a_host(w: World) -> None:
    FailureService().happened("fine payload")


Check = Callable[[Any, World], None]


def no_check(exc: Any, w: World) -> None:
    pass


def remote_value_error(exc: Any, w: World) -> None:
    assert (exc.remote_type, exc.message, exc.remote_args) == ("ValueError", "('kaput', 7)", ["kaput", 7])


def remote_type_error(exc: Any, w: World) -> None:
    assert exc.remote_type == "TypeError"


def quick(limit: float) -> Check:
    def check(exc: Any, w: World) -> None:
        assert w.elapsed < limit, f"took {w.elapsed:.2f} s"

    return check


def all_of(*checks: Check) -> Check:
    def check(exc: Any, w: World) -> None:
        for c in checks:
            c(exc, w)

    return check


def message(*parts: str) -> Check:
    def check(exc: Any, w: World) -> None:
        for part in parts:
            assert part in str(exc), (part, str(exc))

    return check


def every_address(exc: Any, w: World) -> None:
    assert len(w.addresses) == 2
    for address in w.addresses:
        assert address in str(exc), (address, str(exc))


def between(low: float, high: float) -> Check:
    def check(exc: Any, w: World) -> None:
        assert low <= w.elapsed < high, f"took {w.elapsed:.2f} s"

    return check


CASES = [
    pytest.param(remote_handler_raises, RemoteError, remote_value_error, id="remote handler raises"),
    pytest.param(
        handler_timeout, RequestTimeout, all_of(message("within its timeout"), quick(2)), id="handler timeout"
    ),
    pytest.param(request_timeout, RequestTimeout, all_of(message("got no answer"), quick(2)), id="request timeout"),
    pytest.param(unknown_endpoint, UnknownEndpoint, message("'missing'", "add", "boom"), id="unknown endpoint"),
    pytest.param(invalid_params, InvalidParams, message(f"{SERVICE}.add"), id="invalid params"),
    pytest.param(non_json_param, InvalidParams, message("not JSON-serialisable"), id="non-JSON param"),
    pytest.param(non_json_param_first_call, InvalidParams, message("not JSON-serialisable"), id="non-JSON param, cold"),
    pytest.param(non_json_result, RemoteError, remote_type_error, id="non-JSON result"),
    pytest.param(no_instance_at_all, ServiceUnavailable, all_of(message(SERVICE), quick(1)), id="no live instance"),
    pytest.param(
        no_instance_of_the_version,
        ServiceUnavailable,
        all_of(message("registered: 1.4"), quick(1)),
        id="no live instance of the version",
    ),
    pytest.param(dependency_lost_its_last_instance, ServiceUnavailable, quick(1), id="dependency lost"),
    pytest.param(connection_dies_in_flight, ConnectionLost, quick(2), id="connection dies in flight"),
    pytest.param(instance_freezes, ConnectionLost, between(1.5, 5), id="instance freezes"),
    pytest.param(
        every_instance_refuses,
        ServiceUnavailable,
        all_of(message("none usable now", "last error: Overloaded", "max_concurrency=1"), quick(0.3)),
        id="every instance refuses (overloaded)",
    ),
    pytest.param(
        instance_unreachable,
        ServiceUnavailable,
        all_of(message("none usable now"), quick(2)),
        id="instance unreachable",
    ),
    pytest.param(no_registry_reachable, RegistryUnavailable, every_address, id="no registry reachable"),
    pytest.param(
        no_registry_reachable_for_a_script_client,
        RegistryUnavailable,
        message("no registry reachable"),
        id="no registry reachable, script",
    ),
    pytest.param(registry_never_answers, RegistryUnavailable, between(1, 10), id="registry never answers"),
    pytest.param(
        registry_of_another_version, RegistryUnavailable, message("protocol"), id="registry of another version"
    ),
    pytest.param(host_not_running, HostNotRunning, message("has not been started"), id="host not running"),
    pytest.param(host_stopped, HostNotRunning, message("stopped"), id="host stopped"),
    pytest.param(publish_bad_payload, PublishError, message("'what'"), id="publish bad payload"),
    pytest.param(publish_not_a_dict, PublishError, message("must return a dict"), id="publish not a dict"),
    pytest.param(publish_without_a_host, HostNotRunning, message("happened"), id="publish without a host"),
]


@pytest.mark.parametrize(("case", "documented", "check"), CASES)
async def test_what_reaches_the_caller_is_the_documented_vyked_error(
    world: World,
    case: Callable[[World], Awaitable[object]],
    documented: type[VykedError],
    check: Check,
) -> None:
    exc = await failure_of(case, world)
    assert isinstance(exc, vyked.VykedError), f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"
    assert isinstance(exc, documented), f"{type(exc).__qualname__} is not a {documented.__name__}: {exc}"
    check(exc, world)


def test_the_documented_builtin_bases() -> None:
    assert issubclass(RequestTimeout, TimeoutError)
    assert issubclass(UnknownEndpoint, LookupError)
    assert issubclass(InvalidParams, TypeError)
    assert issubclass(ServiceUnavailable, ConnectionError)
    assert issubclass(ConnectionLost, ConnectionError)


async def test_nothing_closes_after_errors_that_close_nothing(world: World) -> None:
    """The rows whose "what closes" is "nothing": the same client and connection carry on."""
    client = FailureClient()
    await world.host(FailureService())
    host = await world.host(clients=(client,))
    assert await client.add(1, 1) == 2
    pool_connections = dict(host.extension(POOL).connections)
    assert len(pool_connections) == 1
    for failing in (client.boom("x"), client.stuck(), client.slow(5), client.missing(), client.unserialisable()):
        with pytest.raises(VykedError):
            await failing
    with pytest.raises(InvalidParams):
        await client.add(1, object())
    assert await client.add(2, 2) == 4
    after = host.extension(POOL).connections
    assert after == pool_connections  # the very same connection objects
    assert all(ic.usable for ic in after.values())


async def test_a_malformed_frame_gets_an_error_packet_and_closes_only_that_connection(world: World) -> None:
    service, client = await world.serving()
    bad = await RawClient.connect(service.host_port)
    try:
        bad.send_bytes(b"\x00\x00\x00\x05nope!")
        error = await bad.receive()
        assert error["type"] == "error" and error["code"] == "bad_frame"
        assert error.get("id") is None
        assert await bad.closed_by_peer()
    finally:
        await bad.close()
    oversized = await RawClient.connect(service.host_port)
    try:
        oversized.send_bytes((service.max_frame_size + 1).to_bytes(4, "big"))
        error = await oversized.receive()
        assert error["code"] == "frame_too_large"
        assert await oversized.closed_by_peer()
    finally:
        await oversized.close()
    assert await client.add(3, 4) == 7  # type: ignore[attr-defined]  # the others carry on


async def test_a_wrong_protocol_version_gets_an_error_packet(world: World) -> None:
    service, _ = await world.serving()
    raw = await RawClient.connect(service.host_port, hello=False)
    try:
        raw.send({"type": "hello", "protocol": 999, "node_id": "future"})
        error = await raw.receive()
        assert error["type"] == "error" and error["code"] == "protocol_version"
        assert await raw.closed_by_peer()
    finally:
        await raw.close()
