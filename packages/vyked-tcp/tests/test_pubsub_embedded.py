"""The embedded transport's own behaviour: links that follow the registry and heal, held
exclusive events, and no Redis anywhere."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pubsub_services import Hosts, Identity, IdentityClient, Inbox, Worker, WorkerService, stats

from vyked import ServiceHost
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
