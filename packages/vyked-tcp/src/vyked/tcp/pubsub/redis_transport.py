"""The Redis transport: broadcast over pub-sub, exclusive delivery over streams.

Imported only when a host has a Redis URL, so that the embedded transport never needs
``redis``. One ``redis.asyncio`` client (a connection pool) per host; reconnection is vyked's
own (redis-py's command retries are off), so that every loop knows when Redis went away and
restores its state when it is back. Names in Redis are in :mod:`.events` and
``docs/pubsub.md``.
"""

from __future__ import annotations

from vyked.tcp.decorators import SubscriptionStrategy
from vyked.tcp.pubsub.events import EventKey
from vyked.tcp.pubsub.redis_broadcast import BroadcastSubscriber
from vyked.tcp.pubsub.redis_client import connect
from vyked.tcp.pubsub.redis_membership import Membership
from vyked.tcp.pubsub.redis_publisher import RedisPublisher
from vyked.tcp.pubsub.redis_streams import StreamConsumer
from vyked.tcp.pubsub.settings import PubSubSettings, PubSubStats
from vyked.tcp.pubsub.subscriptions import SubscriptionTable

CLOSE_FLUSH_TIMEOUT = 2.0
"""Seconds a stopping host spends sending events still queued for Redis."""


class RedisTransport:
    """Publishing and subscribing for one host through Redis."""

    def __init__(
        self, url: str, consumer: str, table: SubscriptionTable, settings: PubSubSettings, stats: PubSubStats
    ) -> None:
        self.client = connect(url, settings)
        self.table = table
        self.settings = settings
        self.stats = stats
        self.publisher = RedisPublisher(self.client, settings, stats)
        self.broadcast = BroadcastSubscriber(self.client, table, settings, stats)
        self.membership = Membership(self.client, consumer, settings)
        self.consumers: dict[tuple[str, SubscriptionStrategy], StreamConsumer] = {}
        self._membership_started = False

    async def start(self) -> None:
        self.publisher.start()
        await self.update()

    async def update(self) -> None:
        await self.broadcast.update()
        routes = self.table.exclusive_routes()
        if not routes:
            return
        self.membership.leader_groups = {g for g, s in routes if s is SubscriptionStrategy.LEADER}
        if not self._membership_started:
            self._membership_started = True
            await self.membership.start()
        for (group, strategy), keys in routes.items():
            consumer = self.consumers.get((group, strategy))
            if consumer is None:
                consumer = self.consumers[(group, strategy)] = StreamConsumer(
                    self.client, self.table, self.membership, group, strategy, self.settings, self.stats
                )
            await consumer.update(keys)

    def publish(self, key: EventKey, payload: bytes) -> None:
        self.publisher.publish(key, payload)

    async def flush(self, timeout: float) -> bool:
        return await self.publisher.flush(timeout)

    async def close(self) -> None:
        await self.publisher.close(CLOSE_FLUSH_TIMEOUT)
        await self.broadcast.close()
        for consumer in self.consumers.values():
            await consumer.close()
        if self._membership_started:
            await self.membership.close()
        await self.client.aclose()
