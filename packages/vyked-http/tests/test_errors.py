"""Failures inside handlers: JSON 500 without a traceback, 504 on timeout, both logged by name."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from vyked import HTTPService, Request, Response, ServiceUnavailable, get, post
from vyked.http.response import json_response

Serve = Callable[[Any], Awaitable[Any]]

SECRET = "password=hunter2"


class Failing(HTTPService):
    def __init__(self) -> None:
        super().__init__("Failing", 1)
        self.cancelled: list[str] = []

    @get(path="/boom")
    def boom(self, request: Request) -> Response:
        raise ValueError(SECRET)

    @get(path="/async-boom")
    async def async_boom(self, request: Request) -> Response:
        await asyncio.sleep(0)
        raise KeyError(SECRET)

    @get(path="/slow", timeout=0.1)
    async def slow(self, request: Request) -> Response:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            self.cancelled.append("slow")
            raise
        return Response(text="too late")

    @get(path="/slow-generator", timeout=0.1)
    def slow_generator(self, request: Request) -> Any:
        yield from asyncio.sleep(10)
        return Response(text="too late")

    @get(path="/fast-enough", timeout=5)
    async def fast_enough(self, request: Request) -> Response:
        await asyncio.sleep(0.01)
        return Response(text="in time")

    @get(path="/own-timeout", timeout=5)
    async def own_timeout(self, request: Request) -> Response:
        raise TimeoutError("a database call timed out")

    @get(path="/not-a-response")
    def not_a_response(self, request: Request) -> Any:
        return {"status": "ok"}

    @get(path="/missing")
    def missing(self, request: Request) -> Response:
        raise web.HTTPNotFound(text="no such user")

    @get(path="/downstream")
    async def downstream(self, request: Request) -> Response:
        raise ServiceUnavailable("no live instance of 'Billing'")


async def test_a_raising_handler_gets_a_json_500_without_traceback(
    serve: Serve, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    service = await serve(Failing())
    for path, error_type, endpoint in (("/boom", "ValueError", "boom"), ("/async-boom", "KeyError", "async_boom")):
        with caplog.at_level(logging.ERROR, logger="vyked.http"):
            async with http.get(service.url + path) as response:
                assert response.status == 500
                assert response.content_type == "application/json"
                text = await response.text()
                body = await response.json()
        assert body == {
            "error": "internal_error",
            "message": f"Failing.{endpoint} failed with {error_type}",
            "type": error_type,
            "endpoint": f"Failing.{endpoint}",
        }
        assert "Traceback" not in text
        assert SECRET not in text  # exception messages stay in the log
        record = caplog.records[-1]
        assert f"Failing.{endpoint}" in record.getMessage()
        assert record.exc_info is not None  # the traceback goes to the log
        assert record.exc_info[0] is (ValueError if error_type == "ValueError" else KeyError)
    assert service.stats.endpoints["boom"].errors == 1


@pytest.mark.parametrize("path", ["/slow", "/slow-generator"])
async def test_a_handler_past_its_timeout_gets_504(
    serve: Serve, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    service = await serve(Failing())
    endpoint = path.strip("/").replace("-", "_")
    loop = asyncio.get_running_loop()
    started = loop.time()
    with caplog.at_level(logging.WARNING, logger="vyked.http"):
        async with http.get(service.url + path) as response:
            assert response.status == 504
            body = await response.json()
    assert loop.time() - started < 2
    assert body["error"] == "timeout"
    assert body["timeout"] == 0.1
    assert body["endpoint"] == f"Failing.{endpoint}"
    assert any(f"Failing.{endpoint}" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    stats = service.stats.endpoints[endpoint]
    assert (stats.timeouts, stats.errors) == (1, 0)
    if path == "/slow":
        assert service.cancelled == ["slow"]  # the handler was cancelled, not left running


async def test_a_handler_within_its_timeout_answers(serve: Serve, http: aiohttp.ClientSession) -> None:
    service = await serve(Failing())
    async with http.get(f"{service.url}/fast-enough") as response:
        assert response.status == 200
        assert await response.text() == "in time"


async def test_a_timeout_raised_by_the_handler_itself_is_an_error_not_a_504(
    serve: Serve, http: aiohttp.ClientSession
) -> None:
    service = await serve(Failing())
    async with http.get(f"{service.url}/own-timeout") as response:
        assert response.status == 500
        assert (await response.json())["type"] == "TimeoutError"
    assert service.stats.endpoints["own_timeout"].timeouts == 0


async def test_returning_something_else_than_a_response_is_a_500(
    serve: Serve, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    service = await serve(Failing())
    with caplog.at_level(logging.ERROR, logger="vyked.http"):
        async with http.get(f"{service.url}/not-a-response") as response:
            assert response.status == 500
            assert (await response.json())["type"] == "TypeError"
    assert "Failing.not_a_response returned dict, not an aiohttp Response" in caplog.text


async def test_aiohttp_http_exceptions_pass_through(serve: Serve, http: aiohttp.ClientSession) -> None:
    service = await serve(Failing())
    async with http.get(f"{service.url}/missing") as response:
        assert response.status == 404
        assert await response.text() == "no such user"
    stats = service.stats.endpoints["missing"]
    assert (stats.requests, stats.errors, stats.status_classes[4]) == (1, 0, 1)


async def test_an_unavailable_downstream_service_is_a_503(serve: Serve, http: aiohttp.ClientSession) -> None:
    service = await serve(Failing())
    async with http.get(f"{service.url}/downstream") as response:
        assert response.status == 503
        body = await response.json()
    assert body["error"] == "service_unavailable"
    assert body["type"] == "ServiceUnavailable"
    assert "Billing" in body["message"]


async def test_a_handler_failing_mid_stream_breaks_the_connection_not_the_framing(
    serve: Serve, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    class Streaming(HTTPService):
        @get(path="/stream")
        async def stream(self, request: Request) -> web.StreamResponse:
            response = web.StreamResponse()
            await response.prepare(request)
            await response.write(b"part one")
            raise RuntimeError("the source went away")

    service = await serve(Streaming("Streaming", 1))
    with caplog.at_level(logging.ERROR):
        async with http.get(f"{service.url}/stream") as response:
            assert response.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):  # truncated, not a 500 glued onto the stream
                await response.read()
    assert "Streaming.stream failed with RuntimeError after its response had started" in caplog.text
    assert service.stats.endpoints["stream"].errors == 1


class JsonBodies(HTTPService):
    def __init__(self) -> None:
        super().__init__("JsonBodies", 1)

    @post(path="/echo")
    async def echo(self, request: Request) -> Response:
        return json_response(await request.json())

    @post(path="/own-parse")
    async def own_parse(self, request: Request) -> Response:
        json.loads("{not json, but the service's own data")  # say, a downstream answer
        return Response(text="unreachable")

    @post(path="/own-value-error")
    def own_value_error(self, request: Request) -> Response:
        raise ValueError(SECRET)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"", "application/json"),
        (b'{"a": [1, 2', "application/json"),
        (b"\xff\xfe{}", "application/json; charset=utf-8"),
    ],
    ids=["garbled", "empty", "truncated", "not-utf8"],
)
async def test_a_malformed_json_body_is_the_clients_fault_a_400(
    serve: Serve, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture, body: bytes, content_type: str
) -> None:
    service = await serve(JsonBodies())
    with caplog.at_level(logging.DEBUG, logger="vyked.http"):
        for _ in range(3):
            async with http.post(f"{service.url}/echo", data=body, headers={"Content-Type": content_type}) as response:
                assert response.status == 400
                assert response.content_type == "application/json"
                answer = await response.json()
    assert answer["error"] == "invalid_json"
    assert answer["endpoint"] == "JsonBodies.echo"
    assert answer["message"].startswith("the request body is not valid JSON: ")
    records = [r for r in caplog.records if r.name == "vyked.http"]
    assert len(records) == 3  # one line per request at most
    assert all(r.levelno <= logging.WARNING and r.exc_info is None for r in records)
    assert "JsonBodies.echo" in records[0].getMessage()
    stats = service.stats.endpoints["echo"]
    assert (stats.requests, stats.errors, stats.status_classes[4]) == (3, 0, 3)
    async with http.post(f"{service.url}/echo", json={"fine": [1]}) as response:
        assert await response.json() == {"fine": [1]}


@pytest.mark.parametrize(
    ("path", "error_type"), [("/own-parse", "JSONDecodeError"), ("/own-value-error", "ValueError")]
)
async def test_a_value_error_of_the_service_itself_is_still_a_500(
    serve: Serve, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture, path: str, error_type: str
) -> None:
    service = await serve(JsonBodies())
    with caplog.at_level(logging.ERROR, logger="vyked.http"):
        async with http.post(service.url + path, json={"valid": True}) as response:
            assert response.status == 500
            body = await response.json()
    assert (body["error"], body["type"]) == ("internal_error", error_type)
    assert caplog.records[-1].exc_info is not None
