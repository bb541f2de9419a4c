"""The dashboard's web server (aiohttp): the page, the JSON API and the event stream.

The stream is fed by the registry's change listener: a change schedules one ``snapshot``
event for every open stream, sent at once unless one went out less than ``min_interval``
ago (a burst of registrations becomes a few snapshots, not thousands). Each stream keeps
only the latest snapshot not yet written, so a slow browser costs one snapshot of memory.
Heartbeat ages change all the time without being changes; they go out every ``refresh``
seconds as a small ``heartbeats`` event, which also keeps idle streams (and proxies) alive.

The dashboard has no authentication. Bound to a loopback address (the default), it answers
only requests whose ``Host`` names a loopback address or ``localhost``, so that a web page
the operator visits cannot read it through DNS rebinding; bound elsewhere, it answers any.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING

import msgspec
from aiohttp import web

from vyked.core.exceptions import ListenError, map_exceptions
from vyked.core.tasks import TaskSet, raise_if_cancelling
from vyked.registry.dashboard import views

if TYPE_CHECKING:
    from vyked.registry.server import Registry

DEFAULT_REFRESH = 2.0
"""Seconds between ``heartbeats`` events."""
DEFAULT_MIN_INTERVAL = 0.1
"""Seconds at least between two ``snapshot`` events."""
RECONNECT_MS = 1000
"""What the stream asks browsers to wait before reconnecting (the SSE ``retry`` field)."""

STATIC = {
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
}
SECURITY_HEADERS = {
    # everything the page needs comes from the dashboard itself
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
LOOPBACK_NAMES = frozenset({"localhost"})
API = {
    "status": "what `vyked-registry status --json` prints",
    "overview": "services with their instances, and the dependency graph: what the page draws",
    "services": "every service with its instances; services/{name}: one",
    "graph": "the dependency graph between services",
    "events": "server-sent events: snapshot (an overview) at once and after every change, heartbeats every 2 s",
}

_encode = msgspec.json.Encoder().encode


def sse(event: str, data: bytes) -> bytes:
    """One server-sent event (``data`` is one line of JSON)."""
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


class _Stream:
    """What one open event stream has yet to write: the latest snapshot and heartbeats."""

    __slots__ = ("closed", "heartbeats", "snapshot", "wakeup")

    def __init__(self) -> None:
        self.snapshot: bytes | None = None
        self.heartbeats: bytes | None = None
        self.closed = False
        self.wakeup = asyncio.Event()

    def take(self) -> bytes:
        data = (self.snapshot or b"") + (self.heartbeats or b"")
        self.snapshot = self.heartbeats = None
        return data


class Dashboard:
    """Serves ``registry``'s dashboard on ``host:port`` (``port=0``: a free one) from
    :meth:`start` to :meth:`close`."""

    def __init__(
        self,
        registry: Registry,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        refresh: float = DEFAULT_REFRESH,
        min_interval: float = DEFAULT_MIN_INTERVAL,
    ) -> None:
        self.registry = registry
        self.host, self.port = host, port
        self.refresh, self.min_interval = refresh, min_interval
        self._streams: set[_Stream] = set()
        self._tasks = TaskSet()
        self._runner: web.AppRunner | None = None
        self._remove_listener: Callable[[], None] | None = None
        self._flush: asyncio.TimerHandle | None = None
        self._last_flush = float("-inf")
        self._files = {
            name: (resources.files("vyked.registry.dashboard") / "static" / name).read_bytes()
            for name in ("index.html", *STATIC)
        }
        self.app = self._make_app()

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> tuple[str, int]:
        """Listen; returns the bound address."""
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            with map_exceptions({OSError: ListenError}, f"the dashboard cannot listen on {self.host}:{self.port}"):
                await web.TCPSite(runner, self.host, self.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        self._remove_listener = self.registry.add_listener(self._changed)
        self._tasks.spawn(self._beat())
        return self.host, self.port

    @property
    def url(self) -> str:
        where = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{where}:{self.port}/"

    async def close(self) -> None:
        """End every event stream (browsers reconnect by themselves) and stop listening."""
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        for stream in self._streams:
            stream.closed = True
            stream.wakeup.set()
        await self._tasks.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- documents ----------------------------------------------------------------------------

    def overview(self) -> views.Overview:
        reg = self.registry
        return views.overview(
            reg.state,
            reg.last_seen,
            address=f"{reg.ip}:{reg.port}",
            now=time.time(),
            heartbeat_interval=reg.heartbeat_interval,
            heartbeat_timeout=reg.heartbeat_timeout,
        )

    def heartbeats(self) -> views.Heartbeats:
        return views.heartbeats(self.registry.state.known(), self.registry.last_seen, time.time())

    # -- pushing changes ----------------------------------------------------------------------

    def _changed(self) -> None:
        """The registry's listener: called amid a change, so it only schedules the snapshot."""
        if not self._streams or self._flush is not None:
            return
        loop = asyncio.get_running_loop()
        self._flush = loop.call_at(max(loop.time(), self._last_flush + self.min_interval), self._send_snapshot)

    def _send_snapshot(self) -> None:
        self._flush = None
        self._last_flush = asyncio.get_running_loop().time()
        data = sse("snapshot", _encode(self.overview()))
        for stream in self._streams:
            stream.snapshot = data
            stream.wakeup.set()

    async def _beat(self) -> None:
        while True:
            raise_if_cancelling()
            await asyncio.sleep(self.refresh)
            if self._streams:
                data = sse("heartbeats", _encode(self.heartbeats()))
                for stream in self._streams:
                    stream.heartbeats = data
                    stream.wakeup.set()

    # -- the web application ------------------------------------------------------------------

    def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/", self._index)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/api/", self._json(lambda: {f"/api/{name}": what for name, what in API.items()}))
        app.router.add_get("/api/status", self._json(lambda: self.registry.status_report()))
        app.router.add_get("/api/overview", self._json(self.overview))
        app.router.add_get("/api/services", self._json(lambda: self.overview().services))
        app.router.add_get("/api/services/{name}", self._service)
        app.router.add_get("/api/graph", self._json(lambda: self.overview().graph))
        app.router.add_get("/api/events", self._events)
        return app

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if _is_loopback(self.host) and not _is_loopback(request.url.host or ""):
            # DNS rebinding: a page from evil.example resolved to 127.0.0.1 sends Host: evil.example
            response: web.StreamResponse = web.Response(
                status=421, text="this dashboard answers only requests for a loopback address or localhost\n"
            )
        else:
            response = await handler(request)
        if not response.prepared:
            response.headers.update(SECURITY_HEADERS)
        return response

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(body=self._files["index.html"], content_type="text/html", charset="utf-8")

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC:
            raise web.HTTPNotFound()
        return web.Response(body=self._files[name], content_type=STATIC[name], charset="utf-8")

    def _json(self, build: Callable[[], object]) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(body=_encode(build()), content_type="application/json")

        return handler

    async def _service(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        for service in self.overview().services:
            if service.service == name:
                return web.Response(body=_encode(service), content_type="application/json")
        return web.json_response({"error": "not_found", "message": f"no service {name!r} is known"}, status=404)

    async def _events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={**SECURITY_HEADERS, "Content-Type": "text/event-stream",
                                               "X-Accel-Buffering": "no"})  # fmt: skip
        await response.prepare(request)
        stream = _Stream()
        self._streams.add(stream)
        try:
            # a (re)connecting page gets the whole state at once
            await response.write(f"retry: {RECONNECT_MS}\n\n".encode() + sse("snapshot", _encode(self.overview())))
            while not stream.closed:
                await stream.wakeup.wait()
                stream.wakeup.clear()
                data = stream.take()
                if data and not stream.closed:
                    await response.write(data)
        except (ConnectionError, RuntimeError):  # the browser went away (aiohttp: "Cannot write to closing transport")
            pass
        finally:
            self._streams.discard(stream)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await response.write_eof()
        return response


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
