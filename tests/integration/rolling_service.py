"""An instance of RollingService, for rolling-restart tests: TCP and HTTP endpoints that take
a little while, so that some requests are always in flight when the instance is told to stop.

python rolling_service.py --registry HOST:PORT [--delay SECONDS]
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from vyked import Host, HTTPService, Request, Response, TCPService, api, get


class RollingService(TCPService):
    def __init__(self, delay: float) -> None:
        super().__init__("RollingService", 1, "127.0.0.1", 0)
        self.delay = delay

    @api
    async def echo(self, n: int) -> dict[str, Any]:
        await asyncio.sleep(self.delay)
        return {"n": n, "pid": os.getpid()}


class RollingHTTPService(HTTPService):
    def __init__(self, delay: float) -> None:
        super().__init__("RollingHTTP", 1, "127.0.0.1", 0)
        self.delay = delay

    @get(path="/echo/{n}")
    async def echo(self, request: Request) -> Response:
        await asyncio.sleep(self.delay)
        return Response(text=f"{request.match_info['n']} {os.getpid()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--registry", required=True)
    parser.add_argument("--delay", type=float, default=0.02)
    args = parser.parse_args()
    Host.registry_host = args.registry
    Host.attach_service(RollingService(args.delay))
    Host.attach_service(RollingHTTPService(args.delay))
    Host.run()
