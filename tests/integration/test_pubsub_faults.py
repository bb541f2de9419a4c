"""Publish-subscribe across processes: an instance handling an exclusive event is SIGKILLed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from integration_support import read_published_file, wait_output

from vyked import ServiceHost, TCPService, publish
from vyked.core.testing import ProcessRunner, RedisServer
from vyked.tcp.pubsub import PubSub

WORKER = str(Path(__file__).parent / "pubsub_worker.py")

pytestmark = pytest.mark.slow


class Jobs(TCPService):
    def __init__(self) -> None:
        super().__init__("Jobs", 1, "127.0.0.1", 0)

    @publish
    def slow_job(self, n: int, marker: str) -> dict[str, Any]:
        return locals()


@pytest.fixture(params=["embedded", "redis"])
def pubsub_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    if request.param == "embedded":
        yield None
        return
    with RedisServer() as server:
        yield server.url


async def test_sigkilled_instance_event_is_handled_by_another(
    registry_process: int,
    start_process: Callable[..., ProcessRunner],
    pubsub_url: str | None,
    tmp_path: Path,
) -> None:
    registry = f"127.0.0.1:{registry_process}"
    publisher = Jobs()
    host = ServiceHost(registry, pubsub=pubsub_url)
    host.attach(publisher)
    await host.start()
    try:
        extra = ["--redis", pubsub_url] if pubsub_url else []
        workers = {tag: start_process(WORKER, "--registry", registry, "--tag", tag, *extra) for tag in ("one", "two")}
        for tag, proc in workers.items():
            await wait_output(proc, f"worker {tag} ready")

        marker = tmp_path / "marker"
        publisher.slow_job(1, str(marker))
        if pubsub_url:
            assert await PubSub.of(host).flush(15)  # in Redis; embedded events are in flight until acked
        victim_tag = await read_published_file(marker)  # the tag of the worker that took the event
        victim = workers.pop(victim_tag)
        (survivor,) = workers.values()
        await wait_output(victim, "handling 1")
        victim.kill()  # SIGKILL, mid-handler: the event was never acknowledged

        await wait_output(survivor, "handled 1", timeout=20)
        assert "handled 1" not in victim.output()
        assert PubSub.of(host).stats.dropped == 0
    finally:
        await host.stop()
