"""Redis transport, exclusive side: one consumer per (subscribing group, strategy) and host.

Exclusive events are stream entries (``vyked:stream:<service>:<major>:<event>``); each
subscribing service is a consumer group of that stream and each of its hosts a consumer,
named by the host's node id, so Redis gives every entry to exactly one instance of the group.
An entry is acknowledged (``XACK``) once the handler returns. Otherwise it moves on:

- handler raised: the entry goes to the pseudo-consumer ``~retry``; after ``retry_delay``
  another live instance claims it (this one only after three times that, so that others
  get the first chance);
- instance died (heartbeat expired, see :mod:`.redis_membership`, and silent towards the
  stream for as long): live instances claim its pending entries on their next heartbeat;
- still pending after ``ack_timeout``: any instance claims it.

An entry delivered ``max_attempts`` times is dead-lettered: moved to
``vyked:dead:<service>:<major>:<event>`` with its error, attempts and handler, by
:func:`.dead_letters.give_up`, logged and counted. The instance whose
last attempt raised does it at once, knowing the error; one that takes over an entry whose
last attempt never answered (a hung handler, a dead process) records the last error it saw
for it, if any. With ``LEADER`` only the leader reads and claims.

An entry with the field ``g`` (a replayed dead letter) is for that group only: the others
acknowledge it without handling it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, NamedTuple

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from vyked.core.backoff import Attempts
from vyked.core.tasks import TaskSet
from vyked.tcp.decorators import SubscriptionStrategy
from vyked.tcp.pubsub.dead_letters import dead_letter_stream, error_text, give_up, unknown_error
from vyked.tcp.pubsub.events import RETRY_CONSUMER, EventKey, stream_name
from vyked.tcp.pubsub.redis_client import command, reconnecting
from vyked.tcp.pubsub.redis_membership import Membership
from vyked.tcp.pubsub.settings import PubSubSettings, PubSubStats
from vyked.tcp.pubsub.subscriptions import SubscriptionTable

logger = logging.getLogger(__name__)

_Entry = tuple[str, bytes]
"""(stream, entry id)."""


class _Failure(NamedTuple):
    """A handler of this host raised for an entry."""

    at: float
    """``time.monotonic()`` of the failure."""
    attempt: int
    error: str


class StreamConsumer:
    """Reads, handles, acknowledges and reclaims the exclusive events of one route."""

    def __init__(
        self,
        client: Redis,
        table: SubscriptionTable,
        membership: Membership,
        group: str,
        strategy: SubscriptionStrategy,
        settings: PubSubSettings,
        stats: PubSubStats,
    ) -> None:
        self.client = client
        self.table = table
        self.membership = membership
        self.group = group
        self.strategy = strategy
        self.settings = settings
        self.stats = stats
        self.consumer = membership.consumer
        self.streams: dict[str, EventKey] = {}
        self._loop = reconnecting(self._session, settings, logger, f"exclusive consumer of group {group!r}")
        self.ready = self._loop.up
        """Set while the consumer groups exist and this consumer reads."""
        self._created: set[str] = set()
        self._running: set[_Entry] = set()
        self._unacked: set[_Entry] = set()
        self._failed_here: dict[_Entry, _Failure] = {}
        self._room = asyncio.Event()
        self._room.set()
        self._tasks = TaskSet()
        self._next_claim = 0.0

    async def update(self, keys: list[EventKey]) -> None:
        """Consume these keys' streams; wait (up to ``start_timeout``) until the group exists."""
        streams = {stream_name(k): k for k in keys}
        if streams == self.streams and self._loop.running:
            return
        self.streams = streams
        if not await self._loop.restart(self.settings.start_timeout):
            logger.warning("cannot set up the exclusive subscriptions of group %r yet; still trying", self.group)

    async def _session(self, attempts: Attempts) -> None:
        """Make sure the consumer groups exist, then read and handle until Redis fails."""
        try:
            await self._ensure_groups()
            await self._ack_leftovers()
            attempts.succeeded()
            await self._consume()
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):  # else Redis lost the group (restarted empty): make it again
                logger.error("Redis refused a stream command for group %r: %s", self.group, exc)
        except (RedisError, OSError) as exc:
            if self.ready.is_set():
                self.stats.reconnects += 1
                logger.warning("lost Redis while consuming for group %r (%s); reconnecting", self.group, exc)
            raise

    async def _ensure_groups(self) -> None:
        for stream in self.streams:
            # A group made for the first time starts with new events; one made again after
            # Redis lost it takes everything the stream holds (buffered events come first).
            start = "0" if stream in self._created else "$"
            try:
                await command(self.client, "XGROUP", "CREATE", stream, self.group, start, "MKSTREAM")
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            self._created.add(stream)

    async def _ack_leftovers(self) -> None:
        for stream, entry_id in list(self._unacked):
            await command(self.client, "XACK", stream, self.group, entry_id)
            self._unacked.discard((stream, entry_id))

    async def _consume(self) -> None:
        # Parked events (a failed handler) are looked for every retry_delay, so that another
        # instance takes them after retry_delay while the one that failed waits three times as
        # long, as docs/pubsub.md says: looking only once per heartbeat let the failed instance
        # take its own events back as often as not.
        claim_every = min(self.settings.heartbeat_interval, self.settings.retry_delay)
        block_ms = max(1, int(claim_every * 1000))
        streams = list(self.streams)
        while True:
            if self.strategy is SubscriptionStrategy.LEADER and not self.membership.is_leader(self.group):
                await asyncio.sleep(self.settings.heartbeat_interval / 2)
                continue
            if time.monotonic() >= self._next_claim:
                await self._claim_all()
                self._next_claim = time.monotonic() + claim_every
            free = self.settings.max_in_flight - len(self._running)
            if free <= 0:
                self._room.clear()
                await self._room.wait()
                continue
            reply = await command(self.client,
                "XREADGROUP", "GROUP", self.group, self.consumer, "COUNT", min(free, self.settings.batch_size),
                "BLOCK", block_ms, "STREAMS", *streams, *([">"] * len(streams)),
            )  # fmt: skip
            for stream, entries in reply or ():
                name = stream.decode()
                for entry_id, fields in entries:
                    self._spawn(name, entry_id, fields, 1)

    # -- handling ------------------------------------------------------------------------------

    def _spawn(self, stream: str, entry_id: bytes, fields: dict[bytes, bytes] | None, attempt: int) -> None:
        """Handle an entry; ``attempt`` is its delivery count (XREADGROUP and XCLAIM add one)."""
        entry = (stream, entry_id)
        if entry in self._running:
            return
        self._running.add(entry)
        self._tasks.spawn(self._handle(entry, fields or {}, attempt))

    async def _handle(self, entry: _Entry, fields: dict[bytes, bytes], attempt: int) -> None:
        stream, entry_id = entry
        try:
            key = self.streams.get(stream)
            payload = fields.get(b"p")
            target = fields.get(b"g")
            if payload is not None and key is not None and (target is None or target.decode() == self.group):
                await self.table.handle(key, self.group, payload)
        except Exception as exc:
            error = error_text(exc)
            self._failed_here[entry] = _Failure(time.monotonic(), attempt, error)
            if attempt >= self.settings.max_attempts:
                try:
                    await self._give_up(stream, [(entry_id, attempt, error)])
                except (RedisError, OSError) as lost:
                    logger.warning("could not dead-letter %s (%s); it stays pending and will be reclaimed", entry, lost)
            else:
                # JUSTID replies are bare ids: redis-py must be told, or its XCLAIM parser fails
                await self._command_or_log(
                    "XCLAIM", stream, self.group, RETRY_CONSUMER, 0, entry_id, "JUSTID", parse_justid=True
                )
        else:
            if not await self._command_or_log("XACK", stream, self.group, entry_id):
                self._unacked.add(entry)
        finally:
            self._running.discard(entry)
            self._room.set()

    async def _command_or_log(self, *args: Any, **options: Any) -> bool:
        try:
            await command(self.client, *args, **options)
        except (RedisError, OSError) as exc:
            logger.warning("%s failed (%s); the event stays pending and will be reclaimed", args[0], exc)
            return False
        return True

    # -- claiming what others could not finish -------------------------------------------------

    async def _claim_all(self) -> None:
        for stream in list(self.streams):
            await self._claim(stream)
        horizon = time.monotonic() - 10 * self.settings.retry_delay - self.settings.ack_timeout
        self._failed_here = {e: f for e, f in self._failed_here.items() if f.at > horizon}

    async def _claim(self, stream: str) -> None:
        consumers = await command(self.client, "XINFO", "CONSUMERS", stream, self.group)
        # A heartbeat key can be missing while its owner lives (Redis restarted empty a moment
        # ago), so a consumer is dead only if it has also not read for a whole heartbeat TTL.
        ttl_ms = self.settings.heartbeat_ttl * 1000
        pending = {c[b"name"].decode(): int(c[b"pending"]) for c in consumers}
        silent = {c[b"name"].decode() for c in consumers if int(c[b"idle"]) >= ttl_ms}
        pending.pop(self.consumer, None)
        retry = pending.pop(RETRY_CONSUMER, 0)
        alive = await self.membership.alive(list(pending))
        alive |= set(pending) - silent
        candidates: dict[bytes, dict[str, Any]] = {}
        for name, count in pending.items():
            if name in alive:
                continue
            if count == 0:
                await command(self.client, "XGROUP", "DELCONSUMER", stream, self.group, name)
                continue
            for p in await self._pending(stream, name):
                candidates[p["message_id"]] = p
        if retry:
            now = time.monotonic()
            for p in await self._pending(stream, RETRY_CONSUMER):
                failure = self._failed_here.get((stream, p["message_id"]))
                mine = failure is not None and now - failure.at < self.settings.ack_timeout
                wait = self.settings.retry_delay * (3 if mine else 1)
                if p["time_since_delivered"] >= wait * 1000:
                    candidates[p["message_id"]] = p
        for p in await self._pending(stream, None, idle_ms=int(self.settings.ack_timeout * 1000)):
            if (stream, p["message_id"]) not in self._running:
                candidates.setdefault(p["message_id"], p)
        if candidates:
            await self._take_over(stream, list(candidates.values()))

    async def _pending(self, stream: str, consumer: str | None, idle_ms: int | None = None) -> list[dict[str, Any]]:
        args: list[Any] = ["XPENDING", stream, self.group]
        if idle_ms is not None:
            args += ["IDLE", idle_ms]
        args += ["-", "+", self.settings.batch_size]
        if consumer is not None:
            args.append(consumer)
        result: list[dict[str, Any]] = await command(self.client, *args, parse_detail=True)
        return result

    async def _take_over(self, stream: str, pending: list[dict[str, Any]]) -> None:
        exhausted = [p for p in pending if p["times_delivered"] >= self.settings.max_attempts]
        if exhausted:
            await self._give_up(
                stream, [(p["message_id"], p["times_delivered"], self._last_error(stream, p)) for p in exhausted]
            )
        attempts = {
            p["message_id"]: p["times_delivered"] for p in pending if p["times_delivered"] < self.settings.max_attempts
        }
        if not attempts:
            return
        min_idle = int(self.settings.retry_delay * 1000)
        claimed = await command(self.client, "XCLAIM", stream, self.group, self.consumer, min_idle, *attempts)
        for entry_id, fields in claimed:
            self.stats.redelivered += 1
            self._spawn(stream, entry_id, fields, attempts.get(entry_id, 0) + 1)

    # -- giving up -------------------------------------------------------------------------------

    def _last_error(self, stream: str, pending: dict[str, Any]) -> str:
        """What is known of why an entry that nobody acknowledged failed: the last error a
        handler of this host raised for it, else unknown (another instance failed it, or its
        handler hung or its process died)."""
        delivered = pending["times_delivered"]
        failure = self._failed_here.get((stream, pending["message_id"]))
        if failure is None:
            return unknown_error(delivered)
        if failure.attempt >= delivered:
            return failure.error
        later = delivered - failure.attempt
        return f"{failure.error} (attempt {failure.attempt}; then delivered {later} more times without acknowledgement)"

    def _handler_names(self, stream: str) -> str:
        """The ``@xsubscribe`` methods of this group for ``stream``, ``module.Class.method``."""
        key = self.streams.get(stream)
        # SubscriptionTable has no public accessor for an exclusive route's handlers yet.
        subscriptions = self.table._exclusive.get((key, self.group), ()) if key is not None else ()
        names = []
        for sub in subscriptions:
            owner = getattr(sub.handler, "__self__", None)
            module = type(owner).__module__ if owner is not None else getattr(sub.handler, "__module__", "")
            names.append(f"{module}.{sub.label}" if module else sub.label)
        return ", ".join(names)

    async def _give_up(self, stream: str, entries: list[tuple[bytes, int, str]]) -> None:
        """Move entries (id, attempts, error) to the dead-letter stream, acknowledging them."""
        key = self.streams.get(stream)
        dead = dead_letter_stream(key) if key is not None else stream.replace(":stream:", ":dead:", 1)
        handler = self._handler_names(stream)
        moved = await give_up(self.client, stream, dead, self.group, handler, entries, self.settings.dead_letter_maxlen)
        for entry_id, _, _ in entries:
            self._failed_here.pop((stream, entry_id), None)
        if not moved:
            return  # another instance gave them up first
        self.stats.dead_lettered += len(moved)
        logger.error(
            "gave up %d exclusive events of %s for group %r after %d attempts (handler %s, last error: %s); "
            "moved to the dead-letter stream %s: %s",
            len(moved), stream, self.group, max(a for _, a, _ in entries), handler or "?", entries[-1][2], dead,
            ", ".join(moved),
        )  # fmt: skip

    async def drain(self, deadline: float) -> None:
        """Stop reading; let the handlers running finish and acknowledge, until ``deadline``."""
        await self._loop.stop()
        await self._tasks.wait(deadline - asyncio.get_running_loop().time())

    async def close(self) -> None:
        """Stop reading; handlers still running are cancelled and their events left pending,
        to be claimed by other instances."""
        await self._loop.stop()
        await self._tasks.close()
