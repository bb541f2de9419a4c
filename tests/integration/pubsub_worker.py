"""A subscribing service for the publish-subscribe fault tests, run as its own process.

``python pubsub_worker.py --registry HOST:PORT [--redis URL] --tag NAME``

Its ``@xsubscribe`` handler of ``Jobs.slow_job`` prints ``handling N`` and, on the first
delivery of an event (the marker file does not exist yet), sleeps long enough to be killed;
on a redelivery it prints ``handled N`` at once. It prints ``worker NAME ready`` once its
subscription is in place.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from integration_support import publish_file

from vyked import ServiceHost, TCPService, TCPServiceClient, xsubscribe
from vyked.core.host import serve_until_signalled
from vyked.tcp.pubsub import PubSub, PubSubSettings

SETTINGS = PubSubSettings(
    heartbeat_interval=0.2, heartbeat_ttl=1.0, retry_delay=0.05, reconnect_delay_max=0.2, start_timeout=60.0
)
"""``start_timeout``: ``host.start()`` returns once the subscription is in place, however
loaded the machine, so that ``ready`` means ready."""


def claim_first_delivery(marker: Path, tag: str) -> bool:
    """True for the first delivery of the event in any worker: the marker did not exist, and
    now holds ``tag`` (complete from the moment it exists, for the test to read)."""
    return publish_file(marker, tag)


class JobsClient(TCPServiceClient):
    def __init__(self, tag: str) -> None:
        super().__init__("Jobs", 1)
        self.tag = tag

    @xsubscribe
    async def slow_job(self, n: int, marker: str) -> None:
        print(f"handling {n} in {self.tag} pid {os.getpid()}", flush=True)
        if claim_first_delivery(Path(marker), self.tag):
            await asyncio.sleep(60)
        print(f"handled {n} in {self.tag}", flush=True)


class Worker(TCPService):
    def __init__(self, tag: str) -> None:
        super().__init__("Worker", 1, "127.0.0.1", 0)
        self.clients = [JobsClient(tag)]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--registry", required=True)
    parser.add_argument("--redis", default=None)
    parser.add_argument("--tag", required=True)
    args = parser.parse_args()
    host = ServiceHost(args.registry, pubsub=args.redis)
    PubSub.install(host, SETTINGS)
    host.attach(Worker(args.tag))

    async def start() -> None:
        await host.start()
        print(f"worker {args.tag} ready", flush=True)

    await serve_until_signalled(start, host.stop)


if __name__ == "__main__":
    asyncio.run(main())
