"""A vyked cluster in a few processes, on loopback, with no Redis: ``nox -s demo``.

Starts a registry (``python -m vyked.registry``), two instances of IdentityService (each
``Host.run()`` in its own process, TCP and HTTP side by side) and an AuditService that
subscribes to IdentityService's events, then calls them from this plain script through the
registry: balanced requests, a remote error, a deprecated endpoint, an event published by
one service and received by the other, an HTTP call, an unknown service.
Stops everything and exits 0 if every step behaved as expected.
"""

from __future__ import annotations

import asyncio
import sys
import warnings
from pathlib import Path
from typing import Any

from vyked import Host, HTTPServiceClient, RemoteError, ServiceUnavailable, TCPServiceClient, get, request
from vyked.core.testing import ProcessRunner, free_port, wait_for_port

HERE = Path(__file__).parent


class IdentityClient(TCPServiceClient):
    def __init__(self) -> None:
        super().__init__("IdentityService", 1)

    @request
    def create(self, user_name: str | None, password: str) -> dict[str, Any]:
        return locals()

    @request
    def has_user(self, user_name: str) -> dict[str, Any]:
        return locals()

    @request
    def change_password(self, user_name: str, password: str) -> dict[str, Any]:
        return locals()


class IdentityHTTPClient(HTTPServiceClient):
    def __init__(self) -> None:
        super().__init__("IdentityService", 1)

    @get()
    def user(self, username: str) -> dict[str, Any]:
        path = f"/users/{username}"
        return locals()


class BillingClient(TCPServiceClient):
    def __init__(self) -> None:
        super().__init__("BillingService", 1)

    @request
    def charge(self, amount: int) -> dict[str, Any]:
        return locals()


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


async def call_services(registry_port: int, audit: ProcessRunner) -> None:
    Host.registry_host = "127.0.0.1"
    Host.registry_port = registry_port
    identity = IdentityClient()

    step("balanced requests: round-robin over the two IdentityService instances")
    for name in ("ann", "bob", "cid", "dee"):
        result = await identity.create(name, "secret")
        print(f"create({name!r}) -> {result}")

    step("a remote exception comes back as RemoteError")
    try:
        await identity.create(None, "secret")
    except RemoteError as exc:
        print(f"create(None) raised RemoteError: type={exc.remote_type} message={exc.message!r}")

    step("a deprecated endpoint still answers and warns")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        print(f"has_user('bob') -> {await identity.has_user('bob')}  (answered by whichever instance the call reached)")
    for warning in caught:
        print(f"{warning.category.__name__}: {warning.message}")

    step("publish-subscribe: IdentityService publishes, AuditService receives (no Redis needed)")
    await identity.change_password("ann", "new-secret")
    await asyncio.to_thread(audit.wait_for_output, "received password_changed for 'ann'")
    print(next(line for line in audit.output().splitlines() if "received password_changed" in line))

    step("HTTP: the same service's HTTP side, found through the registry")
    http = IdentityHTTPClient()
    for name in ("ann", "bob"):
        response = await http.user(name)
        print(f"GET /users/{name} -> {response.status} {await response.text()!r}")

    step("a service nobody runs fails fast")
    try:
        await BillingClient().charge(10)
    except ServiceUnavailable as exc:
        print(f"charge() raised ServiceUnavailable: {exc}")

    await Host.stop()  # closes the registry and service connections this script opened


def main() -> int:
    registry_port = free_port()
    processes = [ProcessRunner("-m", "vyked.registry", "--port", str(registry_port))]
    try:
        step(f"starting the registry on 127.0.0.1:{registry_port}")
        processes[0].start()
        wait_for_port(registry_port)
        for _ in range(2):
            port = free_port()
            service = ProcessRunner(
                str(HERE / "identity_service.py"), "--registry", f"127.0.0.1:{registry_port}", "--port", str(port)
            )
            processes.append(service.start())
            service.wait_for_output("http IdentityService")  # started after the TCP one
            print(f"IdentityService instance up on 127.0.0.1:{port}")
        audit = ProcessRunner(str(HERE / "audit_service.py"), "--registry", f"127.0.0.1:{registry_port}")
        processes.append(audit.start())
        audit.wait_for_output("host started")  # registered, and subscribed to IdentityService
        print("AuditService up, subscribed to IdentityService's events")
        asyncio.run(call_services(registry_port, audit))
    finally:
        step("stopping the cluster")
        codes = []
        for proc in reversed(processes):
            codes.append(proc.stop())  # SIGTERM: each Host.run() and the registry stop cleanly
        print(f"exit codes: {codes}")
    return 0 if all(code == 0 for code in codes) else 1


if __name__ == "__main__":
    sys.exit(main())
