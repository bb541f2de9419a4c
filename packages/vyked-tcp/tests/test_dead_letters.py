"""Exclusive events that keep failing end as dead letters (a Redis stream, or the embedded
publisher's list) and can be replayed; a Redis without persistence is reported at start."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
from pubsub_services import FAST, Hosts, Identity, Inbox, Worker, WorkerService, stats
from redis.asyncio import Redis

from vyked import TCPServiceClient, xsubscribe
from vyked.core.exceptions import ConfigurationError
from vyked.core.service_host import ServiceHost
from vyked.core.testing import RedisServer
from vyked.tcp.pubsub import PubSub
from vyked.tcp.pubsub.dead_letters import give_up, list_dead_letters, replay

STREAM = "vyked:stream:IdentityService:1:job"
DEAD = "vyked:dead:IdentityService:1:job"
SETTINGS = dataclasses.replace(FAST, max_attempts=3)


class Flaky(TCPServiceClient):
    """An exclusive ``job`` handler that raises while ``broken``."""

    def __init__(self, inbox: Inbox) -> None:
        super().__init__("IdentityService", 1)
        self.inbox = inbox
        self.broken = True

    @xsubscribe
    async def job(self, n: int) -> None:
        if self.broken:
            raise ValueError(f"cannot do job {n}")
        self.inbox.add("job", n)


@pytest.fixture
def redis_url() -> Iterator[str]:
    with RedisServer() as server:  # its own: tests change its configuration
        yield server.url


@pytest.fixture
async def redis_hosts(vyked_registry: Any, redis_url: str) -> AsyncIterator[Hosts]:
    made = Hosts(vyked_registry.port, redis_url)
    yield made
    await made.stop_all()


@pytest.fixture
async def embedded_hosts(vyked_registry: Any) -> AsyncIterator[Hosts]:
    made = Hosts(vyked_registry.port, None)
    yield made
    await made.stop_all()


async def dead_lettered(hosts: Hosts, count: int, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while sum(stats(h).dead_lettered for h in hosts.hosts) < count:
            await asyncio.sleep(0.02)


def text(fields: dict[bytes, bytes], name: str) -> str:
    return fields[name.encode()].decode()


# -- Redis -------------------------------------------------------------------------------------


async def test_failing_events_land_in_the_dead_letter_stream_and_replay_once(
    redis_hosts: Hosts, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    publisher = Identity()
    await redis_hosts(publisher, settings=SETTINGS)
    inbox = Inbox()
    flaky = Flaky(inbox)
    worker_host = await redis_hosts(WorkerService(flaky), settings=SETTINGS)
    audit = Inbox()  # another subscribing service, whose handler works: it must not get replays
    await redis_hosts(WorkerService(Worker(audit, "audit"), name="Audit"), settings=SETTINGS)

    with caplog.at_level(logging.ERROR, logger="vyked.tcp.pubsub"):
        for n in range(5):
            publisher.job(n)
        await dead_lettered(redis_hosts, 5)
    await audit.wait_for("job", 5)
    assert stats(worker_host).handler_errors == 15  # 5 events x max_attempts
    assert f"moved to the dead-letter stream {DEAD}" in caplog.text

    r = redis.Redis.from_url(redis_url)
    entries = r.xrange(DEAD)
    assert len(entries) == 5
    originals = {entry_id.decode() for entry_id, _ in r.xrange(STREAM)}
    by_n = {}
    for _, fields in entries:
        n = json.loads(fields[b"p"])["n"]
        by_n[n] = fields
        assert text(fields, "error") == f"ValueError: cannot do job {n}"
        assert text(fields, "attempts") == "3"
        assert text(fields, "handler") == f"{Flaky.__module__}.Flaky.job"
        assert text(fields, "group") == "WorkerService"
        assert text(fields, "stream") == STREAM
        assert text(fields, "id") in originals
        assert text(fields, "time").endswith("+00:00")
    assert sorted(by_n) == list(range(5))
    assert r.xpending(STREAM, "WorkerService")["pending"] == 0  # acknowledged: nothing left to retry
    assert r.xpending(STREAM, "Audit")["pending"] == 0

    listed = await list_dead_letters(redis_url, "IdentityService", "1.2", "job")
    assert [letter.fields["n"] for letter in listed] == [json.loads(f[b"p"])["n"] for _, f in entries]
    assert await list_dead_letters(redis_url, "IdentityService", 1, "job", group="Audit") == []
    assert len(await list_dead_letters(redis_url, "IdentityService", 1, "job", limit=2)) == 2
    with pytest.raises(ConfigurationError):
        PubSub.of(worker_host).dead_letters()

    flaky.broken = False
    replayed = await replay(redis_url, "IdentityService", 1, "job")
    assert sorted(letter.fields["n"] for letter in replayed) == list(range(5))
    assert sorted(await inbox.wait_for("job", 5)) == list(range(5))
    await asyncio.sleep(0.5)  # a duplicate, or a copy for Audit, would have arrived by now
    assert Counter(inbox.of("job")) == Counter(range(5))
    assert sorted(n for _, n in audit.of("job")) == list(range(5))
    assert r.xlen(DEAD) == 0
    assert await replay(redis_url, "IdentityService", 1, "job") == []
    r.close()


async def test_replay_narrowed_by_ids_and_limit(redis_hosts: Hosts, redis_url: str) -> None:
    publisher = Identity()
    await redis_hosts(publisher, settings=SETTINGS)
    inbox = Inbox()
    flaky = Flaky(inbox)
    await redis_hosts(WorkerService(flaky), settings=SETTINGS)
    for n in range(4):
        publisher.job(n)
    await dead_lettered(redis_hosts, 4)
    letters = await list_dead_letters(redis_url, "IdentityService", 1, "job")
    flaky.broken = False

    first = await replay(redis_url, "IdentityService", 1, "job", ids=[letters[2].id])
    assert [letter.id for letter in first] == [letters[2].id]
    assert await inbox.wait_for("job", 1) == [letters[2].fields["n"]]
    second = await replay(redis_url, "IdentityService", 1, "job", limit=2)
    assert [letter.id for letter in second] == [letters[0].id, letters[1].id]
    await inbox.wait_for("job", 3)
    rest = await list_dead_letters(redis_url, "IdentityService", 1, "job")
    assert [letter.id for letter in rest] == [letters[3].id]


async def test_concurrent_replays_deliver_each_event_once(redis_hosts: Hosts, redis_url: str) -> None:
    publisher = Identity()
    await redis_hosts(publisher, settings=SETTINGS)
    inbox = Inbox()
    flaky = Flaky(inbox)
    await redis_hosts(WorkerService(flaky), settings=SETTINGS)
    for n in range(20):
        publisher.job(n)
    await dead_lettered(redis_hosts, 20)
    flaky.broken = False
    results = await asyncio.gather(*(replay(redis_url, "IdentityService", 1, "job") for _ in range(3)))
    assert sum(len(r) for r in results) == 20
    await inbox.wait_for("job", 20)
    await asyncio.sleep(0.5)
    assert Counter(inbox.of("job")) == Counter(range(20))


async def test_an_entry_is_dead_lettered_once_when_two_consumers_give_it_up(redis_url: str) -> None:
    sync = redis.Redis.from_url(redis_url)
    sync.xgroup_create(STREAM, "G", "$", mkstream=True)
    entry_id = sync.xadd(STREAM, {"p": b'{"n": 7}'})
    sync.xreadgroup("G", "c1", {STREAM: ">"})  # pending on c1, delivered once
    clients = [Redis.from_url(redis_url) for _ in range(4)]
    try:
        moved = await asyncio.gather(
            *(give_up(c, STREAM, DEAD, "G", "h", [(entry_id, 1, f"E: from {i}")], 100) for i, c in enumerate(clients))
        )
    finally:
        for c in clients:
            await c.aclose()
    assert sorted(len(m) for m in moved) == [0, 0, 0, 1]
    assert sync.xlen(DEAD) == 1
    assert sync.xpending(STREAM, "G")["pending"] == 0
    [(_, fields)] = sync.xrange(DEAD)
    assert fields[b"p"] == b'{"n": 7}'
    sync.close()


async def test_last_attempt_on_a_dead_instance_is_recorded_as_unknown(redis_hosts: Hosts, redis_url: str) -> None:
    settings = dataclasses.replace(SETTINGS, max_attempts=1)
    publisher = Identity()
    await redis_hosts(publisher, settings=settings)
    inbox = Inbox()
    slow = Worker(inbox, "slow")
    slow.delay = 30.0  # still handling when its host goes
    slow_host = await redis_hosts(WorkerService(slow), settings=settings)
    publisher.job(1)
    async with asyncio.timeout(10):
        while stats(slow_host).received == 0:
            await asyncio.sleep(0.01)
    other_host = await redis_hosts(WorkerService(Worker(inbox, "other")), settings=settings)
    await slow_host.stop()  # the only attempt never answers
    async with asyncio.timeout(10):
        while stats(other_host).dead_lettered == 0:
            await asyncio.sleep(0.02)
    [letter] = await list_dead_letters(redis_url, "IdentityService", 1, "job")
    assert letter.error == "unknown: delivered 1 times without acknowledgement (handler hung or its process died)"
    assert letter.attempts == 1
    assert letter.fields == {"n": 1}
    assert letter.handler.endswith("Worker.job")
    assert inbox.of("job") == []


# -- Redis persistence -------------------------------------------------------------------------


async def started_publisher(vyked_registry: Any, url: str) -> ServiceHost:
    host = ServiceHost(f"127.0.0.1:{vyked_registry.port}", pubsub=url)
    host.attach(Identity())
    await host.start()
    return host


async def wait_for_log(caplog: pytest.LogCaptureFixture, text: str) -> None:
    async with asyncio.timeout(5):
        while text not in caplog.text:
            await asyncio.sleep(0.02)


async def test_a_redis_without_persistence_is_warned_about(
    vyked_registry: Any, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # RedisServer runs with --save "" --appendonly no
    with caplog.at_level(logging.WARNING, logger="vyked.tcp.pubsub"):
        host = await started_publisher(vyked_registry, redis_url)
        try:
            await wait_for_log(caplog, "has no persistence")
        finally:
            await host.stop()
    [record] = [r for r in caplog.records if "has no persistence" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "docs/pubsub.md" in record.getMessage()


@pytest.mark.parametrize(("parameter", "value"), [("appendonly", "yes"), ("save", "3600 1")])
async def test_a_redis_with_aof_or_rdb_is_not_warned_about(
    vyked_registry: Any, redis_url: str, caplog: pytest.LogCaptureFixture, parameter: str, value: str
) -> None:
    with redis.Redis.from_url(redis_url) as r:
        r.config_set(parameter, value)
    with caplog.at_level(logging.DEBUG, logger="vyked.tcp.pubsub.redis_transport"):
        host = await started_publisher(vyked_registry, redis_url)
        try:
            await wait_for_log(caplog, "persists events")  # the check has run
        finally:
            await host.stop()
    assert "has no persistence" not in caplog.text


async def test_a_redis_refusing_config_is_only_noted(
    vyked_registry: Any, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with redis.Redis.from_url(redis_url) as r:
        r.acl_setuser("default", enabled=True, nopass=True, commands=["-config"])  # as managed Redis does
    with caplog.at_level(logging.INFO, logger="vyked.tcp.pubsub"):
        publisher = Identity()
        host = ServiceHost(f"127.0.0.1:{vyked_registry.port}", pubsub=redis_url)
        host.attach(publisher)
        await host.start()
        try:
            await wait_for_log(caplog, "could not check whether Redis")
            publisher.job(1)
            assert await PubSub.of(host).flush(5)  # the host works all the same
        finally:
            await host.stop()
    [record] = [r for r in caplog.records if "could not check whether Redis" in r.getMessage()]
    assert record.levelno == logging.INFO
    assert "has no persistence" not in caplog.text


# -- embedded ----------------------------------------------------------------------------------


async def test_embedded_keeps_a_bounded_dead_letter_list_and_replays_it(
    embedded_hosts: Hosts, caplog: pytest.LogCaptureFixture
) -> None:
    settings = dataclasses.replace(SETTINGS, max_attempts=2, dead_letter_maxlen=3)
    publisher = Identity()
    publisher_host = await embedded_hosts(publisher, settings=settings)
    inbox = Inbox()
    flaky = Flaky(inbox)
    worker_host = await embedded_hosts(WorkerService(flaky), settings=settings)
    hub = PubSub.of(publisher_host)
    async with asyncio.timeout(5):  # the worker's link to the publisher is up
        while not hub.transport.publisher._groups:  # type: ignore[attr-defined]
            await asyncio.sleep(0.01)

    with caplog.at_level(logging.ERROR, logger="vyked.tcp.pubsub"):
        for n in range(5):
            publisher.job(n)
        await dead_lettered(embedded_hosts, 5)
    assert stats(worker_host).handler_errors == 10
    assert caplog.text.count("gave up exclusive IdentityService.job event for group 'WorkerService'") == 5

    letters = hub.dead_letters()
    assert len(letters) == 3  # bounded: the two oldest are forgotten
    assert sorted(letter.fields["n"] for letter in letters) == sorted(
        json.loads(letter.payload)["n"] for letter in letters
    )
    kept = {letter.fields["n"] for letter in letters}
    for letter in letters:
        assert letter.error == f"ValueError: cannot do job {letter.fields['n']}"
        assert letter.attempts == 2
        assert (letter.service, letter.event, letter.group) == ("IdentityService", "job", "WorkerService")
    assert hub.dead_letters(group="Audit") == []
    assert hub.dead_letters("IdentityService", "job") == letters

    flaky.broken = False
    replayed = hub.replay_dead_letters(limit=2)
    assert replayed == letters[:2]
    assert len(hub.dead_letters()) == 1
    hub.replay_dead_letters()
    assert set(await inbox.wait_for("job", 3)) == kept
    await asyncio.sleep(0.3)
    assert Counter(inbox.of("job")) == Counter(kept)
    assert hub.dead_letters() == []
