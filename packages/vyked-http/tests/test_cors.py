"""``allow_cross_domain=True``: CORS preflight answers and readable responses for any origin."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from vyked import HTTPService, Request, Response, get, options, post

Serve = Callable[[Any], Awaitable[Any]]

PREFLIGHT = {
    "Origin": "https://app.example",
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type, x-token",
}


class Users(HTTPService):
    def __init__(self, *, allow_cross_domain: bool) -> None:
        super().__init__("Users", 1, allow_cross_domain=allow_cross_domain)

    @get(path="/users/{name}")
    def read(self, request: Request) -> Response:
        return Response(text=request.match_info["name"])

    @post(path="/users/{name}")
    def write(self, request: Request) -> Response:
        raise RuntimeError("broken")

    @options(path="/custom")
    def custom_options(self, request: Request) -> Response:
        return Response(text="custom", headers={"X-Custom": "1"})


async def test_preflight_is_answered(serve: Serve, http: aiohttp.ClientSession) -> None:
    service = await serve(Users(allow_cross_domain=True))
    async with http.options(f"{service.url}/users/ann", headers=PREFLIGHT) as response:
        assert response.status == 204
        headers = response.headers
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["Access-Control-Allow-Methods"] == "GET, HEAD, OPTIONS, POST"
    assert headers["Access-Control-Allow-Headers"] == "content-type, x-token"
    assert int(headers["Access-Control-Max-Age"]) > 0


async def test_answers_carry_the_allow_origin_header(serve: Serve, http: aiohttp.ClientSession) -> None:
    service = await serve(Users(allow_cross_domain=True))
    origin = {"Origin": "https://app.example"}
    async with http.get(f"{service.url}/users/ann", headers=origin) as response:
        assert response.status == 200
        assert response.headers["Access-Control-Allow-Origin"] == "*"
    async with http.post(f"{service.url}/users/ann", headers=origin) as response:
        assert response.status == 500  # errors too, so that browsers can read them
        assert response.headers["Access-Control-Allow-Origin"] == "*"


async def test_built_in_paths_are_covered(serve: Serve, http: aiohttp.ClientSession) -> None:
    service = await serve(Users(allow_cross_domain=True))
    async with http.options(f"{service.url}/_stats", headers=PREFLIGHT) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Methods"] == "GET, HEAD, OPTIONS"


async def test_a_declared_options_route_wins(serve: Serve, http: aiohttp.ClientSession) -> None:
    service = await serve(Users(allow_cross_domain=True))
    async with http.options(f"{service.url}/custom", headers=PREFLIGHT) as response:
        assert response.status == 200
        assert response.headers["X-Custom"] == "1"
        assert await response.text() == "custom"


async def test_without_cross_domain_there_is_no_cors(serve: Serve, http: aiohttp.ClientSession) -> None:
    service = await serve(Users(allow_cross_domain=False))
    async with http.options(f"{service.url}/users/ann", headers=PREFLIGHT) as response:
        assert response.status == 405
        assert "Access-Control-Allow-Origin" not in response.headers
    async with http.get(f"{service.url}/users/ann", headers={"Origin": "https://app.example"}) as response:
        assert "Access-Control-Allow-Origin" not in response.headers


class Legacy(HTTPService):
    """2.x's ``HTTPService(name, version, ip, port, ssl_context, allow_cross_domain, preflight_response)``."""

    def __init__(self, preflight: Any, allow_cross_domain: bool = True) -> None:
        super().__init__("Legacy", 1, "127.0.0.1", 0, None, allow_cross_domain, preflight)

    @get(path="/users/{name}")
    def read(self, request: Request) -> Response:
        return Response(text=request.match_info["name"])


def legacy_preflight(request: Request) -> Response:
    return Response(status=200, headers={"Access-Control-Allow-Headers": "x-legacy"})


async def test_preflight_response_answers_preflights(serve: Serve, http: aiohttp.ClientSession) -> None:
    service = await serve(Legacy(legacy_preflight))
    async with http.options(f"{service.url}/users/ann", headers=PREFLIGHT) as response:
        assert response.status == 200
        assert response.headers["Access-Control-Allow-Headers"] == "x-legacy"
        assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_preflight_response_needs_allow_cross_domain() -> None:
    with pytest.raises(ValueError, match="allow_cross_domain"):
        Legacy(legacy_preflight, allow_cross_domain=False)
