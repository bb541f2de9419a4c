"""The HTTP samples of the seed README, verbatim, must run as written.

The seed's HTTP service uses ``json`` without importing it; this module imports it.
"""

# ruff: noqa: UP008, UP032

from __future__ import annotations

import json
from typing import Any

import aiohttp

from vyked import Host, HTTPService, HTTPServiceClient, Request, Response, get, post

# --- the seed's sample HTTP service, verbatim -------------------------------------------------
# fmt: off


class IdentityHTTPService(HTTPService):
    def __init__(self, ip, port):
        super(IdentityHTTPService, self).__init__("IdentityService", 1, ip, port)

    @get(path='/users/{username}')
    def get(self, request: Request):
        username = request.match_info.get('username')
        return Response(status=200, body=("Hello {}".format(username)).encode())

    @post(path='/users/{username}')
    def create(self, request: Request):
        data = yield from request.json()
        return Response(status=200, body=(json.dumps(data)).encode())


# --- the seed's sample HTTP client, verbatim ---------------------------------------------------


class Hello(HTTPServiceClient):
    def __init__(self):
        super(Hello, self).__init__('Hello', 1)

    @get()
    def person(self, name):
        path = '/{}'.format(name)
        params = {'key': 'value'}
        headers = {'Content-Type': 'application/json'}
        app_name = 'test'
        return locals()
# fmt: on


# --- tests -------------------------------------------------------------------------------------


class HelloService(HTTPService):
    """The service the seed's ``Hello`` client talks to."""

    def __init__(self) -> None:
        super().__init__("Hello", 1, "127.0.0.1", 0)

    @get(path="/{name}")
    async def person(self, request: Request) -> Response:
        return Response(
            text=json.dumps(
                {
                    "name": request.match_info["name"],
                    "query": dict(request.query),
                    "content_type": request.headers.get("Content-Type"),
                    "app": request.headers.get("X-Vyked-App"),
                }
            ),
            content_type="application/json",
        )


async def test_identity_http_service(serve: Any, http: aiohttp.ClientSession) -> None:
    service = await serve(IdentityHTTPService("127.0.0.1", 0))
    assert Host is not None  # the seed imports it alongside
    async with http.get(f"{service.url}/users/ann") as response:
        assert response.status == 200
        assert await response.text() == "Hello ann"
    async with http.post(f"{service.url}/users/ann", json={"password": "secret", "n": [1, 2]}) as response:
        assert response.status == 200
        assert json.loads(await response.text()) == {"password": "secret", "n": [1, 2]}


async def test_identity_http_service_through_a_client(vyked_host: Any) -> None:
    service = IdentityHTTPService("127.0.0.1", 0)
    await vyked_host(service)

    class IdentityClient(HTTPServiceClient):
        def __init__(self):
            super().__init__("IdentityService", 1)

        @post()
        def create(self, username, password):
            path = "/users/{}".format(username)
            json = {"password": password}
            return locals()

    client = IdentityClient()
    await vyked_host(clients=(client,))
    response = await client.create("ann", "secret")
    assert response.status == 200
    assert await response.json(content_type=None) == {"password": "secret"}


async def test_hello_client(vyked_host: Any) -> None:
    await vyked_host(HelloService())
    client = Hello()
    await vyked_host(clients=(client,))
    response = await client.person("ann")
    assert response.status == 200
    assert await response.json() == {
        "name": "ann",
        "query": {"key": "value"},
        "content_type": "application/json",
        "app": "test",
    }
