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
3. **retries**: a request that certainly did not run (:class:`InstanceUnreachable`: nothing
   was sent; or the instance refused it, ``draining`` or ``overloaded``) goes to another
   instance at once. One that may have run (the connection died with it in flight, or no
   answer came in time) is sent again only if the client declared it idempotent
   (:class:`RetryPolicy`), after a jittered pause, a bounded number of times. Every retry
   happens within the request's one timeout: when it runs out the caller gets
   :class:`~vyked.core.exceptions.RequestTimeout`; when no instance is left,
   :class:`~vyked.core.exceptions.ServiceUnavailable` saying what the last one answered.
4. **health**: failures feed the per-instance circuit breakers of :mod:`vyked.core.health`,
   which balancing consults.

Transports keep a fast path for the common case (host running, instance connected) and call
:meth:`ServiceClient.call` for everything else.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, TypeVar

from vyked.core.backoff import Backoff
from vyked.core.balancing import BALANCING
from vyked.core.exceptions import (
    ConfigurationError,
    ConnectionLost,
    Draining,
    HostNotRunning,
    RequestTimeout,
    ServiceUnavailable,
    VykedError,
)
from vyked.core.health import InstanceHealth
from vyked.core.instances import Instance, Load
from vyked.core.observe import Labels, Observation
from vyked.core.versions import normalize

if TYPE_CHECKING:
    from vyked.core.service_host import ServiceHost

T = TypeVar("T")

Attempt = Callable[["ServiceHost", Instance, "Observation | None"], Awaitable[T]]
"""Sends one request to one instance through the host; raises :class:`InstanceUnreachable`
when it certainly sent nothing."""


logger = logging.getLogger(__name__)


class InstanceUnreachable(ConnectionLost):
    """The instance could not be reached, so nothing was sent: another instance may take the
    request. Transports raise it; :meth:`ServiceClient.call` handles it and never lets it out."""

    not_executed = True


RETRY_BACKOFF = Backoff(base=0.02, cap=0.5)
"""Pauses before sending an idempotent request again: 10-20 ms, doubling up to 0.25-0.5 s."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When a request that may have run is sent again.

    Requests that certainly did not run are always retried on another instance; this policy
    is about the others. Only an ``idempotent`` request (running it twice does no harm) is
    sent again after a lost connection or a timeout, at most ``attempts`` times in all, with
    ``attempt_timeout`` seconds for each attempt (None: whatever is left of the request's
    timeout, so that a timeout ends the request).
    """

    idempotent: bool = False
    attempts: int = 3
    attempt_timeout: float | None = None
    backoff: Backoff = RETRY_BACKOFF

    def may_resend(self, error: VykedError, attempts_made: int) -> bool:
        """After ``attempts_made`` attempts that may have run, the last failing with ``error``."""
        return self.idempotent and attempts_made < self.attempts and isinstance(error, ConnectionLost | RequestTimeout)


NOT_IDEMPOTENT = RetryPolicy()
IDEMPOTENT = RetryPolicy(idempotent=True)


def report_outcome(health: InstanceHealth, instance: Instance, error: BaseException | None) -> None:
    """Tell the instance's circuit breaker how a request went (None: it was answered)."""
    if error is None or (isinstance(error, VykedError) and error.code == "remote_error"):
        if health:
            health.succeeded(instance)
    elif isinstance(error, InstanceUnreachable):
        health.unreachable(instance, error)
    elif isinstance(error, Draining):
        health.draining(instance)
    elif isinstance(error, ConnectionLost | RequestTimeout) or getattr(error, "code", "") == "overloaded":
        health.failed(instance, error)
    elif health:
        health.succeeded(instance)  # any other answer (unknown endpoint...) came from a live instance


