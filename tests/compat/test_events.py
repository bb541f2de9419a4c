"""vyked 2.x publish-subscribe code against these packages, over real processes and both
transports: ``@xsubscribe`` with 2.x strategy names, and a subscriber whose handler raises a
``BaseException`` subclass."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from compat_support import script, served_ports, wait_for_line

from vyked import ServiceHost, TCPServiceClient, request
from vyked.core.testing import ProcessRunner

pytestmark = pytest.mark.slow


class UserClient(TCPServiceClient):
    def __init__(self) -> None:
        super().__init__("UserService", 1)

    @request
    def change_password(self, user_name):  # type: ignore[no-untyped-def]
        return locals()

    @request
    def log_out(self, user_name):  # type: ignore[no-untyped-def]
        return locals()


async def handled(
    procs: dict[str, ProcessRunner], event: str, users: list[str], timeout: float = 20.0
) -> dict[str, str]:
    """``{user: tag of the process that handled it}`` once every user's event was handled."""
    deadline = time.monotonic() + timeout
    while True:
        seen = {
            line.split()[-1]: tag
            for tag, proc in procs.items()
            for line in proc.output().splitlines()
            if line.startswith(f"{tag} got {event} ")
        }
        if all(user in seen for user in users):
            return seen
        if time.monotonic() > deadline:
            outputs = "\n".join(f"--- {tag}\n{proc.output()}" for tag, proc in procs.items())
            raise TimeoutError(f"{event} handled for {sorted(seen)} of {users} only:\n{outputs}")
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("strategy", ["LEADER", "designation", "Random", "default"])
async def test_xsubscribe_takes_the_2x_strategy_names(
    registry: int, start_process: Callable[..., ProcessRunner], pubsub: list[str], strategy: str
) -> None:
    users = start_process(script("user_service.py"), str(registry), *pubsub)
    served_ports(users, 2)
    accounts = {}
    for tag in ("first", "second"):  # one after the other: "first" is the older, the leader
        accounts[tag] = start_process(script("account_service.py"), str(registry), tag, strategy, *pubsub)
        wait_for_line(accounts[tag], "host started")

    host = ServiceHost(f"127.0.0.1:{registry}")
    client = UserClient()
    host.bind_client(client)
    await host.start()
    try:
        names = [f"u{n}" for n in range(6)]
        for name in names:
            assert await client.change_password(name) == "changed"
        by = await handled(accounts, "password_changed", names)
    finally:
        await host.stop()
    if strategy == "LEADER":
        assert set(by.values()) == {"first"}, by
    for proc in accounts.values():
        assert "not yet acknowledged" not in proc.output()


async def test_a_subscriber_raising_a_base_exception_keeps_receiving(
    registry: int, start_process: Callable[..., ProcessRunner], pubsub: list[str]
) -> None:
    users = start_process(script("user_service.py"), str(registry), *pubsub)
    served_ports(users, 2)
    account = start_process(script("account_service.py"), str(registry), "only", "default", *pubsub)
    wait_for_line(account, "host started")

    host = ServiceHost(f"127.0.0.1:{registry}")
    client = UserClient()
    host.bind_client(client)
    await host.start()
    try:
        await client.log_out("boom")
        wait_for_line(account, "UserException: cannot log boom out")
        await client.log_out("ann")
        await handled({"only": account}, "logged_out", ["ann"])
    finally:
        await host.stop()
    assert account.process is not None and account.process.poll() is None
