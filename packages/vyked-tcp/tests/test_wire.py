"""A TCP service facing bad input on raw sockets: specific errors, only the offender closed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from tcp_testservices import Calculator

from vyked.core.host import ServiceHost
from vyked.core.testing import RawClient, frame


@pytest.fixture
async def service_port() -> AsyncIterator[int]:
    # A service can be started and spoken to without a registry: the protocol is the same.
    service = Calculator()
    service.max_frame_size = 2048
    await service.start(ServiceHost())
    yield service.host_port
    await service.stop()


def req(i: int, endpoint: str = "add", **params: object) -> dict[str, object]:
    return {"type": "request", "id": i, "service": "Calculator", "endpoint": endpoint, "params": params}


async def test_raw_request_response(service_port: int) -> None:
    client = await RawClient.connect(service_port)
    client.send(req(1, a=1, b=2))
    assert await client.receive() == {"type": "response", "id": 1, "result": 3}
    client.send(req(2, "nope"))
    error = await client.receive()
    assert (error["id"], error["code"]) == (2, "unknown_endpoint")
    client.send({**req(3, a=1, b=2), "service": "Billing"})
    error = await client.receive()
    assert (error["id"], error["code"]) == (3, "service_unavailable")
    assert "serves 'Calculator', not 'Billing'" in error["message"]
    client.send(req(4, "fail", message="m"))
    error = await client.receive()
    assert error == {
        "type": "error",
        "id": 4,
        "code": "remote_error",
        "message": "('m', 42)",
        "error_type": "ValueError",
        "args": ["m", 42],
    }
    await client.close()


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (frame(b"\x00\x01garbage"), "bad_frame"),
        (
            frame({"type": "request", "id": 1, "service": "Calculator", "endpoint": "add", "params": [1, 2]}),
            "bad_frame",
        ),
        (frame({"type": "register", "instance": {}}), "bad_frame"),
        (frame({"type": "welcome", "protocol": 1}), "bad_frame"),
        ((1 << 31).to_bytes(4, "big"), "frame_too_large"),
    ],
)
async def test_bad_frames_get_an_error_and_close_only_their_connection(
    service_port: int, payload: bytes, code: str
) -> None:
    bystander = await RawClient.connect(service_port)
    offender = await RawClient.connect(service_port)
    offender.send_bytes(payload)
    error = await offender.receive()
    assert error["type"] == "error" and error["code"] == code and error.get("id") is None
    assert await offender.closed_by_peer()
    bystander.send(req(9, a=2, b=2))
    assert (await bystander.receive())["result"] == 4
    await offender.close()
    await bystander.close()
