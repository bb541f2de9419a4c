"""Running services: :class:`ServiceHost` (an object per host) and :class:`Host` (the seed's API).

:class:`ServiceHost` is the awaitable form: ``await host.start()``, ``await host.stop()``, any
number of them in one event loop, which is what tests and embedding applications use.

:class:`Host` is the class-level façade from the original vyked README: set
``Host.registry_host`` and friends, ``Host.attach_service(...)``, then ``Host.run()``, which
blocks until SIGINT or SIGTERM. It drives one process-wide :class:`ServiceHost`, which is also
what clients created in plain scripts use (see :meth:`Host.default`).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, Protocol, TypeVar

from vyked.core.exceptions import RegistryUnavailable
from vyked.core.instances import InstanceDirectory
from vyked.core.registry_client import Address, RegistryClient
from vyked.core.service import Service, ServiceClient
from vyked.core.transport.connection import DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_HEARTBEAT_TIMEOUT

logger = logging.getLogger(__name__)

DEFAULT_REGISTRY_PORT = 4500

RegistrySpec = str | Sequence[Address] | Sequence[str] | None


class Closeable(Protocol):
    async def close(self) -> None: ...


E = TypeVar("E", bound=Closeable)


def parse_addresses(spec: RegistrySpec, default_port: int = DEFAULT_REGISTRY_PORT) -> list[Address]:
    """``"a:4500,b:4501"``, ``"a"``, ``[("a", 4500)]`` or ``["a:4500"]`` → ``[("a", 4500), ...]``."""
    if spec is None:
        return []
    items: list[Any] = spec.split(",") if isinstance(spec, str) else list(spec)
    addresses: list[Address] = []
    for item in items:
        if isinstance(item, tuple):
            addresses.append((str(item[0]), int(item[1])))
            continue
        text = str(item).strip()
        if not text:
            continue
        host, sep, port = text.rpartition(":")
        if sep and port.isdigit():
            addresses.append((host.strip("[]"), int(port)))
        else:
            addresses.append((text, default_port))
    return addresses


class ServiceHost:
    """Runs services in the current event loop and holds what they share.

    Shared per host: the registry connection, the directory of known instances, and
    *extensions* such as the TCP connection pool or the HTTP session (:meth:`extension`).
    """

    def __init__(
        self,
        registry: RegistrySpec = None,
        *,
        registry_port: int = DEFAULT_REGISTRY_PORT,
        pubsub: str | None = None,
        name: str = "",
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT,
    ) -> None:
        self.name = name
        self.heartbeat = (heartbeat_interval, heartbeat_timeout)
        """``(interval, timeout)`` for the connections this host opens: to the registry and to
        the instances it calls. A peer silent for ``timeout`` seconds is taken for dead."""
        self.node_id = uuid.uuid4().hex
        self.registry_addresses = parse_addresses(registry, registry_port)
        self.pubsub = pubsub
        """Redis URL for publish-subscribe, or None for the embedded transport."""
        self.directory = InstanceDirectory()
        self.services: list[Service] = []
        self.clients: list[ServiceClient] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self._registry: RegistryClient | None = None
        self._extensions: dict[str, Closeable] = {}
        self._started: asyncio.Future[None] | None = None
        self._stopped = False

    # -- composition ---------------------------------------------------------------------------

    def attach(self, service: Service) -> None:
        """Add a service, to be started by :meth:`start`."""
        self.services.append(service)
        service.host = self
        for client in service.clients:
            self.bind_client(client)

    def bind_client(self, client: ServiceClient) -> None:
        client.bind(self)
        if client not in self.clients:
            self.clients.append(client)

    def extension(self, key: str, factory: Callable[[ServiceHost], E]) -> E:
        """The host's shared object under ``key``, made by ``factory(host)`` on first use and
        closed when the host stops."""
        ext = self._extensions.get(key)
        if ext is None:
            ext = self._extensions[key] = factory(self)
        return ext  # type: ignore[return-value]

    @property
    def registry(self) -> RegistryClient:
        if self._registry is None:
            raise RegistryUnavailable("the host has not been started")
        return self._registry

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to the registry, start every service and register it, watch dependencies."""
        if self._started is not None:
            await self._started
            return
        self.loop = asyncio.get_running_loop()
        self._started = self.loop.create_future()
        try:
            await self._start()
        except BaseException as exc:
            self._started.set_exception(exc)
            self._started.exception()
            await self.stop()
            raise
        self._started.set_result(None)

    async def _start(self) -> None:
        if not self.registry_addresses:
            raise RegistryUnavailable(
                "no registry configured: set Host.registry_host / Host.registry_port (or pass registry= to ServiceHost)"
            )
        self._registry = RegistryClient(
            self.registry_addresses, self.directory, node_id=self.node_id, heartbeat=self.heartbeat
        )
        await self._registry.start()
        for service in self.services:
            await self._start_service(service)
        dependencies = sorted({c.name for c in self.clients})
        if dependencies:
            await self._registry.watch(dependencies)
        # Extensions that act once the host is registered and watching (publish-subscribe).
        for ext in list(self._extensions.values()):
            host_started = getattr(ext, "host_started", None)
            if host_started is not None:
                await host_started()

    async def _start_service(self, service: Service) -> None:
        await service.start(self)
        advertised = service.host_ip
        if advertised in ("", "0.0.0.0", "::"):
            advertised = self.registry.local_host
        await self.registry.register(service.registration(advertised))
        logger.info(
            "%s %s v%s serving on %s:%s", service.kind, service.name, service.version, advertised, service.host_port
        )

    async def ensure_started(self) -> None:
        """Start the host unless it is started (or starting) already."""
        if self._started is None or not self._started.done():
            await self.start()
        else:
            await self._started

    async def watch(self, service: str) -> None:
        """Make sure the instances of ``service`` are known (asks the registry once)."""
        if service not in self.directory.known:
            await self.registry.watch([service])

    async def stop(self) -> None:
        """Stop services, close shared resources and the registry connection."""
        if self._stopped:
            return
        self._stopped = True
        for service in reversed(self.services):
            try:
                await service.stop()
            except Exception:
                logger.exception("error while stopping %r", service)
        for ext in reversed(list(self._extensions.values())):
            try:
                await ext.close()
            except Exception:
                logger.exception("error while closing %r", ext)
        self._extensions.clear()
        if self._registry is not None:
            await self._registry.close()

    @property
    def running(self) -> bool:
        return self._started is not None and self._started.done() and not self._stopped

    async def __aenter__(self) -> ServiceHost:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


