"""The processes that test_hostile_input.py attacks.

python hostile_service.py registry [--handshake-timeout S]
python hostile_service.py service --registry HOST:PORT [--style async|sync] [--max-in-flight N]

``registry`` runs a :class:`Registry` on a free port with the given handshake timeout and logs
``listening on 127.0.0.1:PORT, ...`` as ``python -m vyked.registry`` does. ``service`` runs
HostileTarget, whose handlers are ``async def`` (bounded per connection by ``max_in_flight``)
or plain ``def`` (answered inline), and logs ``tcp HostileTarget v1 serving on 127.0.0.1:PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from vyked import Host, TCPService, api
from vyked.core.serving import configure_logging
from vyked.registry import Registry


class AsyncTarget(TCPService):
    def __init__(self, max_in_flight: int) -> None:
        super().__init__("HostileTarget", 1, "127.0.0.1", 0, max_in_flight=max_in_flight)

    @api
    async def echo(self, value: Any = None) -> Any:
        return value

    @api
    async def blob(self, size: int = 4096) -> str:
        """An answer far larger than its request."""
        return "x" * min(int(size), 1 << 20)

    @api
    async def slow(self, seconds: float = 1.0) -> int:
        await asyncio.sleep(float(seconds))
        return os.getpid()


class SyncTarget(TCPService):
    def __init__(self, max_in_flight: int) -> None:
        super().__init__("HostileTarget", 1, "127.0.0.1", 0, max_in_flight=max_in_flight)

    @api
    def echo(self, value: Any = None) -> Any:
        return value

    @api
    def blob(self, size: int = 4096) -> str:
        return "x" * min(int(size), 1 << 20)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["registry", "service"])
    parser.add_argument("--handshake-timeout", type=float, default=5.0)
    parser.add_argument("--registry")
    parser.add_argument("--style", choices=["async", "sync"], default="async")
    parser.add_argument("--max-in-flight", type=int, default=1000)
    args = parser.parse_args()
    if args.role == "registry":
        configure_logging()
        Registry("127.0.0.1", 0, handshake_timeout=args.handshake_timeout).start()
        return
    Host.registry_host = args.registry
    Host.attach_service((AsyncTarget if args.style == "async" else SyncTarget)(args.max_in_flight))
    Host.run()


if __name__ == "__main__":
    main()
