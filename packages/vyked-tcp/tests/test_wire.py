"""A TCP service facing bad input on raw sockets: specific errors, only the offender closed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from tcp_testservices import Calculator

from vyked import TCPService, api
from vyked.core.host import ServiceHost
from vyked.core.metrics import RequestMetrics
from vyked.core.pytest_plugin import HostFactory
from vyked.core.testing import RawClient, frame


@pytest.fixture
async def service_port() -> AsyncIterator[int]:
    # A service can be started and spoken to without a registry: the protocol is the same.
    service = Calculator()
    service.max_frame_size = 2048
    await service.start(ServiceHost())
    yield service.host_port
    await service.stop()


def req(i: int, endpoint: str = "add", service: str = "Calculator", **params: object) -> dict[str, object]:
    return {"type": "request", "id": i, "service": service, "endpoint": endpoint, "params": params}


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


class Inline(TCPService):
    """Inline handlers: the requests of one read are answered in the dispatcher's batch loop."""

    def __init__(self) -> None:
        super().__init__("Inline", 1, "127.0.0.1", 0)

    @api(inline=True)
    def echo(self, x: int) -> int:
        return x

    @api(inline=True)
    def opaque(self) -> object:
        return object()

    @api(inline=True)
    def boom(self) -> None:
        raise ValueError("boom")

    @api(inline=True)
    def cyclic(self) -> object:
        value: list[object] = []
        value.append(value)
        return value

    @api(inline=True)
    def cancelled(self) -> None:
        raise asyncio.CancelledError  # no failure of the handler's: it ends the read

    @api(inline=True)
    def unobserve(self) -> None:
        """Take the host's observers away, as an application may at any time."""
        assert self.host is not None
        self.host.observers = []

    @api(inline=True)
    def slow(self, seconds: float) -> None:
        time.sleep(seconds)  # blocks the loop: it is inline


@pytest.fixture
async def inline_port() -> AsyncIterator[int]:
    service = Inline()
    await service.start(ServiceHost())
    yield service.host_port
    await service.stop()


def inline_req(i: int, endpoint: str = "echo", **params: object) -> dict[str, object]:
    return req(i, endpoint, "Inline", **params)


async def test_requests_of_one_read_each_get_their_answer(inline_port: int) -> None:
    client = await RawClient.connect(inline_port)
    batch = [
        inline_req(1, x=10),
        inline_req(2, "opaque"),  # a result JSON cannot carry: an error, the others answered
        inline_req(3, "boom"),
        inline_req(4, "nope"),
        inline_req(5, x=50),
        inline_req(6, y=1),  # wrong parameters
        inline_req(9, "cyclic"),  # a result that contains itself: an error, the others answered
        {**inline_req(7, x=70), "app": "billing"},  # the general path, in the same read
        inline_req(8, x=80),
    ]
    client.send_bytes(b"".join(frame(request) for request in batch))
    answers = {}
    for _ in batch:
        answer = await client.receive()
        answers[answer["id"]] = answer
    assert [answers[i].get("result") for i in (1, 5, 7, 8)] == [10, 50, 70, 80]
    assert answers[2]["code"] == "remote_error" and "JSON cannot carry" in answers[2]["message"]
    assert answers[3]["code"] == "remote_error" and answers[3]["args"] == ["boom"]
    assert answers[4]["code"] == "unknown_endpoint"
    assert answers[6]["code"] == "invalid_params"
    assert answers[9]["code"] == "remote_error" and "JSON cannot carry" in answers[9]["message"]
    await client.close()


async def test_what_was_answered_leaves_when_a_handler_ends_the_read(inline_port: int) -> None:
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda loop, context: None)  # the loop's report of the read that raised
    try:
        client = await RawClient.connect(inline_port)
        client.send_bytes(frame(inline_req(1, x=1)) + frame(inline_req(2, "cancelled")) + frame(inline_req(3, x=3)))
        assert await client.receive() == {"type": "response", "id": 1, "result": 1}
        assert await client.closed_by_peer()  # the loop closed the connection whose read raised
        await client.close()
    finally:
        loop.set_exception_handler(None)


async def test_a_bad_packet_in_a_read_ends_the_connection_after_the_requests_before_it(inline_port: int) -> None:
    client = await RawClient.connect(inline_port)
    client.send_bytes(frame(inline_req(1, x=1)) + frame({"type": "welcome", "protocol": 1}) + frame(inline_req(2, x=2)))
    assert await client.receive() == {"type": "response", "id": 1, "result": 1}
    error = await client.receive()
    assert error["code"] == "bad_frame" and "does not accept 'welcome'" in error["message"]
    assert await client.closed_by_peer()
    await client.close()


async def test_the_requests_of_a_read_are_timed_to_the_write_of_their_answers(vyked_host: HostFactory) -> None:
    """With metrics on, the answers of one read leave together and their requests are timed
    together: from the read to that write, whatever the endpoint, however early each ran."""
    service = Inline()
    host = await vyked_host(service, metrics_port=0, metrics_host="127.0.0.1")
    (metrics,) = [o for o in host.observers if isinstance(o, RequestMetrics)]
    client = await RawClient.connect(service.host_port)
    batch = [inline_req(1, x=1), inline_req(2, x=2), inline_req(3, "slow", seconds=0.2), inline_req(4, x=4)]
    client.send_bytes(b"".join(frame(request) for request in batch))
    assert {(await client.receive())["id"] for _ in batch} == {1, 2, 3, 4}
    metrics.timings.fold()
    histograms = metrics.timings.histograms
    echo = histograms[("server", "tcp", "Inline", "1", "echo")]["ok"]
    slow = histograms[("server", "tcp", "Inline", "1", "slow")]["ok"]
    assert (echo.count, slow.count) == (3, 1)
    assert echo.sum >= 3 * 0.2 and slow.sum >= 0.2  # the echoes before the slow one too
    client.send_bytes(frame(inline_req(5, x=5)))  # alone in its read: timed alone
    assert (await client.receive())["result"] == 5
    metrics.timings.fold()
    assert echo.count == 4 and echo.sum < 3 * 0.2 + 0.15
    await client.close()


async def test_observers_changed_by_a_handler_leave_the_reads_answers_and_their_timing(
    vyked_host: HostFactory,
) -> None:
    """A handler may change the host's observers in the middle of a read: the read's answers
    still leave, timed in the metrics in use when the read began; later requests are not timed."""
    service = Inline()
    host = await vyked_host(service, metrics_port=0, metrics_host="127.0.0.1")
    (metrics,) = [o for o in host.observers if isinstance(o, RequestMetrics)]
    client = await RawClient.connect(service.host_port)
    batch = [inline_req(1, x=1), inline_req(2, "unobserve"), inline_req(3, x=3)]
    client.send_bytes(b"".join(frame(request) for request in batch))
    assert {(await client.receive())["id"] for _ in batch} == {1, 2, 3}
    assert list(host.observers) == []
    client.send(inline_req(4, x=4))  # the connection is fine
    assert await client.receive() == {"type": "response", "id": 4, "result": 4}
    metrics.timings.fold()
    histograms = metrics.timings.histograms
    assert histograms[("server", "tcp", "Inline", "1", "echo")]["ok"].count == 2  # not the fourth
    assert histograms[("server", "tcp", "Inline", "1", "unobserve")]["ok"].count == 1
    await client.close()
