"""The seed README's IdentityService (TCP and HTTP) and the client that calls it.

Run it as its own process, finding the registry through ``VYKED_REGISTRY``::

    VYKED_REGISTRY=127.0.0.1:4500 python examples/testing/identity.py
"""

from __future__ import annotations

import json
import logging
from typing import Any

from vyked import (
    Host,
    HTTPService,
    Request,
    Response,
    ServiceUnavailable,
    TCPService,
    TCPServiceClient,
    api,
    get,
    post,
    publish,
    request,
    subscribe,
)

logger = logging.getLogger(__name__)


class IdentityTCPService(TCPService):
    def __init__(self, ip: str, port: int) -> None:
        super().__init__("IdentityService", 1, ip, port)
        self.passwords: dict[str, str] = {}

    @api
    async def create(self, user_name: str | None, password: str) -> dict[str, str]:
        if user_name is None:
            raise ValueError("username cannot be none")
        self.passwords[user_name] = password
        return {"user_name": user_name}

    @api
    async def change_password(self, user_name: str, password: str) -> bool:
        self.passwords[user_name] = password
        self.password_changed(user_name)
        return True

    @publish
    def password_changed(self, user_name: str) -> dict[str, Any]:
        return locals()


class IdentityClient(TCPServiceClient):
    def __init__(self) -> None:
        super().__init__("IdentityService", 1)

    @request
    def create(self, user_name: str | None, password: str) -> dict[str, Any]:
        return locals()

    @request
    def change_password(self, user_name: str, password: str) -> dict[str, Any]:
        return locals()

    @subscribe
    async def password_changed(self, user_name: str) -> None:
        logger.info("password changed: %s", user_name)


class IdentityHTTPService(HTTPService):
    """The HTTP face of IdentityService: it creates users through the TCP service."""

    def __init__(self, ip: str, port: int, identity: IdentityClient | None = None) -> None:
        super().__init__("IdentityService", 1, ip, port)
        self.identity = identity or IdentityClient()
        self.clients = [self.identity]

    @get(path="/users/{username}")
    async def user(self, request: Request) -> Response:
        return Response(status=200, text=f"Hello {request.match_info['username']}")

    @post(path="/users/{username}")
    async def create(self, request: Request) -> Response:
        data = await request.json()
        try:
            user = await self.identity.create(request.match_info["username"], data["password"])
        except ServiceUnavailable:
            return Response(status=503, text="IdentityService is unavailable")
        return Response(status=201, text=json.dumps(user), content_type="application/json")


def main() -> None:
    Host.name = "Identity"  # the registry comes from VYKED_REGISTRY (default 127.0.0.1:4500)
    Host.attach_service(IdentityTCPService("127.0.0.1", 0))
    Host.attach_service(IdentityHTTPService("127.0.0.1", 0))
    Host.run()


if __name__ == "__main__":
    main()
