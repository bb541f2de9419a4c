"""Slow and blocking handlers: where they run, liveness while they block, bulkheads, draining.

Real sockets throughout; the liveness tests run the blocking service as its own process (a
loop blocked in this process would block the registry and the watching client too).

Run as a script, this module is that service process:
``python test_blocking_handlers.py --registry 127.0.0.1:PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
import queue
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from vyked import (
    Draining,
    Overloaded,
    RequestTimeout,
    ServiceHost,
    TCPService,
    TCPServiceClient,
    VykedError,
    api,
    publish,
    request,
    subscribe,
    xsubscribe,
)
from vyked.core.exceptions import error_from_code
from vyked.core.instances import Instance
from vyked.core.pytest_plugin import HostFactory
from vyked.core.testing import ProcessRunner, RawClient
from vyked.core.watchdog import LoopWatchdog
from vyked.tcp.dispatch import Dispatcher

LOOP_THREAD = threading.main_thread().name


class Blocker(TCPService):
    """Handlers that block, each in its own way."""

    def __init__(self) -> None:
        super().__init__("Blocker", 1, "127.0.0.1", 0)

    @api
    async def block_loop(self, seconds: float) -> str:
        time.sleep(seconds)  # blocking the loop is what this handler is for
        return "done"

    @api
    def sleep_in_thread(self, seconds: float) -> str:
        time.sleep(seconds)
        return threading.current_thread().name

    @api(inline=True)
    def block_inline(self, seconds: float) -> str:
        time.sleep(seconds)
        return "done"

    @api
    async def ping(self, n: int) -> int:
        return n


class BlockerClient(TCPServiceClient):
    def __init__(self) -> None:
        super().__init__("Blocker", 1)

    @request(timeout=10)
    def block_loop(self, seconds: float) -> dict[str, Any]:
        return locals()

    @request(timeout=10)
    def sleep_in_thread(self, seconds: float) -> dict[str, Any]:
        return locals()

    @request(timeout=10)
    def block_inline(self, seconds: float) -> dict[str, Any]:
        return locals()

    @request(timeout=2)
    def ping(self, n: int) -> dict[str, Any]:
        return locals()


class Throttled(TCPService):
    """Records which handlers actually ran."""

    def __init__(self, **settings: Any) -> None:
        super().__init__("Throttled", 1, "127.0.0.1", 0, **settings)
        self.started: list[int] = []
        self.finished = threading.Event()

    @api(max_concurrency=2)
    def slow(self, i: int, seconds: float = 1.0) -> int:
        self.started.append(i)
        time.sleep(seconds)
        return i

    @api
    async def slow_async(self, i: int, seconds: float = 1.0) -> int:
        self.started.append(i)
        await asyncio.sleep(seconds)
        return i

    @api(timeout=0.5)
    def overdue(self) -> str:
        time.sleep(1.5)
        self.finished.set()
        return "too late"

    @api
    def where(self) -> str:
        return threading.current_thread().name

    @api(inline=True)
    def where_inline(self) -> str:
        return threading.current_thread().name


class ThrottledClient(TCPServiceClient):
    def __init__(self) -> None:
        super().__init__("Throttled", 1)

    @request(timeout=5)
    def overdue(self) -> dict[str, Any]:
        return locals()

    @request
    def where(self) -> dict[str, Any]:
        return locals()

    @request
    def where_inline(self) -> dict[str, Any]:
        return locals()

    @request
    def slow(self, i: int, seconds: float = 1.0) -> dict[str, Any]:
        return locals()


# -- where handlers run ----------------------------------------------------------------------------


async def test_def_handlers_run_in_pool_threads_and_inline_ones_on_the_loop(vyked_host: HostFactory) -> None:
    await vyked_host(Throttled())
    client = ThrottledClient()
    await vyked_host(clients=(client,))
    assert threading.current_thread().name == LOOP_THREAD
    assert (await client.where()).startswith("vyked-handler-")
    assert await client.where_inline() == LOOP_THREAD


async def test_a_thread_handler_past_its_timeout_is_answered_on_time_and_finishes_behind(
    vyked_host: HostFactory,
) -> None:
    service = Throttled()
    await vyked_host(service)
    client = ThrottledClient()
    await vyked_host(clients=(client,))
    started = time.monotonic()
    with pytest.raises(RequestTimeout, match=r"Throttled.overdue did not finish within its timeout of 0.5 s"):
        await client.overdue()
    assert 0.5 <= time.monotonic() - started < 1.0  # the handler sleeps 1.5 s
    dispatcher = dispatcher_of(service)
    assert not service.finished.is_set()
    assert dispatcher.running.count == 1  # its thread is still busy, and counted
    assert await asyncio.to_thread(service.finished.wait, 3)
    assert await dispatcher.drained(2) == 0
    assert (await client.where()).startswith("vyked-handler-")  # the service goes on


# -- bulkheads -------------------------------------------------------------------------------------


def raw_request(raw: RawClient, request_id: int, endpoint: str, **params: Any) -> None:
    raw.send({"type": "request", "id": request_id, "service": "Throttled", "endpoint": endpoint, "params": params})


async def answers(raw: RawClient, count: int, timeout: float = 5.0) -> dict[int, tuple[float, dict[str, Any]]]:
    """The next ``count`` answers by request id, each with when it arrived."""
    found: dict[int, tuple[float, dict[str, Any]]] = {}
    while len(found) < count:
        packet = await raw.receive(timeout)
        found[packet["id"]] = (time.monotonic(), packet)
    return found


def rebuilt(packet: dict[str, Any]) -> VykedError:
    """The exception a vyked client raises for an ``error`` packet."""
    assert packet["type"] == "error", packet
    return error_from_code(packet["code"], packet["message"], packet.get("error_type", ""))


async def test_thread_handler_failures_are_answered_like_inline_ones(vyked_host: HostFactory) -> None:
    service = Throttled()
    await vyked_host(service)
    raw = await RawClient.connect(service.host_port)
    raw_request(raw, 1, "where", unexpected=1)
    raw_request(raw, 2, "slow", i="not a number", seconds="nor this")
    got = await answers(raw, 2)
    await raw.close()
    assert got[1][1]["code"] == "invalid_params"
    assert "Throttled.where: got an unexpected keyword argument 'unexpected'" in got[1][1]["message"]
    assert (got[2][1]["code"], got[2][1]["error_type"]) == ("remote_error", "TypeError")  # raised by time.sleep
    assert dispatcher_of(service).running.count == 0


async def test_max_concurrency_refuses_the_excess_at_once_and_never_runs_it(vyked_host: HostFactory) -> None:
    service = Throttled()
    await vyked_host(service)
    raw = await RawClient.connect(service.host_port)
    sent = time.monotonic()
    for i in range(5):
        raw_request(raw, i, "slow", i=i, seconds=1.0)
    got = await answers(raw, 5)
    await raw.close()
    refused = {i: rebuilt(packet) for i, (_, packet) in got.items() if packet["type"] == "error"}
    assert sorted(refused) == [2, 3, 4]
    for error in refused.values():
        assert isinstance(error, Overloaded) and error.not_executed
        assert "Throttled.slow" in str(error) and "max_concurrency=2" in str(error)
    assert all(got[i][0] - sent < 0.5 for i in refused)  # at once, not after the slow ones
    assert {i: got[i][1]["result"] for i in (0, 1)} == {0: 0, 1: 1}
    assert sorted(service.started) == [0, 1]  # the refused ones never ran


async def test_a_service_wide_cap_from_the_argument_or_the_environment(
    vyked_host: HostFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VYKED_MAX_CONCURRENCY", "1")
    for service in (Throttled(max_concurrency=2), Throttled()):
        await vyked_host(service)
        raw = await RawClient.connect(service.host_port)
        raw_request(raw, 1, "slow_async", i=1, seconds=0.5)
        raw_request(raw, 2, "slow", i=2, seconds=0.5)
        raw_request(raw, 3, "slow_async", i=3, seconds=0.5)
        got = await answers(raw, 3)
        await raw.close()
        outcome = {i: packet.get("code", "ok") for i, (_, packet) in got.items()}
        if service.max_concurrency == 2:
            assert outcome == {1: "ok", 2: "ok", 3: "overloaded"}
            assert sorted(service.started) == [1, 2]
        else:  # VYKED_MAX_CONCURRENCY=1
            assert outcome == {1: "ok", 2: "overloaded", 3: "overloaded"}
            assert service.started == [1]


# -- draining --------------------------------------------------------------------------------------


def dispatcher_of(service: TCPService) -> Dispatcher:
    assert service._dispatcher is not None
    return service._dispatcher


async def test_draining_refuses_new_requests_and_waits_for_those_running(vyked_host: HostFactory) -> None:
    service = Throttled()
    await vyked_host(service)
    dispatcher = dispatcher_of(service)
    raw = await RawClient.connect(service.host_port)
    raw_request(raw, 1, "slow", i=1, seconds=0.8)  # in a thread
    raw_request(raw, 2, "slow_async", i=2, seconds=0.6)  # on the loop
    async with asyncio.timeout(5):
        while len(service.started) < 2:
            await asyncio.sleep(0.01)
    assert await dispatcher.drained(0.1) == 2  # the grace period ends first
    dispatcher.start_draining()
    raw_request(raw, 3, "slow", i=3, seconds=0.1)
    raw_request(raw, 4, "unknown_endpoint")
    refused = await answers(raw, 2, timeout=0.3)  # at once, ahead of the running ones
    for i in (3, 4):
        error = rebuilt(refused[i][1])
        assert isinstance(error, Draining) and error.not_executed
    started = time.monotonic()
    assert await dispatcher.drained(5) == 0
    assert 0.4 < time.monotonic() - started < 2
    finished = await answers(raw, 2)
    assert {i: packet["result"] for i, (_, packet) in finished.items()} == {1: 1, 2: 2}
    assert sorted(service.started) == [1, 2]
    await raw.close()


# -- subscriptions ---------------------------------------------------------------------------------


class Announcer(TCPService):
    def __init__(self) -> None:
        super().__init__("Announcer", 1, "127.0.0.1", 0)

    @publish
    def news(self, n: int) -> dict[str, Any]:
        return locals()

    @publish
    def job(self, n: int) -> dict[str, Any]:
        return locals()


class Listener(TCPServiceClient):
    """Each handler reports the thread it ran in; a thread-safe queue, since some run in threads."""

    def __init__(self) -> None:
        super().__init__("Announcer", 1)
        self.seen: queue.SimpleQueue[tuple[str, int, str]] = queue.SimpleQueue()

    @subscribe
    def news(self, n: int) -> None:
        self.seen.put(("news", n, threading.current_thread().name))

    @xsubscribe
    def job(self, n: int) -> None:
        self.seen.put(("job", n, threading.current_thread().name))


class InlineListener(TCPServiceClient):
    def __init__(self) -> None:
        super().__init__("Announcer", 1)
        self.seen: queue.SimpleQueue[tuple[str, int, str]] = queue.SimpleQueue()

    @subscribe(inline=True)
    def news(self, n: int) -> None:
        self.seen.put(("news", n, threading.current_thread().name))


class ListeningService(TCPService):
    """An ``@xsubscribe`` needs a subscribing service: its instances form the group."""

    def __init__(self, listener: Listener) -> None:
        super().__init__("Listening", 1, "127.0.0.1", 0)
        self.clients = [listener]


async def test_def_subscribers_run_in_threads_unless_inline(vyked_host: HostFactory) -> None:
    announcer = Announcer()
    await vyked_host(announcer)
    threaded, inline = Listener(), InlineListener()
    await vyked_host(ListeningService(threaded))
    await vyked_host(clients=(inline,))
    announcer.news(1)
    announcer.job(2)
    seen = [await asyncio.to_thread(threaded.seen.get, True, 5) for _ in range(2)]
    by_event = {event: (n, thread) for event, n, thread in seen}
    assert by_event["news"][0] == 1 and by_event["news"][1].startswith("vyked-handler-")
    assert by_event["job"][0] == 2 and by_event["job"][1].startswith("vyked-handler-")
    assert await asyncio.to_thread(inline.seen.get, True, 5) == ("news", 1, LOOP_THREAD)


# -- liveness: the blocking service runs as its own process ----------------------------------------


@pytest.fixture
async def blocker(vyked_registry: Any) -> AsyncIterator[tuple[ProcessRunner, BlockerClient, list[str]]]:
    """A Blocker process on ``vyked_registry`` (default heartbeat: 0.5 s interval, 2 s timeout),
    a client host watching it, and the removals the registry pushes to that host."""
    registry = f"127.0.0.1:{vyked_registry.port}"
    proc = ProcessRunner(str(Path(__file__)), "--registry", registry).start()
    host = ServiceHost(registry)
    client = BlockerClient()
    host.bind_client(client)
    removals: list[str] = []

    def on_change(event: str, instance: Instance) -> None:
        if event == "removed":
            removals.append(instance.node_id)

    try:
        await asyncio.to_thread(proc.wait_for_output, "blocker ready", 30)
        await host.start()
        host.directory.add_listener(on_change)
        async with asyncio.timeout(10):
            while not host.directory.instances("Blocker"):
                await asyncio.sleep(0.02)
        assert await client.ping(0) == 0
        yield proc, client, removals
    finally:
        await host.stop()
        proc.stop()


async def test_a_loop_blocked_for_less_than_the_heartbeat_timeout_keeps_its_registration(
    blocker: tuple[ProcessRunner, BlockerClient, list[str]],
) -> None:
    proc, client, removals = blocker
    started = time.monotonic()
    assert await client.block_loop(1.2) == "done"
    assert time.monotonic() - started >= 1.2
    await asyncio.sleep(2.5)  # longer than any eviction the stall could still cause
    assert removals == []
    assert await client.ping(1) == 1
    # the service's watchdog named the stall and the handler causing it
    await asyncio.to_thread(proc.wait_for_output, "in block_loop", 5)
    assert "has been blocked for" in proc.output()


async def test_a_def_handler_blocking_4s_leaves_the_service_answering_and_registered(
    blocker: tuple[ProcessRunner, BlockerClient, list[str]],
) -> None:
    proc, client, removals = blocker
    slow = asyncio.ensure_future(client.sleep_in_thread(4))
    latencies: list[float] = []
    n = 0
    while not slow.done():
        n += 1
        started = time.monotonic()
        assert await client.ping(n) == n
        latencies.append(time.monotonic() - started)
        await asyncio.sleep(0.1)
    assert (await slow).startswith("vyked-handler-")
    assert len(latencies) >= 20
    assert max(latencies) < 0.5
    assert removals == []
    assert "has been blocked for" not in proc.output()


async def test_an_inline_handler_blocking_past_the_heartbeat_timeout_is_evicted(
    blocker: tuple[ProcessRunner, BlockerClient, list[str]],
) -> None:
    """The other side of the rule, and what the two tests above would see without threads."""
    _, client, removals = blocker
    with pytest.raises(VykedError):  # the caller's heartbeat gives up on the silent instance
        await client.block_inline(4)
    # The registry's heartbeat gives up too, at its own next beat: up to one interval (0.5 s)
    # after the caller's, as the two beat independently.
    async with asyncio.timeout(3):
        while not removals:
            await asyncio.sleep(0.02)
    assert removals  # the registry dropped the silent instance and told its watchers


# -- the service process ---------------------------------------------------------------------------


async def serve_blocker(registry: str) -> None:
    host = ServiceHost(registry)
    host.attach(Blocker())
    await host.start()
    watchdog = LoopWatchdog(asyncio.get_running_loop(), name="Blocker")
    watchdog.start()
    print("blocker ready", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        watchdog.stop()
        await host.stop()


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO, stream=sys.stdout)
    parser = argparse.ArgumentParser()
    parser.add_argument("--registry", required=True)
    asyncio.run(serve_blocker(parser.parse_args().registry))
