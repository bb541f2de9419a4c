"""A service process for the probe and log tests: ``ProbeService`` with an endpoint that blocks
the event loop (an ``async def`` calling ``time.sleep``) and one that takes its time; with
``--dependency NAME`` it also uses a client of service NAME, so it stays pending until NAME has
an instance. Metrics and logs are configured through the environment (``VYKED_METRICS_PORT``,
``VYKED_LOG_FORMAT``...), as in production.

python probe_service.py --registry HOST:PORT [--dependency NAME]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from vyked import Host, TCPService, TCPServiceClient, api, request


class ProbeService(TCPService):
    def __init__(self) -> None:
        super().__init__("ProbeService", 1, "127.0.0.1", 0)

    @api
    async def block(self, seconds: float) -> str:
        time.sleep(seconds)  # blocking the loop is what this endpoint is for
        return "unblocked"

    @api
    async def slow(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"


class ProbeClient(TCPServiceClient):
    def __init__(self, service: str = "ProbeService") -> None:
        super().__init__(service, 1)

    @request(timeout=10)
    def block(self, seconds: float) -> dict[str, Any]:
        return locals()

    @request(timeout=10)
    def slow(self, seconds: float) -> dict[str, Any]:
        return locals()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--registry", required=True)
    parser.add_argument("--dependency")
    args = parser.parse_args()
    service = ProbeService()
    if args.dependency:
        service.clients = [ProbeClient(args.dependency)]
    Host.registry_host = args.registry
    Host.attach_service(service)
    Host.run()
