"""What a host promises: reserved names, explicit bindings, lifecycle errors, a mute registry,
and failover between instances, over a real registry and real sockets."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from tcp_testservices import Calculator, CalculatorClient

from vyked import TCPService, TCPServiceClient, api, publish, request
from vyked.core.exceptions import (
    DefinitionError,
    HostNotRunning,
    PublishError,
    RegistryUnavailable,
    ServiceUnavailable,
    VykedError,
)
from vyked.core.host import Host
from vyked.core.protocol.packets import InstanceInfo, Packet, Register
from vyked.core.pytest_plugin import HostFactory
from vyked.core.service_host import ServiceHost
from vyked.core.testing import RawClient, frame, free_port
from vyked.core.transport import Connection, PacketServer

# -- reserved names ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["stop", "start", "host", "clients", "registration", "endpoints", "node_id"])
def test_an_api_named_like_a_service_attribute_is_refused_at_class_creation(name: str) -> None:
    def handler(self: Any) -> None: ...

    handler.__name__ = name
    with pytest.raises(DefinitionError) as info:
        type("Clashing", (TCPService,), {name: api(handler)})
    assert f"Clashing.{name}" in str(info.value)
    assert isinstance(info.value, TypeError)


def test_api_stop_written_as_a_class_statement_is_refused() -> None:
    with pytest.raises(DefinitionError, match=r"Stoppable\.stop: TCPService uses the name 'stop'"):

        class Stoppable(TCPService):
            @api
            async def stop(self) -> None: ...


@pytest.mark.parametrize("name", ["bind", "call", "resolve_host", "name", "version", "host"])
def test_a_request_named_like_a_client_attribute_is_refused_at_class_creation(name: str) -> None:
    def method(self: Any) -> dict[str, Any]:
        return {}

    method.__name__ = name
    with pytest.raises(DefinitionError) as info:
        type("ClashingClient", (TCPServiceClient,), {name: request(method)})
    assert f"ClashingClient.{name}" in str(info.value)


def test_request_bind_written_as_a_class_statement_is_refused() -> None:
    with pytest.raises(DefinitionError, match=r"Binder\.bind"):

        class Binder(TCPServiceClient):
            @request
            def bind(self) -> dict[str, Any]:
                return locals()


def test_ordinary_names_are_accepted() -> None:
    class Fine(TCPService):
        @api
        async def stop_everything(self) -> None: ...

    class FineClient(TCPServiceClient):
        @request
        def stop_everything(self) -> dict[str, Any]:
            return locals()

    assert "stop_everything" in Fine._api_specs


# -- explicit bindings and the process-wide host -------------------------------------------------


async def test_a_client_bound_to_an_unstarted_host_fails_naming_that_host(vyked_registry: Any) -> None:
    host = ServiceHost(f"127.0.0.1:{vyked_registry.port}", name="never-started")
    client = CalculatorClient()
    host.bind_client(client)
    Host.registry_host = "127.0.0.1"  # a usable fallback exists: it must still not be used
    Host.registry_port = vyked_registry.port
    with pytest.raises(HostNotRunning) as info:
        await client.add(1, 2)
    assert repr(host) in str(info.value)
    assert "never-started" in str(info.value)
    assert isinstance(info.value, VykedError)
    assert Host._runtime is None  # no fallback to Host.default()
    assert client.host is host  # the binding is final
    assert not host.started


async def test_a_client_bound_to_a_stopped_host_fails_and_does_not_fall_back(
    vyked_registry: Any, vyked_host: HostFactory
) -> None:
    await vyked_host(Calculator())
    client = CalculatorClient()
    host = await vyked_host(clients=(client,))
    assert await client.add(1, 2) == 3
    await host.stop()
    Host.registry_host = "127.0.0.1"
    Host.registry_port = vyked_registry.port
    with pytest.raises(HostNotRunning) as info:
        await client.add(1, 2)
    assert repr(host) in str(info.value)
    assert Host._runtime is None
    assert client.host is host


async def test_an_unbound_client_in_a_script_uses_the_process_wide_host(
    vyked_registry: Any, vyked_host: HostFactory
) -> None:
    service = Calculator()
    await vyked_host(service)
    Host.registry_host = "127.0.0.1"
    Host.registry_port = vyked_registry.port
    client = CalculatorClient()
    assert client.host is None
    assert await client.add(20, 22) == 42
    runtime = Host._runtime
    assert runtime is not None and runtime.running
    assert client.host is runtime
    assert client in runtime.clients
    assert service.calls == 1
    await Host.stop()
    assert not runtime.running
    assert Host._runtime is None


async def test_start_on_a_stopped_host_raises_host_not_running(vyked_registry: Any) -> None:
    host = ServiceHost(f"127.0.0.1:{vyked_registry.port}")
    await host.start()
    assert host.running
    await host.stop()
    with pytest.raises(HostNotRunning, match="has stopped") as info:
        await host.start()
    assert repr(host) in str(info.value)
    never_started = ServiceHost(f"127.0.0.1:{vyked_registry.port}")
    await never_started.stop()
    with pytest.raises(HostNotRunning):
        await never_started.start()
    with pytest.raises(HostNotRunning):
        await never_started.ensure_started()


async def test_registry_of_an_unstarted_host_is_host_not_running() -> None:
    host = ServiceHost("127.0.0.1:1")
    with pytest.raises(HostNotRunning):
        host.registry  # noqa: B018


# -- a registry that completes the handshake and then never answers -------------------------------


class Mute:
    """A PacketHandler that hears everything and answers nothing."""

    def __init__(self) -> None:
        self.received: list[Packet] = []

    def packet_received(self, conn: Connection, packet: Packet) -> None:
        self.received.append(packet)

    def connection_lost(self, conn: Connection, exc: BaseException | None) -> None:
        pass


@pytest.fixture
async def mute_registry() -> AsyncIterator[tuple[int, Mute]]:
    handler = Mute()
    server = PacketServer(handler, node_id="mute")
    _, port = await server.start("127.0.0.1", 0)
    yield port, handler
    await server.close()


async def test_a_registry_that_never_answers_a_registration_is_registry_unavailable(
    mute_registry: tuple[int, Mute],
) -> None:
    port, mute = mute_registry
    service = Calculator()
    host = ServiceHost(f"127.0.0.1:{port}")
    host.attach(service)
    started = time.monotonic()
    with pytest.raises(RegistryUnavailable, match="did not acknowledge") as info:
        await host.start()
    elapsed = time.monotonic() - started
    assert isinstance(info.value, VykedError)
    assert isinstance(info.value, ConnectionError)
    assert 4 < elapsed < 10  # RegistryClient's connect_timeout (5 s); ServiceHost offers no way to shorten it
    assert any(isinstance(p, Register) for p in mute.received)
    assert host.stopped
    # the failed start cleaned up: the service no longer listens
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", service.host_port)


async def test_a_registry_that_never_sends_instances_is_registry_unavailable(
    mute_registry: tuple[int, Mute],
) -> None:
    port, _ = mute_registry
    host = ServiceHost(f"127.0.0.1:{port}")
    host.bind_client(CalculatorClient())
    with pytest.raises(RegistryUnavailable, match="no instance list"):
        await host.start()
    assert host.stopped


async def test_no_registry_listening_is_registry_unavailable_naming_the_address() -> None:
    port = free_port()
    host = ServiceHost(f"127.0.0.1:{port}")
    with pytest.raises(RegistryUnavailable) as info:
        await host.start()
    assert f"127.0.0.1:{port}" in str(info.value)
    assert host.stopped


# -- peers that are not (this version of) vyked ------------------------------------------------------


@pytest.fixture
async def foreign_server() -> AsyncIterator[Callable[[bytes], Awaitable[int]]]:
    """Servers on loopback that answer any connection with fixed bytes and close it: what a
    port taken over by another program, or a peer of another protocol version, looks like."""
    servers: list[asyncio.Server] = []

    async def start(answer: bytes) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await reader.read(1024)  # the hello
                writer.write(answer)
                await writer.drain()
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


HTTP_ANSWER = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
VERSION_REFUSAL = frame({"type": "error", "code": "protocol_version", "message": "this peer speaks protocol 2"})


@pytest.mark.parametrize("answer", [HTTP_ANSWER, VERSION_REFUSAL], ids=["not vyked", "other version"])
async def test_a_registry_address_that_does_not_speak_vyked_is_skipped_for_the_next(
    foreign_server: Callable[[bytes], Awaitable[int]], vyked_registry: Any, answer: bytes
) -> None:
    port = await foreign_server(answer)
    host = ServiceHost(f"127.0.0.1:{port},127.0.0.1:{vyked_registry.port}")
    host.attach(Calculator())
    try:
        await host.start()  # docs/failures.md: the host tries every configured registry
        assert host.running
    finally:
        await host.stop()


@pytest.mark.parametrize("answer", [HTTP_ANSWER, VERSION_REFUSAL], ids=["not vyked", "other version"])
async def test_only_foreign_registries_is_registry_unavailable(
    foreign_server: Callable[[bytes], Awaitable[int]], answer: bytes
) -> None:
    port = await foreign_server(answer)
    host = ServiceHost(f"127.0.0.1:{port}")
    with pytest.raises(RegistryUnavailable) as info:
        await host.start()
    assert f"127.0.0.1:{port}" in str(info.value)


@pytest.mark.parametrize("answer", [HTTP_ANSWER, VERSION_REFUSAL], ids=["not vyked", "other version"])
async def test_an_instance_whose_port_speaks_something_else_is_failed_over(
    foreign_server: Callable[[bytes], Awaitable[int]],
    vyked_registry: Any,
    vyked_host: HostFactory,
    answer: bytes,
) -> None:
    live = Calculator()
    await vyked_host(live)
    port = await foreign_server(answer)
    raw = await RawClient.connect(vyked_registry.port)
    try:
        ghost = InstanceInfo("Calculator", "1", "127.0.0.1", port, uuid.uuid4().hex)
        raw.send({"type": "register", "instance": {f: getattr(ghost, f) for f in ghost.__struct_fields__}})
        await registered(raw, ghost.node_id)
        client = CalculatorClient()
        await vyked_host(clients=(client,))
        results = []
        for i in range(4):
            try:
                results.append(await client.add(i, 0))
            except VykedError as exc:
                results.append(f"{type(exc).__name__}: {exc}")
        assert results == [0, 1, 2, 3]  # the foreign instance is unreachable, like a closed port
    finally:
        await raw.close()


# -- failover between instances --------------------------------------------------------------------


async def test_calls_fail_over_to_the_live_instance(vyked_host: HostFactory) -> None:
    dead, live = Calculator(), Calculator()
    await vyked_host(dead)
    await vyked_host(live)
    port = dead.host_port
    await dead.stop()  # abruptly: its host stays registered, its port refuses connections
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
    client = CalculatorClient()
    await vyked_host(clients=(client,))
    assert len(client.host.directory.instances("Calculator")) == 2  # type: ignore[union-attr]
    answers = [await client.whoami() for _ in range(10)]
    assert answers == [live.node_id] * 10
    assert live.calls == 0  # whoami does not count; add does
    results = await asyncio.gather(*(client.add(i, 1) for i in range(20)))
    assert results == [i + 1 for i in range(20)]
    assert live.calls == 20


class GhostClient(TCPServiceClient):
    def __init__(self) -> None:
        super().__init__("Ghost", 1)

    @request
    def boo(self) -> dict[str, Any]:
        return locals()


async def registered(raw: RawClient, node_id: str) -> None:
    """Read until the registry acknowledges ``node_id`` (``service_state`` packets come too)."""
    while (packet := await raw.receive()) != {"type": "registered", "node_id": node_id}:
        assert packet["type"] == "service_state", packet


async def register_dead_instances(registry_port: int, count: int) -> tuple[RawClient, asyncio.Task[None]]:
    """Register ``count`` Ghost instances at ports nobody listens on, over a raw connection
    kept alive (answering the registry's pings) until the returned task is cancelled."""
    raw = await RawClient.connect(registry_port)
    try:
        for _ in range(count):
            instance = {
                "service": "Ghost",
                "version": "1",
                "host": "127.0.0.1",
                "port": free_port(),
                "node_id": uuid.uuid4().hex,
                "kind": "tcp",
            }
            raw.send({"type": "register", "instance": instance, "dependencies": []})
            await registered(raw, str(instance["node_id"]))
    except BaseException:
        await raw.close()
        raise

    async def keep_alive() -> None:
        while True:
            await raw.receive(timeout=3600)

    return raw, asyncio.get_running_loop().create_task(keep_alive())


async def test_only_dead_instances_is_service_unavailable(vyked_registry: Any, vyked_host: HostFactory) -> None:
    raw, keeper = await register_dead_instances(vyked_registry.port, 2)
    try:
        client = GhostClient()
        host = await vyked_host(clients=(client,))
        assert len(host.directory.instances("Ghost")) == 2
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable, match="none usable now") as info:
            await client.boo()
        assert time.monotonic() - started < 2
        assert isinstance(info.value, VykedError)
        assert "2 registered" in str(info.value)
        # within the next second both stay skipped: the next call fails at once
        with pytest.raises(ServiceUnavailable, match="none usable now"):
            await client.boo()
    finally:
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
        await raw.close()


