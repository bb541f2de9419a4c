"""Running services in an event loop: :class:`ServiceHost`.

A :class:`ServiceHost` is awaitable: ``await host.start()``, ``await host.stop()``, any number
of them in one event loop, which is what tests and embedding applications use. The class-level
:class:`~vyked.core.host.Host` of the original API drives one of them.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from vyked.core.addresses import DEFAULT_REGISTRY_PORT, RegistrySpec
from vyked.core.client import ServiceClient
from vyked.core.exceptions import ConfigurationError, HostNotRunning, RegistryUnavailable, RoninMode
from vyked.core.extensions import E, ExtensionKey, HostExtension
from vyked.core.instances import InstanceDirectory
from vyked.core.logs import forget_identity, set_identity
from vyked.core.observe import Observer, Observers
from vyked.core.registry_client import RegistryClient
from vyked.core.security import Trust
from vyked.core.service import Service
from vyked.core.settings import HostSettings, env_seconds_or_zero
from vyked.core.tracing import Tracing, tracing_wanted
from vyked.core.watchdog import watch_running_loop

if TYPE_CHECKING:
    from vyked.core.metrics import MetricsServer

logger = logging.getLogger(__name__)

DEFAULT_DRAIN_GRACE = 10.0
"""Seconds a stopping host lets requests in flight finish (``VYKED_DRAIN_GRACE``)."""
METRICS_PORT_ENV = "VYKED_METRICS_PORT"
"""The port of a host's ``/metrics``, ``/livez`` and ``/readyz`` (0: a free one); unset: none."""
METRICS_HOST_ENV = "VYKED_METRICS_HOST"
"""The address that port is bound to; default ``0.0.0.0`` (probes come over the pod's IP)."""
DEFAULT_METRICS_HOST = "0.0.0.0"


