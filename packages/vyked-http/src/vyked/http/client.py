"""``HTTPServiceClient``: the caller's stand-in for a remote HTTP service.

A decorated client method describes a request (it returns ``locals()``); the sender that
:func:`~vyked.core.endpoints.install_senders` puts in its place checks the description and
hands one *attempt* to :meth:`ServiceClient.call <vyked.core.client.ServiceClient.call>`,
which finds the host and the instance, fails over and enforces the timeout. An attempt is one
aiohttp request to one instance, with aiohttp's errors translated into vyked's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from ssl import SSLContext
from typing import Any

import aiohttp

from vyked.core.client import IDEMPOTENT, NOT_IDEMPOTENT, InstanceUnreachable, ServiceClient
from vyked.core.endpoints import check_reserved, collect, install_senders
from vyked.core.exceptions import (
    AuthenticationFailed,
    ConnectionLost,
    DefinitionError,
    Draining,
    ExceptionMap,
    InvalidParams,
    Overloaded,
    RequestTimeout,
    map_exceptions,
)
from vyked.core.handler_styles import as_coroutine_function, call_handler, is_async
from vyked.core.instances import Instance
from vyked.core.observe import Observation
from vyked.core.service_host import ServiceHost
from vyked.http.decorators import RouteSpec
from vyked.http.endpoint_wrapper import APP_HEADER as APP_HEADER  # re-exported: where it was
from vyked.http.pool import POOL

DEFAULT_TIMEOUT = 30.0
"""Seconds a request waits for its complete answer unless the client or the decorator says otherwise."""


_INSTANCE_ATTRIBUTES = frozenset({"name", "version", "host", "ssl", "timeout", "balancing"})

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
"""Methods HTTP defines as idempotent: sent again after a lost connection (see
:class:`~vyked.core.client.RetryPolicy`)."""

_REFUSALS: dict[str, type[Draining | Overloaded]] = {"draining": Draining, "overloaded": Overloaded}
_PASSED_THROUGH = ("params", "headers", "data", "json", "cookies")

_AIOHTTP_ERRORS: ExceptionMap = {
    # Nothing was sent: ServiceClient.call marks the instance and lets another take the request.
    aiohttp.ClientConnectorError: InstanceUnreachable,
    TimeoutError: RequestTimeout,
    aiohttp.ClientError: ConnectionLost,
}


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

    The registry records which instances serve HTTPS: the client uses ``https`` for those and
    ``http`` for the others, without being told. It verifies HTTPS instances with its host's
    TLS settings (``VYKED_TLS_CA``..., else the system's CAs), or with an
    :class:`ssl.SSLContext` given as ``ssl=``. An instance whose certificate does not verify
    fails the request at once with :class:`~vyked.core.exceptions.AuthenticationFailed`.

    An instance that answers 503 ``draining`` or ``overloaded`` did not run the request: it
    goes to another instance. ``GET``, ``HEAD``, ``PUT``, ``DELETE`` and ``OPTIONS`` requests
    (idempotent, as HTTP defines them) are also sent again after a lost connection.
    """

    kind = "http"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for attr in collect(cls, RouteSpec, where=_is_websocket):
            raise DefinitionError(f"{cls.__qualname__}.{attr}: @websocket declares a service endpoint, not a request")
        # a declared request() may replace the generic one
        check_reserved(cls, HTTPServiceClient, collect(cls, RouteSpec), _INSTANCE_ATTRIBUTES, allowed=("request",))
        install_senders(cls, RouteSpec, _sender, what="verb decorator")

    def __init__(
        self,
        service_name: str,
        service_version: object,
        *,
        ssl: SSLContext | bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        balancing: str | None = None,
    ) -> None:
        """``ssl``: an :class:`ssl.SSLContext` verifies the instances that serve HTTPS in place of
        the host's TLS settings. ``True`` or ``False`` (the seed's way of asking for HTTPS) are
        accepted and change nothing: the registry says which instances serve HTTPS.
        ``balancing`` overrides the class's :attr:`balancing`."""
        super().__init__(service_name, service_version, balancing=balancing)
        self.ssl = ssl
        self.timeout = timeout
        self._ssl_context = ssl if isinstance(ssl, SSLContext) else None

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
        return await self._send(method.upper(), values, timeout or self.timeout, method.upper())

    def outstanding(self, instance: Instance) -> int:
        host = self.host
        return 0 if host is None else host.extension(POOL).outstanding[instance.node_id]

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

    async def _send(self, method: str, values: dict[str, Any], timeout: float, endpoint: str) -> aiohttp.ClientResponse:
        """Send the request ``values`` describe; observers see it as ``endpoint`` (the client
        method's name, or the HTTP method for :meth:`request`: paths would be too many labels)."""
        path = values.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            raise InvalidParams(f"{self.name} {method}: the request needs a path starting with '/', got {path!r}")
        kwargs: dict[str, Any] = {key: values[key] for key in _PASSED_THROUGH if values.get(key) is not None}
        app_name = values.get("app_name")
        if app_name is not None:
            kwargs["headers"] = {**(kwargs.get("headers") or {}), APP_HEADER: str(app_name)}
        own_context = self._ssl_context
        what = f"{method} {path}"

        async def attempt(
            host: ServiceHost, instance: Instance, observation: Observation | None
        ) -> aiohttp.ClientResponse:
            pool = host.extension(POOL)
            sent = kwargs
            if observation is not None and observation.carrier:  # trace context, as HTTP headers
                sent = {**kwargs, "headers": {**(kwargs.get("headers") or {}), **observation.carrier}}
            if instance.tls:
                url = f"https://{_url_host(instance.host)}:{instance.port}{path}"
                ssl: SSLContext | bool = own_context or pool.ssl_context
            else:
                url = f"http://{_url_host(instance.host)}:{instance.port}{path}"
                ssl = True  # aiohttp's default; ignored for http
            pool.outstanding[instance.node_id] += 1
            try:
                response = await pool.session.request(method, url, ssl=ssl, **sent)
                # read() keeps the body and hands the connection back to the pool (it closes it
                # on failure), so the response stays fully readable. release() would not do:
                # a released response refuses read().
                await response.read()
            except aiohttp.ClientConnectorCertificateError as exc:
                # not InstanceUnreachable: another instance would most likely fail alike, and an
                # untrusted certificate is a configuration error to report, not to route around
                raise AuthenticationFailed(
                    f"{what}: {instance.describe()} serves a TLS certificate this host does not trust: "
                    f"{_verify_message(exc)}"
                ) from exc
            except Exception:
                # translated here, on failure only: a context manager around every request would
                # cost microseconds on the hot path
                with map_exceptions(_AIOHTTP_ERRORS, f"{what}: the connection to {instance.describe()} failed"):
                    raise
            finally:
                pool.outstanding[instance.node_id] -= 1
                if not pool.outstanding[instance.node_id]:
                    del pool.outstanding[instance.node_id]
            if response.status == 503:
                await _raise_refusal(response, what, instance)
            return response

        policy = IDEMPOTENT if method in IDEMPOTENT_METHODS else NOT_IDEMPOTENT
        app = str(app_name) if app_name is not None else None
        return await self.call(what, values.get("entity"), timeout, attempt, policy=policy, endpoint=endpoint, app=app)


