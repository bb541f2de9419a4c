"""``HTTPServiceClient``: the caller's stand-in for a remote HTTP service."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping
from ssl import SSLContext
from typing import Any

import aiohttp

from vyked.core.exceptions import ConnectionLost, InvalidParams, RequestTimeout, ServiceUnavailable
from vyked.core.handlers import as_coroutine_function, call_handler, is_async
from vyked.core.host import ServiceHost
from vyked.core.service import ServiceClient
from vyked.http.decorators import RouteSpec, check_reserved, routes_of
from vyked.http.pool import UNREACHABLE_BACKOFF, HTTPClientPool

DEFAULT_TIMEOUT = 30.0
"""Seconds a request waits for its complete answer unless the client or the decorator says otherwise."""

APP_HEADER = "X-Vyked-App"
"""The header carrying a request's ``app_name``."""

_SENDER = "__vyked_http_sender__"
_INSTANCE_ATTRIBUTES = frozenset({"name", "version", "host", "ssl", "scheme", "timeout"})
_PASSED_THROUGH = ("params", "headers", "data", "json", "cookies")


class HTTPServiceClient(ServiceClient):
    """Subclass it and decorate methods with ``@get()``, ``@post()``...::

        class Hello(HTTPServiceClient):
            def __init__(self):
                super().__init__('Hello', 1)

            @get()
            def person(self, name):
                path = '/{}'.format(name)
                params = {'key': 'value'}
                headers = {'Content-Type': 'application/json'}
                app_name = 'test'
                return locals()

    ``response = await Hello().person('ann')`` sends ``GET /ann?key=value`` to an instance of
    the HTTP service ``Hello`` version 1 chosen through the registry (round-robin, or by
    ``entity`` when the method's dict holds one) and returns the
    :class:`aiohttp.ClientResponse` with its body already read: ``response.status``,
    ``response.headers``, ``await response.json()`` and ``await response.text()`` all work.
    Error statuses are returned, not raised (``response.raise_for_status()`` raises).

    Of the method's dict, ``path`` is required (unless the decorator gave one path);
    ``params``, ``headers``, ``data``, ``json`` and ``cookies`` go to aiohttp as they are;
    ``app_name`` travels in the ``X-Vyked-App`` header; ``entity`` picks the instance; other
    entries (the method's own arguments) are ignored.

    For a service served over HTTPS pass ``ssl=True`` (default verification) or an
    :class:`ssl.SSLContext`: the registry does not record schemes.
    """

    kind = "http"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for attr, value in list(vars(cls).items()):
            specs = routes_of(value)
            if not specs or getattr(value, _SENDER, False):
                continue
            if attr != "request":  # a declared request() may replace the generic one
                check_reserved(cls, HTTPServiceClient, _INSTANCE_ATTRIBUTES, [attr])
            if len(specs) > 1 or specs[0].websocket:
                raise TypeError(f"{cls.__name__}.{attr}: a client method takes exactly one verb decorator")
            setattr(cls, attr, _sender(value, specs[0]))

    def __init__(
        self,
        service_name: str,
        service_version: object,
        *,
        ssl: SSLContext | bool = False,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(service_name, service_version)
        self.ssl = ssl
        self.scheme = "https" if ssl is not False else "http"
        self.timeout = timeout
        self._aiohttp_ssl: SSLContext | bool = ssl if isinstance(ssl, SSLContext) else True
        self._client_timeouts: dict[float, aiohttp.ClientTimeout] = {}

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        headers: Mapping[str, str] | None = None,
        data: Any = None,
        json: Any = None,
        cookies: Mapping[str, str] | None = None,
        app_name: str | None = None,
        entity: object = None,
        timeout: float | None = None,
    ) -> aiohttp.ClientResponse:
        """Send one request without declaring a method: ``await client.request("GET", "/ping")``."""
        values = {
            "path": path,
            "params": params,
            "headers": headers,
            "data": data,
            "json": json,
            "cookies": cookies,
            "app_name": app_name,
            "entity": entity,
        }
        return await self._send(method.upper(), values, timeout or self.timeout)

    def _values(self, method: str, values: Any, spec: RouteSpec) -> dict[str, Any]:
        """Check what a decorated method returned and fill in the decorator's defaults."""
        if not isinstance(values, dict):
            raise TypeError(
                f"{type(self).__name__}.{method}() must return a dict (return locals()), got {type(values).__name__}"
            )
        if "path" not in values and len(spec.paths) == 1:
            values["path"] = spec.paths[0]
        if spec.required_params:
            present = _param_names(values.get("params"))
            missing = [p for p in spec.required_params if p not in present]
            if missing:
                raise InvalidParams(
                    f"{self.name} {spec.method}: missing required query parameters: {', '.join(missing)}"
                )
        return values

    async def _send(self, method: str, values: dict[str, Any], timeout: float) -> aiohttp.ClientResponse:
        path = values.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            raise InvalidParams(f"{self.name} {method}: the request needs a path starting with '/', got {path!r}")
        kwargs: dict[str, Any] = {key: values[key] for key in _PASSED_THROUGH if values.get(key) is not None}
        app_name = values.get("app_name")
        if app_name is not None:
            kwargs["headers"] = {**(kwargs.get("headers") or {}), APP_HEADER: str(app_name)}
        entity = values.get("entity")
        entity_key = None if entity is None else str(entity)

        host = self.host
        if host is None or not host.running or self.name not in host.directory.known:
            host = await self._resolve(timeout)
        pool = host.extension(HTTPClientPool.KEY, HTTPClientPool)
        client_timeout = self._client_timeouts.get(timeout)
        if client_timeout is None:
            client_timeout = self._client_timeouts[timeout] = aiohttp.ClientTimeout(total=timeout)

        tried: set[str] = set()  # instances that refused this request's connection
        last_error: aiohttp.ClientConnectorError | None = None
        while True:
            try:
                instance = host.directory.select(self.name, self.version, "http", entity_key, pool.usable_filter(tried))
            except ServiceUnavailable as exc:
                raise self._unavailable(host, exc, last_error) from last_error
            url = f"{self.scheme}://{_url_host(instance.host)}:{instance.port}{path}"
            try:
                response = await pool.session.request(
                    method, url, timeout=client_timeout, ssl=self._aiohttp_ssl, **kwargs
                )
                # read() keeps the body and hands the connection back to the pool (it closes it
                # on failure), so the response stays fully readable. release() would not do:
                # a released response refuses read().
                await response.read()
                return response
            except aiohttp.ClientConnectorError as exc:
                # Nothing was sent: another instance may take the request.
                pool.mark_unreachable(instance)
                tried.add(instance.node_id)
                last_error = exc
            except TimeoutError:
                raise RequestTimeout(
                    f"{self.name} {method} {path} got no complete answer "
                    f"from {instance.host}:{instance.port} within {timeout} s"
                ) from None
            except aiohttp.ClientError as exc:
                raise ConnectionLost(
                    f"{self.name} {method} {path}: the connection to {instance.host}:{instance.port} failed: {exc}"
                ) from exc

    async def _resolve(self, timeout: float) -> ServiceHost:
        """The slow path: start the host or learn the service's instances first."""
        try:
            async with asyncio.timeout(timeout):
                return await self.resolve_host()
        except TimeoutError:
            raise RequestTimeout(f"could not find instances of {self.name} within {timeout} s") from None

    def _unavailable(
        self, host: ServiceHost, exc: ServiceUnavailable, last_error: aiohttp.ClientConnectorError | None
    ) -> ServiceUnavailable:
        registered = host.directory.candidates(self.name, self.version, "http")
        if not registered:
            return exc
        detail = f": {last_error}" if last_error is not None else ""
        return ServiceUnavailable(
            f"no reachable http instance of {self.name!r} (version {self.version!r}): "
            f"{len(registered)} registered, all refused connections within the last {UNREACHABLE_BACKOFF} s{detail}"
        )


def _param_names(params: Any) -> set[str]:
    """The names in a ``params`` value: a mapping, or pairs as aiohttp also takes them."""
    if not params:
        return set()
    if isinstance(params, Mapping):
        return {str(k) for k in params}
    if isinstance(params, str):
        return {pair.partition("=")[0] for pair in params.split("&")}
    return {str(pair[0]) for pair in params}


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _sender(func: Callable[..., Any], spec: RouteSpec) -> Callable[..., Any]:
    """Replace a decorated client method by one that sends the request it describes."""
    name = func.__name__
    target = as_coroutine_function(func)
    awaited = is_async(func)

    @functools.wraps(func)
    async def send(self: HTTPServiceClient, *args: Any, **kwargs: Any) -> aiohttp.ClientResponse:
        # plain def methods (the seed's style) are called inline: no extra coroutine per request
        values = await call_handler(target, self, *args, **kwargs) if awaited else target(self, *args, **kwargs)
        return await self._send(spec.method, self._values(name, values, spec), spec.timeout or self.timeout)

    setattr(send, _SENDER, True)
    return send
