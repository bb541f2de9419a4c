"""A service that depends on IdentityService, for dependency and status tests.

python orders_service.py --registry HOST:PORT[,HOST:PORT]
"""

from __future__ import annotations

import argparse
from typing import Any

from vyked import Host, TCPService, TCPServiceClient, api, request


class IdentityClient(TCPServiceClient):
    def __init__(self) -> None:
        super().__init__("IdentityService", 1)

    @request
    def exists(self, user_name: str) -> dict[str, Any]:
        return locals()


class OrdersService(TCPService):
    def __init__(self) -> None:
        super().__init__("OrdersService", "1.2", "127.0.0.1", 0)
        self.identity = IdentityClient()
        self.clients = [self.identity]

    @api
    async def place(self, user_name: str) -> dict[str, Any]:
        return {"user_known": await self.identity.exists(user_name)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--registry", required=True)
    Host.registry_host = parser.parse_args().registry
    Host.attach_service(OrdersService())
    Host.run()
