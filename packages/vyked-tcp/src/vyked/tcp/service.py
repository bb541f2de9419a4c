"""``TCPService``: a service whose ``@api`` methods answer requests over vyked's wire protocol."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any, ClassVar

from vyked.core.endpoints import check_reserved, collect, install_senders
from vyked.core.exceptions import Draining
from vyked.core.forwarding import RESULT, SELF, forwarder
from vyked.core.observe import Family
from vyked.core.protocol import DEFAULT_MAX_FRAME_SIZE
from vyked.core.protocol.packets import Error
from vyked.core.service import Service
from vyked.core.service_host import ServiceHost
from vyked.core.threads import call_on_loop
from vyked.core.transport import PacketServer
from vyked.tcp.decorators import EndpointSpec, of_kind
from vyked.tcp.dispatch import Dispatcher, Endpoint
from vyked.tcp.pubsub.hub import PubSub, publish_event
from vyked.tcp.server import ServiceProtocolHandler

logger = logging.getLogger(__name__)

_INSTANCE_ATTRIBUTES = frozenset(
    {"name", "version", "host_ip", "host_port", "node_id", "host", "max_frame_size", "ssl_context"}
    | {"max_connections", "max_in_flight", "max_concurrency"}
)

DEFAULT_MAX_CONNECTIONS = 10_000
"""Connections a TCP service accepts at once; more are refused with ``overloaded``."""
DEFAULT_MAX_IN_FLIGHT = 1_000
"""Requests one connection may have running at once; past it the service stops reading it."""


class TCPService(Service):
    """Subclass it and decorate methods with ``@api`` (and ``@publish``)::

    class IdentityTCPService(TCPService):
        def __init__(self, ip, port):
            super().__init__("IdentityService", 1, ip, port)

        @api
        async def create(self, user_name, password): ...
    """

    kind = "tcp"
    _api_specs: ClassVar[dict[str, tuple[str, EndpointSpec]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declared = collect(cls, EndpointSpec, of_kind("api", "publish"))
        check_reserved(cls, TCPService, declared, _INSTANCE_ATTRIBUTES)
        cls._api_specs = {
            spec.name: (attr, spec) for attr, specs in declared.items() for spec in specs if spec.kind == "api"
        }
        install_senders(cls, EndpointSpec, _publisher, where=of_kind("publish"), what="@publish")

    def __init__(
        self,
        service_name: str,
        service_version: object,
        host_ip: str = "127.0.0.1",
        host_port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        max_concurrency: int | None = None,
    ) -> None:
        """``ssl_context`` serves TLS (default: the host's ``VYKED_TLS_*`` settings, if any).
        ``max_connections`` caps accepted connections (more are refused with ``overloaded``);
        ``max_in_flight`` caps the requests one connection may have running: past it the
        service stops reading that connection until some finish. ``max_concurrency`` caps the
        requests the service runs at once, over all connections (default:
        ``VYKED_MAX_CONCURRENCY``, else none): more are refused at once with ``Overloaded``."""
        super().__init__(service_name, service_version, host_ip, host_port)
        self.max_frame_size = max_frame_size
        self.ssl_context = ssl_context
        self.max_connections = max_connections
        self.max_in_flight = max_in_flight
        self.max_concurrency = max_concurrency
        self._server: PacketServer | None = None
        self._dispatcher: Dispatcher | None = None

    @property
    def serves_tls(self) -> bool:
        return self.ssl_context is not None

    def endpoints(self) -> dict[str, Endpoint]:
        """The service's ``@api`` methods, bound and ready to call."""
        return {
            name: Endpoint.bind(self.name, getattr(self, attr), spec) for name, (attr, spec) in self._api_specs.items()
        }

    async def start(self, host: ServiceHost) -> None:
        await super().start(host)
        if self.ssl_context is None:
            self.ssl_context = host.trust.server_ssl
        self._dispatcher = Dispatcher(
            self.name,
            self.endpoints(),
            max_in_flight=self.max_in_flight,
            max_concurrency=self.max_concurrency,
            version=self.version,
            observers=host.observers,
        )
        self._server = PacketServer(
            ServiceProtocolHandler(self._dispatcher, PubSub.of(host)),
            node_id=self.node_id,
            max_frame_size=self.max_frame_size,
            heartbeat=host.heartbeat,
            secret=host.trust.secret,
            ssl_context=self.ssl_context,
            max_connections=self.max_connections,
        )
        _, self.host_port = await self._server.start(self.host_ip, self.host_port)

    def metric_families(self) -> list[Family]:
        """Requests running now (read by the host's metrics)."""
        return [] if self._dispatcher is None else self._dispatcher.metric_families()

    async def drain(self, deadline: float) -> None:
        """Stop accepting connections; tell every connected caller that this instance is
        draining (they send it nothing more and close once their requests are answered);
        refuse requests that still come with ``draining``; wait for those in flight."""
        server, dispatcher = self._server, self._dispatcher
        if server is None or dispatcher is None:
            return
        server.stop_accepting()
        dispatcher.start_draining()
        notice = Error(
            id=None, code=Draining.code, message=f"{self.name} at {self.host_ip}:{self.host_port} is stopping"
        )
        for conn in list(server.connections):
            if conn.ready:
                conn.send(notice)
        loop = asyncio.get_running_loop()
        still_running = await dispatcher.drained(max(0.0, deadline - loop.time()))
        if still_running:
            logger.warning(
                "%s: %d requests still running at the end of the drain grace period", self.name, still_running
            )
        # callers close their side once idle; give them until the deadline, 1 s at most
        await server.wait_idle(min(deadline, loop.time() + 1.0))

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.close()
            self._server = None
        if self._dispatcher is not None:
            await self._dispatcher.close()
            self._dispatcher = None


def _publisher(method: Callable[..., Any], spec: EndpointSpec) -> Callable[..., None]:
    """What a ``@publish`` method becomes: it publishes the dict the method returns.

    Raises :class:`~vyked.core.exceptions.PublishError` at once if the payload is not a dict of
    JSON-serialisable fields; sending never blocks (see ``docs/pubsub.md``). Called from a
    ``def`` handler's thread, the sending is handed to the event loop.
    """
    return forwarder(method, call_on_loop, (publish_event, SELF, spec.name, RESULT))