async def test_dead_instance_registered_by_hand_is_skipped_for_a_live_one(
    vyked_registry: Any, vyked_host: HostFactory
) -> None:
    live = Calculator()
    await vyked_host(live)
    raw = await RawClient.connect(vyked_registry.port)
    try:
        ghost = InstanceInfo("Calculator", "1", "127.0.0.1", free_port(), uuid.uuid4().hex)
        raw.send({"type": "register", "instance": {f: getattr(ghost, f) for f in ghost.__struct_fields__}})
        await registered(raw, ghost.node_id)
        client = CalculatorClient()
        host = await vyked_host(clients=(client,))
        assert {i.node_id for i in host.directory.instances("Calculator")} == {live.node_id, ghost.node_id}
        assert [await client.whoami() for _ in range(6)] == [live.node_id] * 6
    finally:
        await raw.close()


# -- publishing needs a running host ----------------------------------------------------------------


class Announcer(TCPService):
    def __init__(self) -> None:
        super().__init__("Announcer", 1, "127.0.0.1", 0)

    @publish
    def announced(self, what: object) -> dict[str, Any]:
        return locals()


async def test_publish_without_a_running_host_is_host_not_running(vyked_host: HostFactory) -> None:
    unattached = Announcer()
    with pytest.raises(HostNotRunning, match=r"Announcer\.announced") as info:
        unattached.announced("hello")
    assert isinstance(info.value, VykedError)

    attached = Announcer()
    host = await vyked_host(attached)
    attached.announced("while running")  # fine
    await host.stop()
    with pytest.raises(HostNotRunning):
        attached.announced("after stop")


async def test_publish_with_a_bad_payload_is_publish_error_even_without_a_host() -> None:
    with pytest.raises(PublishError, match="'what'") as info:
        Announcer().announced(object())
    assert isinstance(info.value, VykedError)
