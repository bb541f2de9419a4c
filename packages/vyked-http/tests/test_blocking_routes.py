"""Plain ``def`` routes in the handler thread pool, bulkheads and draining, over real sockets."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from vyked import HTTPService, Request, Response, get
from vyked.http.response import json_response

Serve = Callable[[Any], Awaitable[Any]]

LOOP_THREAD = threading.main_thread().name


class Blocking(HTTPService):
    def __init__(self, **settings: Any) -> None:
        super().__init__("Blocking", 1, **settings)
        self.started: list[str] = []
        self.finished = threading.Event()

    @get(path="/where")
    def where(self, request: Request) -> Response:
        return Response(text=threading.current_thread().name)

    @get(path="/where-inline", inline=True)
    def where_inline(self, request: Request) -> Response:
        return Response(text=threading.current_thread().name)

    @get(path="/sleep/{seconds}")
    def sleep(self, request: Request) -> Response:
        self.started.append(request.path)
        time.sleep(float(request.match_info["seconds"]))
        return json_response({"slept": request.match_info["seconds"]})

    @get(path="/capped/{seconds}", max_concurrency=2)
    def capped(self, request: Request) -> Response:
        self.started.append(request.path)
        time.sleep(float(request.match_info["seconds"]))
        return Response(text="done")

    @get(path="/overdue", timeout=0.5)
    def overdue(self, request: Request) -> Response:
        time.sleep(1.5)
        self.finished.set()
        return Response(text="too late")

    @get(path="/fast")
    async def fast(self, request: Request) -> Response:
        return Response(text="fast")


async def fetch(http: aiohttp.ClientSession, service: HTTPService, path: str) -> tuple[int, Any, float]:
    """(status, body: JSON if it is JSON else text, seconds taken)."""
    started = time.monotonic()
    async with http.get(service.url + path) as response:
        body = await response.json() if response.content_type == "application/json" else await response.text()
        return response.status, body, time.monotonic() - started


async def test_def_routes_run_in_pool_threads_and_inline_ones_on_the_loop(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    service = await serve(Blocking())
    status, name, _ = await fetch(http, service, "/where")
    assert status == 200 and name.startswith("vyked-handler-")
    status, name, _ = await fetch(http, service, "/where-inline")
    assert (status, name) == (200, LOOP_THREAD)


async def test_a_blocking_def_route_does_not_hold_up_other_requests(serve: Serve, http: aiohttp.ClientSession) -> None:
    service = await serve(Blocking())
    slow = asyncio.ensure_future(fetch(http, service, "/sleep/1.0"))
    async with asyncio.timeout(5):
        while not service.started:
            await asyncio.sleep(0.01)
    quick = [await fetch(http, service, "/fast") for _ in range(5)]
    assert not slow.done()
    assert all(status == 200 for status, _, _ in quick)
    assert max(taken for _, _, taken in quick) < 0.3
    status, body, taken = await slow
    assert (status, body) == (200, {"slept": "1.0"}) and taken >= 1.0


async def test_a_thread_past_its_timeout_is_answered_504_on_time_and_finishes_behind(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    service = await serve(Blocking())
    status, body, taken = await fetch(http, service, "/overdue")
    assert status == 504 and body["error"] == "timeout"
    assert 0.5 <= taken < 1.0
    assert not service.finished.is_set()
    assert service.in_flight.count == 1  # its thread is still busy, and counted
    assert await asyncio.to_thread(service.finished.wait, 3)
    assert await service.in_flight.drained(2) == 0


async def test_max_concurrency_answers_503_overloaded_at_once_without_running(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    service = await serve(Blocking())
    results = await asyncio.gather(*(fetch(http, service, "/capped/0.8") for _ in range(5)))
    done = [r for r in results if r[0] == 200]
    refused = [r for r in results if r[0] == 503]
    assert len(done) == 2 and len(refused) == 3
    for _, body, taken in refused:
        assert body["error"] == "overloaded"
        assert "Blocking.capped" in body["message"] and "max_concurrency=2" in body["message"]
        assert taken < 0.5  # at once, not after the others
    assert len(service.started) == 2


async def test_a_service_wide_cap_from_the_argument_or_the_environment(
    serve: Serve, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VYKED_MAX_CONCURRENCY", "2")
    for service, allowed in ((await serve(Blocking(max_concurrency=1)), 1), (await serve(Blocking()), 2)):
        results = await asyncio.gather(*(fetch(http, service, "/sleep/0.5") for _ in range(3)))
        statuses = sorted(status for status, _, _ in results)
        assert statuses == [200] * allowed + [503] * (3 - allowed)
        assert len(service.started) == allowed


async def test_draining_answers_503_and_waits_for_the_requests_running(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    service = await serve(Blocking())
    running = asyncio.ensure_future(fetch(http, service, "/sleep/0.8"))
    async with asyncio.timeout(5):
        while not service.started:
            await asyncio.sleep(0.01)
    assert await service.in_flight.drained(0.1) == 1  # the grace period ends first
    service.in_flight.start_draining()
    for path in ("/fast", "/sleep/0.1", "/where-inline"):
        status, body, taken = await fetch(http, service, path)
        assert status == 503 and body["error"] == "draining", (path, body)
        assert body["endpoint"].startswith("Blocking.") and taken < 0.3
    started = time.monotonic()
    assert await service.in_flight.drained(5) == 0
    assert 0.3 < time.monotonic() - started < 2
    assert (await running)[:2] == (200, {"slept": "0.8"})
    assert service.started == ["/sleep/0.8"]
