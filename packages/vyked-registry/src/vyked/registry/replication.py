"""Sharing registry state through Redis, so several registry processes serve one cluster.

Every registry keeps its own :class:`~vyked.registry.state.RegistryState`, a full mirror of
the cluster, and serves its own connections from it. Redis holds the shared truth:

``{prefix}instances``  (hash)    node id → JSON ``{instance, dependencies, registry, registered_at}``
``{prefix}lease:{node}`` (string) the id of the registry holding the node, with a TTL
``{prefix}changes``     (channel) JSON ``{op: "add"|"remove"|"expire", node_id, registry, entry?}``;
                          ``registry`` is the registry that held the node

A registry writes the instances whose hosts are connected to it, refreshes their leases
every ``lease_ttl / 3`` seconds, and publishes each change; every registry applies the
changes of the others to its mirror and pushes them to its own watchers. When a registry
dies its leases run out: the other registries sweep (every ``lease_ttl / 2`` s) entries whose
lease is gone, so nothing stale survives. Hosts of a dead registry reconnect to another one
and re-register under the same node id well before their lease ends, so consumers see no
removal. After a Redis restart each registry writes its instances back on its next refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from vyked.core.backoff import Attempts, reconnect_forever
from vyked.core.exceptions import RegistryUnavailable, map_exceptions
from vyked.core.observe import Family, Histogram
from vyked.core.protocol.packets import Dependency, InstanceInfo
from vyked.core.tasks import TaskSet, raise_if_cancelling
from vyked.registry.state import Outbox, Registration, RegistryState

if TYPE_CHECKING:
    import redis.asyncio as aioredis

logger = logging.getLogger(__name__)

DEFAULT_LEASE_TTL = 5.0
DEFAULT_PREFIX = "vyked:registry:"


class SharedEntry(msgspec.Struct):
    instance: InstanceInfo
    dependencies: list[Dependency]
    registry: str
    registered_at: float


class Change(msgspec.Struct, omit_defaults=True):
    op: str
    node_id: str
    registry: str
    entry: SharedEntry | None = None
    at: float = 0.0
    """Unix time the change was written (the other registries' replication lag); 0 from
    registries that predate it."""


_encode = msgspec.json.Encoder().encode
_decode_entry = msgspec.json.Decoder(SharedEntry).decode
_decode_change = msgspec.json.Decoder(Change).decode

# Remove an entry only if this registry still holds it (the host may have moved on).
_REMOVE_IF_HELD = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current and cjson.decode(current)['registry'] == ARGV[2] then
    redis.call('HDEL', KEYS[1], ARGV[1])
    redis.call('DEL', KEYS[2])
    redis.call('PUBLISH', ARGV[3], ARGV[4])
    return 1
end
return 0
"""

# Sweep an entry whose lease is gone, once, whoever notices first.
_SWEEP_IF_EXPIRED = """
if redis.call('EXISTS', KEYS[2]) == 0 and redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then
    redis.call('PUBLISH', ARGV[2], ARGV[3])
    return 1
end
return 0
"""

# Refresh a lease, and write the entry back if Redis lost it (a Redis restart).
_REFRESH = """
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[4]) == 1 then
    redis.call('PUBLISH', ARGV[5], ARGV[6])
end
return 0
"""


class RedisReplication:
    """Keeps one registry's mirror in step with Redis and Redis in step with its hosts."""

    def __init__(
        self,
        url: str,
        state: RegistryState,
        deliver: Callable[[Outbox], None],
        *,
        registry_id: str,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        self.url = url
        self.state = state
        self.deliver = deliver
        self.registry_id = registry_id
        self.lease_ttl = lease_ttl
        self.instances_key = f"{prefix}instances"
        self.lease_prefix = f"{prefix}lease:"
        self.channel = f"{prefix}changes"
        self._redis: aioredis.Redis | None = None
        self._writes: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._tasks = TaskSet()
        self._subscribed = asyncio.Event()
        self.lag = Histogram()
        """Seconds between another registry writing a change and this one applying it."""
        self.last_lag: float | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        from vyked.core.optional import require

        aioredis = require("redis.asyncio", "vyked-registry[redis]")

        self._redis = aioredis.Redis.from_url(self.url, socket_connect_timeout=2, socket_timeout=5)
        self._remove_if_held = self._redis.register_script(_REMOVE_IF_HELD)
        self._sweep_if_expired = self._redis.register_script(_SWEEP_IF_EXPIRED)
        self._refresh = self._redis.register_script(_REFRESH)
        # fail fast at start if Redis is not there
        with map_exceptions({Exception: RegistryUnavailable}, f"the registry cannot reach Redis at {self.url}"):
            await self._redis.ping()
        self._tasks.spawn(self._listen())
        self._tasks.spawn(self._write())
        self._tasks.spawn(self._every(self.lease_ttl / 3, self._refresh_leases))
        self._tasks.spawn(self._every(self.lease_ttl / 2, self._sweep))
        await asyncio.wait_for(self._subscribed.wait(), 10)

    async def close(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._writes.join(), 2)  # removals of our instances go out
        await self._tasks.close()
        if self._redis is not None:
            await self._redis.aclose()

    # -- changes from this registry's hosts -------------------------------------------------

    def registered(self, reg: Registration) -> None:
        self._writes.put_nowait(("add", self._entry(reg)))

    def unregistered(self, node_id: str) -> None:
        self._writes.put_nowait(("remove", node_id))

    def _entry(self, reg: Registration) -> SharedEntry:
        return SharedEntry(reg.instance, reg.dependencies, self.registry_id, reg.registered_at)

    async def _write(self) -> None:
        while True:
            raise_if_cancelling()
            op, arg = await self._writes.get()
            try:
                await self._apply_write(op, arg)
            except Exception as exc:  # Redis down: the lease refresh writes it back later
                logger.warning("could not write %s to Redis: %s", op, exc)
            finally:
                self._writes.task_done()

    async def _apply_write(self, op: str, arg: Any) -> None:
        assert self._redis is not None
        if op == "add":
            entry: SharedEntry = arg
            node_id = entry.instance.node_id
            change = _encode(Change("add", node_id, self.registry_id, entry, time.time()))
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(self.instances_key, node_id, _encode(entry))
                pipe.set(self.lease_prefix + node_id, self.registry_id, px=int(self.lease_ttl * 1000))
                pipe.publish(self.channel, change)
                await pipe.execute()
        else:
            node_id = arg
            change = _encode(Change("remove", node_id, self.registry_id, at=time.time()))
            await self._remove_if_held(
                keys=[self.instances_key, self.lease_prefix + node_id],
                args=[node_id, self.registry_id, self.channel, change],
            )

    # -- changes from the other registries ----------------------------------------------------

    @property
    def connected(self) -> bool:
        """Following the change feed now (``/readyz``)."""
        return self._subscribed.is_set()

    async def _listen(self) -> None:
        await reconnect_forever(self._follow_changes, retry_on=Exception, logger=logger, what="the Redis change feed")

    async def _follow_changes(self, attempts: Attempts) -> None:
        """Subscribe to the change feed, catch up with Redis, then apply changes as they come."""
        assert self._redis is not None
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self.channel)
            await self._resync()  # after subscribing, so no change falls in between
            self._subscribed.set()
            attempts.succeeded()
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if message is not None:
                    self._apply_change(_decode_change(message["data"]))
        except Exception as exc:
            self._subscribed.clear()
            logger.warning("lost the Redis change feed (%s); resubscribing", exc)
            raise
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _apply_change(self, change: Change) -> None:
        if change.registry == self.registry_id and change.op != "expire":
            return  # our own write, already applied
        if change.at:
            self.last_lag = lag = max(0.0, time.time() - change.at)
            self.lag.observe(lag)
        if change.op == "add" and change.entry is not None:
            e = change.entry
            self.deliver(self.state.register(e.instance, e.dependencies, None, e.registry, e.registered_at))
        elif change.op in ("remove", "expire"):
            # only if that registry still holds it here: the host may have moved to us
            self.deliver(self.state.unregister(change.node_id, registry=change.registry))

    def metric_families(self) -> list[Family]:
        """The change feed: connected or not, and its lag (``--metrics-port``)."""
        connected = Family(
            "vyked_registry_replication_connected", "1 while the registry follows the Redis change feed", "gauge"
        )
        connected.add([], 1.0 if self.connected else 0.0)
        lag = Family(
            "vyked_registry_replication_lag_seconds",
            "Time from another registry writing a change to Redis to this registry applying it",
            "histogram",
        )
        lag.add([], self.lag.snapshot())
        families = [connected, lag]
        if self.last_lag is not None:
            last = Family("vyked_registry_replication_last_lag_seconds", "The lag of the last change applied", "gauge")
            families.append(last.add([], self.last_lag))
        return families

    async def _resync(self) -> None:
        """Make the mirror equal to Redis for every instance another registry holds."""
        assert self._redis is not None
        raw = await self._redis.hgetall(self.instances_key)
        entries = {_text(k): _decode_entry(v) for k, v in raw.items()}
        for node_id, entry in entries.items():
            if entry.registry != self.registry_id:
                self._apply_change(Change("add", node_id, entry.registry, entry))
        for reg in self.state.registrations():
            if reg.owner is None and reg.instance.node_id not in entries:
                self.deliver(self.state.unregister(reg.instance.node_id))

    # -- leases ----------------------------------------------------------------------------------

    async def _every(self, interval: float, job: Callable[[], Any]) -> None:
        while True:
            raise_if_cancelling()
            await asyncio.sleep(interval)
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("%s failed: %s", getattr(job, "__name__", job), exc)

    async def _refresh_leases(self) -> None:
        assert self._redis is not None
        mine = [r for r in self.state.registrations() if r.owner is not None]
        if not mine:
            return
        ttl_ms = int(self.lease_ttl * 1000)
        async with self._redis.pipeline(transaction=False) as pipe:
            for reg in mine:
                entry = self._entry(reg)
                node_id = reg.instance.node_id
                await self._refresh(
                    keys=[self.instances_key, self.lease_prefix + node_id],
                    args=[
                        node_id, self.registry_id, ttl_ms, _encode(entry),
                        self.channel, _encode(Change("add", node_id, self.registry_id, entry, time.time())),
                    ],
                    client=pipe,
                )  # fmt: skip
            await pipe.execute()

    async def _sweep(self) -> None:
        assert self._redis is not None
        others = [r for r in self.state.registrations() if r.owner is None]
        if not others:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for reg in others:
                pipe.exists(self.lease_prefix + reg.instance.node_id)
            alive = await pipe.execute()
        for reg, exists in zip(others, alive, strict=True):
            if exists:
                continue
            node_id = reg.instance.node_id
            logger.info("lease of %s (%s, held by registry %s) ran out", node_id, reg.instance.service, reg.registry)
            change = _encode(Change("expire", node_id, reg.registry, at=time.time()))
            swept = await self._sweep_if_expired(
                keys=[self.instances_key, self.lease_prefix + node_id], args=[node_id, self.channel, change]
            )
            if swept:  # else the host re-registered somewhere in the meantime
                self.deliver(self.state.unregister(node_id, registry=reg.registry))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
