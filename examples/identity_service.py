"""The seed README's IdentityService, run with ``Host.run()``.

python examples/identity_service.py --registry 127.0.0.1:4500 --port 4502
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from vyked import Host, HTTPService, Request, Response, TCPService, api, apideprecated, get, publish


class IdentityTCPService(TCPService):
    def __init__(self, ip: str, port: int) -> None:
        super().__init__("IdentityService", 1, ip, port)
        self.users: dict[str, str] = {}

    @api
    def create(self, user_name: str | None, password: str) -> Any:
        yield from asyncio.sleep(0.05)  # a long running task, in the seed's generator style
        if user_name is None:
            raise ValueError("username cannot be none")
        self.users[user_name] = password
        return {"user_name": user_name, "served_by": f"pid {os.getpid()}"}

    @api
    async def change_password(self, user_name: str, password: str) -> bool:
        self.users[user_name] = password
        self.password_changed(user_name)  # every subscribing service hears of it
        return True

    @publish
    def password_changed(self, user_name: str) -> dict[str, Any]:
        return locals()

    @api
    async def exists(self, user_name: str) -> bool:
        return user_name in self.users

    @apideprecated(replacement_api="exists")
    def has_user(self, user_name: str) -> bool:
        return user_name in self.users


class IdentityHTTPService(HTTPService):
    def __init__(self, ip: str, port: int) -> None:
        super().__init__("IdentityService", 1, ip, port)

    @get(path="/users/{username}")
    async def user(self, request: Request) -> Response:
        username = request.match_info["username"]
        return Response(status=200, text=f"Hello {username} from pid {os.getpid()}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--registry", default="127.0.0.1:4500")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--http-port", type=int, default=0)
    args = parser.parse_args()
    Host.registry_host = args.registry
    Host.name = "Identity"
    Host.attach_service(IdentityHTTPService("127.0.0.1", args.http_port))
    Host.attach_service(IdentityTCPService("127.0.0.1", args.port))
    Host.run()


if __name__ == "__main__":
    main()
