"""The one place the Redis transport makes its client and sends raw commands."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from vyked.tcp.pubsub.settings import PubSubSettings


def connect(url: str, settings: PubSubSettings) -> Redis:
    """A client for ``url`` that fails fast: vyked's loops do the reconnecting, so that each
    knows when Redis went away and restores its own state when it is back."""
    return Redis.from_url(
        url,
        retry=Retry(NoBackoff(), 0),
        socket_connect_timeout=1.0,
        socket_timeout=max(5.0, 2 * settings.heartbeat_interval + 1),
    )


async def command(client: Redis, *args: Any, **options: Any) -> Any:
    """Send one command; the reply is parsed by redis-py's response callbacks."""
    return await client.execute_command(*args, **options)  # type: ignore[no-untyped-call]