class HostState(enum.Enum):
    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    DRAINING = "draining"
    STOPPED = "stopped"


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
        heartbeat_interval: float | None = None,
        heartbeat_timeout: float | None = None,
        secret: str | bytes | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        tls_ca: str | None = None,
        trust: Trust | None = None,
        drain_grace: float | None = None,
        metrics_port: int | None = None,
        metrics_host: str | None = None,
        ronin: bool | None = None,
    ) -> None:
        """``secret`` and the ``tls_*`` paths default to the ``VYKED_SECRET``,
        ``VYKED_SECRET_FILE`` and ``VYKED_TLS_*`` variables (see :mod:`vyked.core.security`);
        ``trust`` gives them ready-made instead. ``drain_grace`` (default ``VYKED_DRAIN_GRACE``,
        else 10 s) bounds how long :meth:`stop` lets requests in flight finish.

        ``metrics_port`` (default ``VYKED_METRICS_PORT``, else none) serves ``/metrics``,
        ``/livez`` and ``/readyz`` on ``metrics_host`` (default ``VYKED_METRICS_HOST``, else
        ``0.0.0.0``) while the host runs; 0 picks a free port (:attr:`metrics_port` holds it
        once started). It needs ``pip install 'vyked-core[metrics]'``: see ``docs/observability.md``.

        ``registry`` (default ``VYKED_REGISTRY``, else ``127.0.0.1:4500``), ``pubsub``
        (``VYKED_PUBSUB``), ``name`` (``VYKED_NAME``) and the heartbeat (``VYKED_HEARTBEAT_*``,
        else 0.5 s / 2 s) come from :class:`~vyked.core.settings.HostSettings`.

        ``ronin`` (default ``VYKED_RONIN``, else false) serves the services without a registry,
        as vyked 2.x's ``Host.ronin``: nothing registers, and the host's clients fail at once
        with :class:`~vyked.core.exceptions.RoninMode`."""
        self.settings = HostSettings.load(
            registry=registry,
            registry_port=registry_port,
            pubsub=pubsub,
            name=name,
            heartbeat_interval=heartbeat_interval,
            heartbeat_timeout=heartbeat_timeout,
            ronin=ronin,
        )
        self.name = self.settings.name
        self.drain_grace = (
            drain_grace if drain_grace is not None else env_seconds_or_zero("VYKED_DRAIN_GRACE", DEFAULT_DRAIN_GRACE)
        )
        self.trust = trust or Trust.configure(secret=secret, tls_cert=tls_cert, tls_key=tls_key, tls_ca=tls_ca)
        """The cluster secret and TLS contexts of every connection this host makes or serves."""
        self.heartbeat = (self.settings.heartbeat_interval, self.settings.heartbeat_timeout)
        """``(interval, timeout)`` for the connections this host opens: to the registry and to
        the instances it calls. A peer silent for ``timeout`` seconds is taken for dead."""
        self.node_id = uuid.uuid4().hex
        self.registry_addresses = list(self.settings.registry)
        self.pubsub = self.settings.pubsub
        """Redis URL for publish-subscribe, or None for the embedded transport."""
        self.directory = InstanceDirectory()
        self.services: list[Service] = []
        self.clients: list[ServiceClient] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.state = HostState.NEW
        self._registry: RegistryClient | None = None
        self._extensions: dict[ExtensionKey[Any], HostExtension] = {}
        self._started: asyncio.Future[None] | None = None
        self._stopped: asyncio.Future[None] | None = None
        self._unwatch_loop: Callable[[], None] | None = None
        self.tracing: bool | str | None = None
        """Trace requests and events with OpenTelemetry (:mod:`vyked.core.tracing`): True,
        False, or a ``VYKED_TRACING`` mode; None (default): ``VYKED_TRACING``, else ``auto``
        (trace when the application has set a tracer provider). Read when the host starts."""
        self._observers = Observers()
        self.metrics_port = metrics_port if metrics_port is not None else _metrics_port_from_env()
        self.metrics_host = metrics_host or os.environ.get(METRICS_HOST_ENV, "").strip() or DEFAULT_METRICS_HOST
        self.metrics: MetricsServer | None = None
        """The metrics and probes server, while the host runs with a :attr:`metrics_port`."""

    # -- composition ---------------------------------------------------------------------------

    def attach(self, service: Service) -> None:
        """Add a service, to be started by :meth:`start`."""
        self.services.append(service)
        service.host = self
        for client in service.clients:
            self.bind_client(client)

    def bind_client(self, client: ServiceClient) -> None:
        """Make ``client`` send through this host (for good: see :class:`ServiceClient`)."""
        client.bind(self)
        if client not in self.clients:
            self.clients.append(client)

    def extension(self, key: ExtensionKey[E], factory: Callable[[ServiceHost], E] | None = None) -> E:
        """The host's shared object for ``key``, made on first use (by ``factory(host)`` if
        given, else by the key's factory) and closed when the host stops."""
        ext = self._extensions.get(key)
        if ext is None:
            ext = self._extensions[key] = (factory or key.factory)(self)
        # made by the key's factory; not typing.cast, which costs a call on every request
        return ext  # type: ignore[return-value]

    def existing_extension(self, key: ExtensionKey[E]) -> E | None:
        """The extension for ``key`` if something made it already."""
        return self._extensions.get(key)  # type: ignore[return-value]

    def extensions_in_use(self) -> list[HostExtension]:
        """The extensions made so far, in the order they were made."""
        return list(self._extensions.values())

    @property
    def observers(self) -> Observers:
        """What this host tells about its requests and events (:mod:`vyked.core.observe`):
        empty unless metrics are on, or the application appends an observer (before start).
        Assigning a list replaces the contents: the services and clients keep this object."""
        return self._observers

    @observers.setter
    def observers(self, observers: Iterable[Observer]) -> None:
        self._observers[:] = list(observers)

    @property
    def registry(self) -> RegistryClient:
        if self.ronin:
            raise self._ronin_error("has no registry")
        if self._registry is None:
            raise HostNotRunning(f"{self!r} has not been started")
        return self._registry

    @property
    def ronin(self) -> bool:
        """Whether the host serves without a registry (``Host.ronin``, ``VYKED_RONIN``)."""
        return self.settings.ronin

    def _ronin_error(self, what: str) -> RoninMode:
        return RoninMode(
            f"{self!r} {what}: it runs in ronin mode (Host.ronin = True or VYKED_RONIN), without a "
            "registry, so it cannot find other services; set Host.ronin = False (unset VYKED_RONIN) "
            "and run a registry to call them"
        )

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to the registry, start every service and register it, watch dependencies.

        Raises :class:`~vyked.core.exceptions.RegistryUnavailable` when no registry answers,
        and :class:`~vyked.core.exceptions.HostNotRunning` on a host that has stopped.
        """
        if self.state is HostState.STOPPED:
            raise HostNotRunning(f"{self!r} has stopped; a stopped host cannot start again: make a new one")
        if self._started is not None:
            await self._started
            return
        self.loop = asyncio.get_running_loop()
        self._started = self.loop.create_future()
        self.state = HostState.STARTING
        set_identity(self._log_name(), self.node_id)
        if self.services:  # a blocked loop stops heartbeats: say which code blocks it
            self._unwatch_loop = watch_running_loop(self.name or ", ".join(s.name for s in self.services))
        try:
            await self._start()
        except BaseException as exc:
            self._started.set_exception(exc)
            self._started.exception()
            await self.stop()
            raise
        self.state = HostState.RUNNING
        self._started.set_result(None)
        # After this line the host's subscriptions are in place (or still trying, logged).
        logger.info("host started: %s", ", ".join(f"{s.kind} {s.name}" for s in self.services) or "clients only")

    def _log_name(self) -> str:
        """What JSON log lines name as ``service``: the host's name, else its services'."""
        return self.name or ",".join(dict.fromkeys(s.name for s in self.services))

    async def _start(self) -> None:
        if tracing_wanted(self.tracing) and not any(isinstance(o, Tracing) for o in self.observers):
            self.observers.append(Tracing())
        if self.metrics_port is not None:
            self._start_metrics(self.metrics_port)
        if self.ronin:
            await self._start_ronin()
            return
        if not self.registry_addresses:
            raise RegistryUnavailable(
                "no registry configured: set Host.registry_host / Host.registry_port (or pass registry= to ServiceHost)"
            )
        if self.settings.registry_source == "default":
            logger.info(
                "no registry configured (VYKED_REGISTRY, Host.registry_host): using %s",
                self.settings.describe_registry(),
            )
        self._registry = RegistryClient(
            self.registry_addresses, self.directory, node_id=self.node_id, heartbeat=self.heartbeat, trust=self.trust
        )
        await self._registry.start()
        for service in self.services:
            await self._start_service(service)
        dependencies = sorted({c.name for c in self.clients})
        if dependencies:
            await self._registry.watch(dependencies)
        for ext in list(self._extensions.values()):
            await ext.host_started()

    async def _start_ronin(self) -> None:
        """Start the services without registering them; clients and subscriptions cannot work."""
        logger.warning(
            "ronin mode (Host.ronin, VYKED_RONIN): serving without a registry; nothing registers, "
            "and this host's clients cannot find other services"
        )
        for service in self.services:
            await service.start(self)
            logger.info(
                "%s %s v%s serving on %s:%s (ronin: not registered)",
                service.kind,
                service.name,
                service.version,
                service.host_ip,
                service.host_port,
            )
        dependencies = sorted({c.name for c in self.clients})
        if dependencies:
            logger.warning("ronin mode: calls to %s will fail with RoninMode", ", ".join(dependencies))
        for ext in list(self._extensions.values()):
            try:
                await ext.host_started()
            except RoninMode as exc:
                logger.warning("ronin mode: %r cannot work without a registry (%s)", ext, exc)

    def _start_metrics(self, port: int) -> None:
        from vyked.core.optional import require

        metrics = require("vyked.core.metrics", "vyked-core[metrics]", dependency="prometheus_client")
        self.metrics = metrics.serve_host_metrics(self, port, self.metrics_host)
        self.metrics_port = self.metrics.port

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
        """Start the host unless it is started (or starting) already; raises
        :class:`~vyked.core.exceptions.HostNotRunning` once it has stopped."""
        if self.state is HostState.STOPPED:
            raise HostNotRunning(f"{self!r} has stopped")
        if self._started is None or not self._started.done():
            await self.start()
        else:
            await self._started

    async def watch(self, service: str) -> None:
        """Make sure the instances of ``service`` are known (asks the registry once); raises
        :class:`~vyked.core.exceptions.RoninMode` on a ronin host."""
        if self.ronin:
            raise self._ronin_error(f"cannot find {service!r}")
        if service not in self.directory.known:
            await self.registry.watch([service])

    async def stop(self, grace: float | None = None) -> None:
        """Drain, then stop: what SIGTERM and SIGINT do to ``Host.run()``.

        1. Deregister every service instance: the registry tells their clients at once, so
           they stop choosing this host.
        2. Each service takes no new requests (those that still arrive are refused with
           ``draining``, which clients retry on another instance) and lets those in flight
           finish, for ``grace`` seconds at most (default: :attr:`drain_grace`).
        3. Publish-subscribe stops taking events and acknowledges those handled.
        4. Services, shared connections and the registry connection close.

        A host that never finished starting skips the drain. Stopping twice waits for the
        first stop.
        """
        if self._stopped is not None:
            await asyncio.shield(self._stopped)
            return
        self._stopped = asyncio.get_running_loop().create_future()
        try:
            if self.state is HostState.RUNNING:
                self.state = HostState.DRAINING
                await self._drain(self.drain_grace if grace is None else grace)
            self.state = HostState.STOPPED
            await self._close()
        finally:
            self._stopped.set_result(None)

    async def _drain(self, grace: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        started = loop.time()
        if self._registry is not None and self.services:
            await asyncio.gather(
                *(self._registry.deregister(s.node_id, timeout=min(1.0, grace)) for s in self.services)
            )
        for step in [
            *(s.drain(deadline) for s in self.services),
            *(e.drain(deadline) for e in self._extensions.values()),
        ]:
            try:
                await step
            except Exception:
                logger.exception("error while draining %r", self)
        if self.services:
            logger.info("drained in %.2f s (grace %s s)", loop.time() - started, grace)

    async def _close(self) -> None:
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
        if self._unwatch_loop is not None:
            self._unwatch_loop()
        if self.metrics is not None:
            self.metrics.close()
        forget_identity(self.node_id)

    # -- readiness ------------------------------------------------------------------------------

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Whether the host takes work now, and why not: ``(True, {...})`` only while it runs,
        its registry connection is up and the registry reports every service of the host
        ``active`` (``/readyz`` answers it). The dict says ``status`` (``ready``, ``starting``,
        ``pending``, ``draining``, ``stopped``, ``registry_down``), a ``reason`` when not
        ready, and each service's state."""
        services: dict[str, str] = {}
        waiting: list[str] = []
        registry = self._registry
        for service in self.services:
            state = registry.states.get(service.node_id) if registry is not None else None
            if state is None or state.state == "active":
                services[service.name] = "active" if self.state is HostState.RUNNING else self.state.value
            else:
                services[service.name] = state.state
                waiting.append(f"{service.name} waits for {', '.join(state.waiting_for) or 'its dependencies'}")
        report: dict[str, Any] = {"status": "ready", "host": self.name or self._log_name(), "services": services}
        if self.state is not HostState.RUNNING:
            status = "starting" if self.state in (HostState.NEW, HostState.STARTING) else self.state.value
            reason = {
                "starting": "the host is starting",
                "draining": "the host is stopping: draining its requests",
                "stopped": "the host has stopped",
            }[status]
            report.update(status=status, reason=reason)
        elif not self.ronin and (registry is None or not registry.connected):
            report.update(status="registry_down", reason="the registry connection is down (reconnecting)")
        elif waiting:
            report.update(status="pending", reason="pending: " + "; ".join(waiting))
        return report["status"] == "ready", report

    @property
    def state(self) -> HostState:
        """Where the host is in its life: new, starting, running, draining, stopped."""
        return self._state

    @state.setter
    def state(self, state: HostState) -> None:
        self._state = state
        self.running = state is HostState.RUNNING or state is HostState.DRAINING
        """Started, and not stopped (a draining host still sends its clients' requests): an
        attribute, kept with :attr:`state`, as every request asks it."""

    @property
    def started(self) -> bool:
        """:meth:`start` has been called (the host may be starting, running or stopped)."""
        return self.state is not HostState.NEW

    @property
    def stopped(self) -> bool:
        return self.state is HostState.STOPPED

    async def __aenter__(self) -> ServiceHost:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        services = ", ".join(s.name for s in self.services) or "no services"
        return f"<ServiceHost{label} ({services}) {self.state.value}>"


def _metrics_port_from_env() -> int | None:
    raw = os.environ.get(METRICS_PORT_ENV, "").strip()
    if not raw:
        return None
    try:
        port = int(raw)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ConfigurationError(f"{METRICS_PORT_ENV}={raw!r}: expected a port number (0 for a free one)")
    return port
