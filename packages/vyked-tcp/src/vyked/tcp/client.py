"""``TCPServiceClient``: the caller's stand-in for a remote TCP service."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from vyked.core.client import IDEMPOTENT, NOT_IDEMPOTENT, ServiceClient
from vyked.core.endpoints import check_reserved, collect, install_senders
from vyked.core.exceptions import InvalidParams, ServiceUnavailable, VykedError
from vyked.core.forwarding import LOCALS, RESULT, forwarder, parameter, returns_locals
from vyked.core.instances import Instance
from vyked.core.observe import Observation, Observers, observe
from vyked.core.service_host import ServiceHost
from vyked.tcp.calls import Call
from vyked.tcp.decorators import DEFAULT_REQUEST_TIMEOUT, EndpointSpec, of_kind
from vyked.tcp.pool import POOL, ConnectionPool, InstanceConnection
from vyked.tcp.pubsub.hub import attach_client
from vyked.tcp.routes import Route, in_flight


class TCPServiceClient(ServiceClient):
    """Subclass it, give it ``@request`` methods (and ``@subscribe`` handlers)::

        class IdentityClient(TCPServiceClient):
            def __init__(self):
                super().__init__("IdentityService", 1)

            @request
            def create(self, user_name, password):
                return locals()

    ``await client.create("ann", "secret")`` then calls ``create`` on an instance of
    IdentityService version 1, chosen by the client's :attr:`balancing` (or by ``entity``, if
    the method's dict holds one). ``@request(idempotent=True)`` lets a request that may have
    run be sent again after a lost connection (see :class:`~vyked.core.client.RetryPolicy`).
    """

    kind = "tcp"
    _subscriptions: ClassVar[dict[str, tuple[str, EndpointSpec]]] = {}

    def __init__(
        self,
        service_name: str,
        service_version: object,
        ssl_context: ssl.SSLContext | None = None,
        *,
        balancing: str | None = None,
    ) -> None:
        """``ssl_context`` verifies instances that serve TLS (default: the host's ``VYKED_TLS_*``
        settings, else the system's CAs); plaintext instances are reached without TLS.
        ``balancing`` overrides the class's :attr:`balancing`."""
        super().__init__(service_name, service_version, balancing=balancing)
        self.ssl_context = ssl_context
        self._pool: ConnectionPool | None = None
        """The bound host's connection pool, once used (see :meth:`_connections`)."""
        self._observers = Observers()
        """The bound host's observers (the host keeps the object, changing its contents)."""
        self.stopwatches = self._observers.stopwatches(self.labels)
        """What times this client's calls when metrics are the host's only observer."""
        self._route: Route | None = None
        """The pool's route to this service, while current (see :mod:`vyked.tcp.routes`)."""
        self._route_load: Callable[[InstanceConnection], int] | None = None
        """How least-outstanding balancing weighs a route's connection: its requests in flight,
        or what this client's :meth:`outstanding` says of its instance where a subclass
        overrides that (as the directory's balancing asks it)."""
        if self._load is not None:
            if type(self).outstanding is TCPServiceClient.outstanding:
                self._route_load = in_flight
            else:
                load = self._load
                self._route_load = lambda ic: load(ic.instance)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declared = collect(cls, EndpointSpec, of_kind("request", "subscribe", "xsubscribe"))
        check_reserved(cls, TCPServiceClient, declared, {"name", "version", "host", "ssl_context"})
        cls._subscriptions = {
            spec.name: (attr, spec)
            for attr, specs in declared.items()
            for spec in specs
            if spec.kind in ("subscribe", "xsubscribe")
        }
        install_senders(cls, EndpointSpec, _requester, where=of_kind("request"), what="@request")

    def bind(self, host: ServiceHost) -> None:
        super().bind(host)
        self._pool = None
        self._route = None
        self._observers = host.observers
        self.stopwatches = host.observers.stopwatches(self.labels)
        if self._subscriptions:
            attach_client(host, self)

    def _find_route(self) -> Route | None:
        """The pool's route to this client's service, if its host runs and has one ready."""
        host = self.host
        if host is None or not host.running:
            return None
        return (self._pool or self._connections(host)).route(self.name, self.version)

    def _connections(self, host: ServiceHost) -> ConnectionPool:
        """``host``'s connection pool, kept for the next requests: a host keeps its pool while
        it runs, and this client sends through one host until :meth:`bind` changes it."""
        pool = self._pool = host.extension(POOL)
        return pool

    def outstanding(self, instance: Instance) -> int:
        host = self.host
        return 0 if host is None else (self._pool or self._connections(host)).outstanding(instance)

    def send_request(
        self,
        endpoint: str,
        params: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        idempotent: bool = False,
    ) -> asyncio.Future[Any]:
        """Call ``endpoint`` with ``params`` without declaring a ``@request`` method: for tools
        and scripts (``vyked call`` uses it). ``params`` is what a ``@request`` method returns:
        the endpoint's parameters, plus ``entity`` (routing) and ``app_name`` (the caller's
        name) if wanted. ``timeout`` defaults to a ``@request``'s; ``idempotent`` as in
        ``@request(idempotent=True)``. Raises what a ``@request`` call raises."""
        limit = DEFAULT_REQUEST_TIMEOUT if timeout is None else timeout
        call = Call(endpoint, limit, IDEMPOTENT if idempotent else NOT_IDEMPOTENT)
        return self._send_request(call, dict(params or {}))

    def _send_request(self, call: Call, params: Any) -> asyncio.Future[Any]:
        """Send what a ``@request`` method returned (see :meth:`send_request`)."""
        if type(params) is not dict and not isinstance(params, dict):
            raise InvalidParams(
                f"@request method {call.endpoint}() must return a dict of parameters (return locals()), "
                f"got {type(params).__name__}"
            )
        params.pop("self", None)
        entity = None
        app = ""
        if "entity" in params or "app_name" in params:
            entity = params.pop("entity", None)
            app = _app(params.pop("app_name", None))
        return self._send(call, params, entity, app)

    def _send(self, call: Call, params: dict[str, Any], entity: object, app: str) -> asyncio.Future[Any]:
        """Send the request: ``params`` are the endpoint's parameters, ``entity`` routes it,
        ``app`` names the caller."""
        instance: Instance | None = None
        ic: InstanceConnection | None = None
        host = self.host
        route = self._route
        if route is None or not route.current:
            route = self._route = self._find_route()
        if route is not None and not route.breakers and host is not None and host.running:
            # the fast path: every instance connected, all healthy
            ic = route.only or route.pick(entity, self._route_load)
            conn = ic.connection
            if conn is None or not conn.ready:  # closed, and the pool not told yet: a new one
                instance, ic = ic.instance, None
        elif host is not None and self.ready_host() is not None:
            try:  # some instance is unhealthy, or not connected yet: the directory chooses
                instance = host.directory.select(self.name, self.version, "tcp", entity, (), self._load)
            except ServiceUnavailable as exc:
                if self._observers:
                    observe(self._observers, self.labels(call.endpoint), app or None).end(exc)
                failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                failed.set_exception(exc)
                return failed
            ic = (self._pool or self._connections(host)).ready(instance)
        if ic is not None:  # sent at once: no task, no coroutine, no closure
            observers = self._observers
            if not observers:
                return ic.request(self.name, call, params, app, self, entity)
            if observers.timings is not None and not app:
                # metrics alone: the pool times the call with a stopwatch, nothing made per call
                try:  # the client's stopwatches are in step with the observers
                    stopwatch = self.stopwatches.by_name[call.endpoint]
                except KeyError:
                    stopwatch = self.stopwatches.of(call.endpoint)
                try:
                    return ic.request(self.name, call, params, app, self, entity, stopwatch)
                except BaseException as exc:
                    stopwatch.record(0.0, exc)  # it failed at once
                    raise
            observation = observe(observers, self.labels(call.endpoint), app or None)
            try:
                return ic.request(self.name, call, params, app, self, entity, observation, observation.carrier)
            except BaseException as exc:
                observation.end(exc)
                raise
        return asyncio.ensure_future(
            self.call(
                f"{self.name}.{call.endpoint}",
                entity,
                call.timeout,
                self._attempt(call, params, app),
                instance,
                policy=call.policy,
                endpoint=call.endpoint,
                app=app or None,
            )
        )

    def resend(
        self,
        error: VykedError,
        instance: Instance,
        sent_at: float,
        call: Call,
        params: dict[str, Any],
        entity: object,
        app: str = "",
        observation: Observation | None = None,
    ) -> asyncio.Future[Any]:
        """Take over a request the fast path sent to ``instance`` at ``sent_at`` (event-loop
        time), which failed with ``error``: :meth:`call` decides whether to send it again (and
        ends ``observation``, the fast path's)."""
        attempt = self._attempt(call, params, app)
        return asyncio.ensure_future(
            self.call(
                f"{self.name}.{call.endpoint}", entity, call.timeout, attempt, instance,
                policy=call.policy, failed=error, deadline=sent_at + call.timeout, endpoint=call.endpoint,
                app=app or None, observation=observation,
            )
        )  # fmt: skip

    def _attempt(
        self, call: Call, params: dict[str, Any], app: str
    ) -> Callable[[ServiceHost, Instance, Observation | None], Awaitable[Any]]:
        async def attempt(host: ServiceHost, instance: Instance, observation: Observation | None) -> Any:
            ic = await host.extension(POOL).connect(instance, self.ssl_context)
            # call() ends the observation, not the pool: only its trace context goes along
            trace = None if observation is None else observation.carrier
            return await ic.request(self.name, call, params, app, trace=trace)

        return attempt


def _app(app_name: object) -> str:
    """vyked 2.x convention: the caller's name rides along in ``locals()`` as ``app_name``; it
    is no parameter of the endpoint."""
    return "" if app_name is None else str(app_name)


def _requester(method: Callable[..., Any], spec: EndpointSpec) -> Callable[..., asyncio.Future[Any]]:
    """What a ``@request`` method becomes: it sends the parameters the method returns. A
    method that only returns ``locals()`` is not called: the sender makes that dict itself."""
    timeout = DEFAULT_REQUEST_TIMEOUT if spec.timeout is None else spec.timeout
    call = Call(spec.name, timeout, IDEMPOTENT if spec.idempotent else NOT_IDEMPOTENT)
    if returns_locals(method):
        return forwarder(method, "_send", (call, LOCALS, parameter("entity"), parameter("app_name", "", _app)))
    return forwarder(method, "_send_request", (call, RESULT))
