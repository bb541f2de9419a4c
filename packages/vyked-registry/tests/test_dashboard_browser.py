"""The dashboard page in a real headless Chromium, driven through the DevTools protocol.

The page is loaded once; services then register (in-process hosts and a real service
process), one is withdrawn (draining), the process is SIGKILLed and the registry itself is
restarted on the same ports, and the page follows all of it without a reload. Chromium comes
from Debian's ``chromium`` package (``.ci/run`` installs it); without it the test skips.

``VYKED_DASHBOARD_SCREENSHOT=docs/dashboard.png`` also saves the page as it looks with every
state on it (the screenshot in the docs is made that way).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("aiohttp", reason="the dashboard needs vyked-registry[dashboard] (aiohttp)")
pytest.importorskip("vyked.tcp", reason="the services on the page are vyked-tcp services")

import aiohttp

from vyked import TCPService, TCPServiceClient, api
from vyked.core.pytest_plugin import started_hosts
from vyked.core.testing import ProcessRunner, RawClient, free_port
from vyked.registry import Registry

SERVICE_SCRIPT = Path(__file__).with_name("dashboard_service.py")
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
WAIT = 15.0


def find_chromium() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("needs Debian's chromium package (apt-get install chromium)")


class Page:
    """One page target over its DevTools websocket: commands, and the errors it reports."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.errors: list[str] = []
        self._ids = itertools.count(1)
        self._answers: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        command_id = next(self._ids)
        answer = self._answers[command_id] = asyncio.get_running_loop().create_future()
        await self.ws.send_str(json.dumps({"id": command_id, "method": method, "params": params}))
        async with asyncio.timeout(WAIT):
            return await answer

    async def _read(self) -> None:
        async for message in self.ws:
            data = json.loads(message.data)
            if "id" in data:
                answer = self._answers.pop(data["id"])
                if "error" in data:
                    answer.set_exception(RuntimeError(f"DevTools: {data['error']}"))
                else:
                    answer.set_result(data.get("result", {}))
            elif data.get("method") == "Runtime.exceptionThrown":
                self.errors.append(data["params"]["exceptionDetails"].get("exception", {}).get("description", "?"))
            elif data.get("method") == "Log.entryAdded" and data["params"]["entry"]["level"] == "error":
                entry = data["params"]["entry"]
                if "api/events" not in entry.get("url", ""):  # the stream failing while the registry restarts
                    self.errors.append(f"{entry['source']}: {entry['text']} ({entry.get('url', '')})")

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, what: str) -> None:
        """Until ``expression`` is true in the page (the page itself is pushed every change;
        the test reads its DOM every 50 ms)."""
        try:
            async with asyncio.timeout(WAIT):
                while not await self.evaluate(expression):
                    await asyncio.sleep(0.05)
        except TimeoutError:
            text = await self.evaluate("document.body.innerText")
            raise AssertionError(f"the page never showed {what}; it shows:\n{text}") from None

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@contextlib.asynccontextmanager
async def chromium_page(binary: str, profile: Path) -> AsyncIterator[Page]:
    process = await asyncio.create_subprocess_exec(
        binary, "--headless=new", "--remote-debugging-port=0", f"--user-data-dir={profile}", "--no-sandbox",
        "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
        "--disable-extensions", "--disable-background-networking", "--hide-scrollbars", "--mute-audio",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    assert process.stderr is not None
    said: list[str] = []
    drain: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(30):
            while True:
                line = (await process.stderr.readline()).decode(errors="replace")
                if not line:
                    raise RuntimeError("chromium exited before DevTools listened:\n" + "".join(said))
                said.append(line)
                found = re.search(r"DevTools listening on (ws://[^/\s]+)/", line)
                if found:
                    break

        async def keep_reading() -> None:  # a full pipe would block chromium
            assert process.stderr is not None
            while await process.stderr.readline():
                pass

        drain = asyncio.get_running_loop().create_task(keep_reading())
        endpoint = found.group(1).replace("ws://", "http://")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{endpoint}/json/list") as response:
                targets = await response.json()
            (target,) = [t for t in targets if t["type"] == "page"]
            ws = await http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
            page = Page(ws)
            try:
                for domain in ("Page", "Runtime", "Log"):
                    await page.send(f"{domain}.enable")
                yield page
            finally:
                await page.close()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)  # chromium and its helper processes
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        if drain is not None:
            drain.cancel()


class IdentityService(TCPService):
    def __init__(self) -> None:
        super().__init__("IdentityService", 1, "127.0.0.1", 0)

    @api
    async def exists(self, user_name: str) -> bool:
        return True


class OrdersService(TCPService):
    def __init__(self) -> None:
        super().__init__("OrdersService", "1.2", "127.0.0.1", 0)
        self.clients = [TCPServiceClient("IdentityService", 1), TCPServiceClient("PaymentsService", 2)]

    @api
    async def place(self) -> str:
        return "placed"


