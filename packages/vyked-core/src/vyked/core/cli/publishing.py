"""Publishing one event as a service would, for ``vyked publish`` (needs vyked-tcp).

- **Redis** (``VYKED_PUBSUB``/``--pubsub``): the host's publish-subscribe hub writes the event
  to Redis exactly as the service's own ``@publish`` method does (``PUBLISH``, and ``XADD``
  when some service subscribes exclusively); no registry is needed.
- **Embedded**: subscribers connect to the publishing instances they learn of from the
  registry, so the command registers a short-lived instance of the service, waits for the
  subscribing hosts to connect and subscribe, publishes, waits until exclusive deliveries are
  acknowledged, and stops. Requests routed to that instance meanwhile are refused as
  ``draining`` (nothing runs; callers send them to another instance at once).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from vyked.core.exceptions import RequestTimeout, ServiceUnavailable
from vyked.core.protocol.packets import Packet, Subscribe
from vyked.core.service_host import ServiceHost
from vyked.core.settings import HostSettings
from vyked.core.transport import Connection
from vyked.tcp import TCPService
from vyked.tcp.pubsub import PubSub, PubSubSettings

SETTLE = 0.5
"""Seconds without a new subscriber after which the embedded publisher stops waiting for more
(unless ``--subscribers`` says how many to wait for)."""


@dataclass(slots=True)
class Published:
    """What ``vyked publish`` reports."""

    transport: str
    subscribers: int | None
    """Subscribing hosts that had subscribed to the event (embedded); None over Redis."""


class _Publisher(TCPService):
    """The short-lived instance that embedded subscribers connect to: it serves no endpoint and
    refuses every request as ``draining``, so that callers go to the real instances."""

    async def start(self, host: ServiceHost) -> None:
        await super().start(host)
        dispatcher = self._dispatcher
        if dispatcher is not None:  # refuse before the registration makes the instance known
            dispatcher.start_draining()


class _WatchingHub(PubSub):
    """The host's publish-subscribe hub, counting the hosts that subscribe to one event."""

    def __init__(self, host: ServiceHost, settings: PubSubSettings | None = None) -> None:
        super().__init__(host, settings)
        self.watched: tuple[str, str] = ("", "")
        self.subscribers: set[str] = set()
        self.changed = asyncio.Event()
        self.last_change = 0.0

    def packet_received(self, conn: Connection, packet: Packet) -> None:
        super().packet_received(conn, packet)
        service, event = self.watched
        if isinstance(packet, Subscribe) and packet.service == service:
            before = len(self.subscribers)
            if any(s.event == event for s in packet.subscriptions):
                self.subscribers.add(conn.peer_node_id or str(id(conn)))
            else:
                self.subscribers.discard(conn.peer_node_id or str(id(conn)))
            if len(self.subscribers) != before:
                self.last_change = asyncio.get_running_loop().time()
                self.changed.set()


async def publish_redis(
    settings: HostSettings, service: str, version: str, event: str, payload: dict[str, Any], timeout: float
) -> Published:
    """Publish over Redis without registering anything; raises
    :class:`~vyked.core.exceptions.ServiceUnavailable` when the event has not reached Redis
    within ``timeout`` (Redis unreachable: nothing was written)."""
    host = ServiceHost(list(settings.registry), pubsub=settings.pubsub, name=settings.name or "vyked-cli")
    try:
        hub = PubSub.of(host)
        await hub.host_started()  # connects to Redis; no registry involved
        hub.publish(TCPService(service, version), event, payload)
        if not await hub.flush(timeout):
            raise ServiceUnavailable(
                f"the event did not reach Redis at {_redacted(settings.pubsub)} within {timeout:g} s"
            )
    finally:
        await host.stop()
    return Published("redis", None)


async def publish_embedded(
    settings: HostSettings,
    service: str,
    version: str,
    event: str,
    payload: dict[str, Any],
    *,
    wait: float,
    wanted: int | None,
    timeout: float,
    bind: str,
) -> Published:
    """Register an instance of ``service``, wait for subscribers (``wanted`` of them, or until
    none has come for :data:`SETTLE` seconds; ``wait`` seconds at most), publish, wait
    ``timeout`` seconds at most for exclusive deliveries to be acknowledged, stop.

    Raises :class:`~vyked.core.exceptions.ServiceUnavailable` without publishing when fewer than
    ``wanted`` hosts subscribed in time, and :class:`~vyked.core.exceptions.RequestTimeout` when
    exclusive deliveries were not all acknowledged in time."""
    host = ServiceHost(
        list(settings.registry),
        name=settings.name or "vyked-cli",
        heartbeat_interval=settings.heartbeat_interval,
        heartbeat_timeout=settings.heartbeat_timeout,
    )
    hub = _WatchingHub.install(host, PubSubSettings())
    assert isinstance(hub, _WatchingHub)
    hub.watched = (service, event)
    publisher = _Publisher(service, version, bind, 0)
    host.attach(publisher)
    loop = asyncio.get_running_loop()
    try:
        await host.start()
        hub.last_change = started = loop.time()
        while True:
            now = loop.time()
            if wanted is not None and len(hub.subscribers) >= wanted:
                break
            until = started + wait
            if wanted is None:
                until = min(until, hub.last_change + SETTLE)
            if now >= until:
                break
            hub.changed.clear()
            try:
                await asyncio.wait_for(hub.changed.wait(), until - now)
            except TimeoutError:
                pass
        count = len(hub.subscribers)
        if wanted is not None and count < wanted:
            raise ServiceUnavailable(
                f"{count} of the {wanted} subscribing hosts wanted subscribed to {service}.{event} within {wait:g} s; "
                "nothing was published"
            )
        hub.publish(publisher, event, payload)
        if not await hub.flush(timeout):
            raise RequestTimeout(
                f"{service}.{event}: exclusive deliveries not acknowledged within {timeout:g} s "
                "(the handlers may have run; the event stays with this publisher until it stops)"
            )
    finally:
        await host.stop()
    return Published("embedded", count)


def _redacted(url: str | None) -> str:
    """The URL without its password."""
    if not url or "@" not in url:
        return str(url)
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}"
