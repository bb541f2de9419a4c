"""AuditService: reacts to IdentityService's events, run with ``Host.run()``.

python examples/audit_service.py --registry 127.0.0.1:4500
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from vyked import Host, TCPService, TCPServiceClient, subscribe


class IdentityEvents(TCPServiceClient):
    def __init__(self) -> None:
        super().__init__("IdentityService", 1)

    @subscribe
    def password_changed(self, user_name: str) -> Any:
        print(f"AuditService (pid {os.getpid()}) received password_changed for {user_name!r}", flush=True)
        yield from asyncio.sleep(0)  # the seed's generator style works for handlers too


class AuditService(TCPService):
    def __init__(self) -> None:
        super().__init__("AuditService", 1, "127.0.0.1", 0)
        self.clients = [IdentityEvents()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--registry", default="127.0.0.1:4500")
    Host.registry_host = parser.parse_args().registry
    Host.attach_service(AuditService())
    Host.run()


if __name__ == "__main__":
    main()