class Host:
    """The process-wide host of the original vyked API.

    ::

        Host.registry_host = '127.0.0.1'
        Host.registry_port = 4500
        Host.attach_service(tcp_service)
        Host.run()
    """

    registry_host: ClassVar[str | Sequence[Address] | None] = None
    """One address (``"10.0.0.1"``), several (``"10.0.0.1:4500,10.0.0.2:4500"``), or a list of
    ``(host, port)`` pairs."""
    registry_port: ClassVar[int] = DEFAULT_REGISTRY_PORT
    pubsub_host: ClassVar[str | None] = None
    pubsub_port: ClassVar[int] = 6379
    pubsub_url: ClassVar[str | None] = None
    """A Redis URL (``redis://host:port/db``); takes precedence over pubsub_host/port."""
    name: ClassVar[str | None] = None

    _tcp_service: ClassVar[Service | None] = None
    _http_service: ClassVar[Service | None] = None
    _runtime: ClassVar[ServiceHost | None] = None

    @classmethod
    def configure(
        cls,
        name: str | None = None,
        registry_host: str | Sequence[Address] | None = None,
        registry_port: int | None = None,
        pubsub_host: str | None = None,
        pubsub_port: int | None = None,
        pubsub_url: str | None = None,
    ) -> None:
        """Set several class attributes at once; arguments left as None keep their value."""
        for attr, value in (
            ("name", name),
            ("registry_host", registry_host),
            ("registry_port", registry_port),
            ("pubsub_host", pubsub_host),
            ("pubsub_port", pubsub_port),
            ("pubsub_url", pubsub_url),
        ):
            if value is not None:
                setattr(cls, attr, value)

    @classmethod
    def attach_service(cls, service: Service) -> None:
        """Attach a TCP or HTTP service, by its kind."""
        if service.kind == "tcp":
            cls.attach_tcp_service(service)
        elif service.kind == "http":
            cls.attach_http_service(service)
        else:
            raise TypeError(f"cannot attach {service!r}: not a TCPService or HTTPService")

    @classmethod
    def attach_tcp_service(cls, service: Service) -> None:
        if cls._tcp_service is not None and cls._tcp_service is not service:
            raise ValueError(f"a TCP service is attached already ({cls._tcp_service!r}); a Host runs one")
        cls._tcp_service = service

    @classmethod
    def attach_http_service(cls, service: Service) -> None:
        if cls._http_service is not None and cls._http_service is not service:
            raise ValueError(f"an HTTP service is attached already ({cls._http_service!r}); a Host runs one")
        cls._http_service = service

    @classmethod
    def _pubsub(cls) -> str | None:
        if cls.pubsub_url:
            return cls.pubsub_url
        if cls.pubsub_host:
            return f"redis://{cls.pubsub_host}:{cls.pubsub_port}"
        return None

    @classmethod
    def default(cls) -> ServiceHost:
        """The process-wide :class:`ServiceHost`, built from the class attributes on first use.

        A host left from an event loop that has ended, with no service attached, is replaced,
        so scripts may call ``asyncio.run`` more than once.
        """
        runtime = cls._runtime
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if runtime is not None and runtime.loop is not None and runtime.loop is not loop and not runtime.services:
            runtime = None
        if runtime is None:
            runtime = ServiceHost(
                cls.registry_host,
                registry_port=cls.registry_port,
                pubsub=cls._pubsub(),
                name=cls.name or "",
            )
            cls._runtime = runtime
        return runtime

    @classmethod
    async def start(cls) -> ServiceHost:
        """Start the attached services in the running loop; returns the running host."""
        runtime = cls.default()
        for service in (cls._tcp_service, cls._http_service):
            if service is not None and service not in runtime.services:
                runtime.attach(service)
        await runtime.start()
        return runtime

    @classmethod
    async def stop(cls) -> None:
        """Stop the services and close every connection the process-wide host opened.

        Scripts that only call services end with ``await Host.stop()``.
        """
        runtime, cls._runtime = cls._runtime, None
        if runtime is not None:
            await runtime.stop()

    @classmethod
    def run(cls) -> None:
        """Start the attached services and serve until SIGINT or SIGTERM."""
        _configure_logging()
        asyncio.run(cls._serve_until_signalled())

    @classmethod
    async def _serve_until_signalled(cls) -> None:
        await serve_until_signalled(cls.start, cls.stop)


async def serve_until_signalled(start: Callable[[], Awaitable[Any]], stop: Callable[[], Awaitable[Any]]) -> None:
    """Run ``start``, wait for SIGINT or SIGTERM, run ``stop``: the body of every vyked server."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    try:
        await start()
        await stopping.wait()
        logger.info("stopping")
    finally:
        await stop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def _configure_logging(level: int | str = logging.INFO) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
