"""The registry over real sockets: registration, watches, pushes, bad input."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from vyked.core.exceptions import ListenError, VykedError
from vyked.core.protocol.packets import InstanceInfo
from vyked.core.testing import RawClient, frame
from vyked.registry import Registry


@pytest.fixture
async def registry() -> AsyncIterator[Registry]:
    async with Registry("127.0.0.1", 0, max_frame_size=4096) as reg:
        yield reg


def register(node: str, service: str = "S", port: int = 5000) -> dict[str, object]:
    return {
        "type": "register",
        "instance": {"service": service, "version": "1", "host": "127.0.0.1", "port": port, "node_id": node},
        "dependencies": [{"service": "Other", "version": "1"}],
    }


async def test_register_watch_and_removal_on_disconnect(registry: Registry) -> None:
    watcher = await RawClient.connect(registry.port)
    watcher.send({"type": "watch", "services": ["S"]})
    assert await watcher.receive() == {"type": "instances", "service": "S", "instances": []}

    service = await RawClient.connect(registry.port)
    service.send(register("n1"))
    assert await service.receive() == {"type": "registered", "node_id": "n1"}
    assert await service.receive() == {
        "type": "service_state",
        "node_id": "n1",
        "state": "pending",
        "waiting_for": ["Other v1"],
    }
    added = await watcher.receive()
    assert added["type"] == "instance_added" and added["instance"]["node_id"] == "n1"
    assert added["instance"]["kind"] == "tcp"

    late = await RawClient.connect(registry.port)
    late.send({"type": "watch", "services": ["S"]})
    snapshot = await late.receive()
    assert [i["node_id"] for i in snapshot["instances"]] == ["n1"]

    await service.close()
    for client in (watcher, late):
        assert await client.receive() == {"type": "instance_removed", "service": "S", "node_id": "n1"}
        await client.close()


async def test_deregister_withdraws_the_instance_at_once_and_only_for_its_owner(registry: Registry) -> None:
    watcher = await RawClient.connect(registry.port)
    watcher.send({"type": "watch", "services": ["S"]})
    await watcher.receive()
    service = await RawClient.connect(registry.port)
    service.send(register("n1"))
    assert await service.receive() == {"type": "registered", "node_id": "n1"}
    await service.receive()  # service_state
    assert (await watcher.receive())["type"] == "instance_added"

    stranger = await RawClient.connect(registry.port)
    stranger.send({"type": "deregister", "node_id": "n1"})
    assert await stranger.receive() == {"type": "deregistered", "node_id": "n1"}
    assert registry.state.get("n1") is not None  # not the stranger's to withdraw

    service.send({"type": "deregister", "node_id": "n1"})
    assert await service.receive() == {"type": "deregistered", "node_id": "n1"}
    assert await watcher.receive() == {"type": "instance_removed", "service": "S", "node_id": "n1"}
    assert registry.state.get("n1") is None
    service.send({"type": "watch", "services": ["S"]})  # the connection itself stays up
    assert await service.receive() == {"type": "instances", "service": "S", "instances": []}
    assert await states(registry) == {"n1": "draining"}  # still listed while its host drains

    await service.close()  # the host is done: now the instance is down
    for _ in range(100):
        if await states(registry) == {"n1": "down"}:
            break
        await asyncio.sleep(0.02)
    assert await states(registry) == {"n1": "down"}
    for client in (watcher, stranger):
        await client.close()


async def states(registry: Registry) -> dict[str, str]:
    """Node id -> state, as ``vyked-registry status`` reports them over a socket."""
    asker = await RawClient.connect(registry.port)
    asker.send({"type": "status"})
    report = await asker.receive()
    await asker.close()
    return {s["instance"]["node_id"]: s["state"] for s in report["instances"]}


async def test_bad_input_closes_only_the_offender(registry: Registry) -> None:
    service = await RawClient.connect(registry.port)
    service.send(register("n1"))
    await service.receive()

    offender = await RawClient.connect(registry.port)
    offender.send_bytes(frame(b'{"type": "register", "instance": 5}'))
    error = await offender.receive()
    assert error["code"] == "bad_frame" and "$.instance" in error["message"]
    assert await offender.closed_by_peer()

    wrong_kind = await RawClient.connect(registry.port)
    wrong_kind.send({"type": "response", "id": 1})
    error = await wrong_kind.receive()
    assert error["code"] == "bad_frame" and "does not accept 'response'" in error["message"]

    huge = await RawClient.connect(registry.port)
    huge.send_bytes((10**6).to_bytes(4, "big"))
    assert (await huge.receive())["code"] == "frame_too_large"

    # the registration made before is intact and served
    watcher = await RawClient.connect(registry.port)
    watcher.send({"type": "watch", "services": ["S"]})
    assert [i["node_id"] for i in (await watcher.receive())["instances"]] == ["n1"]
    for c in (service, offender, wrong_kind, huge, watcher):
        await c.close()


async def test_answers_pings(registry: Registry) -> None:
    client = await RawClient.connect(registry.port, hello=False)  # raw: the test sees the pong
    client.send({"type": "hello", "protocol": 1, "node_id": "raw"})
    assert (await client.receive())["type"] == "welcome"
    client.send({"type": "ping", "nonce": 3})
    assert await client.receive() == {"type": "pong", "nonce": 3}
    await client.close()


async def test_an_address_in_use_is_a_listen_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ListenError, match=f"cannot listen on 127.0.0.1:{port}") as failure:
            await Registry("127.0.0.1", port).open()
    assert isinstance(failure.value, VykedError) and isinstance(failure.value, OSError)


# -- node ids: one instance each ------------------------------------------------------------


def registered_at(registry: Registry, node: str) -> tuple[object, int] | None:
    """Who holds ``node`` in the registry, and the port it is registered with."""
    registration = registry.state.get(node)
    return None if registration is None else (registration.owner, registration.instance.port)


async def snapshot_ports(registry: Registry, service: str = "S") -> list[tuple[str, int]]:
    watcher = await RawClient.connect(registry.port)
    watcher.send({"type": "watch", "services": [service]})
    instances = (await watcher.receive())["instances"]
    await watcher.close()
    return [(i["node_id"], i["port"]) for i in instances]


async def test_a_node_id_held_by_a_live_connection_is_refused(registry: Registry) -> None:
    genuine = await RawClient.connect(registry.port)
    genuine.send(register("n1", port=5000))
    assert (await genuine.receive())["type"] == "registered"
    holder = registered_at(registry, "n1")
    watcher = await RawClient.connect(registry.port)
    watcher.send({"type": "watch", "services": ["S"]})
    await watcher.receive()

    impostor = await RawClient.connect(registry.port)
    impostor.send(register("n1", port=6666))
    error = await impostor.receive()
    assert error["type"] == "error" and error["code"] == "node_id_taken"
    assert "'n1'" in error["message"] and "another live connection" in error["message"]
    assert await impostor.closed_by_peer()
    await impostor.close()

    # the genuine registration is untouched, before and after the impostor left
    assert registered_at(registry, "n1") == holder
    assert await snapshot_ports(registry) == [("n1", 5000)]
    with pytest.raises(TimeoutError):
        await watcher.receive(timeout=0.3)  # watchers saw neither a move nor a removal
    await genuine.close()
    assert await watcher.receive() == {"type": "instance_removed", "service": "S", "node_id": "n1"}
    await watcher.close()


async def test_the_same_connection_may_register_its_node_id_again(registry: Registry) -> None:
    host = await RawClient.connect(registry.port)
    host.send(register("n1", port=5000))
    assert (await host.receive())["type"] == "registered"
    await host.receive()  # service_state
    host.send(register("n1", port=5001))
    assert (await host.receive())["type"] == "registered"
    assert await snapshot_ports(registry) == [("n1", 5001)]
    await host.close()


async def test_a_host_reconnecting_after_its_connection_closed_registers_again(registry: Registry) -> None:
    old = await RawClient.connect(registry.port)
    old.send(register("n1"))
    assert (await old.receive())["type"] == "registered"
    await old.close()
    new = await RawClient.connect(registry.port)
    new.send(register("n1"))
    assert (await new.receive())["type"] == "registered"
    assert await snapshot_ports(registry) == [("n1", 5000)]
    await new.close()


async def test_a_host_reconnecting_before_its_silent_connection_times_out_takes_its_node_id() -> None:
    # A network cut: the old connection stays open on the registry's side, silent, until the
    # heartbeat timeout; the host comes back sooner under the same node id.
    async with Registry("127.0.0.1", 0, heartbeat_interval=0.1, heartbeat_timeout=2.0) as registry:
        assert registry.takeover_after == 1.0
        cut = await RawClient.connect(registry.port)  # reads nothing more, so answers no ping
        cut.send(register("n1", port=5000))
        assert (await cut.receive())["type"] == "registered"
        await cut.receive()  # service_state
        old_holder = registered_at(registry, "n1")

        await asyncio.sleep(registry.takeover_after + 0.2)
        assert old_holder is not None and not old_holder[0].closed  # type: ignore[attr-defined]
        back = await RawClient.connect(registry.port)
        back.send(register("n1", port=5000))
        assert (await back.receive())["type"] == "registered"
        new_holder = registered_at(registry, "n1")
        assert new_holder is not None and new_holder[0] is not old_holder[0]

        # the old connection times out later without taking the instance with it
        await asyncio.sleep(1.0)
        assert old_holder[0].closed  # type: ignore[attr-defined]
        assert registered_at(registry, "n1") == new_holder
        assert await snapshot_ports(registry) == [("n1", 5000)]
        for client in (cut, back):
            await client.close()


async def test_a_registration_held_by_another_registry_can_be_taken_over(registry: Registry) -> None:
    # Redis-backed registries mirror each other's instances with no local owner: a host failing
    # over to this registry re-registers under its node id.
    info = InstanceInfo("S", "1", "127.0.0.1", 5000, "n1")
    registry.state.register(info, [], owner=None, registry="another-registry")
    host = await RawClient.connect(registry.port)
    host.send(register("n1"))
    assert (await host.receive())["type"] == "registered"
    holder = registry.state.get("n1")
    assert holder is not None and holder.owner is not None and holder.registry == registry.id
    await host.close()


async def test_deeply_nested_json_is_answered_bad_frame(registry: Registry, caplog: pytest.LogCaptureFixture) -> None:
    offender = await RawClient.connect(registry.port)
    nested = b"[" * 1500 + b"]" * 1500
    offender.send_bytes(
        frame(b'{"type": "request", "id": 1, "service": "S", "endpoint": "e", "params": {"x": ' + nested + b"}}")
    )
    error = await offender.receive()
    assert error["code"] == "bad_frame" and "nested too deeply" in error["message"]
    assert await offender.closed_by_peer()
    assert "Traceback" not in caplog.text and "RecursionError" not in caplog.text
    # the registry serves others as before
    assert await snapshot_ports(registry) == []
    await offender.close()
