"""What every HTTP service answers: ``GET /ping`` and ``GET /_stats``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from vyked import HTTPService, Request, Response, get, post

Serve = Callable[[Any], Awaitable[Any]]


class Counted(HTTPService):
    def __init__(self) -> None:
        super().__init__("Counted", "2.1")

    @get(path=["/a", "/b/{x}"])
    async def fine(self, request: Request) -> Response:
        return Response(text="ok")

    @post(path="/fail")
    def fail(self, request: Request) -> Response:
        raise RuntimeError("nope")

    @get(path="/slow", timeout=0.05)
    async def slow(self, request: Request) -> Response:
        await asyncio.sleep(5)
        return Response()

    @get(path="/created")
    def created(self, request: Request) -> Response:
        return Response(status=201)


async def test_ping(serve: Serve, http: aiohttp.ClientSession) -> None:
    service = await serve(Counted())
    async with http.get(f"{service.url}/ping") as response:
        assert response.status == 200
        assert await response.text() == "pong"


async def test_stats_count_requests_errors_timeouts_and_latency(serve: Serve, http: aiohttp.ClientSession) -> None:
    service = await serve(Counted())
    for path in ("/a", "/b/1", "/b/2", "/created", "/ping"):
        async with http.get(service.url + path) as response:
            assert response.status in (200, 201)
    for _ in range(2):
        async with http.post(f"{service.url}/fail") as response:
            assert response.status == 500
    async with http.get(f"{service.url}/slow") as response:
        assert response.status == 504

    async with http.get(f"{service.url}/_stats") as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        stats = await response.json()

    assert stats["service"] == "Counted"
    assert stats["version"] == "2.1"
    assert stats["node_id"] == service.node_id
    assert stats["uptime_s"] >= 0
    assert stats["totals"] == {"requests": 7, "errors": 2, "timeouts": 1}
    endpoints = stats["endpoints"]
    assert set(endpoints) == {"fine", "fail", "slow", "created"}  # /ping and /_stats are not counted
    fine = endpoints["fine"]
    assert fine["routes"] == ["GET /a", "GET /b/{x}", "HEAD /a", "HEAD /b/{x}"]
    assert (fine["requests"], fine["errors"], fine["timeouts"], fine["status"]) == (3, 0, 0, {"2xx": 3})
    latency = fine["latency_ms"]
    assert latency["count"] == 3
    assert 0 < latency["min"] <= latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert latency["min"] <= latency["mean"] <= latency["max"]
    assert endpoints["fail"]["errors"] == 2
    assert endpoints["fail"]["status"] == {"5xx": 2}
    assert endpoints["slow"]["timeouts"] == 1
    assert endpoints["slow"]["latency_ms"]["min"] >= 49  # timed out after 0.05 s (uvloop timers: up to 1 ms early)
    assert endpoints["created"]["status"] == {"2xx": 1}


async def test_a_declared_ping_replaces_the_built_in_one(serve: Serve, http: aiohttp.ClientSession) -> None:
    class OwnPing(HTTPService):
        @get(path="/ping")
        def ping(self, request: Request) -> Response:
            return Response(text="mine")

    service = await serve(OwnPing("OwnPing", 1))
    async with http.get(f"{service.url}/ping") as response:
        assert await response.text() == "mine"
    async with http.get(f"{service.url}/_stats") as response:
        assert (await response.json())["endpoints"]["ping"]["requests"] == 1


async def test_a_bare_service_still_pings(serve: Serve, http: aiohttp.ClientSession) -> None:
    service = await serve(HTTPService("Bare", 1))
    async with http.get(f"{service.url}/ping") as response:
        assert response.status == 200
    async with http.get(f"{service.url}/_stats") as response:
        assert (await response.json())["endpoints"] == {}
