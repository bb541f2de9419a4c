"""Embedded transport, subscribing side: one link to every instance of every service whose
events this host subscribes to.

A :class:`PublisherLink` connects to the instance's TCP port, sends ``subscribe`` and then
receives ``event`` packets. It follows the registry: a link opens when an instance appears
and closes when it goes; a dropped connection to an instance still registered is reopened with
backoff, and the subscription is sent again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from vyked.core.backoff import Attempts, Backoff, Reconnecting
from vyked.core.exceptions import AuthenticationFailed, ConnectionLost
from vyked.core.instances import Instance
from vyked.core.protocol.packets import (
    Error,
    Event,
    EventAck,
    EventSubscription,
    Packet,
    Subscribe,
    Subscribed,
)
from vyked.core.service_host import ServiceHost
from vyked.core.tasks import TaskSet
from vyked.core.transport import Connection, open_connection
from vyked.core.versions import major
from vyked.tcp.pubsub.events import EventKey, decode_payload
from vyked.tcp.pubsub.settings import PubSubSettings, PubSubStats
from vyked.tcp.pubsub.subscriptions import SubscriptionTable

logger = logging.getLogger(__name__)


class PublisherLink:
    """This host's subscription to one publisher instance."""

    def __init__(self, owner: EmbeddedSubscriber, instance: Instance) -> None:
        self.owner = owner
        self.instance = instance
        self.major = major(instance.version)
        self.connection: Connection | None = None
        self.subscribed = asyncio.Event()
        self._closing = False
        self._connected_once = False
        self._loop = Reconnecting(
            self._session,
            retry_on=(ConnectionLost, AuthenticationFailed),
            backoff=Backoff(cap=owner.settings.reconnect_delay_max),
            logger=logger,
            what=f"event link to {instance.describe()}",
        )
        self._loop.start()

    async def _session(self, attempts: Attempts) -> None:
        """Connect, subscribe, and wait until the connection closes."""
        owner = self.owner
        trust = owner.host.trust
        conn = await open_connection(
            self.instance.host,
            self.instance.port,
            self,
            node_id=owner.host.node_id,
            role="subscriber",
            secret=trust.secret,
            ssl_context=trust.connect_context() if self.instance.tls else None,
        )
        if self._connected_once:
            owner.stats.reconnects += 1
        self._connected_once = True
        attempts.succeeded()
        self.connection = conn
        # A frozen publisher is noticed and left, like any other vyked peer.
        conn.start_heartbeat(*owner.host.heartbeat)
        self.send_subscribe()
        try:
            # Shielded: cancelling this task must not cancel the connection's own future.
            await asyncio.shield(conn.wait_closed())
        finally:
            self.connection = None
            self.subscribed.clear()
        if not self._closing:
            logger.info("lost the event link to %s; reconnecting", self.instance.describe())

    def send_subscribe(self) -> None:
        conn = self.connection
        if conn is None or not conn.ready:
            return
        subscriptions = []
        table = self.owner.table
        for key in table.keys_of(self.instance.service, self.major):
            if key in table.broadcast_keys():
                subscriptions.append(EventSubscription(event=key.event))
            for group, strategy in table.exclusive_of(key).items():
                subscriptions.append(EventSubscription(event=key.event, group=group, strategy=strategy.value))
        try:
            conn.send(Subscribe(service=self.instance.service, subscriptions=subscriptions, since=self.owner.since))
        except ConnectionLost:
            pass

    # -- PacketHandler ------------------------------------------------------------------------

    def packet_received(self, conn: Connection, packet: Packet) -> None:
        if type(packet) is Event:
            key = EventKey(packet.service, self.major, packet.event)
            if packet.id == 0:
                self.owner.table.deliver(key, packet.payload, packet.trace or None)
                return
            # The payload views the receive buffer: decode it before the next read.
            fields = decode_payload(packet.payload)
            self.owner.tasks.spawn(self._handle(conn, key, packet.group, packet.id, fields, packet.trace or None))
        elif isinstance(packet, Subscribed):
            self.subscribed.set()
        elif isinstance(packet, Error):
            logger.error("publisher %s refused the subscription: %s", self.instance.describe(), packet.message)

    async def _handle(
        self,
        conn: Connection,
        key: EventKey,
        group: str,
        delivery_id: int,
        fields: dict[str, Any],
        trace: dict[str, str] | None = None,
    ) -> None:
        try:
            await self.owner.table.handle(key, group, fields, trace)
        except Exception as exc:
            ack = EventAck(id=delivery_id, ok=False, message=f"{type(exc).__name__}: {exc}")
        else:
            ack = EventAck(id=delivery_id)
        if not conn.closed:
            conn.send(ack)

    def connection_lost(self, conn: Connection, exc: BaseException | None) -> None:
        pass  # _run notices through wait_closed

    # -- closing -------------------------------------------------------------------------------

    async def close(self) -> None:
        """Close the link; handlers already running finish (their acks go nowhere)."""
        self._closing = True
        connection = self.connection
        if connection is not None:
            connection.close()
        await self._loop.stop()
        if connection is not None:
            await connection.wait_closed()


class EmbeddedSubscriber:
    """Links to the publisher instances of every service this host subscribes to."""

    def __init__(
        self, host: ServiceHost, table: SubscriptionTable, settings: PubSubSettings, stats: PubSubStats
    ) -> None:
        self.host = host
        self.table = table
        self.settings = settings
        self.stats = stats
        self.since = time.time()
        self.links: dict[str, PublisherLink] = {}
        self._listening = False
        self._closing = False
        self.tasks = TaskSet()
        """Exclusive handlers and links closing; :meth:`close` cancels what is left."""

    async def start(self) -> None:
        """Open links to every known publisher instance; wait (up to ``start_timeout``) until
        each has acknowledged the subscription."""
        if not self._listening:
            self.host.directory.add_listener(self._instance_changed)
            self._listening = True
        wanted = self.table.services()
        for service, _ in wanted:
            await self.host.watch(service)
        for service, wanted_major in wanted:
            for instance in self.host.directory.instances(service):
                if self._wanted(instance):
                    link = self.links.get(instance.node_id)
                    if link is None:
                        self.links[instance.node_id] = PublisherLink(self, instance)
                    elif major(instance.version) == wanted_major:
                        link.send_subscribe()
        waiting = [link.subscribed.wait() for link in self.links.values() if not link.subscribed.is_set()]
        if waiting:
            try:
                async with asyncio.timeout(self.settings.start_timeout):
                    await asyncio.gather(*waiting)
            except TimeoutError:
                late = [link.instance.describe() for link in self.links.values() if not link.subscribed.is_set()]
                logger.warning("subscriptions not yet acknowledged by %s; still trying", ", ".join(late))

    def _wanted(self, instance: Instance) -> bool:
        return instance.kind == "tcp" and (instance.service, major(instance.version)) in self.table.services()

    def _instance_changed(self, event: str, instance: Instance) -> None:
        if self._closing:
            return
        if event == "added" and instance.node_id not in self.links and self._wanted(instance):
            self.links[instance.node_id] = PublisherLink(self, instance)
        elif event == "removed":
            link = self.links.pop(instance.node_id, None)
            if link is not None:
                self.tasks.spawn(link.close())

    async def close(self) -> None:
        self._closing = True
        if self._listening:
            self.host.directory.remove_listener(self._instance_changed)
        links, self.links = list(self.links.values()), {}
        await asyncio.gather(*(link.close() for link in links))
        await self.tasks.close()
