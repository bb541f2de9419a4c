"""Health probes and JSON logs of real service processes: ``/readyz`` while pending, active
and draining, ``/livez`` while an ``async def`` handler blocks the loop, and the JSON lines
``VYKED_LOG_FORMAT=json`` writes."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from integration_support import wait_for_line
from probe_service import ProbeClient

from vyked import ServiceHost, TCPService, api
from vyked.core.testing import ProcessRunner, http_get

pytest.importorskip("prometheus_client", reason="needs vyked-core[metrics]")

HERE = Path(__file__).parent
METRICS_LINE = re.compile(r"metrics and probes on http://127\.0\.0\.1:(\d+) ")
ENV = {"VYKED_METRICS_PORT": "0", "VYKED_METRICS_HOST": "127.0.0.1"}


class Dependency(TCPService):
    def __init__(self) -> None:
        super().__init__("Dependency", 1, "127.0.0.1", 0)

    @api
    async def ping(self) -> str:
        return "pong"


@pytest.fixture
def probe_process(registry_process: int) -> Iterator[Callable[..., tuple[ProcessRunner, int]]]:
    """Start probe_service.py; returns it and its metrics port."""
    started: list[ProcessRunner] = []

    def start(*args: str, env: dict[str, str] | None = None) -> tuple[ProcessRunner, int]:
        script = str(HERE / "probe_service.py")
        proc = ProcessRunner(script, "--registry", f"127.0.0.1:{registry_process}", *args, env={**ENV, **(env or {})})
        started.append(proc.start())
        port = int(wait_for_line(proc, METRICS_LINE).group(1))
        return proc, port

    yield start
    for proc in started:
        proc.stop()


async def get(port: int, path: str) -> tuple[int, str]:
    return await asyncio.to_thread(http_get, f"http://127.0.0.1:{port}{path}", 10.0)


async def wait_for(port: int, path: str, status: int, timeout: float = 15.0) -> str:
    """Poll ``path`` until it answers ``status``; its body."""
    deadline = time.monotonic() + timeout
    while True:
        code, body = await get(port, path)
        if code == status:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} still answers {code} {body!r}, not {status}")
        await asyncio.sleep(0.05)


async def test_readyz_pending_active_and_draining(
    probe_process: Callable[..., tuple[ProcessRunner, int]], registry_process: int
) -> None:
    proc, port = probe_process("--dependency", "Dependency")
    wait_for_line(proc, "host started")
    body = json.loads(await wait_for(port, "/readyz", 503))
    assert body["status"] == "pending", body
    assert "Dependency v1" in body["reason"] and body["services"] == {"ProbeService": "pending"}
    assert (await get(port, "/livez")) == (200, "ok\n")

    dependency_host = ServiceHost(f"127.0.0.1:{registry_process}")
    dependency_host.attach(Dependency())
    async with dependency_host:
        body = json.loads(await wait_for(port, "/readyz", 200))
        assert body["status"] == "ready" and body["services"] == {"ProbeService": "active"}

        # A request in flight holds the drain (grace 10 s): meanwhile /readyz says draining.
        client = ProbeClient()
        async with ServiceHost(f"127.0.0.1:{registry_process}") as caller:
            caller.bind_client(client)
            slow = asyncio.ensure_future(client.slow(2.0))
            await asyncio.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            body = json.loads(await wait_for(port, "/readyz", 503, timeout=1.5))
            assert body["status"] == "draining", body
            assert await slow == "done"
    assert proc.process is not None
    assert await asyncio.to_thread(proc.process.wait, 10) == 0


async def test_livez_fails_while_the_loop_is_blocked(
    probe_process: Callable[..., tuple[ProcessRunner, int]], registry_process: int
) -> None:
    proc, port = probe_process()
    wait_for_line(proc, "host started")
    await wait_for(port, "/readyz", 200)
    client = ProbeClient()
    async with ServiceHost(f"127.0.0.1:{registry_process}") as caller:
        caller.bind_client(client)
        blocked = asyncio.ensure_future(client.block(1.8))
        code, body = await get(port, "/livez")
        while code == 200 and not blocked.done():  # until the request has reached the handler
            code, body = await get(port, "/livez")
        assert code == 503 and body.startswith("event loop blocked for "), (code, body)
        blocked_for = float(body.split()[-2])
        assert 0.9 <= blocked_for < 5, body
        assert await blocked == "unblocked"
        assert (await get(port, "/livez")) == (200, "ok\n")
        code, text = await get(port, "/metrics")
        assert code == 200 and "vyked_server_requests_total" in text and "process_cpu_seconds_total" in text


async def test_json_log_lines(probe_process: Callable[..., tuple[ProcessRunner, int]]) -> None:
    proc, port = probe_process(env={"VYKED_LOG_FORMAT": "json", "VYKED_LOG_LEVEL": "INFO"})
    wait_for_line(proc, '"message":"host started')
    await wait_for(port, "/readyz", 200)
    proc.send_signal(signal.SIGTERM)
    assert proc.process is not None
    assert await asyncio.to_thread(proc.process.wait, 10) == 0
    lines = [json.loads(line) for line in proc.output().splitlines() if line.strip()]  # every line is JSON
    started = next(line for line in lines if line["message"].startswith("host started"))
    assert started["level"] == "INFO" and started["logger"] == "vyked.core.service_host"
    assert started["service"] == "ProbeService" and re.fullmatch(r"[0-9a-f]{32}", started["node_id"])
    assert {line["node_id"] for line in lines if "node_id" in line} == {started["node_id"]}
    assert any(line["message"] == "stopping" for line in lines)
    assert any(line["message"].startswith("metrics and probes on ") for line in lines)
