"""Registry, services and clients as separate processes, as users run them."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from integration_support import EXAMPLES, ROOT, wait_output

from vyked import ConnectionLost, Host, RemoteError, TCPServiceClient, request
from vyked.core.testing import ProcessRunner


class IdentityClient(TCPServiceClient):
    def __init__(self) -> None:
        super().__init__("IdentityService", 1)

    @request
    def create(self, user_name: str | None, password: str) -> dict[str, Any]:
        return locals()


def test_demo_runs_and_exits_zero() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "demo.py")], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "raised RemoteError: type=ValueError" in result.stdout
    assert "DeprecationWarning: IdentityService.has_user is deprecated; use exists instead" in result.stdout
    assert "raised ServiceUnavailable" in result.stdout
    assert "GET /users/ann -> 200 'Hello ann from pid" in result.stdout
    assert "received password_changed for 'ann'" in result.stdout
    served_by = {line.split("'served_by': ")[1] for line in result.stdout.splitlines() if "served_by" in line}
    assert len(served_by) == 2  # both instances answered


async def test_client_process_calls_service_process_through_registry_process(
    registry_process: int, start_process: Callable[..., ProcessRunner]
) -> None:
    service = start_process(str(EXAMPLES / "identity_service.py"), "--registry", f"127.0.0.1:{registry_process}")
    await wait_output(service, "http IdentityService")
    Host.registry_host = f"127.0.0.1:{registry_process}"
    client = IdentityClient()
    assert (await client.create("ann", "pw"))["user_name"] == "ann"
    with pytest.raises(RemoteError, match="username cannot be none"):
        await client.create(None, "pw")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_host_run_stops_cleanly_on_signal(
    registry_process: int, start_process: Callable[..., ProcessRunner], signum: int
) -> None:
    service = start_process(str(EXAMPLES / "identity_service.py"), "--registry", f"127.0.0.1:{registry_process}")
    await wait_output(service, "http IdentityService")
    service.send_signal(signum)
    assert service.process is not None
    assert await asyncio.to_thread(service.process.wait, 10) == 0
    assert "Traceback" not in service.output()


async def test_killed_instance_leaves_routing_and_traffic_moves_on(
    registry_process: int, start_process: Callable[..., ProcessRunner]
) -> None:
    registry = f"127.0.0.1:{registry_process}"
    victim = start_process(str(EXAMPLES / "identity_service.py"), "--registry", registry)
    survivor = start_process(str(EXAMPLES / "identity_service.py"), "--registry", registry)
    await wait_output(victim, "http IdentityService")
    await wait_output(survivor, "http IdentityService")
    Host.registry_host = registry
    client = IdentityClient()
    served = {(await client.create(f"u{i}", "pw"))["served_by"] for i in range(4)}
    assert len(served) == 2
    assert victim.process is not None
    victim_pid = f"pid {victim.process.pid}"

    failures = 0
    killed_at = time.monotonic()
    victim.kill()
    last_victim_answer = killed_at
    for i in range(100):
        try:
            result = await client.create(f"after{i}", "pw")
        except ConnectionLost:
            failures += 1
            continue
        if result["served_by"] == victim_pid:
            last_victim_answer = time.monotonic()
        await asyncio.sleep(0.005)
    print(f"requests failed after SIGKILL: {failures}; reroute took {last_victim_answer - killed_at:.3f} s")
    assert last_victim_answer == killed_at  # the dead instance answered nothing
    assert failures <= 2
