"""What the publish-subscribe hub needs from a transport; two implement it.

- :class:`~vyked.tcp.pubsub.embedded_transport.EmbeddedTransport`: vyked connections only.
- :class:`~vyked.tcp.pubsub.redis_transport.RedisTransport`: Redis pub-sub and streams.

A transport reads the host's :class:`~vyked.tcp.pubsub.subscriptions.SubscriptionTable` and
hands incoming events to it; it never sees the decorators or the client classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from vyked.tcp.pubsub.events import EventKey


class EventTransport(Protocol):
    async def start(self) -> None:
        """Set up every subscription in the table; returns once they are in place, or after
        ``start_timeout`` (they keep trying in the background)."""

    async def update(self) -> None:
        """Set up subscriptions added to the table since :meth:`start`."""

    def publish(self, key: EventKey, payload: bytes, trace: Mapping[str, str] | None = None) -> None:
        """Send (or queue) one event; ``payload`` is its encoded JSON object, ``trace`` the
        publisher's trace context, which subscribers get with it. Never blocks."""

    async def flush(self, timeout: float) -> bool:
        """Wait until queued events are sent (and, embedded, exclusive ones acknowledged);
        False if some are still waiting after ``timeout`` seconds."""

    async def drain(self, deadline: float) -> None:
        """Take no new events; let the handlers running finish and acknowledge their events,
        and send what is queued, until ``deadline`` (event-loop time) at most."""

    async def close(self) -> None:
        """Stop: send what can be sent quickly, then close every connection."""
