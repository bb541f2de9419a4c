"""Services in the test's own event loop: :func:`started_hosts` (through a registry) and
:func:`serve_http` (an HTTP service alone, no registry)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from vyked.core.client import ServiceClient
from vyked.core.service import Service
from vyked.core.service_host import ServiceHost

if TYPE_CHECKING:
    from vyked.http import HTTPService

__all__ = ["HostFactory", "ServeHTTP", "serve_http", "started_hosts"]

HostFactory = Callable[..., Awaitable[ServiceHost]]
"""``await make(*services, clients=(), **settings)``: a started host (see :func:`started_hosts`)."""
ServeHTTP = Callable[["HTTPService"], Awaitable[str]]
"""``await serve(service)``: the base URL of an HTTP service served without a registry (the
``vyked_http`` fixture; see :func:`serve_http`)."""


@contextlib.asynccontextmanager
async def started_hosts(registry: str) -> AsyncIterator[HostFactory]:
    """A factory of started hosts on ``registry`` (``"127.0.0.1:PORT"``), all stopped (in the
    reverse order) when the block ends::

        async with started_hosts(f"127.0.0.1:{registry.port}") as make:
            await make(IdentityTCPService("127.0.0.1", 0))
            await make(clients=(client,))

    ``make(*services, clients=(), **settings)`` attaches the services, binds the clients and
    starts a :class:`~vyked.core.service_host.ServiceHost` (``settings`` go to it); once it
    returns, the services are registered and the clients know their instances.
    """
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


@contextlib.asynccontextmanager
async def serve_http(service: HTTPService) -> AsyncIterator[str]:
    """Serve ``service`` on a free loopback port, without a registry; yields its base URL
    (``http://127.0.0.1:PORT``, ``https://`` when it serves TLS), stops it afterwards.

    Its host is never started: nothing registers and nothing heartbeats. Clients the service
    uses must not need one (give it :class:`~vyked.testing.ClientStub` stand-ins).
    """
    service.host_ip, service.host_port = "127.0.0.1", 0
    await service.start(ServiceHost())
    try:
        yield service.url
    finally:
        await service.stop()
