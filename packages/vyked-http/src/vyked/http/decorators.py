"""The route decorators shared by HTTP services and HTTP clients.

They stay thin: each attaches a :class:`RouteSpec` to the function with
:func:`vyked.core.endpoints.mark` and returns it unchanged.
:class:`~vyked.http.service.HTTPService` turns the specs into aiohttp routes
(:mod:`vyked.http.routing`); :class:`~vyked.http.client.HTTPServiceClient` turns them into
methods that send requests (:mod:`vyked.http.client`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from vyked.core.endpoints import mark, specs_of
from vyked.core.inflight import check_limit

F = TypeVar("F", bound=Callable[..., Any])

PathSpec = str | Iterable[str] | None
ParamSpec = str | Iterable[str] | None


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """What one decorator says about a method."""

    method: str
    """The HTTP method, upper case (``GET``...)."""
    paths: tuple[str, ...]
    """aiohttp path patterns (``/users/{name}``); empty on clients, whose methods return the path."""
    required_params: tuple[str, ...] = ()
    """Query parameters that must be present; a request without them gets a 400."""
    timeout: float | None = None
    """Service side: seconds before the handler is cancelled (504). Client side: seconds to wait."""
    websocket: bool = False
    inline: bool = False
    """Service side: a plain ``def`` handler runs in the loop's thread, not the thread pool."""
    max_concurrency: int | None = None
    """Service side: requests of these routes running at once; more are answered 503 ``overloaded``."""


def routes_of(func: object) -> tuple[RouteSpec, ...]:
    """The route specs the decorators attached to ``func`` (outermost decorator last)."""
    return specs_of(func, RouteSpec)


def _as_tuple(value: str | Iterable[str] | None, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = (value,) if isinstance(value, str) else tuple(value)
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"{what} must be strings, got {item!r}")
    return items


class RouteDecorator:
    """One HTTP verb's decorator: ``@get``, ``@get()``, ``@get('/a')``, ``@get(path=['/a', '/b'],
    required_params=['q'], timeout=5, inline=False, max_concurrency=None)``.

    On an :class:`~vyked.http.HTTPService` method it declares a route: the method is called with
    the aiohttp :class:`~aiohttp.web.Request` and returns a :class:`~aiohttp.web.Response`
    (``async def``, plain ``def`` and generator-style ``yield from`` handlers all work; plain
    ``def`` ones run in the handler thread pool, as Starlette runs sync endpoints, unless
    ``inline=True``). With ``max_concurrency``, a request arriving while that many run is
    answered 503 (``overloaded``) without running. Decorators may be stacked to serve one
    handler under several verbs.

    On an :class:`~vyked.http.HTTPServiceClient` method (usually ``@get()``, no path) it makes
    calling the method send a request of that verb; the method returns ``locals()`` holding
    ``path`` and optionally ``params``, ``headers``, ``data``, ``json``, ``cookies``,
    ``app_name`` and ``entity``.
    """

    __slots__ = ("method",)

    def __init__(self, method: str) -> None:
        self.method = method.upper()

    @overload
    def __call__(self, path: F, /) -> F: ...
    @overload
    def __call__(
        self,
        path: PathSpec = None,
        *,
        required_params: ParamSpec = None,
        timeout: float | None = None,
        inline: bool = False,
        max_concurrency: int | None = None,
    ) -> Callable[[F], F]: ...

    def __call__(
        self,
        path: PathSpec | F = None,
        *,
        required_params: ParamSpec = None,
        timeout: float | None = None,
        inline: bool = False,
        max_concurrency: int | None = None,
    ) -> F | Callable[[F], F]:
        if callable(path):  # bare ``@get``
            return mark(path, RouteSpec(self.method, ()))
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        spec = RouteSpec(
            self.method,
            _as_tuple(path, "paths"),
            _as_tuple(required_params, "required_params"),
            timeout,
            inline=inline,
            max_concurrency=check_limit(max_concurrency),
        )

        def decorate(func: F) -> F:
            return mark(func, spec)

        return decorate

    def __repr__(self) -> str:
        return f"<vyked.http.{self.method.lower()} route decorator>"


get = RouteDecorator("GET")
post = RouteDecorator("POST")
put = RouteDecorator("PUT")
patch = RouteDecorator("PATCH")
delete = RouteDecorator("DELETE")
head = RouteDecorator("HEAD")
options = RouteDecorator("OPTIONS")
trace = RouteDecorator("TRACE")


def websocket(path: PathSpec = None) -> Callable[[F], F]:
    """Declare a websocket endpoint on an :class:`~vyked.http.HTTPService`: ``@websocket(path='/ws')``.

    The handler gets the aiohttp request, prepares an :class:`aiohttp.web.WebSocketResponse`
    itself and returns it when the conversation ends, as in plain aiohttp. Open websockets are
    closed (code 1001) when the service stops.
    """
    spec = RouteSpec("GET", _as_tuple(path, "paths"), websocket=True)

    def decorate(func: F) -> F:
        return mark(func, spec)

    return decorate
