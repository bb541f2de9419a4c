"""The host's publish-subscribe hub: the one object services and clients talk to.

:class:`PubSub` is a host extension (``ServiceHost.extension``): ``@publish`` methods of the
host's services publish through it, and the ``@subscribe`` / ``@xsubscribe`` handlers of the
host's clients are registered with it. It picks the transport: Redis when the host has a
Redis URL (``ServiceHost(pubsub="redis://...")``, ``Host.pubsub_host``), vyked's own
connections otherwise.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from vyked.core.client import ServiceClient
from vyked.core.exceptions import ConfigurationError, DefinitionError, HostNotRunning, ProtocolError
from vyked.core.extensions import ExtensionKey, HostExtension
from vyked.core.observe import Family
from vyked.core.protocol.packets import Packet
from vyked.core.service import Service
from vyked.core.service_host import ServiceHost
from vyked.core.tasks import TaskSet
from vyked.core.transport import Connection
from vyked.tcp.pubsub.events import EventKey, encode_payload
from vyked.tcp.pubsub.settings import PubSubSettings, PubSubStats
from vyked.tcp.pubsub.subscriptions import SubscriptionTable, subscriptions_of
from vyked.tcp.pubsub.transport import EventTransport

if TYPE_CHECKING:
    from vyked.tcp.pubsub.dead_letters import DeadLetter
    from vyked.tcp.pubsub.embedded_transport import EmbeddedTransport

logger = logging.getLogger(__name__)


class PubSub(HostExtension):
    """Publish-subscribe for one :class:`~vyked.core.host.ServiceHost`.

    Get it with :meth:`of`; give it non-default :class:`PubSubSettings` with :meth:`install`
    before the host starts.
    """

    def __init__(self, host: ServiceHost, settings: PubSubSettings | None = None) -> None:
        self.host = host
        self.settings = settings or PubSubSettings()
        self.stats = PubSubStats()
        self.table = SubscriptionTable(self.stats, host.observers)
        self._clients: list[ServiceClient] = []
        self._transport: EventTransport | None = None
        self._started = False
        self._closed = False
        self._updating = TaskSet()
        self._keys: dict[tuple[str, str, str], EventKey] = {}

    @classmethod
    def of(cls, host: ServiceHost) -> PubSub:
        """The host's hub, made on first use."""
        return host.extension(PUBSUB)

    @classmethod
    def install(cls, host: ServiceHost, settings: PubSubSettings) -> PubSub:
        """Give ``host`` a hub with ``settings``; must come before anything uses the hub."""
        hub = host.extension(PUBSUB, lambda h: cls(h, settings))
        if hub.settings is not settings:
            raise DefinitionError(
                "the host's publish-subscribe hub exists already; install settings before attaching services"
            )
        return hub

    @property
    def transport(self) -> EventTransport:
        """The transport, made on first use (publishing may precede the host's start)."""
        if self._transport is None:
            if self.host.pubsub:
                from vyked.core.optional import require

                redis_transport = require("vyked.tcp.pubsub.redis_transport", "vyked-tcp[redis]", dependency="redis")
                self._transport = redis_transport.RedisTransport(
                    self.host.pubsub, self.host.node_id, self.table, self.settings, self.stats
                )
            else:
                from vyked.tcp.pubsub.embedded_transport import EmbeddedTransport

                self._transport = EmbeddedTransport(self.host, self.table, self.settings, self.stats)
        return self._transport

    # -- subscribing -------------------------------------------------------------------------

    def add_client(self, client: ServiceClient) -> None:
        """Register a client's subscriptions (the host calls this when it binds the client)."""
        if client in self._clients:
            return
        self._clients.append(client)
        if self._closed:
            return
        if self._started:
            self.table.add(subscriptions_of(client, self._group_of(client)))
            self._updating.spawn(self._update(client))
        elif self.host.running:  # the hub was made after the host started
            self._updating.spawn(self._update(client, start=True))

    async def _update(self, client: ServiceClient, start: bool = False) -> None:
        try:
            await self.host.watch(client.name)
            if start:
                await self.host_started()
            else:
                await self.transport.update()
        except Exception:
            logger.exception("could not subscribe the events of %r", client)

    def _group_of(self, client: ServiceClient) -> str:
        """The subscribing service an exclusive subscription belongs to: the service that holds
        the client, else the host's first service, else the host's name, else the client class."""
        for service in self.host.services:
            if client in service.clients:
                return service.name
        if self.host.services:
            return self.host.services[0].name
        if self.host.name:
            return self.host.name
        cls = type(client)
        return f"{cls.__module__}.{cls.__qualname__}"

    async def host_started(self) -> None:
        """Set up every subscription; the host calls this once it is registered and watching."""
        if self._started:
            return
        self._started = True
        for client in self._clients:
            self.table.add(subscriptions_of(client, self._group_of(client)))
        if self.table or self._transport is not None or self.host.pubsub:
            await self.transport.start()

    # -- publishing --------------------------------------------------------------------------

    def publish(self, service: Service, event: str, payload: object) -> None:
        """Publish one event of ``service``: checked and encoded here, sent without blocking.

        Raises :class:`~vyked.core.exceptions.PublishError` if ``payload`` is not a dict of
        JSON-serialisable fields.
        """
        data = encode_payload(service.name, event, payload)
        if self._closed:
            raise HostNotRunning(f"cannot publish {service.name}.{event}: the host has stopped")
        self.stats.published += 1
        trace: dict[str, str] | None = None
        publishing = self.host.observers.on_publish
        if publishing:
            trace = {}
            for observer in publishing:
                observer.event_published(service.name, service.version, event, trace)
        key = self._keys.get((service.name, service.version, event))
        if key is None:
            key = self._keys[(service.name, service.version, event)] = EventKey.of(service.name, service.version, event)
        self.transport.publish(key, data, trace or None)

    async def flush(self, timeout: float = 5.0) -> bool:
        """Wait until the events published so far have left this host (Redis: written;
        embedded: broadcast ones handed to the operating system, exclusive ones acknowledged).
        False if not all within ``timeout``."""
        if self._transport is None:
            return True
        return await self._transport.flush(timeout)

    # -- dead letters (embedded transport) ---------------------------------------------------

    def dead_letters(
        self, service: str | None = None, event: str | None = None, *, group: str | None = None
    ) -> list[DeadLetter]:
        """Exclusive events this host published and gave up after ``max_attempts``, oldest
        first (the last ``dead_letter_maxlen``), optionally of one service, event or
        subscribing group. Embedded transport only: over Redis they are in Redis, read them
        with :func:`vyked.tcp.pubsub.dead_letters.list_dead_letters`."""
        embedded = self._embedded()
        if embedded is None:
            raise ConfigurationError(
                "this host's dead letters are in Redis: use vyked.tcp.pubsub.dead_letters.list_dead_letters and replay"
            )
        return [
            letter
            for letter in embedded.publisher.dead_letters
            if (service is None or letter.service == service)
            and (event is None or letter.event == event)
            and (group is None or letter.group == group)
        ]

    def replay_dead_letters(
        self,
        service: str | None = None,
        event: str | None = None,
        *,
        group: str | None = None,
        limit: int | None = None,
    ) -> list[DeadLetter]:
        """Deliver dead letters (:meth:`dead_letters`, oldest first, at most ``limit``) again,
        each to its group, with fresh attempts, and forget them; returns those replayed. A
        dead letter whose group this publisher no longer knows (no member for
        ``empty_group_ttl``) stays. Embedded transport only: over Redis use
        :func:`vyked.tcp.pubsub.dead_letters.replay`."""
        letters = self.dead_letters(service, event, group=group)[:limit]
        embedded = self._embedded()
        assert embedded is not None  # dead_letters() raised otherwise
        return embedded.publisher.replay_dead_letters(letters)

    # -- packets on the host's TCP services (embedded transport) ---------------------------

    def packet_received(self, conn: Connection, packet: Packet) -> None:
        embedded = self._embedded()
        if embedded is None:
            conn.fail(ProtocolError("this host publishes through Redis; configure the same pubsub on subscribers"))
            return
        embedded.publisher.packet_received(conn, packet)

    def connection_lost(self, conn: Connection, exc: BaseException | None) -> None:
        embedded = self._embedded()
        if embedded is not None:
            embedded.publisher.connection_lost(conn, exc)

    def _embedded(self) -> EmbeddedTransport | None:
        from vyked.tcp.pubsub.embedded_transport import EmbeddedTransport

        transport = self.transport if not self._closed else self._transport
        return transport if isinstance(transport, EmbeddedTransport) else None

    def buffered(self) -> int:
        """Events waiting to leave this host: for Redis, or (embedded) exclusive events in
        flight or waiting for a member of their group."""
        transport = self._transport
        publisher = getattr(transport, "publisher", None)
        if publisher is None:
            return 0
        waiting: int | None = getattr(publisher, "buffered", None)
        if waiting is None:
            waiting = getattr(publisher, "pending", 0)
        return int(waiting or 0)

    def metric_families(self) -> list[Family]:
        """:class:`PubSubStats` and the publish buffer's depth, for the host's metrics."""
        stats = self.stats
        events = Family(
            "vyked_events_total",
            "Events, by what happened to them on this host: published, sent, received (reached handlers), "
            "handler_errors, redelivered, dead_lettered, dropped",
            "counter",
            ["what"],
        )
        for what in ("published", "sent", "received", "handler_errors", "redelivered", "dead_lettered", "dropped"):
            events.add([what], getattr(stats, what))
        reconnects = Family(
            "vyked_pubsub_reconnects_total", "Connections to Redis or publishers re-established", "counter"
        ).add([], stats.reconnects)
        buffered = Family(
            "vyked_pubsub_buffered_events", "Events waiting to leave this host (the publish buffer)", "gauge"
        ).add([], self.buffered())
        return [events, reconnects, buffered]

    async def drain(self, deadline: float) -> None:
        """The host is stopping: finish the events in hand and send what is queued."""
        if self._transport is not None:
            await self._transport.drain(deadline)
        await self.table.drain(deadline)

    async def close(self) -> None:
        self._closed = True
        await self._updating.close()
        if self._transport is not None:
            await self._transport.close()
        await self.table.close()

    def __repr__(self) -> str:
        kind = "redis" if self.host.pubsub else "embedded"
        return f"<PubSub {kind} {self.stats.as_dict()}>"


def attach_client(host: ServiceHost, client: ServiceClient) -> None:
    """Register ``client``'s subscriptions with ``host`` (what ``TCPServiceClient.bind`` does)."""
    if getattr(client, "_subscriptions", None):
        PubSub.of(host).add_client(client)


def publish_event(service: Service, event: str, payload: object) -> None:
    """Publish through the service's host (what ``@publish`` methods do)."""
    host = service.host
    if host is None or not host.running:
        encode_payload(service.name, event, payload)  # a bad payload is reported first
        raise HostNotRunning(f"cannot publish {service.name}.{event}: the service's host is not running")
    PubSub.of(host).publish(service, event, payload)


PUBSUB = ExtensionKey("vyked.tcp.pubsub", PubSub)
"""``host.extension(PUBSUB)``: the host's :class:`PubSub` (or use :meth:`PubSub.of`)."""
