"""From a service's decorated methods to an aiohttp router.

Every decorated method is one *endpoint* (named ``Service.method`` in logs and error bodies,
``method`` in ``/_stats``); each of its specs adds a route per path. Beside the declared routes
a service gets:

- ``HEAD`` for every ``GET`` path that declares no ``HEAD`` of its own (as aiohttp does);
- ``GET /ping`` and ``GET /_stats`` (and ``HEAD``) unless the service declares them itself;
- with ``allow_cross_domain``, an ``OPTIONS`` preflight answer for every path that declares
  no ``OPTIONS`` of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from vyked.core.exceptions import DefinitionError
from vyked.core.observe import Observer
from vyked.http.cors import PreflightResponse, custom_preflight_handler, preflight_handler
from vyked.http.decorators import RouteSpec
from vyked.http.endpoint_wrapper import Handler, wrap_endpoint
from vyked.http.response import json_response
from vyked.http.stats import ServiceStats
from vyked.http.websockets import WebsocketTracker

PING_PATH = "/ping"
STATS_PATH = "/_stats"


@dataclass(frozen=True, slots=True)
class Route:
    """One (method, path) pair and the aiohttp handler that serves it."""

    method: str
    path: str
    handler: Handler


def plan_routes(
    service_name: str,
    endpoints: dict[str, tuple[Callable[..., Any], tuple[RouteSpec, ...]]],
    stats: ServiceStats,
    *,
    websockets: WebsocketTracker | None,
    allow_cross_domain: bool = False,
    version: str = "",
    observers: list[Observer] | None = None,
    preflight_response: PreflightResponse | None = None,
) -> list[Route]:
    """Every route a service serves, in registration order.

    ``endpoints`` maps each endpoint name to its bound method and specs; ``observers`` (the
    host's) see each request. With ``allow_cross_domain``, ``preflight_response`` (if given)
    answers the ``OPTIONS`` preflight requests instead of vyked's own answer.
    """
    routes: list[Route] = []
    declared = check_routes(service_name, {attr: specs for attr, (_, specs) in endpoints.items()})
    for attr, (method, specs) in endpoints.items():
        labels = [f"{s.method} {p}" for s in specs for p in s.paths]
        labels += [
            f"HEAD {p}"
            for s in specs
            if s.method == "GET" and not s.websocket
            for p in s.paths
            if ("HEAD", p) not in declared
        ]
        endpoint_stats = stats.endpoint(attr, labels, websocket=any(s.websocket for s in specs))
        for spec in specs:
            handler = wrap_endpoint(
                f"{service_name}.{attr}",
                method,
                endpoint_stats,
                timeout=spec.timeout,
                required_params=spec.required_params,
                websockets=websockets if spec.websocket else None,
                observers=observers,
                service=service_name,
                version=version,
            )
            for path in spec.paths:
                routes.append(Route(spec.method, path, handler))
                if spec.method == "GET" and not spec.websocket and ("HEAD", path) not in declared:
                    routes.append(Route("HEAD", path, handler))

    for path, handler in ((PING_PATH, _ping), (STATS_PATH, _stats_handler(stats))):
        if ("GET", path) not in declared:
            routes.append(Route("GET", path, handler))
            if ("HEAD", path) not in declared:
                routes.append(Route("HEAD", path, handler))

    if allow_cross_domain:
        methods_by_path: dict[str, set[str]] = {}
        for route in routes:
            methods_by_path.setdefault(route.path, set()).add(route.method)
        custom = None if preflight_response is None else custom_preflight_handler(preflight_response)
        for path, methods in methods_by_path.items():
            if "OPTIONS" not in methods:
                routes.append(Route("OPTIONS", path, custom or preflight_handler(methods)))
    return routes


def check_routes(owner: str, specs_by_attr: dict[str, tuple[RouteSpec, ...]]) -> set[tuple[str, str]]:
    """Reject specs a service cannot serve; returns the declared ``(method, path)`` pairs."""
    declared: set[tuple[str, str]] = set()
    for attr, specs in specs_by_attr.items():
        for spec in specs:
            verb = "websocket" if spec.websocket else spec.method.lower()
            if not spec.paths:
                raise DefinitionError(
                    f"{owner}.{attr}: @{verb} on a service needs a path, as in @{verb}(path='/{attr}')"
                )
            for path in spec.paths:
                if not path.startswith("/"):
                    raise ValueError(f"{owner}.{attr}: path {path!r} must start with '/'")
                if (spec.method, path) in declared:
                    raise ValueError(f"{owner}.{attr}: {spec.method} {path} is declared twice")
                declared.add((spec.method, path))
    return declared


def add_routes(app: web.Application, routes: list[Route]) -> None:
    for route in routes:
        app.router.add_route(route.method, route.path, route.handler)


async def _ping(request: web.Request) -> web.StreamResponse:
    return web.Response(text="pong")


def _stats_handler(stats: ServiceStats) -> Handler:
    async def service_stats(request: web.Request) -> web.StreamResponse:
        return json_response(stats.as_dict())

    return service_stats
