"""Redis going away and coming back: each test kills and restarts its own redis-server."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from pubsub_services import FAST, Hosts, Identity, IdentityClient, Inbox, Worker, WorkerService, stats

from vyked.core.testing import RedisServer
from vyked.tcp.pubsub import PubSub


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
async def hosts(vyked_registry: Any, redis: RedisServer) -> AsyncIterator[Hosts]:
    made = Hosts(vyked_registry.port, redis.url)
    yield made
    await made.stop_all()


async def published_and_flushed(host: Any) -> None:
    """Until Redis has answered for every event so far: a reply lost in a crash means the
    batch is sent again (at least once), which would blur what a test counts."""
    assert await PubSub.of(host).flush(5)


async def test_redis_restart_is_survived_without_user_code(hosts: Hosts, redis: RedisServer) -> None:
    publisher = Identity()
    publisher_host = await hosts(publisher)
    listener = IdentityClient()
    listener_host = await hosts(clients=(listener,))
    jobs = Inbox()
    for tag in "ab":
        await hosts(WorkerService(Worker(jobs, tag)))

    publisher.user_created("before", n=0)
    publisher.job(0)
    await published_and_flushed(publisher_host)
    await listener.inbox.wait_for("user_created", 1)
    await jobs.wait_for("job", 1)

    redis.kill()
    for n in range(1, 51):  # published while Redis is down: buffered
        publisher.user_created("during", n=n)
        publisher.job(n)
    await asyncio.sleep(0.5)
    assert stats(publisher_host).sent == 2
    redis.start()  # same port, empty: no channel, stream or group survived

    received = await listener.inbox.wait_for("user_created", 51, timeout=15)
    assert [n for _, n in received] == list(range(51))
    await jobs.wait_for("job", 51, timeout=15)
    publisher.user_created("after", n=51)
    publisher.job(51)
    await listener.inbox.wait_for("user_created", 52)
    await jobs.wait_for("job", 52)
    await asyncio.sleep(0.3)
    assert sorted(n for _, n in jobs.of("job")) == list(range(52))  # each exactly once
    assert stats(publisher_host).reconnects >= 1
    assert stats(listener_host).reconnects >= 1
    assert stats(publisher_host).dropped == 0


async def test_buffer_overflow_is_logged_and_counted(
    hosts: Hosts, redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    publisher = Identity()
    publisher_host = await hosts(publisher, settings=dataclasses.replace(FAST, max_buffer=5))
    listener = IdentityClient()
    await hosts(clients=(listener,))
    publisher.user_created("before", n=0)
    await published_and_flushed(publisher_host)
    await listener.inbox.wait_for("user_created", 1)

    redis.kill()
    publisher.user_created("during", n=1)
    await asyncio.sleep(0.3)  # the sender has failed and is buffering
    with caplog.at_level(logging.WARNING, logger="vyked.tcp.pubsub"):
        for n in range(2, 9):
            publisher.user_created("during", n=n)
    assert stats(publisher_host).dropped == 3
    assert "publish buffer full" in caplog.text

    redis.start()
    received = await listener.inbox.wait_for("user_created", 6, timeout=15)
    assert [n for _, n in received] == [0, 1, 2, 3, 4, 5]  # the oldest five were kept
    await asyncio.sleep(0.3)
    assert len(listener.inbox.of("user_created")) == 6


async def test_host_starts_while_redis_is_down_and_catches_up(hosts: Hosts, redis: RedisServer) -> None:
    redis.kill()
    publisher = Identity()
    publisher_host = await hosts(publisher, settings=dataclasses.replace(FAST, start_timeout=0.5))
    publisher.user_created("early", n=1)
    assert stats(publisher_host).sent == 0
    redis.start()
    assert await PubSub.of(publisher_host).flush(10)
    assert stats(publisher_host).sent == 1
    listener = IdentityClient()
    await hosts(clients=(listener,))
    publisher.user_created("later", n=2)
    assert [n for _, n in await listener.inbox.wait_for("user_created", 1)] == [2]
