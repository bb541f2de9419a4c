"""IdentityService in the test's event loop: a real registry and real sockets, on loopback."""

from __future__ import annotations

import aiohttp
import pytest
from identity import IdentityClient, IdentityHTTPService, IdentityTCPService

from vyked import RemoteError, ServiceUnavailable
from vyked.testing import ClientStub, HostFactory, ServeHTTP, record


async def test_create(vyked_host: HostFactory) -> None:
    await vyked_host(IdentityTCPService("127.0.0.1", 0))
    identity = IdentityClient()
    await vyked_host(clients=(identity,))

    assert await identity.create("ann", "s3cret") == {"user_name": "ann"}


async def test_create_without_a_name_is_a_remote_error(vyked_host: HostFactory) -> None:
    await vyked_host(IdentityTCPService("127.0.0.1", 0))
    identity = IdentityClient()
    await vyked_host(clients=(identity,))

    with pytest.raises(RemoteError) as error:
        await identity.create(None, "s3cret")
    assert error.value.remote_type == "ValueError"


async def test_changing_a_password_tells_subscribers(vyked_host: HostFactory) -> None:
    await vyked_host(IdentityTCPService("127.0.0.1", 0))
    identity = IdentityClient()
    changes = record(identity, "password_changed")  # before the host binds the client
    await vyked_host(clients=(identity,))

    assert await identity.change_password("ann", "n3w") is True
    [event] = await changes.wait_for(1, timeout=5)
    assert event.kwargs == {"user_name": "ann"}


async def test_http_greets_without_a_registry(vyked_http: ServeHTTP) -> None:
    url = await vyked_http(IdentityHTTPService("127.0.0.1", 0))

    async with aiohttp.ClientSession() as http, http.get(f"{url}/users/ann") as response:
        assert response.status == 200
        assert await response.text() == "Hello ann"


async def test_http_creates_users_through_the_tcp_service(vyked_http: ServeHTTP) -> None:
    identity = ClientStub(IdentityClient, create={"user_name": "ann"})
    url = await vyked_http(IdentityHTTPService("127.0.0.1", 0, identity=identity.client))

    async with aiohttp.ClientSession() as http, http.post(f"{url}/users/ann", json={"password": "pw"}) as response:
        assert response.status == 201
        assert await response.json() == {"user_name": "ann"}
    assert identity.calls == [("create", {"user_name": "ann", "password": "pw"})]


async def test_http_says_when_identity_is_down(vyked_http: ServeHTTP) -> None:
    identity = ClientStub(IdentityClient, create=ServiceUnavailable("no instance of IdentityService v1"))
    url = await vyked_http(IdentityHTTPService("127.0.0.1", 0, identity=identity.client))

    async with aiohttp.ClientSession() as http, http.post(f"{url}/users/ann", json={"password": "pw"}) as response:
        assert response.status == 503
