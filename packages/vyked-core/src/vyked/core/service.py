"""The base class of every kind of service (TCP, HTTP).

A :class:`Service` is something a host starts, that listens on an address and registers with
the registry. Its clients (the :class:`~vyked.core.client.ServiceClient` objects in
:attr:`Service.clients`) name the services it depends on.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, ClassVar

from vyked.core.client import ServiceClient
from vyked.core.protocol.packets import Dependency, InstanceInfo, Register
from vyked.core.versions import normalize

if TYPE_CHECKING:
    from vyked.core.service_host import ServiceHost

__all__ = ["Service", "ServiceClient"]


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
    def serves_tls(self) -> bool:
        """Whether the service serves TLS; recorded by the registry so clients know."""
        return False

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

    async def drain(self, deadline: float) -> None:
        """Take no new requests (refuse those that still come with
        :class:`~vyked.core.exceptions.Draining`) and return once the requests in flight have
        finished, or at ``deadline`` (event-loop time). The host has deregistered the
        instance already. Kinds override this; :meth:`stop` follows."""

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
                tls=self.serves_tls,
            ),
            dependencies=[Dependency(service=c.name, version=c.version) for c in self._clients],
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} v{self.version} {self.host_ip}:{self.host_port}>"
