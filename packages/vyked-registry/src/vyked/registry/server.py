"""The registry server: accepts connections from service hosts and keeps them informed.

Hosts ``register`` their instances and ``watch`` the services they call; the registry answers
each watch with a snapshot and then pushes every added and removed instance. An instance is
removed as soon as the connection that registered it closes, or when its host stops
answering heartbeats; one its host withdraws (``deregister``) is removed from routing at once
and listed as draining until that connection closes. With a Redis URL, the registry shares
its instances with every other registry on the same Redis (see
:mod:`vyked.registry.replication`). With a dashboard port, it serves a web page and a JSON
API of what it knows (see :mod:`vyked.registry.dashboard`).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import uuid
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

from vyked.core.exceptions import AuthenticationFailed, ConfigurationError, NodeIdTaken, ProtocolError
from vyked.core.optional import require
from vyked.core.protocol import encode_frame
from vyked.core.protocol.packets import (
    Deregister,
    Deregistered,
    Packet,
    Register,
    Registered,
    StatusQuery,
    StatusReport,
    Watch,
)
from vyked.core.security import Trust, certificate_names
from vyked.core.serving import run_until_signalled
from vyked.core.transport import Connection, PacketServer
from vyked.core.transport.connection import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_HEARTBEAT_TIMEOUT,
)
from vyked.registry.metrics import registry_families
from vyked.registry.replication import DEFAULT_LEASE_TTL, RedisReplication
from vyked.registry.state import Outbox, RegistryState

if TYPE_CHECKING:
    from vyked.registry.dashboard.app import Dashboard

logger = logging.getLogger(__name__)

REGISTRY_MAX_FRAME_SIZE = 1024 * 1024
"""The largest frame a registry reads: its packets are small (the largest legitimate one, a
``watch`` of MAX_WATCHED_SERVICES names, is about 256 KiB), so a stranger's 16 MiB frame is
refused at its header instead of decoded into millions of objects."""
MAX_WATCHED_SERVICES = 1_000
"""Services one connection may watch: each costs the registry a snapshot and a watcher entry."""
MAX_NAME_LENGTH = 256
"""Characters of a service name, version, host or node id in a registration."""
MAX_DEPENDENCIES = 256
"""Dependencies one registration may declare."""


def registration_problem(packet: Register) -> str | None:
    """Why a ``register`` is too large to keep (for weeks, in the departed history), if it is."""
    info = packet.instance
    for field, value in (("service", info.service), ("version", info.version), ("host", info.host),
                         ("node_id", info.node_id), ("kind", info.kind)):  # fmt: skip
        if len(value) > MAX_NAME_LENGTH:
            return f"{field} is {len(value)} characters long, more than {MAX_NAME_LENGTH}"
    if len(packet.dependencies) > MAX_DEPENDENCIES:
        return f"{len(packet.dependencies)} dependencies, more than {MAX_DEPENDENCIES}"
    for dependency in packet.dependencies:
        if len(dependency.service) > MAX_NAME_LENGTH or len(dependency.version) > MAX_NAME_LENGTH:
            return f"a dependency name or version is longer than {MAX_NAME_LENGTH} characters"
    return None


DEFAULT_MAX_CONNECTIONS = 10_000
"""Hosts connected to one registry at once; more are refused with ``overloaded``."""


class Registry:
    """The vyked service registry.

    ``Registry(ip, port).start()`` serves until SIGINT or SIGTERM, as in the original vyked.
    Inside a running event loop use ``await registry.open()`` and ``await registry.close()``
    (or ``async with Registry(...)``); with ``port=0`` the bound port is in :attr:`port`.

    ``redis_url`` shares state through Redis with the other registries using it;
    ``heartbeat_interval`` / ``heartbeat_timeout`` set how fast a frozen host is dropped.

    ``secret`` (default: ``VYKED_SECRET`` / ``VYKED_SECRET_FILE``) admits only peers that know
    the cluster secret; ``ssl_context`` (default: from ``VYKED_TLS_CERT``/``_KEY``/``_CA``)
    serves TLS, mutual when a CA is given; with ``require_identity`` a host may register only
    the services its client certificate names (SAN URI ``vyked://<Service>``, or the CN).
    ``max_connections`` caps the hosts connected at once.

    ``dashboard_port`` (with the ``dashboard`` extra) serves a web page and a JSON API of what
    the registry knows on ``dashboard_host`` (default 127.0.0.1: it has no authentication);
    ``0`` picks a free port, found in :attr:`dashboard_port` once open.
    """

    def __init__(
        self,
        ip: str = "127.0.0.1",
        port: int = 4500,
        *,
        redis_url: str | None = None,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        max_frame_size: int = REGISTRY_MAX_FRAME_SIZE,
        secret: str | bytes | None = None,
        ssl_context: ssl.SSLContext | None = None,
        trust: Trust | None = None,
        require_identity: bool = False,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        dashboard_port: int | None = None,
        dashboard_host: str = "127.0.0.1",
        metrics_port: int | None = None,
        metrics_host: str = "0.0.0.0",
    ) -> None:
        self.ip = ip
        self.port = port
        self.id = uuid.uuid4().hex[:12]
        self._listeners: list[Callable[[], None]] = []
        self.state = RegistryState(self.id, on_change=self._state_changed)
        self.heartbeat_interval, self.heartbeat_timeout = heartbeat_interval, heartbeat_timeout
        self.dashboard_host, self.dashboard_port = dashboard_host, dashboard_port
        self.dashboard: Dashboard | None = None
        self.metrics_host, self.metrics_port = metrics_host, metrics_port
        self.metrics: Any = None
        """The metrics server (``/metrics``, ``/livez``, ``/readyz``) once open, with ``metrics_port``."""
        self.trust = trust or Trust.configure(secret=secret, server_ssl=ssl_context)
        self.require_identity = require_identity
        # A live host is heard from at least every 1.5 heartbeat intervals (pings go both
        # ways), so a holder silent for longer is presumably cut off: the host reconnecting
        # under its node id may take the registration over before the heartbeat timeout ends
        # the old connection. A holder heard from more recently keeps it.
        self.takeover_after = min(heartbeat_timeout, max(2 * heartbeat_interval, heartbeat_timeout / 2))
        if require_identity and (
            self.trust.server_ssl is None or self.trust.server_ssl.verify_mode != ssl.CERT_REQUIRED
        ):
            raise ConfigurationError("require_identity needs mutual TLS: a certificate, its key and a CA")
        self._server = PacketServer(
            self,
            node_id=f"registry-{self.id}",
            max_frame_size=max_frame_size,
            heartbeat=(heartbeat_interval, heartbeat_timeout),
            secret=self.trust.secret,
            ssl_context=self.trust.server_ssl,
            handshake_timeout=handshake_timeout,
            max_connections=max_connections,
        )
        self._watch_counts: dict[Connection, int] = {}
        self.replication: RedisReplication | None = None
        if redis_url is not None:
            self.replication = RedisReplication(
                redis_url, self.state, self._deliver, registry_id=self.id, lease_ttl=lease_ttl
            )

    def start(self) -> None:
        """Serve until SIGINT or SIGTERM (blocking)."""
        run_until_signalled(self.open, self.close)

    async def open(self) -> None:
        """Start listening in the running loop (after loading shared state, if any), and serve
        the dashboard if asked to."""
        if self.dashboard_port is not None:
            # before anything listens: a missing extra fails the start, not half of it
            app = require("vyked.registry.dashboard.app", "vyked-registry[dashboard]", dependency="aiohttp")
            self.dashboard = app.Dashboard(self, self.dashboard_host, self.dashboard_port)
        metrics = None
        if self.metrics_port is not None:
            metrics = require("vyked.core.metrics", "vyked-registry[metrics]", dependency="prometheus_client")
        if self.replication is not None:
            await self.replication.start()
        try:
            self.ip, self.port = await self._server.start(self.ip, self.port)
            if self.dashboard is not None:
                self.dashboard_host, self.dashboard_port = await self.dashboard.start()
            if metrics is not None:
                assert self.metrics_port is not None
                self.metrics = metrics.MetricsServer(
                    asyncio.get_running_loop(),
                    self.metrics_port,
                    self.metrics_host,
                    sources=lambda: registry_families(self),
                    readiness=self._readiness,
                ).start()
                self.metrics_port = self.metrics.port
        except BaseException:
            await self.close()
            raise
        mode = "shared through Redis" if self.replication else "in memory"
        logger.info("vyked registry %s listening on %s:%s, state %s", self.id, self.ip, self.port, mode)
        if self.dashboard is not None:
            logger.info("dashboard on %s (no authentication: whoever reaches it sees the cluster)", self.dashboard.url)
        if self.trust.secret is None:
            logger.warning("no cluster secret is configured (VYKED_SECRET): any process that reaches this registry "
                           "may register as any service")  # fmt: skip
        if self.trust.server_ssl is not None:
            mutual = self.trust.server_ssl.verify_mode == ssl.CERT_REQUIRED
            logger.info("serving TLS%s", " with client certificates required" if mutual else "")

    async def close(self) -> None:
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None
        if self.dashboard is not None:
            await self.dashboard.close()  # first: pages see their stream end and reconnect
        await self._server.close()
        if self.replication is not None:
            await self.replication.close()

    async def __aenter__(self) -> Registry:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- observers ----------------------------------------------------------------------------

    def add_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()`` after every change to what :meth:`status_report` shows (an
        instance added, draining, gone, a state recomputed); returns the function that removes
        it. Listeners run in the middle of the change: they must only schedule their work."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _state_changed(self) -> None:
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:
                logger.exception("registry listener %r failed", listener)

    def _readiness(self) -> tuple[bool, dict[str, Any]]:
        """``/readyz``: listening, and with ``--redis`` its change feed is up."""
        if self.replication is not None and not self.replication.connected:
            return False, {"status": "redis_down", "reason": "the shared state in Redis is unreachable"}
        return True, {"status": "ready", "registry": self.id}

    def status_report(self) -> StatusReport:
        """Every instance this registry knows, live, draining or gone (``vyked-registry status``)."""
        return StatusReport(registry=self.id, instances=self.state.status(self.last_seen))

    def last_seen(self, owner: Hashable) -> float | None:
        """Seconds since anything arrived on ``owner``'s connection; None for another registry's."""
        if isinstance(owner, Connection):
            return owner.quiet_for()
        return None

    # -- PacketHandler ------------------------------------------------------------------------

    def packet_received(self, conn: Connection, packet: Packet) -> None:
        if isinstance(packet, Register):
            info = packet.instance
            if self.require_identity and info.service not in certificate_names(conn.peer_certificate):
                conn.fail(
                    AuthenticationFailed(
                        f"the client certificate does not name the service {info.service!r} "
                        f"(it names: {', '.join(sorted(certificate_names(conn.peer_certificate))) or 'nothing'})"
                    )
                )
                return
            if not self._may_hold(conn, info.node_id):
                return
            oversized = registration_problem(packet)
            if oversized:
                conn.fail(ProtocolError(f"register refused: {oversized}"))
                return
            logger.info(
                "registered %s v%s (%s) at %s:%s [%s]",
                info.service, info.version, info.kind, info.host, info.port, info.node_id,
            )  # fmt: skip
            outbox = self.state.register(info, packet.dependencies, conn)
            conn.send(Registered(node_id=info.node_id))
            self._deliver(outbox)
            if self.replication is not None:
                registration = self.state.get(info.node_id)
                assert registration is not None
                self.replication.registered(registration)
        elif isinstance(packet, Deregister):
            self._deregister(conn, packet.node_id)
        elif isinstance(packet, Watch):
            watched = self._watch_counts.get(conn, 0) + len(packet.services)
            if watched > MAX_WATCHED_SERVICES:
                conn.fail(ProtocolError(f"a host may watch at most {MAX_WATCHED_SERVICES} services, not {watched}"))
                return
            self._watch_counts[conn] = watched
            self._deliver(self.state.watch(conn, packet.services))
        elif isinstance(packet, StatusQuery):
            conn.send(self.status_report())
        else:
            conn.fail(ProtocolError(f"the registry does not accept {type(packet).__name__.lower()!r} packets"))

    def _deregister(self, conn: Connection, node_id: str) -> None:
        registration = self.state.get(node_id)
        if registration is not None and registration.owner is conn:
            logger.info("instance %s of %s deregistered (draining)", node_id, registration.instance.service)
            self._deliver(self.state.drain(node_id))
            if self.replication is not None:
                self.replication.unregistered(node_id)
        conn.send(Deregistered(node_id=node_id))  # also for an unknown id: it is not registered

    def connection_lost(self, conn: Connection, exc: BaseException | None) -> None:
        self._watch_counts.pop(conn, None)
        gone = self.state.owned_by(conn)
        for reg in gone:
            reason = f" ({exc})" if exc else ""
            logger.info("instance %s of %s is gone%s", reg.instance.node_id, reg.instance.service, reason)
        self._deliver(self.state.drop_owner(conn))
        if self.replication is not None:
            for reg in gone:
                self.replication.unregistered(reg.instance.node_id)

    def _may_hold(self, conn: Connection, node_id: str) -> bool:
        """Whether ``conn`` may register ``node_id``: unless another live connection holds it.

        The same connection re-registering, a holder that closed or went silent (a host
        reconnecting after a network cut), and a registration held by another registry
        through Redis (``owner`` None: the failover path) may all be taken over."""
        current = self.state.get(node_id)
        holder = current.owner if current is not None else None
        if current is None or holder is conn or not isinstance(holder, Connection) or holder.closed:
            return True
        quiet = holder.quiet_for()
        if quiet >= self.takeover_after:
            logger.info(
                "node %s moves to the connection from %s:%s: the one from %s:%s has been silent for %.1f s",
                node_id, *conn.peername, *holder.peername, quiet,
            )  # fmt: skip
            return True
        conn.fail(
            NodeIdTaken(
                f"node id {node_id!r} is registered by another live connection "
                f"({current.instance.service} v{current.instance.version}); a host must use its own node id"
            )
        )
        return False

    def _deliver(self, outbox: Outbox) -> None:
        """Send each watcher its packets in one write (a watch answers with one snapshot per
        service; a change may concern many watchers)."""
        if len(outbox) == 1:
            watcher, packet = outbox[0]
            assert isinstance(watcher, Connection)
            if not watcher.closed:
                watcher.send(packet)
            return
        frames: dict[Connection, bytearray] = {}
        for watcher, packet in outbox:
            assert isinstance(watcher, Connection)
            if not watcher.closed:
                frames.setdefault(watcher, bytearray()).extend(encode_frame(packet))
        for watcher, data in frames.items():
            watcher.send_frame(data)
