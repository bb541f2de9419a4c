"""A TCP and an HTTP service of the same name and version in one Host, as in the seed README:
``Host.attach_service(http)`` then ``Host.attach_service(tcp)``. The services are the seed's
samples, kept in the seed's style."""

# ruff: noqa: UP008, UP032

from __future__ import annotations

import json
from asyncio import sleep
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("vyked.tcp")
pytest.importorskip("vyked.http")

from vyked import (
    Host,
    HTTPService,
    HTTPServiceClient,
    Request,
    Response,
    ServiceUnavailable,
    TCPService,
    TCPServiceClient,
    api,
    get,
    post,
    request,
)


# fmt: off
class IdentityTCPService(TCPService):
    def __init__(self, ip, port):
        super(IdentityTCPService, self).__init__("IdentityService", 1, ip, port)

    @api
    def create(self, user_name, password):
        result = yield from sleep(0.01)  # long running task
        if user_name is None:
            raise Exception('username cannot be none')
        return result or {"created": user_name, "via": "tcp"}


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


class IdentityClient(TCPServiceClient):
    def __init__(self):
        super(IdentityClient, self).__init__("IdentityService", 1)

    @request
    def create(self, user_name, password):
        return locals()
# fmt: on


class IdentityHTTPClient(HTTPServiceClient):
    def __init__(self):
        super().__init__("IdentityService", 1)

    @get()
    def hello(self, username):
        path = "/users/{}".format(username)
        return locals()

    @post()
    def create(self, username, password):
        path = "/users/{}".format(username)
        json = {"password": password}
        return locals()


_HOST_STATE = ("registry_host", "registry_port", "name", "_tcp_service", "_http_service", "_runtime")


@pytest.fixture
async def seed_host(vyked_registry: Any) -> AsyncIterator[type[Host]]:
    """The class-level ``Host`` of the seed, pointed at the test registry and restored after."""
    saved = {attr: getattr(Host, attr) for attr in _HOST_STATE}
    Host._tcp_service = Host._http_service = Host._runtime = None
    Host.registry_host = "127.0.0.1"
    Host.registry_port = vyked_registry.port
    Host.name = "Identity"
    try:
        yield Host
    finally:
        await Host.stop()
        for attr, value in saved.items():
            setattr(Host, attr, value)


async def test_tcp_and_http_services_of_one_name_side_by_side(seed_host: type[Host], vyked_host: Any) -> None:
    http = IdentityHTTPService("127.0.0.1", 0)
    tcp = IdentityTCPService("127.0.0.1", 0)
    seed_host.attach_service(http)
    seed_host.attach_service(tcp)
    runtime = await seed_host.start()
    assert {s.kind for s in runtime.services} == {"tcp", "http"}
    assert http.host_port != tcp.host_port

    tcp_client, http_client = IdentityClient(), IdentityHTTPClient()
    caller = await vyked_host(clients=(tcp_client, http_client))
    instances = caller.directory.instances("IdentityService")
    assert sorted((i.kind, i.version, i.port) for i in instances) == sorted(
        [("http", "1", http.host_port), ("tcp", "1", tcp.host_port)]
    )

    # each client reaches the instance of its own kind
    assert await tcp_client.create("ann", "secret") == {"created": "ann", "via": "tcp"}
    response = await http_client.hello("ann")
    assert response.status == 200
    assert await response.text() == "Hello ann"
    response = await http_client.create("ann", "secret")
    assert await response.json(content_type=None) == {"password": "secret"}


async def test_a_script_client_uses_the_process_wide_host(seed_host: type[Host]) -> None:
    seed_host.attach_service(IdentityHTTPService("127.0.0.1", 0))
    await seed_host.start()
    client = IdentityHTTPClient()  # bound to no host: finds Host.default() on first use
    response = await client.hello("bob")
    assert await response.text() == "Hello bob"
    assert client.host is seed_host.default()


async def test_an_http_client_does_not_call_a_tcp_only_service(seed_host: type[Host]) -> None:
    seed_host.attach_service(IdentityTCPService("127.0.0.1", 0))
    await seed_host.start()
    with pytest.raises(ServiceUnavailable, match=r"registered: 1 \(tcp\)"):
        await IdentityHTTPClient().hello("ann")