def row(service: str, state: str, node: str | None = None) -> str:
    """A JS expression: the page lists an instance of ``service`` (node ``node``) as ``state``."""
    selector = f'#instances tr[data-service="{service}"][data-state="{state}"]'
    if node:
        selector += f'[data-node="{node}"]'
    return f"document.querySelector({json.dumps(selector)}) !== null"


def graph_node(service: str, state: str) -> str:
    return f'document.querySelector(\'#graph g.node[data-service="{service}"][data-state="{state}"]\') !== null'


def connection(state: str) -> str:
    return f"document.getElementById('connection')?.dataset.connection === '{state}'"


async def test_the_page_follows_the_cluster_live(tmp_path: Path) -> None:
    binary = find_chromium()
    port, dashboard_port = free_port(), free_port()
    registry = Registry("127.0.0.1", port, dashboard_port=dashboard_port)
    await registry.open()
    reports = ProcessRunner(
        str(SERVICE_SCRIPT), "--registry", f"127.0.0.1:{port}", "--name", "ReportsService",
        "--calls", "IdentityService:1",
    )  # fmt: skip
    legacy: RawClient | None = None
    legacy_pings: asyncio.Task[Any] | None = None
    try:
        async with chromium_page(binary, tmp_path / "profile") as page, started_hosts(f"127.0.0.1:{port}") as make:
            await page.send(
                "Emulation.setDeviceMetricsOverride", width=1280, height=680, deviceScaleFactor=1, mobile=False
            )
            await page.send("Page.navigate", url=f"http://127.0.0.1:{dashboard_port}/")
            await page.wait_for(connection("live"), "its stream connected")
            assert "No instance has registered yet." in await page.evaluate("document.body.innerText")
            await page.evaluate("window.loadedOnce = 'yes'")  # gone if the page ever reloads

            # services registering after the page loaded appear, with the graph between them
            identity = IdentityService()
            await make(identity)
            await page.wait_for(row("IdentityService", "active", identity.node_id), "IdentityService active")
            await make(IdentityService())
            await make(OrdersService())
            await page.wait_for(row("OrdersService", "pending"), "OrdersService pending")
            waiting = await page.evaluate(
                "document.querySelector('#instances tr[data-service=\"OrdersService\"] .waiting').textContent"
            )
            assert waiting.strip() == "waiting for PaymentsService v2"
            await page.wait_for(graph_node("PaymentsService", "missing"), "the missing PaymentsService")
            assert await page.evaluate(
                'document.querySelector(\'#graph g.edge.unsatisfied[data-source="OrdersService"]'
                '[data-target="PaymentsService"]\') !== null'
            )

            reports.start()
            await page.wait_for(row("ReportsService", "active"), "ReportsService (a process) active")
            await page.wait_for(
                'document.querySelector(\'#graph g.edge.satisfied[data-source="ReportsService"]'
                '[data-target="IdentityService"]\') !== null',
                "the edge ReportsService -> IdentityService",
            )

            # an instance its host withdraws is draining while its connection lasts
            legacy = await RawClient.connect(port)
            legacy.send({"type": "register", "instance": {"service": "LegacyService", "version": "0.9",
                         "host": "127.0.0.1", "port": 5999, "node_id": "legacy-1"}})  # fmt: skip
            assert (await legacy.receive())["type"] == "registered"
            legacy.send({"type": "deregister", "node_id": "legacy-1"})
            legacy_pings = asyncio.get_running_loop().create_task(legacy.receive(timeout=3600))  # answers pings
            await page.wait_for(row("LegacyService", "draining", "legacy-1"), "LegacyService draining")

            # a killed process's instance goes down, on the page too
            reports.kill()
            await page.wait_for(row("ReportsService", "down"), "ReportsService down after SIGKILL")
            await page.wait_for(graph_node("ReportsService", "down"), "ReportsService down in the graph")

            png = base64.b64decode((await page.send("Page.captureScreenshot", format="png"))["data"])
            assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 20_000
            for path in filter(None, [tmp_path / "dashboard.png", os.environ.get("VYKED_DASHBOARD_SCREENSHOT")]):
                await asyncio.to_thread(Path(path).write_bytes, png)

            # the registry restarts: the page says so, reconnects, and shows who registers again
            old_id = registry.id
            await registry.close()
            await page.wait_for(connection("reconnecting"), "that the registry is unreachable")
            registry = Registry("127.0.0.1", port, dashboard_port=dashboard_port)
            await registry.open()
            await page.wait_for(connection("live"), "its stream reconnected")
            await page.wait_for(
                f"document.getElementById('registry')?.textContent.startsWith('{registry.id} ')", "the new registry"
            )
            await page.wait_for(row("IdentityService", "active", identity.node_id), "IdentityService back")
            await page.wait_for(row("OrdersService", "pending"), "OrdersService back")
            text = await page.evaluate("document.body.innerText")
            assert old_id not in text and "ReportsService" not in text  # the new registry's state, not the old
            assert await page.evaluate("window.loadedOnce") == "yes"  # never reloaded
            assert page.errors == []
    finally:
        if legacy_pings is not None:
            legacy_pings.cancel()
        if legacy is not None:
            await legacy.close()
        reports.stop()
        await registry.close()
