"""The dashboard's JSON API and event stream over real sockets (aiohttp's client), and the
``--dashboard-port`` and ``VYKED_*`` options of real registry processes."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from vyked.core.exceptions import ListenError
from vyked.core.testing import ProcessRunner, RawClient, free_port, wait_for_port
from vyked.registry import Registry
from vyked.registry.cli import fetch_status

aiohttp = pytest.importorskip("aiohttp", reason="the dashboard needs vyked-registry[dashboard] (aiohttp)")

HINT = "pip install 'vyked-registry[dashboard]'"


@pytest.fixture
async def registry() -> AsyncIterator[Registry]:
    async with Registry("127.0.0.1", 0, dashboard_port=0) as reg:
        yield reg


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


def url(registry: Registry, path: str) -> str:
    return f"http://127.0.0.1:{registry.dashboard_port}{path}"


def register(node: str, service: str, version: str = "1", deps: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    return {
        "type": "register",
        "instance": {"service": service, "version": version, "host": "127.0.0.1", "port": 5000, "node_id": node},
        "dependencies": [{"service": s, "version": v} for s, v in deps],
    }


async def registered(registry: Registry, packet: dict[str, Any]) -> RawClient:
    host = await RawClient.connect(registry.port)
    host.send(packet)
    assert (await host.receive())["type"] == "registered"
    return host


class EventStream:
    """Reads ``text/event-stream`` events from an open response."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self, timeout: float = 5.0) -> tuple[str, Any]:
        """The next event: its name and its data, decoded from JSON."""
        event, data = "message", []
        async with asyncio.timeout(timeout):
            while True:
                line = (await self.response.content.readline()).decode()
                if not line:
                    raise ConnectionError("the stream ended")
                line = line.rstrip("\n")
                if not line:
                    if data:
                        return event, json.loads("\n".join(data))
                    continue
                field, _, value = line.partition(": ")
                if field == "event":
                    event = value
                elif field == "data":
                    data.append(value)

    async def until(self, event: str, check: Any, timeout: float = 5.0) -> Any:
        """Events until one named ``event`` whose data passes ``check``."""
        deadline = time.monotonic() + timeout
        while True:
            name, data = await self.next(timeout=max(0.01, deadline - time.monotonic()))
            if name == event and check(data):
                return data


def instance_states(overview: dict[str, Any]) -> dict[str, str]:
    return {i["instance"]["node_id"]: i["state"] for s in overview["services"] for i in s["instances"]}


async def test_the_api_serves_what_the_registry_knows(registry: Registry, http: aiohttp.ClientSession) -> None:
    users = await registered(registry, register("u1", "Users", "1.3"))
    orders = await registered(registry, register("o1", "Orders", "2", deps=(("Users", "1"), ("Payments", "1"))))

    async with http.get(url(registry, "/api/")) as response:
        assert set(await response.json()) == {
            f"/api/{name}" for name in ("status", "overview", "services", "graph", "events")
        }
    async with http.get(url(registry, "/api/status")) as response:
        assert response.status == 200 and response.content_type == "application/json"
        status = await response.json()
    # the same document as `vyked-registry status --json` (times move on between the two asks)
    report = await fetch_status("127.0.0.1", registry.port)
    assert status["registry"] == report.registry == registry.id
    assert [(s["instance"]["node_id"], s["state"], s["waiting_for"]) for s in status["instances"]] == [
        (s.instance.node_id, s.state, s.waiting_for) for s in report.instances
    ]
    assert {s["instance"]["node_id"]: s["state"] for s in status["instances"]} == {"o1": "pending", "u1": "active"}

    async with http.get(url(registry, "/api/services")) as response:
        services = {s["service"]: s for s in await response.json()}
    assert set(services) == {"Orders", "Payments", "Users"}
    assert services["Payments"]["state"] == "missing" and services["Payments"]["dependents"] == ["Orders"]
    assert services["Users"]["versions"] == ["1.3"] and services["Users"]["kinds"] == ["tcp"]
    (order,) = services["Orders"]["instances"]
    assert order["waiting_for"] == ["Payments v1"] and order["last_heartbeat"] < 2
    assert order["dependencies"] == [{"service": "Users", "version": "1"}, {"service": "Payments", "version": "1"}]
    assert services["Orders"]["counts"] == {"active": 0, "pending": 1, "draining": 0, "down": 0}

    async with http.get(url(registry, "/api/services/Users")) as response:
        assert (await response.json())["instances"][0]["instance"]["node_id"] == "u1"
    async with http.get(url(registry, "/api/services/Nobody")) as response:
        assert response.status == 404 and (await response.json())["error"] == "not_found"

    async with http.get(url(registry, "/api/graph")) as response:
        graph = await response.json()
    assert {(n["service"], n["state"]) for n in graph["nodes"]} == {
        ("Orders", "pending"),
        ("Payments", "missing"),
        ("Users", "active"),
    }
    assert sorted((e["source"], e["target"], e["version"], e["satisfied"]) for e in graph["edges"]) == [
        ("Orders", "Payments", "1", False),
        ("Orders", "Users", "1", True),
    ]
    for client in (users, orders):
        await client.close()


