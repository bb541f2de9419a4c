"""A TCP service instance for the dashboard tests, run as its own process (so it can be killed).

python dashboard_service.py --registry HOST:PORT --name NAME [--version V] [--calls SERVICE:VERSION ...]
"""

from __future__ import annotations

import argparse

from vyked import Host, TCPService, TCPServiceClient, api


class NamedService(TCPService):
    def __init__(self, name: str, version: str, calls: list[str]) -> None:
        super().__init__(name, version, "127.0.0.1", 0)
        self.clients = [TCPServiceClient(*call.split(":", 1)) for call in calls]

    @api
    async def ping(self) -> str:
        return "pong"


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--registry", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--version", default="1")
    parser.add_argument("--calls", nargs="*", default=[])
    args = parser.parse_args()
    Host.registry_host = args.registry
    Host.attach_service(NamedService(args.name, args.version, args.calls))
    Host.run()
