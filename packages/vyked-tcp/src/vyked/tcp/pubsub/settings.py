"""Tunables and counters of publish-subscribe, shared by both transports."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class PubSubSettings:
    """How publish-subscribe behaves on one host; see ``docs/pubsub.md``.

    Install non-default settings before the host starts with
    :meth:`vyked.tcp.pubsub.PubSub.install`.
    """

    max_buffer: int = 10_000
    """Events a publisher holds while it cannot send them: while Redis is unreachable, or
    (embedded) per exclusive group with no live instance. Beyond that, new events are dropped,
    logged and counted in :attr:`PubSubStats.dropped`."""
    max_groups: int = 100
    """Embedded: exclusive groups (subscribing services) one publisher keeps per event. A
    subscription making one more drops the group that has been without members the longest
    (with its events); when every group has members, it is ignored (logged)."""
    empty_group_ttl: float = 60.0
    """Embedded: seconds an exclusive group without members keeps its events, waiting for an
    instance to subscribe again; then the group and its events are dropped (counted in
    :attr:`PubSubStats.dropped`)."""
    max_attempts: int = 5
    """Deliveries of one exclusive event before it is given up: moved to the dead letters
    (see :mod:`.dead_letters`), logged and counted in :attr:`PubSubStats.dead_lettered`."""
    dead_letter_maxlen: int = 10_000
    """Dead letters kept: Redis, the approximate length each dead-letter stream
    (``vyked:dead:<service>:<major>:<event>``) is trimmed to; embedded, the length of the
    publisher's dead-letter list (the oldest are forgotten first)."""
    retry_delay: float = 0.2
    """Seconds before an exclusive event whose handler raised is offered again."""
    ack_timeout: float = 60.0
    """Seconds an exclusive delivery may stay unacknowledged before it is redelivered."""
    heartbeat_interval: float = 1.0
    """Redis: how often a subscriber proves it is alive and looks for work of dead instances."""
    heartbeat_ttl: float = 5.0
    """Redis: an instance silent this long is dead; its pending exclusive events move on."""
    resubscribe_grace: float = 5.0
    """Redis: after a reconnect, how long buffered broadcast events wait for the subscribers
    seen before the outage to subscribe again."""
    stream_maxlen: int = 100_000
    """Redis: approximate length each event stream is trimmed to."""
    batch_size: int = 512
    """Most events written to Redis in one pipeline, or read in one ``XREADGROUP``."""
    max_in_flight: int = 256
    """Exclusive handlers one host runs at once per subscribing route."""
    reconnect_delay_max: float = 1.0
    """Longest pause between reconnection attempts."""
    start_timeout: float = 5.0
    """How long ``host.start()`` waits for subscriptions to be in place before it goes on
    (they keep trying in the background)."""


@dataclass(slots=True)
class PubSubStats:
    """What happened to events on one host, for logs, tests and monitoring."""

    published: int = 0
    """Events accepted by ``@publish`` methods."""
    sent: int = 0
    """Events written to Redis, or pushed to at least one subscriber connection."""
    dropped: int = 0
    """Events lost to a full buffer, or still unsent when the host stopped."""
    received: int = 0
    """Events that reached this host's handlers (once per event and subscription route)."""
    handler_errors: int = 0
    """Handler calls that raised."""
    redelivered: int = 0
    """Exclusive events offered again after a failure or an instance's death."""
    dead_lettered: int = 0
    """Exclusive events given up after :attr:`PubSubSettings.max_attempts` (moved to the
    dead letters)."""
    reconnects: int = 0
    """Connections to Redis or to publishers lost and re-established."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
