"""The registry, seen from a service host: register instances, watch services, stay connected.

One :class:`RegistryClient` per host process keeps one connection to a registry. It
registers the host's service instances, asks for the instances of the services the host
calls (``watch``), and feeds the registry's pushes into an
:class:`~vyked.core.instances.InstanceDirectory`. When the connection drops it reconnects on
its own (with the backoff of :mod:`vyked.core.backoff`), trying each configured registry
address in turn, and replays its registrations and watches; meanwhile the directory keeps
the instances it knew, so calls carry on.
"""

from __future__ import annotations

import asyncio
import logging

from vyked.core.addresses import Address
from vyked.core.backoff import Attempts, Reconnecting
from vyked.core.exceptions import AuthenticationFailed, ConnectionLost, RegistryUnavailable
from vyked.core.instances import InstanceDirectory
from vyked.core.protocol.packets import (
    Deregister,
    Deregistered,
    Error,
    InstanceAdded,
    InstanceRemoved,
    Instances,
    Packet,
    Register,
    Registered,
    ServiceState,
    Watch,
)
from vyked.core.security import Trust
from vyked.core.transport.connection import (
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_HEARTBEAT_TIMEOUT,
    Connection,
    open_connection,
)

logger = logging.getLogger(__name__)

RESYNC_GRACE = 3.0
"""Seconds an instance missing from the registry's first snapshot after a reconnect stays
usable, waiting for it to re-register."""


