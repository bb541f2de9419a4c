"""``@websocket`` endpoints: echo, statistics, failures and shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

from vyked import HTTPService, Request, websocket

Serve = Callable[[Any], Awaitable[Any]]


class Echo(HTTPService):
    def __init__(self) -> None:
        super().__init__("Echo", 1, shutdown_timeout=30)

    @websocket(path="/echo")
    async def echo(self, request: Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                if message.data == "fail":
                    raise RuntimeError("the handler broke")
                await ws.send_str(f"echo: {message.data}")
            elif message.type == WSMsgType.BINARY:
                await ws.send_bytes(message.data[::-1])
        return ws

    @websocket(path=["/generator-echo"])
    def generator_echo(self, request: Request) -> Any:
        ws = web.WebSocketResponse()
        yield from ws.prepare(request)
        message = yield from ws.receive()
        yield from ws.send_str(message.data.upper())
        yield from ws.close()
        return ws


async def test_echo(serve: Serve, http: aiohttp.ClientSession) -> None:
    service = await serve(Echo())
    async with http.ws_connect(f"{service.url}/echo") as ws:
        for text in ("hello", "vyked"):
            await ws.send_str(text)
            assert await ws.receive_str() == f"echo: {text}"
        await ws.send_bytes(b"abc")
        assert await ws.receive_bytes() == b"cba"
    async with asyncio.timeout(10):  # until the server side has seen the close and returned
        while not service.stats.as_dict()["endpoints"]["echo"]["status"]:
            await asyncio.sleep(0.01)
    stats = service.stats.as_dict()["endpoints"]["echo"]
    assert stats["requests"] == 1
    assert stats["websocket"] is True
    assert stats["status"] == {"1xx": 1}
    assert "latency_ms" not in stats


async def test_generator_style_websocket(serve: Serve, http: aiohttp.ClientSession) -> None:
    service = await serve(Echo())
    async with http.ws_connect(f"{service.url}/generator-echo") as ws:
        await ws.send_str("shout")
        assert await ws.receive_str() == "SHOUT"


async def test_a_failing_handler_closes_the_socket_with_1011(serve: Serve, http: aiohttp.ClientSession) -> None:
    service = await serve(Echo())
    async with http.ws_connect(f"{service.url}/echo") as ws:
        await ws.send_str("fail")
        message = await ws.receive()
        assert message.type == WSMsgType.CLOSE
        assert message.data == WSCloseCode.INTERNAL_ERROR
    assert service.stats.endpoints["echo"].errors == 1


async def test_stopping_the_service_closes_open_websockets(http: aiohttp.ClientSession) -> None:
    from vyked.core.host import ServiceHost

    service = Echo()
    await service.start(ServiceHost())
    async with http.ws_connect(f"{service.url}/echo") as ws:
        await ws.send_str("hi")
        assert await ws.receive_str() == "echo: hi"
        loop = asyncio.get_running_loop()
        started = loop.time()
        stopping = asyncio.ensure_future(service.stop())
        message = await ws.receive()
        assert message.type == WSMsgType.CLOSE
        assert message.data == WSCloseCode.GOING_AWAY
    await stopping
    assert loop.time() - started < 5  # not the 30 s shutdown_timeout


async def test_plain_get_on_a_websocket_path_is_refused(serve: Serve, http: aiohttp.ClientSession) -> None:
    service = await serve(Echo())
    async with http.get(f"{service.url}/echo") as response:
        assert response.status >= 400
