"""The one place the Redis transport makes its client and sends raw commands."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from vyked.core.backoff import Attempts, Backoff, Reconnecting
from vyked.tcp.pubsub.settings import PubSubSettings

REDIS_ERRORS = (RedisError, OSError)
"""What a lost or unreachable Redis raises."""


def connect(url: str, settings: PubSubSettings) -> Redis:
    """A client for ``url`` that fails fast: vyked's loops do the reconnecting, so that each
    knows when Redis went away and restores its own state when it is back."""
    return Redis.from_url(
        url,
        retry=Retry(NoBackoff(), 0),
        socket_connect_timeout=1.0,
        socket_timeout=max(5.0, 2 * settings.heartbeat_interval + 1),
    )


def reconnecting(
    session: Callable[[Attempts], Awaitable[object]], settings: PubSubSettings, logger: logging.Logger, what: str
) -> Reconnecting:
    """The reconnect loop of one Redis session (a subscription, a consumer), with the transport's
    backoff."""
    return Reconnecting(
        session, retry_on=REDIS_ERRORS, backoff=Backoff(cap=settings.reconnect_delay_max), logger=logger, what=what
    )


async def command(client: Redis, *args: Any, **options: Any) -> Any:
    """Send one command; the reply is parsed by redis-py's response callbacks."""
    return await client.execute_command(*args, **options)  # type: ignore[no-untyped-call]