class RegistryClient:
    """A self-healing connection to the registry (or one of several registries)."""

    def __init__(
        self,
        addresses: list[Address],
        directory: InstanceDirectory,
        *,
        node_id: str,
        connect_timeout: float = 5.0,
        heartbeat: tuple[float, float] = (DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_HEARTBEAT_TIMEOUT),
        trust: Trust | None = None,
    ) -> None:
        if not addresses:
            raise RegistryUnavailable("no registry address configured")
        self.addresses = addresses
        self.directory = directory
        self.node_id = node_id
        self.connect_timeout = connect_timeout
        self.heartbeat = heartbeat
        self.trust = trust or Trust()
        self.connection: Connection | None = None
        self._registrations: dict[str, Register] = {}
        self.states: dict[str, ServiceState] = {}
        """The registry's latest word on each local instance: ``active`` or ``pending``."""
        self._watched: set[str] = set()
        self._snapshots: dict[str, asyncio.Future[None]] = {}
        self._acks: dict[str, asyncio.Future[None]] = {}
        self._keeper = Reconnecting(
            self._stay_connected,
            retry_on=(RegistryUnavailable, AuthenticationFailed),
            logger=logger,
            what="registry connection",
        )
        self._address_index = 0
        self._closing = False
        self._refusal: AuthenticationFailed | None = None
        """Why the registry last refused this host (a registration its certificate does not name)."""

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to the first reachable registry; raises :class:`RegistryUnavailable`.
        Afterwards the connection is kept up (reconnecting with backoff) until :meth:`close`."""
        await self._connect_any()
        self._keeper.start()

    async def _stay_connected(self, attempts: Attempts) -> None:
        """One session with a registry: connect unless connected, wait until it closes."""
        if self.connection is None:
            try:
                await self._connect_any()
            except AuthenticationFailed as exc:
                logger.error("the registry refused this host, or is not trusted: %s", exc)
                raise
        connection = self.connection
        if connection is not None:
            # Shielded: cancelling the keeper must not cancel the connection's own future.
            await asyncio.shield(connection.wait_closed())
        if self._refusal is not None:
            raise self._refusal  # refused again on the next attempt: back off, don't hammer
        attempts.succeeded()

    async def close(self) -> None:
        self._closing = True
        await self._keeper.stop()
        if self.connection is not None:
            self.connection.close()
            await self.connection.wait_closed()

    @property
    def connected(self) -> bool:
        return self.connection is not None and self.connection.ready

    @property
    def local_host(self) -> str:
        """The address this process reaches the registry from, used to advertise services
        bound to a wildcard address."""
        return self.connection.sockname[0] if self.connection is not None else "127.0.0.1"

    # -- what the host asks of the registry -------------------------------------------------

    async def register(self, registration: Register) -> None:
        """Register an instance and wait for the registry's acknowledgement."""
        node_id = registration.instance.node_id
        self._registrations[node_id] = registration
        ack = self._acks[node_id] = asyncio.get_running_loop().create_future()
        self._send(registration)
        try:
            await asyncio.wait_for(asyncio.shield(ack), self.connect_timeout)
        except TimeoutError:
            raise RegistryUnavailable(
                f"the registry did not acknowledge the registration of {registration.instance.service} "
                f"within {self.connect_timeout} s"
            ) from None

    async def deregister(self, node_id: str, timeout: float = 1.0) -> bool:
        """Withdraw an instance: the registry stops listing it and tells its watchers at once.
        Returns whether the registry acknowledged within ``timeout`` (when it did not, the
        instance goes anyway when this connection closes)."""
        self._registrations.pop(node_id, None)
        if not self.connected:
            return False
        ack = self._acks[node_id] = asyncio.get_running_loop().create_future()
        self._send(Deregister(node_id=node_id))
        try:
            await asyncio.wait_for(asyncio.shield(ack), timeout)
        except (TimeoutError, AuthenticationFailed):
            return False
        finally:
            self._acks.pop(node_id, None)
        return True

    async def watch(self, services: list[str]) -> None:
        """Follow these services; returns once their instance lists have arrived."""
        new = [s for s in services if s not in self._watched]
        loop = asyncio.get_running_loop()
        for service in new:
            self._watched.add(service)
            self._snapshots[service] = loop.create_future()
        if new:
            self._send(Watch(services=new))
        waiting = [self._snapshots[s] for s in services if not self._snapshots[s].done()]
        if waiting:
            try:
                await asyncio.wait_for(asyncio.shield(asyncio.gather(*waiting)), self.connect_timeout)
            except TimeoutError:
                raise RegistryUnavailable(
                    f"the registry sent no instance list for {', '.join(services)} within {self.connect_timeout} s"
                ) from None

    def _send(self, packet: Packet) -> None:
        if self.connection is not None and self.connection.ready:
            try:
                self.connection.send(packet)
            except ConnectionLost:
                pass  # replayed on reconnect

    # -- connection management ----------------------------------------------------------------

    async def _connect_any(self) -> None:
        errors = []
        for attempt in range(len(self.addresses)):
            host, port = self.addresses[(self._address_index + attempt) % len(self.addresses)]
            try:
                conn = await open_connection(
                    host,
                    port,
                    self,
                    node_id=self.node_id,
                    role="host",
                    timeout=self.connect_timeout,
                    secret=self.trust.secret,
                    ssl_context=self.trust.connect_context() if self.trust.tls else None,
                )
            except ConnectionLost as exc:
                errors.append(str(exc))
                continue
            self._address_index = (self._address_index + attempt) % len(self.addresses)
            self.connection = conn
            self.states.clear()  # a new registry tells again what is pending; active is its default
            conn.start_heartbeat(*self.heartbeat)  # a frozen registry is left for another
            self._replay(conn)
            logger.info("connected to registry at %s:%s", host, port)
            return
        raise RegistryUnavailable("no registry reachable: " + "; ".join(errors))

    def _replay(self, conn: Connection) -> None:
        for registration in self._registrations.values():
            conn.send(registration)
        if self._watched:
            conn.send(Watch(services=sorted(self._watched)))

    # -- PacketHandler ------------------------------------------------------------------------

    def packet_received(self, conn: Connection, packet: Packet) -> None:
        if isinstance(packet, InstanceAdded):
            self.directory.add(packet.instance)
        elif isinstance(packet, InstanceRemoved):
            self.directory.remove(packet.service, packet.node_id)
        elif isinstance(packet, Instances):
            snapshot = self._snapshots.get(packet.service)
            first = snapshot is None or not snapshot.done()
            # after a reconnect, instances get time to re-register before they are dropped
            self.directory.replace(packet.service, packet.instances, grace=None if first else RESYNC_GRACE)
            if snapshot is not None and first:
                snapshot.set_result(None)
        elif isinstance(packet, Registered | Deregistered):
            ack = self._acks.pop(packet.node_id, None)
            if ack is not None and not ack.done():
                ack.set_result(None)
        elif isinstance(packet, ServiceState):
            self.states[packet.node_id] = packet
            if packet.waiting_for:
                logger.warning("pending: waiting for %s", ", ".join(packet.waiting_for))
            else:
                logger.info("active: every dependency has a live instance")
        elif isinstance(packet, Error):
            logger.error("registry reported an error: %s (%s)", packet.message, packet.code)
        else:
            logger.debug("ignoring %s packet from the registry", type(packet).__name__)

    def connection_lost(self, conn: Connection, exc: BaseException | None) -> None:
        if conn is not self.connection:
            return
        self._refusal = exc if isinstance(exc, AuthenticationFailed) else None
        if self._refusal is not None:
            # Registrations and watches waiting for an answer get the refusal at once.
            for waiting in [*self._acks.values(), *self._snapshots.values()]:
                if not waiting.done():
                    waiting.set_exception(self._refusal)
                    waiting.exception()
        self.connection = None
        if self._closing:
            return
        logger.warning("lost the registry connection; reconnecting (known instances stay in use)")
        # The next attempt starts with the registry after the one that failed.
        self._address_index = (self._address_index + 1) % len(self.addresses)
