"""Delivery semantics, the same over both transports: real registry, real sockets, real Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pubsub_services import FAST, Hosts, Identity, IdentityClient, Inbox, PlainClient, Worker, WorkerService, stats

from vyked import TCPServiceClient, xsubscribe
from vyked.core.exceptions import PublishError
from vyked.core.testing import RedisServer


@pytest.fixture(params=["embedded", "redis"])
async def hosts(request: pytest.FixtureRequest, vyked_registry: Any) -> AsyncIterator[Hosts]:
    url = None
    if request.param == "redis":
        redis_server: RedisServer = request.getfixturevalue("redis_server")
        import redis

        with redis.Redis.from_url(redis_server.url) as r:
            r.flushall()  # every test starts from an empty Redis
        url = redis_server.url
    made = Hosts(vyked_registry.port, url)
    yield made
    await made.stop_all()


async def test_broadcast_reaches_every_instance_in_every_handler_style(hosts: Hosts) -> None:
    publisher = Identity()
    await hosts(publisher)
    inboxes = [Inbox() for _ in range(3)]
    await hosts(clients=(IdentityClient(inboxes[0]),))
    await hosts(clients=(IdentityClient(inboxes[1]),))
    await hosts(clients=(PlainClient(inboxes[2]),))

    publisher.password_changed("ann")  # the seed's generator-style handler
    publisher.user_created("bob", n=7)  # async def, and plain def in the third host

    for inbox in inboxes[:2]:
        assert await inbox.wait_for("password_changed", 1) == ["ann"]
        assert await inbox.wait_for("user_created", 1) == [("bob", 7)]
    assert await inboxes[2].wait_for("user_created", 1) == [("bob", 7)]


async def test_broadcast_keeps_order_and_loses_nothing_from_one_publisher(hosts: Hosts) -> None:
    publisher = Identity()
    await hosts(publisher)
    inbox = Inbox()
    await hosts(clients=(PlainClient(inbox),))
    for n in range(500):
        publisher.user_created("u", n=n)
    received = await inbox.wait_for("user_created", 500)
    assert [n for _, n in received] == list(range(500))


async def test_a_raising_handler_is_logged_and_delivery_goes_on(hosts: Hosts, caplog: pytest.LogCaptureFixture) -> None:
    publisher = Identity()
    await hosts(publisher)
    client = IdentityClient()
    client.fail_next = 2
    subscriber = await hosts(clients=(client,))
    with caplog.at_level(logging.ERROR, logger="vyked.tcp.pubsub"):
        for n in range(5):
            publisher.user_created("u", n=n)
        received = await client.inbox.wait_for("user_created", 3)
    assert [n for _, n in received] == [2, 3, 4]
    assert stats(subscriber).handler_errors == 2
    assert "handler failed on u" in caplog.text


async def test_unserialisable_payload_raises_at_the_call_site(hosts: Hosts) -> None:
    publisher = Identity()
    host = await hosts(publisher)
    with pytest.raises(PublishError, match=r"IdentityService\.user_created.*'user_name'"):
        publisher.user_created(object())  # type: ignore[arg-type]
    assert stats(host).published == 0


async def test_xsubscribe_delivers_each_event_to_exactly_one_instance(hosts: Hosts) -> None:
    publisher = Identity()
    await hosts(publisher)
    inbox = Inbox()
    for tag in "abc":
        await hosts(WorkerService(Worker(inbox, tag)))
    for n in range(60):
        publisher.job(n)
    jobs = await inbox.wait_for("job", 60)
    await asyncio.sleep(0.3)  # a duplicate would arrive now
    assert sorted(n for _, n in inbox.of("job")) == list(range(60))
    per_instance = Counter(tag for tag, _ in jobs)
    assert len(per_instance) >= 2, per_instance  # RANDOM spreads the work


async def test_each_subscribing_service_gets_its_own_copy(hosts: Hosts) -> None:
    publisher = Identity()
    await hosts(publisher)
    billing, audit = Inbox(), Inbox()
    for tag in "ab":
        await hosts(WorkerService(Worker(billing, tag), name="Billing"))
        await hosts(WorkerService(Worker(audit, tag), name="Audit"))
    for n in range(20):
        publisher.job(n)
    assert sorted(n for _, n in await billing.wait_for("job", 20)) == list(range(20))
    assert sorted(n for _, n in await audit.wait_for("job", 20)) == list(range(20))


async def test_leader_strategy_goes_to_the_oldest_live_instance(hosts: Hosts) -> None:
    publisher = Identity()
    await hosts(publisher)
    inbox = Inbox()
    oldest = await hosts(WorkerService(Worker(inbox, "oldest")))
    await asyncio.sleep(0.05)
    await hosts(WorkerService(Worker(inbox, "younger")))
    await asyncio.sleep(0.3)  # Redis: leadership settles within a heartbeat
    for n in range(10):
        publisher.leader_job(n)
    assert {tag for tag, _ in await inbox.wait_for("leader_job", 10)} == {"oldest"}

    await oldest.stop()
    for n in range(10, 15):
        publisher.leader_job(n)
    received = await inbox.wait_for("leader_job", 15)
    assert {tag for tag, n in received if n >= 10} == {"younger"}


async def test_failed_exclusive_handler_is_redelivered_to_another_instance(hosts: Hosts) -> None:
    # Redis: instances look for failed events to take over once per heartbeat_interval (0.1 s);
    # others may take one after retry_delay, the instance that failed it after 3 * retry_delay.
    # With FAST's 0.05 s that head start is one look, which a busy machine loses: give it 2 s.
    settings = dataclasses.replace(FAST, retry_delay=1.0)
    publisher = Identity()
    await hosts(publisher, settings=settings)
    inbox = Inbox()
    flaky, steady = Worker(inbox, "flaky"), Worker(inbox, "steady")
    flaky.fail_jobs = set(range(20))  # fails every job once
    flaky_host = await hosts(WorkerService(flaky), settings=settings)
    steady_host = await hosts(WorkerService(steady), settings=settings)
    for n in range(20):
        publisher.job(n)
        # One at a time, each once an instance has it: Redis hands a new event to an instance
        # waiting for one, and instances take turns waiting only if events come one by one.
        async with asyncio.timeout(10):
            while stats(flaky_host).received + stats(steady_host).received <= n:
                await asyncio.sleep(0.005)
    jobs = await inbox.wait_for("job", 20)
    await asyncio.sleep(3 * settings.retry_delay)  # a duplicate would have arrived by now
    assert sorted(n for _, n in inbox.of("job")) == list(range(20))
    failed = set(range(20)) - flaky.fail_jobs
    assert failed  # RANDOM sent some jobs to the flaky instance first
    assert all(tag == "steady" for tag, n in jobs if n in failed)  # retried elsewhere


async def test_exclusive_event_in_a_dead_instance_is_redelivered(hosts: Hosts) -> None:
    publisher = Identity()
    await hosts(publisher)
    inbox = Inbox()
    slow, fast = Worker(inbox, "slow"), Worker(inbox, "fast")
    slow.delay = 30.0  # still handling when its host goes
    slow_host = await hosts(WorkerService(slow))
    # only the slow instance exists when the event is published, and it has it
    publisher.job(1)
    async with asyncio.timeout(10):
        while stats(slow_host).received == 0:
            await asyncio.sleep(0.01)
    await hosts(WorkerService(fast))
    await slow_host.stop()  # handler cancelled before it returned: the event is not acknowledged
    assert await inbox.wait_for("job", 1) == [("fast", 1)]


async def test_an_event_that_always_fails_is_given_up_after_max_attempts(hosts: Hosts) -> None:
    publisher = Identity()
    await hosts(publisher)
    inbox = Inbox()
    worker = Worker(inbox, "a")
    worker_host = await hosts(WorkerService(worker))

    class AlwaysFail(set[int]):
        def __contains__(self, item: object) -> bool:
            return item == 99

    worker.fail_jobs = AlwaysFail()
    publisher_host = hosts.hosts[0]
    publisher.job(99)
    publisher.job(100)
    await inbox.wait_for("job", 1)
    async with asyncio.timeout(10):
        while stats(publisher_host).dead_lettered + stats(worker_host).dead_lettered == 0:
            await asyncio.sleep(0.05)
    assert stats(worker_host).handler_errors == 5  # max_attempts
    assert inbox.of("job") == [("a", 100)]


async def test_seed_style_host_facade_with_pubsub_host_and_port(vyked_registry: Any, redis_server: RedisServer) -> None:
    """The seed's API: Host.pubsub_host / pubsub_port, a client in service.clients, a
    generator-style @subscribe handler."""
    from vyked import Host, ServiceHost

    publisher = Identity()
    publisher_host = ServiceHost(f"127.0.0.1:{vyked_registry.port}", pubsub=redis_server.url)
    publisher_host.attach(publisher)
    await publisher_host.start()
    try:
        listener = IdentityClient()
        subscriber = WorkerService(Worker(Inbox()), name="Audit")
        subscriber.clients = [*subscriber.clients, listener]
        Host.registry_host = "127.0.0.1"
        Host.registry_port = vyked_registry.port
        Host.pubsub_host = "127.0.0.1"
        Host.pubsub_port = redis_server.port
        Host.attach_service(subscriber)
        host = await Host.start()
        assert host.pubsub == f"redis://127.0.0.1:{redis_server.port}"
        publisher.password_changed("ann")
        assert await listener.inbox.wait_for("password_changed", 1) == ["ann"]
    finally:
        await publisher_host.stop()


class SlowWorker(TCPServiceClient):
    """An exclusive ``job`` handler that takes half a second."""

    def __init__(self, inbox: Inbox) -> None:
        super().__init__("IdentityService", 1)
        self.inbox = inbox

    @xsubscribe
    async def job(self, n: int) -> None:
        self.inbox.add("started", n)
        await asyncio.sleep(0.5)
        self.inbox.add("job", n)


async def test_a_stopping_host_finishes_and_acknowledges_the_events_in_hand(hosts: Hosts) -> None:
    publisher = Identity()
    await hosts(publisher)
    first, second = Inbox(), Inbox()
    stopping = await hosts(clients=(SlowWorker(first),))
    publisher.job(n=1)
    publisher.job(n=2)
    await first.wait_for("started", 2)
    await stopping.stop()  # drains: the handlers finish and their events are acknowledged
    assert sorted(first.of("job")) == [1, 2]
    await hosts(clients=(SlowWorker(second),))
    await asyncio.sleep(1.5)  # well past FAST's redelivery timers
    assert second.of("started") == []  # nothing was left unacknowledged to redeliver
