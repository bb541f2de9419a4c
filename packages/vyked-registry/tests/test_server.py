"""The registry over real sockets: registration, watches, pushes, bad input."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest

from vyked.core.exceptions import ListenError, VykedError
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
