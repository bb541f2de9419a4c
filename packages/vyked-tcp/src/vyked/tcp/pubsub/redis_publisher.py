"""Redis transport, publishing side: a bounded outbox drained by one sender task.

Each event is one ``EVALSHA`` of :data:`PUBLISH_SCRIPT`: ``PUBLISH`` to the event's channel
(broadcast subscribers) and, when the event's stream exists (some service subscribes
exclusively, see :mod:`.redis_streams`), ``XADD`` to it; atomically per event, a pipeline per
batch. The reply is one integer (2 * receivers + 1 if it was added to the stream): cheap to
parse, which matters at tens of thousands of events per second. While Redis is unreachable
events wait in the outbox (at most ``max_buffer``; more are dropped, logged and counted) and
go out, in order, on reconnect.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from vyked.core.backoff import Backoff, retry
from vyked.core.logs import log_count
from vyked.core.tasks import cancel_and_wait, raise_if_cancelling, wait_until
from vyked.tcp.pubsub.events import EventKey, channel_name, stream_name
from vyked.tcp.pubsub.redis_client import command
from vyked.tcp.pubsub.settings import PubSubSettings, PubSubStats

logger = logging.getLogger(__name__)

PUBLISH_SCRIPT = """
local receivers = redis.call('PUBLISH', KEYS[1], ARGV[1])
if {force} == 1 or redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', {maxlen}, '*', 'p', ARGV[1])
  return receivers * 2 + 1
end
return receivers * 2
"""
"""KEYS: channel, stream; ARGV: payload. ``force`` writes the stream even if Redis lost it."""


class RedisPublisher:
    """Sends a host's events to Redis, buffering them while Redis is away."""

    def __init__(self, client: Redis, settings: PubSubSettings, stats: PubSubStats) -> None:
        self.client = client
        self.settings = settings
        self.stats = stats
        self._outbox: deque[tuple[EventKey, bytes]] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._receivers: dict[str, int] = {}
        """Subscribers each channel had at its last publish: whom to wait for after an outage."""
        self._streams: set[str] = set()
        """Streams known to be consumed: written even when an outage has emptied Redis."""
        self._names: dict[EventKey, tuple[str, str]] = {}
        self._scripts = {
            force: PUBLISH_SCRIPT.replace("{force}", str(int(force))).replace("{maxlen}", str(settings.stream_maxlen))
            for force in (False, True)
        }
        self._sha = {False: "", True: ""}
        self._connected = False
        self._task: asyncio.Task[None] | None = None

    @property
    def buffered(self) -> int:
        return len(self._outbox)

    def publish(self, key: EventKey, payload: bytes) -> None:
        if len(self._outbox) >= self.settings.max_buffer:
            self.stats.dropped += 1
            log_count(
                logger,
                self.stats.dropped,
                "publish buffer full (%d events waiting for Redis): dropped %s (%d dropped so far)",
                len(self._outbox),
                key,
                self.stats.dropped,
            )
            return
        self._outbox.append((key, payload))
        if not self._wake.is_set():
            self._idle.clear()
            self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def flush(self, timeout: float) -> bool:
        return await wait_until(self._idle, timeout)

    async def close(self, timeout: float) -> None:
        """Send what is queued (for up to ``timeout`` seconds), then stop."""
        if self._task is None:
            lost = len(self._outbox)
        else:
            if self._outbox and self._connected:
                await self.flush(timeout)
            await cancel_and_wait(self._task)
            lost = len(self._outbox)
        if lost:
            self.stats.dropped += lost
            logger.warning("%d published events were never sent: Redis was unreachable when the host stopped", lost)
        self._outbox.clear()

    # -- the sender --------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            raise_if_cancelling()
            while not self._outbox:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
            try:
                if not self._connected:
                    await self._connect()
                await self._send_batch()
            except (RedisError, OSError) as exc:
                if self._connected:
                    logger.warning("lost Redis while publishing (%s); buffering events until it is back", exc)
                self._connected = False
            except Exception:
                # Never let the sender die: the events stay queued and are tried again.
                logger.exception("unexpected error while publishing to Redis; retrying")
                self._connected = False
                await asyncio.sleep(self.settings.reconnect_delay_max)

    async def _connect(self) -> None:
        """Retry until Redis answers; then load the script and let subscribers come back."""
        reconnecting = bool(self._sha[False])
        await retry(
            self._load_scripts,
            retry_on=(RedisError, OSError),
            backoff=Backoff(cap=self.settings.reconnect_delay_max),
            logger=logger,
            what="connecting to Redis to publish",
        )
        self._connected = True
        if reconnecting:
            self.stats.reconnects += 1
            logger.info("Redis is back; sending %d buffered events", len(self._outbox))
            await self._await_resubscribers()

    async def _load_scripts(self) -> None:
        for force, script in self._scripts.items():
            self._sha[force] = str(await command(self.client, "SCRIPT", "LOAD", script), "ascii")

    async def _await_resubscribers(self) -> None:
        """Broadcast subscribers reconnect on their own schedule, and pub-sub keeps nothing for
        them: wait (up to ``resubscribe_grace``) until each channel with buffered events has
        as many subscribers as it had before the outage."""
        expected = {}
        for key, _ in self._outbox:
            channel = channel_name(key)
            if self._receivers.get(channel, 0) > 0:
                expected[channel] = self._receivers[channel]
        deadline = time.monotonic() + self.settings.resubscribe_grace
        while expected and time.monotonic() < deadline:
            reply = await command(self.client, "PUBSUB", "NUMSUB", *expected)
            for channel, count in zip(reply[::2], reply[1::2], strict=True):
                name = channel.decode() if isinstance(channel, bytes) else str(channel)
                if int(count) >= expected.get(name, 0):
                    expected.pop(name, None)
            if expected:
                await asyncio.sleep(0.05)
        if expected:
            logger.warning("sending buffered events though %s lack subscribers they had before", ", ".join(expected))

    async def _send_batch(self) -> None:
        batch = list(itertools.islice(self._outbox, self.settings.batch_size))
        sha = self._sha
        streams = self._streams
        pipe = self.client.pipeline(transaction=False)
        names = []
        cached = self._names
        for key, payload in batch:
            pair = cached.get(key)
            if pair is None:
                pair = cached[key] = (channel_name(key), stream_name(key))
            channel, stream = pair
            names.append(pair)
            pipe.execute_command("EVALSHA", sha[stream in streams], 2, channel, stream, payload)
        results: list[Any] = await pipe.execute(raise_on_error=False)
        if any(isinstance(r, NoScriptError) for r in results):
            await self._load_scripts()
            return  # the whole batch failed alike: send it again
        for (channel, stream), result in zip(names, results, strict=True):
            if isinstance(result, Exception):
                self.stats.dropped += 1
                logger.error("Redis refused an event on %s: %s", channel, result)
                continue
            self._receivers[channel] = result >> 1
            if result & 1:
                streams.add(stream)
        for _ in batch:
            self._outbox.popleft()
        self.stats.sent += len(batch)
