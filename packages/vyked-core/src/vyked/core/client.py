"""The client side shared by every kind of service client (TCP, HTTP): one client path.

A :class:`ServiceClient` is a local stand-in for a remote service. Every request it sends goes
the same way, whatever the transport:

1. **host**: the client sends through the :class:`~vyked.core.service_host.ServiceHost` it is
   bound to. A binding is final: a client bound to a host that has not started (or has
   stopped) fails with :class:`~vyked.core.exceptions.HostNotRunning` naming that host. Only a
   client that was never bound (one made in a plain script) falls back to the process-wide
   host of :class:`~vyked.core.host.Host`, started on first use.
2. **instance**: the host's :class:`~vyked.core.instances.InstanceDirectory` picks one
   (round-robin, or rendezvous hashing on ``entity``), skipping instances that could not be
   reached within the last second.
3. **failover**: when the transport reports :class:`InstanceUnreachable` (nothing was sent),
   the instance is marked unreachable and another is tried, until none is left
   (:class:`~vyked.core.exceptions.ServiceUnavailable`) or the timeout runs out
   (:class:`~vyked.core.exceptions.RequestTimeout`).

Transports keep a fast path for the common case (host running, instance connected) and call
:meth:`ServiceClient.call` for everything else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, ClassVar, TypeVar

from vyked.core.exceptions import ConnectionLost, HostNotRunning, RequestTimeout, ServiceUnavailable
from vyked.core.instances import Instance
from vyked.core.versions import normalize

if TYPE_CHECKING:
    from vyked.core.service_host import ServiceHost

T = TypeVar("T")

Attempt = Callable[["ServiceHost", Instance], Awaitable[T]]
"""Sends one request to one instance through the host; raises :class:`InstanceUnreachable`
when it certainly sent nothing."""


class InstanceUnreachable(ConnectionLost):
    """The instance could not be reached, so nothing was sent: another instance may take the
    request. Transports raise it; :meth:`ServiceClient.call` handles it and never lets it out."""


class ServiceClient:
    """Local stand-in for a remote service, bound to the host process that uses it."""

    kind: ClassVar[str] = ""
    """``"tcp"`` or ``"http"``: which instances of the service this client uses."""

    default_host: ClassVar[Callable[[], ServiceHost] | None] = None
    """The process-wide host for clients that were never bound; :mod:`vyked.core.host` sets it."""

    def __init__(self, service_name: str, service_version: object) -> None:
        self.name = service_name
        self.version = normalize(service_version)
        self.host: ServiceHost | None = None
        self._bound_by_default = False

    def bind(self, host: ServiceHost) -> None:
        """Send through ``host`` from now on (:meth:`ServiceHost.bind_client` calls this)."""
        self.host = host
        self._bound_by_default = False

    def ready_host(self) -> ServiceHost | None:
        """The host to send through at once, if it runs and knows this service's instances:
        the fast path. None means: go through :meth:`call`."""
        host = self.host
        if host is not None and host.running and self.name in host.directory.known:
            return host
        return None

    async def resolve_host(self) -> ServiceHost:
        """The started host this client works through (see the module docstring)."""
        host = self.host
        if host is None or (self._bound_by_default and _is_stale(host)):
            make_default = ServiceClient.default_host
            if make_default is None:
                raise HostNotRunning(f"{self!r} is bound to no host: attach it to a service or bind it to a host")
            host = make_default()
            host.bind_client(self)
            self._bound_by_default = True  # replaced when that host goes stale, unlike a binding
        elif not host.started:
            raise HostNotRunning(
                f"{self!r} is bound to {host!r}, which has not been started: await host.start() before calling"
            )
        await host.ensure_started()
        await host.watch(self.name)
        return host

    async def call(
        self, what: str, entity: object, timeout: float, attempt: Attempt[T], instance: Instance | None = None
    ) -> T:
        """Send one request the slow way: resolve the host, pick an instance (``instance`` if
        the fast path picked one already), fail over while instances are unreachable. Raises
        :class:`RequestTimeout` when ``timeout`` runs out first; ``what`` names the request in
        messages."""
        try:
            async with asyncio.timeout(timeout) as scope:
                host = self.ready_host() or await self.resolve_host()
                tried: set[str] = set()
                last_error: InstanceUnreachable | None = None
                while True:
                    if instance is None:
                        try:
                            instance = host.directory.select(self.name, self.version, self.kind, entity, tried)
                        except ServiceUnavailable as exc:
                            if last_error is None:
                                raise
                            raise ServiceUnavailable(f"{exc}; last error: {last_error}") from last_error
                    try:
                        return await attempt(host, instance)
                    except InstanceUnreachable as exc:
                        host.directory.mark_unreachable(instance)
                        tried.add(instance.node_id)
                        last_error, instance = exc, None
        except TimeoutError:
            if scope.expired():
                raise RequestTimeout(f"{what} got no answer within {timeout} s") from None
            raise

    def __repr__(self) -> str:
        return f"<{type(self).__name__} for {self.name} v{self.version}>"


def _is_stale(host: ServiceHost) -> bool:
    """A default host left from an ended event loop, or stopped by ``Host.stop()``."""
    if host.stopped:
        return True
    return host.loop is not None and host.loop is not asyncio.get_running_loop()
