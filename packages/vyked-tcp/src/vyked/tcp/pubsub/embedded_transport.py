"""The embedded transport: publish-subscribe over vyked's own connections, no Redis needed.

Subscribing hosts connect to the TCP port of every instance of the services they subscribe
to and send ``subscribe``; publishers push ``event`` packets down those connections (see
:mod:`~vyked.tcp.pubsub.embedded_publisher` and :mod:`~vyked.tcp.pubsub.embedded_subscriber`).
Events live only in the publisher's memory: those in flight or waiting when it dies are lost.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from vyked.core.service_host import ServiceHost
from vyked.tcp.pubsub.embedded_publisher import EmbeddedPublisher
from vyked.tcp.pubsub.embedded_subscriber import EmbeddedSubscriber
from vyked.tcp.pubsub.events import EventKey
from vyked.tcp.pubsub.settings import PubSubSettings, PubSubStats
from vyked.tcp.pubsub.subscriptions import SubscriptionTable


class EmbeddedTransport:
    """Both sides of the embedded transport for one host."""

    def __init__(
        self, host: ServiceHost, table: SubscriptionTable, settings: PubSubSettings, stats: PubSubStats
    ) -> None:
        self.publisher = EmbeddedPublisher(settings, stats)
        self.subscriber = EmbeddedSubscriber(host, table, settings, stats)
        self._table = table

    async def start(self) -> None:
        if self._table:
            await self.subscriber.start()

    async def update(self) -> None:
        await self.subscriber.start()

    def publish(self, key: EventKey, payload: bytes, trace: Mapping[str, str] | None = None) -> None:
        self.publisher.publish(key.service, key.event, payload, trace)

    async def flush(self, timeout: float) -> bool:
        """Broadcast events out of this host's write buffers; exclusive ones acknowledged."""
        deadline = time.monotonic() + timeout
        await asyncio.sleep(0)  # the subscribers' connections get a turn to write
        while self.publisher.pending or self.publisher.unsent:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.001 if not self.publisher.pending else 0.01)
        return True

    async def drain(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        await self.subscriber.tasks.wait(deadline - loop.time())  # handlers finish; their acks go out
        await self.flush(max(0.0, deadline - loop.time()))

    async def close(self) -> None:
        self.publisher.close()
        await self.subscriber.close()
