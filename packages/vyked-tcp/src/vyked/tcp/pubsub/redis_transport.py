"""The Redis transport: broadcast over pub-sub, exclusive delivery over streams.

Imported only when a host has a Redis URL, so that the embedded transport never needs
``redis``. One ``redis.asyncio`` client (a connection pool) per host; reconnection is vyked's
own (redis-py's command retries are off), so that every loop knows when Redis went away and
restores its state when it is back. Names in Redis are in :mod:`.events` and
``docs/pubsub.md``.

At least once holds only while Redis keeps what it accepted: at start the transport looks at
the server's persistence (``CONFIG GET appendonly`` / ``save``) and warns when it has neither
AOF nor RDB snapshots, since a restart would then lose every event still in the streams.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from vyked.core.backoff import Backoff, retry
from vyked.core.tasks import TaskSet
from vyked.tcp.decorators import SubscriptionStrategy
from vyked.tcp.pubsub.events import EventKey, with_trace
from vyked.tcp.pubsub.redis_broadcast import BroadcastSubscriber
from vyked.tcp.pubsub.redis_client import REDIS_ERRORS, command, connect
from vyked.tcp.pubsub.redis_membership import Membership
from vyked.tcp.pubsub.redis_publisher import RedisPublisher
from vyked.tcp.pubsub.redis_streams import StreamConsumer
from vyked.tcp.pubsub.settings import PubSubSettings, PubSubStats
from vyked.tcp.pubsub.subscriptions import SubscriptionTable

logger = logging.getLogger(__name__)

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
        self._tasks = TaskSet()

    async def start(self) -> None:
        self.publisher.start()
        self._tasks.spawn(
            retry(
                lambda: check_persistence(self.client),
                retry_on=REDIS_ERRORS,
                backoff=Backoff(cap=self.settings.reconnect_delay_max),
                logger=logger,
                what="checking the persistence of Redis",
            )
        )
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

    def publish(self, key: EventKey, payload: bytes, trace: Mapping[str, str] | None = None) -> None:
        # Redis messages have no headers: the context rides in a reserved payload field
        self.publisher.publish(key, payload if not trace else with_trace(payload, trace))

    async def flush(self, timeout: float) -> bool:
        return await self.publisher.flush(timeout)

    async def drain(self, deadline: float) -> None:
        for consumer in self.consumers.values():
            await consumer.drain(deadline)
        await self.publisher.flush(max(0.0, deadline - asyncio.get_running_loop().time()))

    async def close(self) -> None:
        await self._tasks.close()
        await self.publisher.close(CLOSE_FLUSH_TIMEOUT)
        await self.broadcast.close()
        for consumer in self.consumers.values():
            await consumer.close()
        if self._membership_started:
            await self.membership.close()
        await self.client.aclose()


async def check_persistence(client: Redis) -> bool | None:
    """Warn if the Redis behind ``client`` persists nothing (no AOF, no RDB snapshots): a
    restart of it loses exclusive events it acknowledged to publishers and its dead letters.
    Returns whether it persists, or None when ``CONFIG`` is refused (renamed, or not allowed
    to this user by an ACL): then that is only logged at INFO."""
    kwargs = client.connection_pool.connection_kwargs
    where = kwargs.get("path") or f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
    try:
        appendonly = await _config(client, "appendonly")
        save = await _config(client, "save")
    except ResponseError as exc:
        logger.info("could not check whether Redis at %s persists events (CONFIG GET: %s)", where, exc)
        return None
    if appendonly.lower() == "yes" or save.strip():
        logger.debug("Redis at %s persists events (appendonly %s, save %r)", where, appendonly, save)
        return True
    logger.warning(
        'Redis at %s has no persistence (appendonly no, save ""): if it restarts, exclusive events it '
        "accepted and not yet delivered, and its dead letters, are lost; enable AOF (appendonly yes) or RDB "
        "snapshots (save) for at-least-once delivery, see docs/pubsub.md",
        where,
    )
    return False


async def _config(client: Redis, parameter: str) -> str:
    """One ``CONFIG GET`` value, as text ("" if the server does not know it)."""
    reply = await command(client, "CONFIG GET", parameter)
    pairs = reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2], strict=True)
    for name, value in pairs:
        name = name.decode() if isinstance(name, bytes) else str(name)
        if name.lower() == parameter:
            return value.decode() if isinstance(value, bytes) else str(value)
    return ""
