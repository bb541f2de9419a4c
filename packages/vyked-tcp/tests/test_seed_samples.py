"""The seed README's TCP samples, as written there, running on Python 3.11+."""

from __future__ import annotations

import asyncio
from asyncio import sleep

import pytest

from vyked import Host, TCPService, TCPServiceClient, api, publish, request, subscribe
from vyked.core.pytest_plugin import HostFactory


class IdentityTCPService(TCPService):
    def __init__(self, ip, port):  # type: ignore[no-untyped-def]
        super().__init__("IdentityService", 1, ip, port)

    @api
    def create(self, user_name, password):  # type: ignore[no-untyped-def]
        result = yield from sleep(5)  # long running task
        if user_name is None:
            raise Exception("username cannot be none")
        return result

    @publish
    def password_changed(self, user_name):  # type: ignore[no-untyped-def]
        """calling this method from within your code will cause a 'password_changed' event to be published
        to all subscribing services
        """
        # @publish decorated methods must return a dict of values to be published
        return locals()  # easy way to return a dict containing all the params - in this case, user_name.


class IdentityClient(TCPServiceClient):
    def __init__(self):  # type: ignore[no-untyped-def]
        super().__init__("IdentityService", 1)

    @request
    def create(self, user_name, password):  # type: ignore[no-untyped-def]
        return locals()  # @request requires a dict containing params describing the request payload

    @subscribe
    def password_changed(self, user_name):  # type: ignore[no-untyped-def]
        print("Password changed event received")
        yield from asyncio.sleep(4)


async def test_seed_service_and_client(vyked_host: HostFactory) -> None:
    await vyked_host(IdentityTCPService("0.0.0.0", 0))
    client = IdentityClient()
    await vyked_host(clients=(client,))
    create_ok = client.create("ann", "secret")
    create_bad = client.create(None, "secret")
    assert await create_ok is None  # sleep(5) returns None, and so does create
    with pytest.raises(Exception, match="username cannot be none"):
        await create_bad


async def test_seed_host_configuration_with_class_attributes(vyked_registry: object) -> None:
    port = vyked_registry.port  # type: ignore[attr-defined]
    tcp = IdentityTCPService("0.0.0.0", 0)
    Host.registry_host = "127.0.0.1"
    Host.registry_port = port
    Host.name = "Identity"
    Host.attach_service(tcp)
    runtime = await Host.start()
    assert runtime.services == [tcp]
    assert tcp.host_port != 0
    registry_state = vyked_registry.state  # type: ignore[attr-defined]
    (registration,) = registry_state.registrations()
    assert registration.instance.service == "IdentityService"
    assert registration.instance.host == "127.0.0.1"  # 0.0.0.0 is advertised as the reachable address
    await Host.stop()
    assert registry_state.registrations() == [] or await _eventually_empty(registry_state)


async def _eventually_empty(state: object) -> bool:
    for _ in range(50):
        if not state.registrations():  # type: ignore[attr-defined]
            return True
        await asyncio.sleep(0.02)
    return False
