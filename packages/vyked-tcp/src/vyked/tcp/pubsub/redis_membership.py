"""Redis transport: liveness of subscribing hosts, and who leads each ``LEADER`` group.

Every host with exclusive subscriptions refreshes ``vyked:alive:<consumer>`` (expiring after
``heartbeat_ttl``) every ``heartbeat_interval``; a consumer whose key is gone is dead, and
others claim its pending events. For ``LEADER`` groups the host is also a member of the
sorted set ``vyked:members:<group>``, scored by its start time: the leader is the lowest-scored
member that is alive, which every member computes alike.
"""

from __future__ import annotations

import asyncio
import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from vyked.core.tasks import cancel_and_wait, raise_if_cancelling, wait_until
from vyked.tcp.pubsub.events import alive_key, members_key
from vyked.tcp.pubsub.redis_client import command
from vyked.tcp.pubsub.settings import PubSubSettings

logger = logging.getLogger(__name__)


class Membership:
    """This host's heartbeat and its view of the ``LEADER`` groups it belongs to."""

    def __init__(self, client: Redis, consumer: str, settings: PubSubSettings) -> None:
        self.client = client
        self.consumer = consumer
        self.settings = settings
        self.since = time.time()
        self.leader_groups: set[str] = set()
        self._leading: set[str] = set()
        self.beating = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def is_leader(self, group: str) -> bool:
        return group in self._leading

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        if not await wait_until(self.beating, self.settings.start_timeout):
            logger.warning("cannot reach Redis to announce this subscriber yet; still trying")

    async def _run(self) -> None:
        while True:
            raise_if_cancelling()
            try:
                await self.beat()
                self.beating.set()
            except (RedisError, OSError) as exc:
                if self.beating.is_set():
                    logger.warning("Redis heartbeat failed (%s); not leading any group until it is back", exc)
                self.beating.clear()
                self._leading.clear()
            except Exception:
                logger.exception("unexpected error in the Redis heartbeat")
                self._leading.clear()
            await asyncio.sleep(self.settings.heartbeat_interval)

    async def beat(self) -> None:
        """Prove this host alive, then recompute leadership of its ``LEADER`` groups."""
        ttl_ms = int(self.settings.heartbeat_ttl * 1000)
        pipe = self.client.pipeline(transaction=False)
        pipe.execute_command("SET", alive_key(self.consumer), b"1", "PX", ttl_ms)
        groups = sorted(self.leader_groups)
        for group in groups:
            pipe.execute_command("ZADD", members_key(group), self.since, self.consumer)
            pipe.execute_command("ZRANGE", members_key(group), 0, -1)
        replies = await pipe.execute()
        leading = set()
        for index, group in enumerate(groups):
            members = [m.decode() for m in replies[2 + 2 * index]]
            if await self._first_alive(group, members) == self.consumer:
                leading.add(group)
        for group in leading - self._leading:
            logger.info("now leading group %r", group)
        self._leading = leading

    async def _first_alive(self, group: str, members: list[str]) -> str | None:
        if not members:
            return None
        alive = await command(self.client, "MGET", *(alive_key(m) for m in members))
        dead = [m for m, a in zip(members, alive, strict=True) if a is None]
        if dead:
            await command(self.client, "ZREM", members_key(group), *dead)
        for member, flag in zip(members, alive, strict=True):
            if flag is not None:
                return member
        return None

    async def alive(self, consumers: list[str]) -> set[str]:
        """Which of ``consumers`` have a live heartbeat."""
        if not consumers:
            return set()
        flags = await command(self.client, "MGET", *(alive_key(c) for c in consumers))
        return {c for c, f in zip(consumers, flags, strict=True) if f is not None}

    async def close(self) -> None:
        """Stop beating and leave at once, so that others take over without waiting for the TTL."""
        if self._task is not None:
            await cancel_and_wait(self._task)
        try:
            async with asyncio.timeout(1.0):
                pipe = self.client.pipeline(transaction=False)
                pipe.execute_command("DEL", alive_key(self.consumer))
                for group in self.leader_groups:
                    pipe.execute_command("ZREM", members_key(group), self.consumer)
                await pipe.execute()
        except (RedisError, OSError, TimeoutError):
            pass
