"""pytest fixtures for vyked applications, registered through the ``pytest11`` entry point.

- ``redis_server``: a real ``redis-server`` on a free loopback port, per test session.
- ``vyked_registry``: an in-process registry on a free port (needs ``vyked-registry``).
- ``vyked_host``: a factory of started :class:`~vyked.core.host.ServiceHost` objects bound to
  ``vyked_registry``, stopped after the test.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from vyked.core.client import ServiceClient
from vyked.core.service import Service
from vyked.core.service_host import ServiceHost
from vyked.core.testing import RedisServer

HostFactory = Callable[..., Awaitable[ServiceHost]]


@contextlib.asynccontextmanager
async def started_hosts(registry: str) -> AsyncIterator[HostFactory]:
    """A factory of started hosts on ``registry`` (``make(*services, clients=(), **settings)``;
    the settings go to :class:`ServiceHost`), all stopped when the block ends."""
    hosts: list[ServiceHost] = []

    async def make(*services: Service, clients: tuple[ServiceClient, ...] = (), **settings: Any) -> ServiceHost:
        host = ServiceHost(registry, **settings)
        for service in services:
            host.attach(service)
        for client in clients:
            host.bind_client(client)
        hosts.append(host)
        await host.start()
        return host

    try:
        yield make
    finally:
        for host in reversed(hosts):
            await host.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
async def vyked_registry() -> AsyncIterator[Any]:
    if importlib.util.find_spec("vyked.registry") is None:
        pytest.skip("vyked-registry is not installed")
    from vyked.registry import Registry

    async with Registry("127.0.0.1", 0) as registry:
        yield registry


@pytest.fixture
async def vyked_host(vyked_registry: Any) -> AsyncIterator[HostFactory]:
    async with started_hosts(f"127.0.0.1:{vyked_registry.port}") as make:
        yield make