async def _raise_refusal(response: aiohttp.ClientResponse, what: str, instance: Instance) -> None:
    """A 503 that says the instance refused to run the request (``draining``, ``overloaded``)
    raises, so that another instance takes it; any other 503 is the service's answer."""
    try:
        body = await response.json(content_type=None)
    except ValueError:
        return
    refusal = _REFUSALS.get(body.get("error", "")) if isinstance(body, dict) else None
    if refusal is not None:
        raise refusal(f"{what}: {instance.describe()} refused it: {body.get('message', refusal.code)}")


def _param_names(params: Any) -> set[str]:
    """The names in a ``params`` value: a mapping, or pairs as aiohttp also takes them."""
    if not params:
        return set()
    if isinstance(params, Mapping):
        return {str(k) for k in params}
    if isinstance(params, str):
        return {pair.partition("=")[0] for pair in params.split("&")}
    return {str(pair[0]) for pair in params}


def _verify_message(exc: aiohttp.ClientConnectorCertificateError) -> str:
    """Why the certificate did not verify (``self-signed certificate``, ``certificate has
    expired``...)."""
    error = exc.certificate_error
    return getattr(error, "verify_message", None) or str(error)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _is_websocket(spec: RouteSpec) -> bool:
    return spec.websocket


def _sender(func: Callable[..., Any], spec: RouteSpec) -> Callable[..., Any]:
    """The method that replaces a decorated client method: sends the request it describes."""
    name = func.__name__
    target = as_coroutine_function(func)
    awaited = is_async(func)

    async def send(self: HTTPServiceClient, *args: Any, **kwargs: Any) -> aiohttp.ClientResponse:
        # plain def methods (the seed's style) are called inline: no extra coroutine per request
        values = await call_handler(target, self, *args, **kwargs) if awaited else target(self, *args, **kwargs)
        return await self._send(spec.method, self._values(name, values, spec), spec.timeout or self.timeout, name)

    return send
