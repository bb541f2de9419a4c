"""The embedded transport's own behaviour: links that follow the registry and heal, held
exclusive events, and no Redis anywhere."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from pubsub_services import FAST, Hosts, Identity, IdentityClient, Inbox, Worker, WorkerService, stats

from vyked import ServiceHost
from vyked.core.testing import RawClient
from vyked.tcp.pubsub import PubSub


@pytest.fixture
async def hosts(vyked_registry: Any) -> AsyncIterator[Hosts]:
    made = Hosts(vyked_registry.port, None)
    yield made
    await made.stop_all()


def test_embedded_path_never_imports_redis() -> None:
    code = "import sys, vyked.tcp, vyked.tcp.pubsub.embedded_transport; sys.exit(1 if 'redis' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


async def test_subscriber_started_before_the_publisher_links_up_when_it_appears(hosts: Hosts) -> None:
    listener = IdentityClient()
    await hosts(clients=(listener,))
    publisher = Identity()
    publisher_host = await hosts(publisher)
    async with asyncio.timeout(5):  # the link opens when the registry announces the instance
        while not PubSub.of(publisher_host).transport.publisher._broadcast:  # type: ignore[attr-defined]
            await asyncio.sleep(0.01)
    publisher.password_changed("ann")
    assert await listener.inbox.wait_for("password_changed", 1) == ["ann"]


async def test_a_dropped_link_is_reopened_and_the_subscription_restored(hosts: Hosts) -> None:
    publisher = Identity()
    await hosts(publisher)
    listener = IdentityClient()
    listener_host = await hosts(clients=(listener,))
    assert publisher._server is not None
    for conn in list(publisher._server.connections):
        conn.abort()  # as a network failure would
    async with asyncio.timeout(5):
        while stats(listener_host).reconnects == 0 or not all(
            link.subscribed.is_set()
            for link in PubSub.of(listener_host).transport.subscriber.links.values()  # type: ignore[attr-defined]
        ):
            await asyncio.sleep(0.01)
    publisher.password_changed("bob")
    assert await listener.inbox.wait_for("password_changed", 1) == ["bob"]


async def test_exclusive_events_wait_for_an_instance_of_a_group_that_has_none(hosts: Hosts) -> None:
    publisher = Identity()
    publisher_host = await hosts(publisher)
    inbox = Inbox()
    first = await hosts(WorkerService(Worker(inbox, "first")))
    await first.stop()  # the group is known, and has no live instance
    for n in range(3):
        publisher.job(n)
    await asyncio.sleep(0.1)
    assert inbox.of("job") == []
    assert PubSub.of(publisher_host).transport.publisher.pending == 3  # type: ignore[attr-defined]
    await hosts(WorkerService(Worker(inbox, "second")))
    assert sorted(await inbox.wait_for("job", 3)) == [("second", 0), ("second", 1), ("second", 2)]
    assert await PubSub.of(publisher_host).flush(5)


async def test_a_client_bound_after_start_subscribes_too(hosts: Hosts) -> None:
    publisher = Identity()
    await hosts(publisher)
    host = await hosts()
    late = IdentityClient()
    host.bind_client(late)
    async with asyncio.timeout(5):
        while not any(link.subscribed.is_set() for link in PubSub.of(host).transport.subscriber.links.values()):  # type: ignore[attr-defined]
            await asyncio.sleep(0.01)
    publisher.password_changed("late")
    assert await late.inbox.wait_for("password_changed", 1) == ["late"]


async def test_a_host_with_no_service_subscribes_a_client_bound_after_start(vyked_registry: Any) -> None:
    publisher_host = ServiceHost(f"127.0.0.1:{vyked_registry.port}")
    publisher = Identity()
    publisher_host.attach(publisher)
    host = ServiceHost(f"127.0.0.1:{vyked_registry.port}")  # no hub until a client needs one
    await publisher_host.start()
    await host.start()
    try:
        late = IdentityClient()
        host.bind_client(late)
        async with asyncio.timeout(5):
            while not any(link.subscribed.is_set() for link in PubSub.of(host).transport.subscriber.links.values()):  # type: ignore[attr-defined]
                await asyncio.sleep(0.01)
        publisher.password_changed("late")
        assert await late.inbox.wait_for("password_changed", 1) == ["late"]
    finally:
        await host.stop()
        await publisher_host.stop()


# -- exclusive groups are bounded ---------------------------------------------------------------


def subscribe_packet(*groups: str, event: str = "job") -> dict[str, Any]:
    return {
        "type": "subscribe",
        "service": "IdentityService",
        "subscriptions": [{"event": event, "group": g, "strategy": "random"} for g in groups],
    }


async def subscribed(port: int, *groups: str) -> RawClient:
    """A raw subscriber in ``groups``, as anyone who can reach the service could make."""
    raw = await RawClient.connect(port)
    raw.send(subscribe_packet(*groups))
    assert (await raw.receive())["type"] == "subscribed"
    return raw


def group_names(host: ServiceHost) -> set[str]:
    groups = PubSub.of(host).transport.publisher._groups  # type: ignore[attr-defined]
    return {name for by_name in groups.values() for name in by_name}


async def left(raw: RawClient, host: ServiceHost, group: str) -> None:
    """Close ``raw`` and wait until the publisher has seen it go."""
    await raw.close()
    publisher = PubSub.of(host).transport.publisher  # type: ignore[attr-defined]
    async with asyncio.timeout(5):
        while any(g.members for by_name in publisher._groups.values() for n, g in by_name.items() if n == group):
            await asyncio.sleep(0.01)


async def test_a_group_without_members_is_dropped_with_its_events_after_the_grace_period(
    hosts: Hosts, caplog: pytest.LogCaptureFixture
) -> None:
    publisher = Identity()
    publisher_host = await hosts(publisher, settings=replace(FAST, empty_group_ttl=0.3))
    ghost = await subscribed(publisher.host_port, "made-up")
    await left(ghost, publisher_host, "made-up")
    for n in range(3):
        publisher.job(n)
    assert PubSub.of(publisher_host).transport.publisher.pending == 3  # type: ignore[attr-defined]
    await asyncio.sleep(0.5)
    assert group_names(publisher_host) == set()
    assert PubSub.of(publisher_host).transport.publisher.pending == 0  # type: ignore[attr-defined]
    assert stats(publisher_host).dropped == 3
    assert "dropped exclusive group 'made-up' of IdentityService.job (no member for 0.3 s) with the 3 events" in (
        caplog.text
    )
    publisher.job(4)  # a group that is gone gets nothing, as one never seen
    assert PubSub.of(publisher_host).transport.publisher.pending == 0  # type: ignore[attr-defined]


async def test_a_group_whose_members_are_briefly_away_keeps_its_events(hosts: Hosts) -> None:
    publisher = Identity()
    publisher_host = await hosts(publisher, settings=replace(FAST, empty_group_ttl=0.6))
    member = await subscribed(publisher.host_port, "G")
    await left(member, publisher_host, "G")
    publisher.job(1)
    await asyncio.sleep(0.3)  # within the grace period
    back = await subscribed(publisher.host_port, "G")
    event = await back.receive()
    assert (event["type"], event["group"], event["payload"]) == ("event", "G", {"n": 1})
    await asyncio.sleep(0.5)  # past the first absence's grace period: rejoining cancelled it
    assert group_names(publisher_host) == {"G"}
    assert stats(publisher_host).dropped == 0
    await back.close()


async def test_the_groups_of_an_event_are_capped(hosts: Hosts, caplog: pytest.LogCaptureFixture) -> None:
    publisher = Identity()
    publisher_host = await hosts(publisher, settings=replace(FAST, max_groups=5))
    # made-up groups whose subscribers left: each new one takes the place of the oldest empty one
    for n in range(50):
        await left(await subscribed(publisher.host_port, f"made-up-{n}"), publisher_host, f"made-up-{n}")
        publisher.job(n)
    assert group_names(publisher_host) == {f"made-up-{n}" for n in range(45, 50)}
    assert PubSub.of(publisher_host).transport.publisher.pending <= 5 * 5  # type: ignore[attr-defined]

    # groups with live members are never pushed out: one more is ignored, and logged
    members = await subscribed(publisher.host_port, *(f"live-{n}" for n in range(5)))
    dropped = stats(publisher_host).dropped
    assert group_names(publisher_host) == {f"live-{n}" for n in range(5)}
    # every event the pushed-out groups held: made-up-n held jobs n to n+4 when it went
    assert dropped == 45 * 5 + (5 + 4 + 3 + 2 + 1)
    extra = await subscribed(publisher.host_port, "one-too-many")
    assert group_names(publisher_host) == {f"live-{n}" for n in range(5)}
    assert "ignored a subscription of group 'one-too-many' to IdentityService.job" in caplog.text
    publisher.job(99)
    for _ in range(5):  # the members still get their events
        assert (await members.receive())["payload"] == {"n": 99}
    await extra.close()
    await members.close()
