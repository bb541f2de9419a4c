"""``HTTPService``: a service whose decorated methods are the routes of an aiohttp server."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any, ClassVar

from aiohttp import web

from vyked.core.endpoints import check_reserved, collect
from vyked.core.inflight import InFlight, concurrency_limit
from vyked.core.observe import Family
from vyked.core.service import Service
from vyked.core.service_host import ServiceHost
from vyked.http.cors import PreflightResponse, add_cors_headers
from vyked.http.decorators import RouteSpec
from vyked.http.endpoint_wrapper import IN_FLIGHT
from vyked.http.routing import Route, add_routes, check_routes, plan_routes
from vyked.http.stats import ServiceStats
from vyked.http.websockets import WebsocketTracker

DEFAULT_SHUTDOWN_TIMEOUT = 10.0
"""Seconds :meth:`HTTPService.stop` lets requests in flight finish before cancelling them."""

logger = logging.getLogger(__name__)

_INSTANCE_ATTRIBUTES = frozenset(
    {"name", "version", "host_ip", "host_port", "node_id", "host", "ssl_context", "allow_cross_domain"}
    | {"shutdown_timeout", "stats", "app", "in_flight", "preflight_response"}
)


class HTTPService(Service):
    """Subclass it and decorate methods with ``@get``, ``@post``... (and ``@websocket``)::

        class IdentityHTTPService(HTTPService):
            def __init__(self, ip, port):
                super().__init__("IdentityService", 1, ip, port)

            @get(path='/users/{username}')
            def get(self, request: Request):
                username = request.match_info.get('username')
                return Response(status=200, body=("Hello {}".format(username)).encode())

    Attach it to a :class:`~vyked.core.host.Host` (or a :class:`~vyked.core.service_host.ServiceHost`):
    starting it serves the routes on ``ip:port`` (port 0 picks a free one, stored back in
    :attr:`host_port`) and registers the instance with the registry as kind ``http``.

    Every service also answers ``GET /ping`` and ``GET /_stats``. With ``ssl_context``, or
    else when its host has a TLS certificate (``VYKED_TLS_CERT``/``VYKED_TLS_KEY``), it serves
    HTTPS, and the registry records it so that clients use ``https`` without being told. With
    ``allow_cross_domain`` it answers CORS preflight requests (with ``preflight_response``,
    if given, as in vyked 2.x) and lets any origin read its answers.
    """

    kind = "http"
    _route_specs: ClassVar[dict[str, tuple[RouteSpec, ...]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._route_specs = collect(cls, RouteSpec)
        check_reserved(cls, HTTPService, cls._route_specs, _INSTANCE_ATTRIBUTES)
        check_routes(cls.__qualname__, cls._route_specs)

    def __init__(
        self,
        service_name: str,
        service_version: object,
        host_ip: str = "127.0.0.1",
        host_port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        allow_cross_domain: bool = False,
        preflight_response: PreflightResponse | None = None,
        *,
        shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
        max_concurrency: int | None = None,
    ) -> None:
        """``ssl_context`` serves HTTPS (default: the host's ``VYKED_TLS_*`` settings, if any).
        ``max_concurrency`` caps the requests the routes run at once (default:
        ``VYKED_MAX_CONCURRENCY``, else none): more are answered 503 ``overloaded``.
        ``preflight_response(request)`` (any handler style, returning an aiohttp response)
        answers CORS preflight requests in place of vyked's answer; it needs
        ``allow_cross_domain``, as in vyked 2.x."""
        super().__init__(service_name, service_version, host_ip, host_port)
        if preflight_response is not None and not allow_cross_domain:
            raise ValueError(
                f"{type(self).__name__}: preflight_response answers CORS preflight requests, which a service "
                "answers only with allow_cross_domain=True: pass both"
            )
        self.ssl_context = ssl_context
        self.allow_cross_domain = allow_cross_domain
        self.preflight_response = preflight_response
        self.shutdown_timeout = shutdown_timeout
        self.stats = ServiceStats(self.name, self.version, self.node_id)
        self.in_flight = InFlight(self.name, concurrency_limit(max_concurrency))
        """Requests the routes run now; ``in_flight.start_draining()`` answers new ones 503
        ``draining``; ``await in_flight.drained(grace)`` waits for those running."""
        self.app: web.Application | None = None
        """The aiohttp application, once the service has started."""
        self._runner: web.AppRunner | None = None
        self._websockets = WebsocketTracker()

    @property
    def serves_tls(self) -> bool:
        """Whether the service serves HTTPS: its own ``ssl_context``, or (once started) its
        host's certificate. The registration records it."""
        return self.ssl_context is not None

    @property
    def scheme(self) -> str:
        """``https`` when the service serves HTTPS, else ``http``."""
        return "https" if self.serves_tls else "http"

    @property
    def url(self) -> str:
        """The base URL the service listens on, e.g. ``http://127.0.0.1:4501``."""
        return f"{self.scheme}://{self.host_ip}:{self.host_port}"

    def endpoints(self) -> dict[str, tuple[Callable[..., Any], tuple[RouteSpec, ...]]]:
        """``{endpoint name: (bound method, route specs)}`` of this service."""
        return {attr: (getattr(self, attr), specs) for attr, specs in self._route_specs.items()}

    def routes(self) -> list[Route]:
        """Every route the service serves, declared and built in."""
        websockets = self._websockets if self._has_websockets() else None
        return plan_routes(
            self.name,
            self.endpoints(),
            self.stats,
            websockets=websockets,
            allow_cross_domain=self.allow_cross_domain,
            preflight_response=self.preflight_response,
            version=self.version,
            observers=self.host.observers if self.host is not None else None,
        )

    def make_app(self) -> web.Application:
        """Build the aiohttp application. Override to add middlewares or extra routes::

        def make_app(self):
            app = super().make_app()
            app.middlewares.append(my_middleware)
            return app
        """
        app = web.Application()
        app[IN_FLIGHT] = self.in_flight
        add_routes(app, self.routes())
        if self._has_websockets():
            app.on_response_prepare.append(self._websockets.on_response_prepare)
            app.on_shutdown.append(self._websockets.close_all)
        if self.allow_cross_domain:
            app.on_response_prepare.append(add_cors_headers)
        return app

    def _has_websockets(self) -> bool:
        return any(spec.websocket for specs in self._route_specs.values() for spec in specs)

    async def start(self, host: ServiceHost) -> None:
        """Serve the routes; :attr:`host_port` is the bound port afterwards."""
        await super().start(host)
        if self.ssl_context is None:
            self.ssl_context = host.trust.server_ssl
        self.stats.reset_clock()
        self.app = self.make_app()
        runner = web.AppRunner(self.app, shutdown_timeout=self.shutdown_timeout)
        await runner.setup()
        self._runner = runner
        site = web.TCPSite(runner, self.host_ip, self.host_port, ssl_context=self.ssl_context)
        await site.start()
        self.host_port = int(runner.addresses[0][1])

    def metric_families(self) -> list[Family]:
        """The figures of ``/_stats`` and the requests running now (read by the host's metrics)."""
        running = Family(
            "vyked_server_requests_in_flight",
            "Requests running now",
            "gauge",
            ["kind", "service", "version", "endpoint"],
        ).add(["http", self.name, self.version, ""], self.in_flight.count)
        return [*self.stats.metric_families(), running]

    async def drain(self, deadline: float) -> None:
        """Answer new requests 503 ``draining`` (clients send them to another instance) and
        wait for those running, until ``deadline`` at most."""
        self.in_flight.start_draining()
        still_running = await self.in_flight.drained(max(0.0, deadline - asyncio.get_running_loop().time()))
        if still_running:
            logger.warning(
                "%s: %d requests still running at the end of the drain grace period", self.name, still_running
            )

    async def stop(self) -> None:
        """Stop listening, close open websockets, let requests in flight finish (up to
        ``shutdown_timeout`` seconds) and cancel the rest."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
