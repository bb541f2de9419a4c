"""Rolling restarts lose no request: two instances (real processes) under a steady 200 calls a
second are stopped with SIGTERM and started again, one after the other, twice over.

What makes it work (see ``docs/failures.md``): a stopping host deregisters first, so callers
stop choosing it; requests that still reach it are refused with ``draining`` and sent to the
other instance; requests in flight finish before it closes.
"""

from __future__ import annotations

import asyncio
import collections
import signal
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from integration_support import wait_output

from vyked import HTTPServiceClient, TCPServiceClient, get, request
from vyked.core.exceptions import VykedError
from vyked.core.service_host import ServiceHost
from vyked.core.tasks import TaskSet
from vyked.core.testing import ProcessRunner

HERE = Path(__file__).parent
RATE = 200  # calls a second


class RollingClient(TCPServiceClient):
    def __init__(self) -> None:
        super().__init__("RollingService", 1)

    @request(timeout=5)
    def echo(self, n: int) -> dict[str, Any]:
        return locals()


class RollingHTTPClient(HTTPServiceClient):
    def __init__(self) -> None:
        super().__init__("RollingHTTP", 1, timeout=5)

    @get()
    def echo(self, n: int) -> dict[str, Any]:
        path = f"/echo/{n}"
        return locals()


class OpenLoopTraffic:
    """Starts a call every ``1 / rate`` seconds whether or not earlier ones have finished (as
    independent callers would), counting answers, failures by type, and who answered."""

    def __init__(self, call: Callable[[int], Awaitable[int]], rate: int) -> None:
        self.call = call
        self.interval = 1 / rate
        self.sent = 0
        self.latencies: list[float] = []
        self.failures: collections.Counter[str] = collections.Counter()
        self.answered_by: collections.Counter[int] = collections.Counter()
        self._calls = TaskSet()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> OpenLoopTraffic:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            self.sent += 1
            self._calls.spawn(self._one(self.sent))
            next_at += self.interval
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    async def _one(self, n: int) -> None:
        sent = time.monotonic()
        try:
            pid = await self.call(n)
        except VykedError as exc:
            self.failures[f"{type(exc).__name__}: {exc}"[:200]] += 1
        else:
            self.latencies.append(time.monotonic() - sent)
            self.answered_by[pid] += 1

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        deadline = time.monotonic() + 10
        while len(self.latencies) + sum(self.failures.values()) < self.sent and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await self._calls.close()

    def summary(self) -> str:
        ordered = sorted(self.latencies) or [0.0]
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return (
            f"{self.sent} calls sent, {len(self.latencies)} answered by {len(self.answered_by)} processes, "
            f"p50 {statistics.median(ordered) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
            f"max {ordered[-1] * 1000:.1f} ms; "
            f"failed {sum(self.failures.values())} {dict(self.failures) or ''}"
        )


async def start_instance(registry: str) -> ProcessRunner:
    proc = ProcessRunner(str(HERE / "rolling_service.py"), "--registry", registry).start()
    await wait_output(proc, "host started")
    return proc


async def stop_instance(proc: ProcessRunner) -> float:
    """SIGTERM, then wait for the process to exit; returns how long that took."""
    assert proc.process is not None
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    while proc.process.poll() is None:
        await asyncio.sleep(0.02)
        assert time.monotonic() - started < 15, "the instance did not exit within 15 s of SIGTERM"
    return time.monotonic() - started


async def wait_for_instances(host: ServiceHost, service: str, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(host.directory.instances(service)) != count:
        assert time.monotonic() < deadline, f"the client never saw {count} instances of {service}"
        await asyncio.sleep(0.02)


@pytest.mark.timeout(120)
async def test_rolling_restarts_under_load_fail_no_call(registry_process: int) -> None:
    registry = f"127.0.0.1:{registry_process}"
    instances = [await start_instance(registry), await start_instance(registry)]
    tcp, http = RollingClient(), RollingHTTPClient()
    host = ServiceHost(registry)
    host.bind_client(tcp)
    host.bind_client(http)
    await host.start()
    await host.watch("RollingHTTP")

    async def call_tcp(n: int) -> int:
        answer = await tcp.echo(n)
        if answer["n"] != n:
            raise VykedError(f"wrong answer {answer} to {n}")
        return int(answer["pid"])

    async def call_http(n: int) -> int:
        response = await http.echo(n)
        if response.status != 200:
            raise VykedError(f"HTTP {response.status}: {await response.text()}")
        number, pid = (await response.text()).split()
        if int(number) != n:
            raise VykedError(f"wrong answer {number} to {n}")
        return int(pid)

    try:
        await wait_for_instances(host, "RollingService", 2)
        await wait_for_instances(host, "RollingHTTP", 2)
        traffic = [OpenLoopTraffic(call_tcp, RATE).start(), OpenLoopTraffic(call_http, RATE // 2).start()]
        await asyncio.sleep(0.5)
        drains = []
        for _ in range(2):
            for i in range(len(instances)):
                drains.append(await stop_instance(instances[i]))
                instances[i].stop()
                instances[i] = await start_instance(registry)
                await wait_for_instances(host, "RollingService", 2)
                await asyncio.sleep(0.5)
        for t in traffic:
            await t.stop()
        print(f"\nrolling restarts: 4 (SIGTERM, exit, start), exits took {', '.join(f'{d:.2f} s' for d in drains)}")
        print(f"  TCP  at {RATE}/s: {traffic[0].summary()}")
        print(f"  HTTP at {RATE // 2}/s: {traffic[1].summary()}")
        for t in traffic:
            assert not t.failures, t.summary()
            assert len(t.answered_by) == 6, "calls were answered by the 2 first and the 4 restarted processes"
    finally:
        await host.stop()
        for proc in instances:
            proc.stop()
