"""Base classes shared by every kind of service and client (TCP, HTTP).

A :class:`Service` is something a host starts, that listens on an address and registers
with the registry. A :class:`ServiceClient` is a local stand-in for a remote service: it
finds instances through its host's registry connection and sends them requests.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, ClassVar

from vyked.core.protocol.packets import Dependency, InstanceInfo, Register
from vyked.core.versions import normalize

if TYPE_CHECKING:
    from vyked.core.host import ServiceHost


class Service:
    """A service instance: a name, a version and an address to serve on."""

    kind: ClassVar[str] = ""
    """``"tcp"`` or ``"http"``: what the registry records and clients filter on."""

    def __init__(self, service_name: str, service_version: object, host_ip: str, host_port: int) -> None:
        self.name = service_name
        self.version = normalize(service_version)
        self.host_ip = host_ip
        self.host_port = host_port
        self.node_id = uuid.uuid4().hex
        self.host: ServiceHost | None = None
        self._clients: list[ServiceClient] = []

    @property
    def clients(self) -> list[ServiceClient]:
        """The clients this service uses; their services are its dependencies."""
        return self._clients

    @clients.setter
    def clients(self, clients: list[ServiceClient]) -> None:
        self._clients = list(clients)
        if self.host is not None:
            for client in self._clients:
                self.host.bind_client(client)

    async def start(self, host: ServiceHost) -> None:
        """Start listening; set :attr:`host_port` to the bound port. Kinds override this."""
        self.host = host

    async def stop(self) -> None:
        """Stop listening and close what the service owns."""

    def registration(self, advertised_host: str) -> Register:
        """The ``register`` packet announcing this instance."""
        return Register(
            instance=InstanceInfo(
                service=self.name,
                version=self.version,
                host=advertised_host,
                port=self.host_port,
                node_id=self.node_id,
                kind=self.kind,
            ),
            dependencies=[Dependency(service=c.name, version=c.version) for c in self._clients],
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} v{self.version} {self.host_ip}:{self.host_port}>"


class ServiceClient:
    """Local stand-in for a remote service, bound to the host process that uses it.

    A client attached to a service (``service.clients = [...]``) uses that service's host. A
    client created in a plain script uses the process-wide default host built from the
    :class:`~vyked.core.host.Host` settings, connected on first use.
    """

    kind: ClassVar[str] = ""

    def __init__(self, service_name: str, service_version: object) -> None:
        self.name = service_name
        self.version = normalize(service_version)
        self.host: ServiceHost | None = None

    def bind(self, host: ServiceHost) -> None:
        self.host = host

    async def resolve_host(self) -> ServiceHost:
        """The started host this client works through, starting the default one if needed."""
        host = self.host
        if host is None or host.loop is not asyncio.get_running_loop():
            from vyked.core.host import Host

            host = Host.default()
            host.bind_client(self)
        await host.ensure_started()
        await host.watch(self.name)
        return host

    def __repr__(self) -> str:
        return f"<{type(self).__name__} for {self.name} v{self.version}>"
