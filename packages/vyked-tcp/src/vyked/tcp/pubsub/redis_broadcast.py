"""Redis transport, broadcast side: one pub-sub connection per host for every ``@subscribe``.

When the connection drops, a new one subscribes to the same channels again, with backoff; no
user code is involved. Pub-sub keeps nothing for absent subscribers: events published while
this host is away from Redis are not seen here (publishers hold theirs back briefly after an
outage of Redis itself, see :mod:`.redis_publisher`).
"""

from __future__ import annotations

import asyncio
import logging
import random

from redis.asyncio import Redis
from redis.exceptions import RedisError

from vyked.core.cancellation import cancel_and_wait, raise_if_cancelling
from vyked.tcp.pubsub.events import EventKey, channel_name
from vyked.tcp.pubsub.settings import PubSubSettings, PubSubStats
from vyked.tcp.pubsub.subscriptions import SubscriptionTable

logger = logging.getLogger(__name__)

RECONNECT_DELAY_MIN = 0.05


class BroadcastSubscriber:
    """Receives the broadcast events of every key the table subscribes to."""

    def __init__(self, client: Redis, table: SubscriptionTable, settings: PubSubSettings, stats: PubSubStats) -> None:
        self.client = client
        self.table = table
        self.settings = settings
        self.stats = stats
        self.ready = asyncio.Event()
        self._channels: dict[bytes, EventKey] = {}
        self._task: asyncio.Task[None] | None = None

    async def update(self) -> None:
        """Subscribe to the table's broadcast keys; wait (up to ``start_timeout``) until Redis
        has confirmed."""
        channels = {channel_name(k).encode(): k for k in self.table.broadcast_keys()}
        if channels == self._channels and self._task is not None:
            return
        self._channels = channels
        if self._task is not None:
            await cancel_and_wait(self._task)
        self.ready.clear()
        if not channels:
            return
        self._task = asyncio.get_running_loop().create_task(self._run())
        try:
            async with asyncio.timeout(self.settings.start_timeout):
                await self.ready.wait()
        except TimeoutError:
            logger.warning("Redis has not confirmed the broadcast subscriptions yet; still trying")

    async def _run(self) -> None:
        delay = RECONNECT_DELAY_MIN
        connected_once = False
        deliver = self.table.deliver
        channels = self._channels
        while True:
            raise_if_cancelling()
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
                            if connected_once:
                                self.stats.reconnects += 1
                                logger.info("broadcast subscriptions restored")
                            connected_once = True
                            delay = RECONNECT_DELAY_MIN
                            self.ready.set()
            except (RedisError, OSError) as exc:
                if self.ready.is_set():
                    logger.warning("lost the Redis pub-sub connection (%s); resubscribing", exc)
                self.ready.clear()
            except Exception:
                logger.exception("unexpected error in the Redis pub-sub loop; resubscribing")
                self.ready.clear()
            finally:
                await asyncio.shield(_close_quietly(pubsub))
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, self.settings.reconnect_delay_max)

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None


async def _close_quietly(pubsub: object) -> None:
    try:
        await pubsub.aclose()  # type: ignore[attr-defined]
    except (RedisError, OSError):
        pass
