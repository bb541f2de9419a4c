"""A host's subscriptions, and running their handlers.

Handlers are ``@subscribe`` / ``@xsubscribe`` methods of the host's ``TCPServiceClient``\\ s,
in any of the three styles (``async def``, plain ``def``, ``yield from`` generators). An event
reaches every subscription of its key on this host. Plain ``def`` handlers run in the handler
thread pool (:mod:`vyked.core.threads`) unless declared ``inline=True``; the others run on the
event loop. A handler that raises is logged and counted and never stops delivery; for
exclusive subscriptions the failure is reported to the transport, which redelivers.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from vyked.core.client import ServiceClient
from vyked.core.handler_styles import Execution, as_coroutine_function, execution_of, is_handler_failure
from vyked.core.observe import EventScope, Observer, Observers
from vyked.core.tasks import TaskSet
from vyked.core.threads import default_pool
from vyked.tcp.decorators import EndpointSpec, SubscriptionStrategy
from vyked.tcp.pubsub.events import TRACE_FIELD, EventKey, decode_payload
from vyked.tcp.pubsub.settings import PubSubStats

logger = logging.getLogger(__name__)


class HandlerFailed(Exception):
    """An exclusive handler raised a ``BaseException`` that is not an ``Exception`` (2.x
    examples' ``UserException(BaseException)``): what :meth:`SubscriptionTable.handle` raises
    instead, so that the transport redelivers the event as for any failed handler."""


Route = tuple[str, SubscriptionStrategy]
"""An exclusive subscription route: (group, strategy)."""


@dataclass(frozen=True, slots=True, eq=False)
class Subscription:
    """One handler for one event; exclusive within ``group`` when ``strategy`` is set."""

    key: EventKey
    handler: Callable[..., Any]
    label: str
    group: str = ""
    strategy: SubscriptionStrategy | None = None
    execution: Execution = Execution.LOOP
    """Where the handler runs: on the loop, in a pool thread, or inline (plain ``def``)."""

    @property
    def exclusive(self) -> bool:
        return self.strategy is not None


def subscriptions_of(client: ServiceClient, group: str) -> list[Subscription]:
    """The subscriptions a ``TCPServiceClient`` declares, bound to it."""
    specs: dict[str, tuple[str, EndpointSpec]] = getattr(client, "_subscriptions", {})
    found = []
    for event, (attr, spec) in specs.items():
        method = getattr(client, attr)
        found.append(
            Subscription(
                key=EventKey.of(client.name, client.version, event),
                handler=as_coroutine_function(method),
                execution=execution_of(method, inline=spec.inline),
                label=f"{type(client).__name__}.{attr}",
                group=group if spec.kind == "xsubscribe" else "",
                strategy=(spec.strategy or SubscriptionStrategy.RANDOM) if spec.kind == "xsubscribe" else None,
            )
        )
    return found


class SubscriptionTable:
    """Every subscription of one host, by event key."""

    def __init__(self, stats: PubSubStats, observers: list[Observer] | None = None) -> None:
        self.stats = stats
        self.observers = observers if isinstance(observers, Observers) else Observers(observers or ())
        """The host's observers: told of each event that reaches handlers."""
        self._broadcast: dict[EventKey, list[Subscription]] = {}
        self._exclusive: dict[tuple[EventKey, str], list[Subscription]] = {}
        self._routes: dict[EventKey, dict[str, SubscriptionStrategy]] = {}
        self._tasks = TaskSet()

    def add(self, subscriptions: Iterable[Subscription]) -> None:
        for sub in subscriptions:
            if sub.strategy is None:
                self._broadcast.setdefault(sub.key, []).append(sub)
            else:
                self._exclusive.setdefault((sub.key, sub.group), []).append(sub)
                self._routes.setdefault(sub.key, {})[sub.group] = sub.strategy

    # -- queries -------------------------------------------------------------------------------

    def broadcast_keys(self) -> list[EventKey]:
        return list(self._broadcast)

    def exclusive_routes(self) -> dict[Route, list[EventKey]]:
        """Exclusive event keys by (group, strategy)."""
        routes: dict[Route, list[EventKey]] = {}
        for key, groups in self._routes.items():
            for group, strategy in groups.items():
                routes.setdefault((group, strategy), []).append(key)
        return routes

    def exclusive_of(self, key: EventKey) -> dict[str, SubscriptionStrategy]:
        """Groups (with their strategy) that take ``key`` exclusively on this host."""
        return self._routes.get(key, {})

    def services(self) -> set[tuple[str, str]]:
        """(service, major version) pairs this host subscribes to."""
        keys = [*self._broadcast, *self._routes]
        return {(k.service, k.major) for k in keys}

    def keys_of(self, service: str, major: str) -> list[EventKey]:
        keys = [*self._broadcast, *self._routes]
        return [k for k in dict.fromkeys(keys) if k.service == service and k.major == major]

    def __bool__(self) -> bool:
        return bool(self._broadcast or self._routes)

    # -- delivery ------------------------------------------------------------------------------

    def deliver(self, key: EventKey, payload: bytes | msgspec.Raw, trace: Mapping[str, str] | None = None) -> None:
        """Hand a broadcast event to every broadcast handler of ``key``; never raises.
        ``trace``: the publisher's trace context (else the payload's :data:`TRACE_FIELD`)."""
        subs = self._broadcast.get(key)
        if not subs:
            return
        fields = self._decode(key, payload)
        if fields is None:
            return
        carried = _trace_of(fields, trace)
        self.stats.received += 1
        scope = self._observe(key, False, carried) if self.observers.on_receive else None
        if scope is None:
            self._run_broadcast(subs, fields)
        else:
            scope.context.run(self._run_broadcast, subs, fields)
            scope.end()

    def _run_broadcast(self, subs: list[Subscription], fields: dict[str, Any]) -> None:
        for sub in subs:
            if sub.execution is Execution.THREAD:
                future = default_pool().submit(sub.handler, **fields)
                future.add_done_callback(functools.partial(self._thread_returned, sub))
                continue
            try:
                result = sub.handler(**fields)
            except BaseException as exc:
                if not is_handler_failure(exc):
                    raise
                self._failed(sub, exc)
                continue
            if inspect.isawaitable(result):
                self._tasks.spawn(self._finish(sub, result))

    async def handle(
        self,
        key: EventKey,
        group: str,
        payload: bytes | msgspec.Raw | dict[str, Any],
        trace: Mapping[str, str] | None = None,
    ) -> None:
        """Run the exclusive handlers of ``key`` in ``group``; raises if one of them raised.
        ``trace``: the publisher's trace context (else the payload's :data:`TRACE_FIELD`)."""
        fields = payload if isinstance(payload, dict) else decode_payload(payload)
        carried = _trace_of(fields, trace)
        self.stats.received += 1
        scope = self._observe(key, True, carried) if self.observers.on_receive else None
        if scope is None:
            await self._run_exclusive(key, group, fields)
            return
        try:
            await asyncio.get_running_loop().create_task(self._run_exclusive(key, group, fields), context=scope.context)
        except BaseException as exc:
            scope.end(exc)
            raise
        scope.end()

    def _observe(self, key: EventKey, exclusive: bool, carrier: Mapping[str, str] | None) -> EventScope | None:
        """Tell the observers an event arrived; the scope its handlers run in, if one gives it."""
        scope: EventScope | None = None
        for observer in self.observers.on_receive:
            given = observer.event_received(key.service, key.major, key.event, exclusive, carrier)
            if scope is None:
                scope = given
        return scope

    async def _run_exclusive(self, key: EventKey, group: str, fields: dict[str, Any]) -> None:
        error: Exception | None = None
        for sub in self._exclusive.get((key, group), ()):
            try:
                if sub.execution is Execution.THREAD:
                    await default_pool().submit(sub.handler, **fields)
                    continue
                result = sub.handler(**fields)
                if inspect.isawaitable(result):
                    await result
            except BaseException as exc:
                if not is_handler_failure(exc):
                    raise
                self._failed(sub, exc)
                error = exc if isinstance(exc, Exception) else HandlerFailed(f"{type(exc).__name__}: {exc}")
        if error is not None:
            raise error

    async def _finish(self, sub: Subscription, result: Awaitable[Any]) -> None:
        try:
            await result
        except BaseException as exc:
            if not is_handler_failure(exc):
                raise
            self._failed(sub, exc)

    def _thread_returned(self, sub: Subscription, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is None:
            return
        if not is_handler_failure(exc):
            raise exc  # SystemExit, KeyboardInterrupt: as if the handler had run inline
        self._failed(sub, exc)

    def _failed(self, sub: Subscription, exc: BaseException) -> None:
        self.stats.handler_errors += 1
        logger.error("subscriber %s for %s raised %s: %s", sub.label, sub.key, type(exc).__name__, exc, exc_info=exc)

    def _decode(self, key: EventKey, payload: bytes | msgspec.Raw) -> dict[str, Any] | None:
        try:
            return decode_payload(payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            logger.error("dropping %s: its payload is not a JSON object (%s)", key, exc)
            return None

    async def drain(self, deadline: float) -> None:
        """Let the broadcast handlers running finish, until ``deadline`` at most."""
        await self._tasks.wait(deadline - asyncio.get_running_loop().time())

    async def close(self) -> None:
        """Cancel broadcast handlers still running."""
        await self._tasks.close()


def _trace_of(fields: dict[str, Any], trace: Mapping[str, str] | None) -> Mapping[str, str] | None:
    """The trace context of an event: ``trace`` (from the packet), else the payload's
    :data:`TRACE_FIELD` (Redis), taken out of ``fields``; a malformed one is ignored."""
    carried = fields.pop(TRACE_FIELD, None)
    if trace:
        return trace
    if isinstance(carried, dict) and all(isinstance(v, str) for v in carried.values()):
        return carried
    return None