class ServiceClient:
    """Local stand-in for a remote service, bound to the host process that uses it."""

    kind: ClassVar[str] = ""
    """``"tcp"`` or ``"http"``: which instances of the service this client uses."""

    default_host: ClassVar[Callable[[], ServiceHost] | None] = None
    """The process-wide host for clients that were never bound; :mod:`vyked.core.host` sets it."""

    balancing: ClassVar[str] = "least_outstanding"
    """How this client picks among instances: ``"least_outstanding"`` (the default: the less
    loaded of two, round-robin while loads are equal; see :mod:`vyked.core.balancing`) or
    ``"round_robin"``. A class attribute, or the ``balancing`` argument of subclasses that
    take one."""

    def __init__(self, service_name: str, service_version: object, *, balancing: str | None = None) -> None:
        self.name = service_name
        self.version = normalize(service_version)
        if balancing is not None:
            self.balancing = balancing  # type: ignore[misc]  # per instance, shadowing the class default
        if self.balancing not in BALANCING:
            raise ConfigurationError(
                f"{type(self).__name__}: unknown balancing {self.balancing!r}; choose one of {', '.join(BALANCING)}"
            )
        self._load: Load | None = self.outstanding if self.balancing == "least_outstanding" else None
        self.host: ServiceHost | None = None
        self._bound_by_default = False
        self._labels: dict[str, Labels] = {}

    def labels(self, endpoint: str) -> Labels:
        """What observers see a call of ``endpoint`` as (:mod:`vyked.core.observe`); made once."""
        labels = self._labels.get(endpoint)
        if labels is None:
            labels = self._labels[endpoint] = ("client", self.kind, self.name, self.version, endpoint)
        return labels

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

    def outstanding(self, instance: Instance) -> int:
        """Requests this process has in flight to ``instance`` (least-outstanding balancing);
        transports override it."""
        return 0

    def select(self, host: ServiceHost, entity: object, tried: set[str] | frozenset[str] = frozenset()) -> Instance:
        """Pick the instance for one request with this client's balancing."""
        return host.directory.select(self.name, self.version, self.kind, entity, tried, self._load)

    async def call(
        self,
        what: str,
        entity: object,
        timeout: float,
        attempt: Attempt[T],
        instance: Instance | None = None,
        *,
        policy: RetryPolicy = NOT_IDEMPOTENT,
        failed: VykedError | None = None,
        deadline: float | None = None,
        endpoint: str = "",
        app: str | None = None,
        observation: Observation | None = None,
    ) -> T:
        """Send one request the slow way: resolve the host, pick an instance (``instance`` if
        the fast path picked one already), retry as the module docstring says. Raises
        :class:`RequestTimeout` when ``timeout`` runs out first; ``what`` names the request in
        messages. ``failed`` is the error of an attempt the fast path made on ``instance``
        (so that this call starts with the retry), and ``deadline`` (event-loop time) when the
        ``timeout`` started counting then.

        The host's observers (:mod:`vyked.core.observe`) see the call once, as ``endpoint``
        (default: ``what``) called by ``app``, however many attempts it takes; ``observation``
        is the one the fast path started already."""
        # Observed from here if the client's host is known, else once _call has resolved it.
        host = self.host
        if observation is None and host is not None and host.observers:
            observation = Observation(host.observers, self.labels(endpoint or what), app)
        observed = _Observed(observation, endpoint or what, app)
        try:
            result = await self._call(what, entity, timeout, attempt, instance, policy, failed, deadline, observed)
        except BaseException as exc:
            if observed.observation is not None:
                observed.observation.end(exc)
            raise
        if observed.observation is not None:
            observed.observation.end()
        return result

    async def _call(
        self,
        what: str,
        entity: object,
        timeout: float,
        attempt: Attempt[T],
        instance: Instance | None,
        policy: RetryPolicy,
        failed: VykedError | None,
        deadline: float | None,
        observed: _Observed,
    ) -> T:
        if deadline is None:
            deadline = asyncio.get_running_loop().time() + timeout
        tried: set[str] = set()
        resent = 0  # attempts that may have run
        last_error: VykedError | None = None
        host: ServiceHost | None = None
        try:
            async with asyncio.timeout_at(deadline) as scope:
                host = self.ready_host() or await self.resolve_host()
                if observed.observation is None and host.observers:
                    observed.observation = Observation(host.observers, self.labels(observed.endpoint), observed.app)
                while True:
                    if failed is None:
                        if instance is None:
                            instance = self._select_or_explain(host, entity, tried, last_error)
                        try:
                            if policy.attempt_timeout is None:
                                result = await attempt(host, instance, observed.observation)
                            else:
                                async with asyncio.timeout(policy.attempt_timeout):
                                    result = await attempt(host, instance, observed.observation)
                        except VykedError as exc:
                            failed = exc
                        except TimeoutError:
                            if scope.expired():
                                raise
                            failed = RequestTimeout(
                                f"{what} got no answer from {instance.describe()} within {policy.attempt_timeout} s"
                            )
                        else:
                            report_outcome(host.directory.health, instance, None)
                            return result
                    assert instance is not None
                    error, failed, last_error = failed, None, failed
                    report_outcome(host.directory.health, instance, error)
                    if error.not_executed:
                        tried.add(instance.node_id)
                    elif policy.may_resend(error, resent + 1):
                        resent += 1
                        logger.info("%s: sending it again (idempotent) after: %s", what, error)
                        instance = None
                        await asyncio.sleep(policy.backoff.compute(resent - 1))
                    else:
                        raise error
                    instance = None
        except TimeoutError:
            if scope.expired():
                if host is not None and instance is not None and failed is None:  # no answer in time
                    report_outcome(host.directory.health, instance, RequestTimeout(what))
                detail = f"; last error: {last_error}" if last_error is not None else ""
                raise RequestTimeout(f"{what} got no answer within {timeout} s{detail}") from None
            raise

    def _select_or_explain(
        self, host: ServiceHost, entity: object, tried: set[str], last_error: VykedError | None
    ) -> Instance:
        try:
            return self.select(host, entity, tried)
        except ServiceUnavailable as exc:
            if last_error is None:
                raise
            raise ServiceUnavailable(f"{exc}; last error: {type(last_error).__name__}: {last_error}") from last_error

    def __repr__(self) -> str:
        return f"<{type(self).__name__} for {self.name} v{self.version}>"


class _Observed:
    """The observation of one call, once there is one."""

    __slots__ = ("app", "endpoint", "observation")

    def __init__(self, observation: Observation | None, endpoint: str, app: str | None) -> None:
        self.observation = observation
        self.endpoint = endpoint
        self.app = app


def _is_stale(host: ServiceHost) -> bool:
    """A default host left from an ended event loop, or stopped by ``Host.stop()``."""
    if host.stopped:
        return True
    return host.loop is not None and host.loop is not asyncio.get_running_loop()
