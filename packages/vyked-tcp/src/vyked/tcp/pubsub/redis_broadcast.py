"""Redis transport, broadcast side: one pub-sub connection per host for every ``@subscribe``.

When the connection drops, a new one subscribes to the same channels again, with backoff; no
user code is involved. Pub-sub keeps nothing for absent subscribers: events published while
this host is away from Redis are not seen here (publishers hold theirs back briefly after an
outage of Redis itself, see :mod:`.redis_publisher`).
"""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from vyked.core.backoff import Attempts
from vyked.tcp.pubsub.events import EventKey, channel_name
from vyked.tcp.pubsub.redis_client import reconnecting
from vyked.tcp.pubsub.settings import PubSubSettings, PubSubStats
from vyked.tcp.pubsub.subscriptions import SubscriptionTable

logger = logging.getLogger(__name__)


class BroadcastSubscriber:
    """Receives the broadcast events of every key the table subscribes to."""

    def __init__(self, client: Redis, table: SubscriptionTable, settings: PubSubSettings, stats: PubSubStats) -> None:
        self.client = client
        self.table = table
        self.settings = settings
        self.stats = stats
        self._channels: dict[bytes, EventKey] = {}
        self._loop = reconnecting(self._session, settings, logger, "Redis pub-sub subscription")
        self.ready = self._loop.up
        """Set while every broadcast channel is subscribed."""
        self._connected_once = False

    async def update(self) -> None:
        """Subscribe to the table's broadcast keys; wait (up to ``start_timeout``) until Redis
        has confirmed."""
        channels = {channel_name(k).encode(): k for k in self.table.broadcast_keys()}
        if channels == self._channels and self._loop.running:
            return
        self._channels = channels
        self._connected_once = False
        if not channels:
            await self._loop.stop()
        elif not await self._loop.restart(self.settings.start_timeout):
            logger.warning("Redis has not confirmed the broadcast subscriptions yet; still trying")

    async def _session(self, attempts: Attempts) -> None:
        """Subscribe on a fresh pub-sub connection and deliver what arrives until it fails."""
        deliver = self.table.deliver
        channels = self._channels
        pubsub = self.client.pubsub()
        try:
            await pubsub.subscribe(*channels)
            confirmed = 0
            async for message in pubsub.listen():
                kind = message["type"]
                if kind == "message":
                    key = channels.get(message["channel"])
                    if key is not None:
                        deliver(key, message["data"])
                elif kind == "subscribe":
                    confirmed += 1
                    if confirmed == len(channels):
                        if self._connected_once:
                            self.stats.reconnects += 1
                            logger.info("broadcast subscriptions restored")
                        self._connected_once = True
                        attempts.succeeded()
        except (RedisError, OSError) as exc:
            if self.ready.is_set():
                logger.warning("lost the Redis pub-sub connection (%s); resubscribing", exc)
            raise
        finally:
            await asyncio.shield(_close_quietly(pubsub))

    async def close(self) -> None:
        await self._loop.stop()


async def _close_quietly(pubsub: object) -> None:
    try:
        await pubsub.aclose()  # type: ignore[attr-defined]
    except (RedisError, OSError):
        pass
