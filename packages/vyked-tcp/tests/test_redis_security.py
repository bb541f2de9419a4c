"""Redis with a password, an ACL user, and TLS: publish-subscribe and the Redis-backed registry
work with them from the URL alone (``redis://user:password@host/db``, ``rediss://...``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from pubsub_services import Hosts, Identity, IdentityClient, Inbox, Worker, WorkerService

from vyked import ServiceHost, TCPService, TCPServiceClient, api, request
from vyked.core.testing import RedisServer, redis_supports_tls
from vyked.registry import Registry
from vyked.tcp.pubsub import PubSub

trustme = pytest.importorskip("trustme", reason="the trustme package makes the test certificates")


def _tls_files(tmp: Path) -> tuple[str, str, str]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    paths = (tmp / "redis-cert.pem", tmp / "redis-key.pem", tmp / "ca.pem")
    cert.cert_chain_pems[0].write_to_path(str(paths[0]))
    cert.private_key_pem.write_to_path(str(paths[1]))
    ca.cert_pem.write_to_path(str(paths[2]))
    return str(paths[0]), str(paths[1]), str(paths[2])


@pytest.fixture(params=["password", "acl-user", "tls"])
def secured_redis(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisServer]:
    if request.param == "tls":
        if not redis_supports_tls():
            pytest.skip("the redis-server found was built without TLS: install Debian's redis-server package")
        server = RedisServer(password="s3cret", tls=_tls_files(tmp_path))
    elif request.param == "acl-user":
        server = RedisServer(user="vyked", password="s3cret")
    else:
        server = RedisServer(password="s3cret")
    with server:
        yield server


class Echo(TCPService):
    def __init__(self) -> None:
        super().__init__("Echo", 1)

    @api
    async def echo(self, text: str) -> str:
        return text


class EchoClient(TCPServiceClient):
    def __init__(self) -> None:
        super().__init__("Echo", 1)

    @request
    def echo(self, text: str) -> dict[str, str]:
        return locals()


async def test_pubsub_broadcast_and_exclusive_events_cross_a_secured_redis(
    secured_redis: RedisServer, vyked_registry: Registry
) -> None:
    hosts = Hosts(vyked_registry.port, secured_redis.url)
    try:
        publisher = Identity()
        await hosts(publisher)
        inbox, worker_inbox = Inbox(), Inbox()
        await hosts(clients=(IdentityClient(inbox),))
        await hosts(WorkerService(Worker(worker_inbox)))
        publisher.password_changed("ann")
        publisher.job(1)
        assert await inbox.wait_for("password_changed", 1) == ["ann"]
        assert await worker_inbox.wait_for("job", 1) == [("", 1)]
    finally:
        await hosts.stop_all()


async def test_a_wrong_password_is_not_a_silent_loss(secured_redis: RedisServer, vyked_registry: Registry) -> None:
    wrong = secured_redis.url.replace("s3cret", "wrong")
    hosts = Hosts(vyked_registry.port, wrong)
    try:
        publisher = Identity()
        await hosts(publisher)
        publisher.password_changed("ann")
        # nothing can be written: the event waits in the buffer (and is counted when dropped)
        assert not await PubSub.of(hosts.hosts[0]).flush(0.5)
    finally:
        await hosts.stop_all()


async def test_registries_share_state_through_a_secured_redis(secured_redis: RedisServer) -> None:
    async with (
        Registry("127.0.0.1", 0, redis_url=secured_redis.url) as first,
        Registry("127.0.0.1", 0, redis_url=secured_redis.url) as second,
    ):
        service_host = ServiceHost(f"127.0.0.1:{first.port}")
        service_host.attach(Echo())
        client = EchoClient()
        client_host = ServiceHost(f"127.0.0.1:{second.port}")
        client_host.bind_client(client)
        await service_host.start()
        await client_host.start()
        try:
            async with asyncio.timeout(10):  # registered through the first, known to the second once replicated
                while not client_host.directory.instances("Echo"):
                    await asyncio.sleep(0.01)
            assert await client.echo("over a secured Redis") == "over a secured Redis"
        finally:
            await client_host.stop()
            await service_host.stop()
