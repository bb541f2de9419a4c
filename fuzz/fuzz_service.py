"""The TCP service that ``fuzz_wire.py`` attacks over sockets.

python fuzz/fuzz_service.py --registry HOST:PORT [--style async|sync] [--max-in-flight N]

``--style async`` serves ``async def`` handlers (bounded per connection by ``max_in_flight``),
``--style sync`` plain ``def`` ones (answered inline). It logs
``tcp FuzzService v1 serving on 127.0.0.1:PORT`` once registered.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from vyked import Host, TCPService, api

BLOB_LIMIT = 1 << 20


class AsyncFuzzService(TCPService):
    def __init__(self, max_in_flight: int) -> None:
        super().__init__("FuzzService", 1, "127.0.0.1", 0, max_in_flight=max_in_flight)

    @api
    async def echo(self, value: Any = None) -> Any:
        return value

    @api
    async def blob(self, size: int = 4096) -> str:
        """An answer much larger than its request: what a peer that never reads piles up."""
        return "x" * max(0, min(int(size), BLOB_LIMIT))

    @api
    async def slow(self, seconds: float = 1.0) -> float:
        await asyncio.sleep(max(0.0, min(float(seconds), 30.0)))
        return seconds


class SyncFuzzService(TCPService):
    def __init__(self, max_in_flight: int) -> None:
        super().__init__("FuzzService", 1, "127.0.0.1", 0, max_in_flight=max_in_flight)

    @api
    def echo(self, value: Any = None) -> Any:
        return value

    @api
    def blob(self, size: int = 4096) -> str:
        return "x" * max(0, min(int(size), BLOB_LIMIT))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--registry", required=True)
    parser.add_argument("--style", choices=["async", "sync"], default="async")
    parser.add_argument("--max-in-flight", type=int, default=1000)
    args = parser.parse_args()
    Host.registry_host = args.registry
    service_class = AsyncFuzzService if args.style == "async" else SyncFuzzService
    Host.attach_service(service_class(args.max_in_flight))
    Host.run()
