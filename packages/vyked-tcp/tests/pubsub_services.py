"""Publishers and subscribers the publish-subscribe tests share."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from vyked import ServiceHost, TCPService, TCPServiceClient, publish, subscribe, xsubscribe
from vyked.core.service import Service, ServiceClient
from vyked.core.threads import call_on_loop
from vyked.tcp import SubscriptionStrategy
from vyked.tcp.pubsub import PubSub, PubSubSettings, PubSubStats


class Identity(TCPService):
    """Publishes the seed's ``password_changed`` and a few more events."""

    def __init__(self, version: object = 1) -> None:
        super().__init__("IdentityService", version, "127.0.0.1", 0)

    @publish
    def password_changed(self, user_name: str) -> dict[str, Any]:
        return locals()

    @publish
    def user_created(self, user_name: str, n: int = 0) -> dict[str, Any]:
        return locals()

    @publish
    def job(self, n: int) -> dict[str, Any]:
        return locals()

    @publish
    def leader_job(self, n: int) -> dict[str, Any]:
        return locals()

    @publish
    def bad(self, value: Any) -> Any:
        return value


class Inbox:
    """Events a subscriber received, which a test can wait for."""

    def __init__(self) -> None:
        self.items: list[tuple[str, Any]] = []
        self._changed = asyncio.Event()

    def add(self, name: str, value: Any) -> None:
        """Record an event; safe from a ``def`` handler's thread as from the loop."""
        call_on_loop(self._add, name, value)

    def _add(self, name: str, value: Any) -> None:
        self.items.append((name, value))
        self._changed.set()

    def of(self, name: str) -> list[Any]:
        return [v for n, v in self.items if n == name]

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return iter(self.items)

    async def wait_for(self, name: str, count: int, timeout: float = 10.0) -> list[Any]:
        async with asyncio.timeout(timeout):
            while len(self.of(name)) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.of(name)


class IdentityClient(TCPServiceClient):
    """Every handler style: plain, async, and the seed's generator style."""

    def __init__(self, inbox: Inbox | None = None) -> None:
        super().__init__("IdentityService", 1)
        self.inbox = inbox or Inbox()
        self.fail_next = 0

    @subscribe
    def password_changed(self, user_name: str) -> Any:
        self.inbox.add("password_changed", user_name)
        yield from asyncio.sleep(0.01)

    @subscribe
    async def user_created(self, user_name: str, n: int) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError(f"handler failed on {user_name}")
        self.inbox.add("user_created", (user_name, n))


class PlainClient(TCPServiceClient):
    def __init__(self, inbox: Inbox) -> None:
        super().__init__("IdentityService", 1)
        self.inbox = inbox

    @subscribe
    def user_created(self, user_name: str, n: int) -> None:
        self.inbox.add("user_created", (user_name, n))


class Worker(TCPServiceClient):
    """Exclusive handlers: ``job`` spread across instances, ``leader_job`` on the oldest."""

    def __init__(self, inbox: Inbox, tag: str = "") -> None:
        super().__init__("IdentityService", 1)
        self.inbox = inbox
        self.tag = tag
        self.fail_jobs: set[int] = set()
        self.delay = 0.0

    @xsubscribe
    async def job(self, n: int) -> None:
        if n in self.fail_jobs:
            self.fail_jobs.discard(n)
            raise RuntimeError(f"job {n} failed on {self.tag}")
        if self.delay:
            await asyncio.sleep(self.delay)
        self.inbox.add("job", (self.tag, n))

    @xsubscribe(strategy=SubscriptionStrategy.LEADER)
    def leader_job(self, n: int) -> None:
        self.inbox.add("leader_job", (self.tag, n))


class WorkerService(TCPService):
    """A subscribing service: its instances form one exclusive group."""

    def __init__(self, worker: Worker, name: str = "WorkerService") -> None:
        super().__init__(name, 1, "127.0.0.1", 0)
        self.clients = [worker]


FAST = PubSubSettings(
    heartbeat_interval=0.1, heartbeat_ttl=0.6, retry_delay=0.05, resubscribe_grace=5.0, reconnect_delay_max=0.2
)
"""Short timers, so that failover happens within a test's patience."""


class Hosts:
    """Makes started hosts on one registry and one transport; stops them all at the end."""

    def __init__(self, registry_port: int, pubsub: str | None) -> None:
        self.registry_port = registry_port
        self.pubsub = pubsub
        self.hosts: list[ServiceHost] = []

    async def __call__(
        self, *services: Service, clients: tuple[ServiceClient, ...] = (), settings: PubSubSettings = FAST
    ) -> ServiceHost:
        host = ServiceHost(f"127.0.0.1:{self.registry_port}", pubsub=self.pubsub)
        PubSub.install(host, settings)
        for service in services:
            host.attach(service)
        for client in clients:
            host.bind_client(client)
        self.hosts.append(host)
        await host.start()
        return host

    async def stop_all(self) -> None:
        for host in reversed(self.hosts):
            await host.stop()


def stats(host: ServiceHost) -> PubSubStats:
    return PubSub.of(host).stats