async def test_the_stream_sends_the_state_at_once_then_every_change(
    registry: Registry, http: aiohttp.ClientSession
) -> None:
    async with http.get(url(registry, "/api/events")) as response:
        assert response.headers["Content-Type"] == "text/event-stream"
        events = EventStream(response)
        name, first = await events.next()
        assert name == "snapshot" and first["registry"] == registry.id and first["services"] == []
        assert first["address"] == f"127.0.0.1:{registry.port}"

        started = time.monotonic()
        host = await registered(registry, register("u1", "Users"))
        overview = await events.until("snapshot", lambda o: instance_states(o) == {"u1": "active"})
        pushed_in = time.monotonic() - started
        assert overview["graph"]["nodes"] == [
            {"service": "Users", "state": "active", "counts": {"active": 1, "pending": 0, "draining": 0, "down": 0}}
        ]

        host.send({"type": "deregister", "node_id": "u1"})
        await events.until("snapshot", lambda o: instance_states(o) == {"u1": "draining"})
        await host.close()
        await events.until("snapshot", lambda o: instance_states(o) == {"u1": "down"})

        # a burst of changes is a few snapshots, not one per change
        burst = [await registered(registry, register(f"b{n}", "Burst")) for n in range(30)]
        snapshots = 0
        while True:
            name, data = await events.next()
            snapshots += name == "snapshot"
            if name == "snapshot" and len(instance_states(data)) == 31:
                break

        # heartbeat ages come on their own, every couple of seconds
        beats = await events.until("heartbeats", lambda d: d["heartbeats"], timeout=5)
        assert set(beats["heartbeats"]) == {f"b{n}" for n in range(30)} and max(beats["heartbeats"].values()) < 2
        for client in burst:
            await client.close()
    print(f"\n[dashboard] a registration reached the event stream in {pushed_in * 1000:.1f} ms; "
          f"30 registrations in a row: {snapshots} snapshot(s)")  # fmt: skip
    assert pushed_in < 1.0
    assert snapshots < 30


async def test_closing_the_registry_ends_the_streams_at_once(http: aiohttp.ClientSession) -> None:
    registry = Registry("127.0.0.1", 0, dashboard_port=0)
    await registry.open()
    try:
        async with http.get(url(registry, "/api/events")) as response:
            events = EventStream(response)
            assert (await events.next())[0] == "snapshot"
            started = time.monotonic()
            await registry.close()
            closed_in = time.monotonic() - started
            with pytest.raises(ConnectionError):
                await events.next(timeout=2)
    finally:
        await registry.close()
    assert closed_in < 1.0  # the page notices at once and starts reconnecting


async def test_only_loopback_names_reach_a_loopback_dashboard(registry: Registry, http: aiohttp.ClientSession) -> None:
    port = registry.dashboard_port
    for host, expected in [("evil.example", 421), (f"evil.example:{port}", 421), (f"localhost:{port}", 200),
                           (f"127.0.0.1:{port}", 200), (f"[::1]:{port}", 200)]:  # fmt: skip
        async with http.get(url(registry, "/api/status"), headers={"Host": host}) as response:
            assert response.status == expected, host
    async with http.get(url(registry, "/")) as page:
        assert page.status == 200 and page.content_type == "text/html"
        assert "default-src 'self'" in page.headers["Content-Security-Policy"]
        html = await page.text()
    for asset in re.findall(r'(?:src|href)="(static/[^"]+)"', html):
        async with http.get(url(registry, "/" + asset)) as response:
            assert response.status == 200, asset
    async with http.get(url(registry, "/static/..%2fapp.py")) as response:
        assert response.status == 404


async def test_a_dashboard_port_in_use_fails_the_start_and_frees_the_registry_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        port = free_port()
        registry = Registry("127.0.0.1", port, dashboard_port=busy)
        with pytest.raises(ListenError, match=f"dashboard cannot listen on 127.0.0.1:{busy}"):
            await registry.open()
    async with Registry("127.0.0.1", port):  # nothing half-started holds it
        pass


# -- the command line ----------------------------------------------------------------------------

BLOCK_AIOHTTP = textwrap.dedent(
    """
    import sys
    from importlib.abc import MetaPathFinder


    class _NoAiohttp(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "aiohttp" or name.startswith("aiohttp."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None


    sys.meta_path.insert(0, _NoAiohttp())
    """
)


def test_dashboard_port_without_the_extra_exits_2_with_the_hint(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(BLOCK_AIOHTTP)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(tmp_path), os.environ.get("PYTHONPATH"))))}
    probe = subprocess.run([sys.executable, "-c", "import aiohttp"], env=env, capture_output=True, text=True)
    assert "No module named 'aiohttp'" in probe.stderr, "the sitecustomize did not hide aiohttp"
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "vyked.registry", "--port", str(port), "--dashboard-port", "0"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("vyked-registry: --dashboard-port: ") and HINT in line
    with socket.socket() as check:  # it failed before listening
        check.bind(("127.0.0.1", port))


async def test_options_come_from_vyked_variables_and_explicit_ones_win() -> None:
    port, dashboard, explicit = free_port(), free_port(), free_port()
    env = {"VYKED_REGISTRY_PORT": str(port), "VYKED_DASHBOARD_PORT": str(dashboard), "VYKED_LOG_LEVEL": "warning"}
    from_env = ProcessRunner("-m", "vyked.registry", env=env).start()
    overridden = ProcessRunner("-m", "vyked.registry", "--port", "0", "--dashboard-port", str(explicit), env=env)
    try:
        await asyncio.to_thread(wait_for_port, dashboard)
        await asyncio.to_thread(wait_for_port, port)
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{dashboard}/api/status") as response:
            report = await response.json()
        assert (await fetch_status("127.0.0.1", port)).registry == report["registry"]
        assert "INFO" not in from_env.output()  # VYKED_LOG_LEVEL=warning

        overridden.start()
        await asyncio.to_thread(wait_for_port, explicit)
        overridden.send_signal(signal.SIGTERM)
        assert overridden.process is not None and await asyncio.to_thread(overridden.process.wait, 10) == 0
    finally:
        from_env.stop()
        overridden.stop()

    bad = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "vyked.registry"],
        env={**os.environ, "VYKED_DASHBOARD_PORT": "eighty"}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.strip() == "vyked-registry: VYKED_DASHBOARD_PORT='eighty': expected a whole number"
