"""The user-facing decorators of TCP services and clients.

They only attach an :class:`EndpointSpec` to the function (:func:`vyked.core.endpoints.mark`)
and return it unchanged. :class:`~vyked.tcp.service.TCPService` and
:class:`~vyked.tcp.client.TCPServiceClient` read the specs when a subclass is created: ``@api``
methods become endpoints, and ``@request`` and ``@publish`` methods are replaced by senders
that send what the method returns. The work happens in :mod:`vyked.tcp.dispatch`,
:mod:`vyked.tcp.client` and the publish-subscribe modules.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from vyked.core.endpoints import mark, specs_of
from vyked.core.inflight import check_limit

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_REQUEST_TIMEOUT = 30.0
"""Seconds a ``@request`` waits for its answer unless given ``timeout=``."""


class SubscriptionStrategy(enum.Enum):
    """How ``@xsubscribe`` picks the one instance of a subscribing service that gets an event.

    ``SubscriptionStrategy("LEADER")`` also takes the names of vyked 2.x, in any case:
    ``"LEADER"``, ``"RANDOM"`` and ``"DESIGNATION"`` (2.x's default, delivered as RANDOM).
    """

    RANDOM = "random"
    """Spread events across the live instances."""
    LEADER = "leader"
    """Send every event to the oldest live instance."""

    @classmethod
    def _missing_(cls, value: object) -> SubscriptionStrategy | None:
        if isinstance(value, str):
            name = value.strip().lower()
            return _STRATEGY_ALIASES.get(name) or cls._value2member_map_.get(name)  # type: ignore[return-value]
        return None

    @classmethod
    def parse(cls, value: SubscriptionStrategy | str) -> SubscriptionStrategy:
        """``value`` as a strategy (a member, or a name in any case); anything else is a
        ``ValueError`` naming the valid ones."""
        try:
            return cls(value)
        except ValueError:
            valid = ", ".join([*(repr(m.name) for m in cls), *(repr(a.upper()) for a in _STRATEGY_ALIASES)])
            raise ValueError(
                f"unknown subscription strategy {value!r}: use SubscriptionStrategy.RANDOM or .LEADER, "
                f"or one of the names {valid} (any case)"
            ) from None


_STRATEGY_ALIASES: dict[str, SubscriptionStrategy] = {"designation": SubscriptionStrategy.RANDOM}
"""Names vyked 2.x accepted beside the members' own: its default ``'DESIGNATION'`` delivered to
a random instance (2.x only singled out ``'LEADER'``)."""


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    """What a decorator says about a method."""

    kind: str
    """``api``, ``request``, ``publish``, ``subscribe`` or ``xsubscribe``."""
    name: str
    timeout: float | None = None
    replacement_api: str | None = None
    deprecated: bool = False
    strategy: SubscriptionStrategy | None = None
    inline: bool = False
    """A plain ``def`` handler runs in the loop's thread instead of the handler thread pool."""
    max_concurrency: int | None = None
    """``@api``: requests of this endpoint running at once; more are refused with ``Overloaded``."""
    idempotent: bool = False
    """``@request``: running it twice does no harm, so it may be sent again after a lost
    connection (see :class:`~vyked.core.client.RetryPolicy`)."""


def spec_of(func: Any) -> EndpointSpec | None:
    """The TCP spec a decorator attached to ``func``, if any."""
    specs = specs_of(func, EndpointSpec)
    return specs[-1] if specs else None


def _mark(func: F, spec: EndpointSpec) -> F:
    return mark(func, spec)


def of_kind(*kinds: str) -> Callable[[EndpointSpec], bool]:
    """A filter for :func:`vyked.core.endpoints.collect`: specs of these kinds."""
    return lambda spec: spec.kind in kinds


# -- service side ----------------------------------------------------------------------------


@overload
def api(func: F) -> F: ...
@overload
def api(
    *, timeout: float | None = None, inline: bool = False, max_concurrency: int | None = None
) -> Callable[[F], F]: ...


def api(
    func: F | None = None, *, timeout: float | None = None, inline: bool = False, max_concurrency: int | None = None
) -> F | Callable[[F], F]:
    """Expose a ``TCPService`` method as a remote endpoint: ``@api`` or ``@api(timeout=5)``.

    The handler may be ``async def``, plain ``def`` or a generator (``yield from``). It gets the
    request's parameters as keyword arguments; its return value (JSON-serialisable) is the answer.
    ``async def`` and generator handlers run on the event loop; plain ``def`` handlers run in
    the handler thread pool (:mod:`vyked.core.threads`), so they may block, unless
    ``inline=True`` (for tiny pure functions: called in the loop's thread, they must not block).

    With ``timeout``, the caller gets :class:`~vyked.core.exceptions.RequestTimeout` when the
    handler is still running after that many seconds; an async handler is cancelled, a thread
    cannot be and finishes in the background (its result is dropped). With
    ``max_concurrency``, a request arriving while that many of this endpoint's requests run
    is refused at once with :class:`~vyked.core.exceptions.Overloaded`, without running.
    """
    check_limit(max_concurrency)

    def decorate(f: F) -> F:
        spec = EndpointSpec("api", f.__name__, timeout=timeout, inline=inline, max_concurrency=max_concurrency)
        return _mark(f, spec)

    return decorate(func) if func is not None else decorate


@overload
def apideprecated(func: F) -> F: ...
@overload
def apideprecated(
    *,
    replacement_api: str | None = None,
    timeout: float | None = None,
    inline: bool = False,
    max_concurrency: int | None = None,
) -> Callable[[F], F]: ...


def apideprecated(
    func: F | None = None,
    *,
    replacement_api: str | None = None,
    timeout: float | None = None,
    inline: bool = False,
    max_concurrency: int | None = None,
) -> F | Callable[[F], F]:
    """Like :func:`api`, but callers also get a ``DeprecationWarning`` naming the replacement."""
    check_limit(max_concurrency)

    def decorate(f: F) -> F:
        spec = EndpointSpec(
            "api",
            f.__name__,
            timeout=timeout,
            deprecated=True,
            replacement_api=replacement_api,
            inline=inline,
            max_concurrency=max_concurrency,
        )
        return _mark(f, spec)

    return decorate(func) if func is not None else decorate


def publish(func: F) -> F:
    """Calling the decorated ``TCPService`` method publishes the dict it returns as an event."""
    return _mark(func, EndpointSpec("publish", func.__name__))


# -- client side -----------------------------------------------------------------------------


@overload
def request(func: F) -> F: ...
@overload
def request(*, timeout: float | None = None, idempotent: bool = False) -> Callable[[F], F]: ...


def request(func: F | None = None, *, timeout: float | None = None, idempotent: bool = False) -> F | Callable[[F], F]:
    """Calling the decorated ``TCPServiceClient`` method sends a request to the remote ``@api``.

    The method returns ``locals()`` (the request's parameters; an ``entity`` entry routes the
    request to the instance that owns that entity). Calling it returns an awaitable that
    resolves to the remote result or raises a :class:`~vyked.core.exceptions.VykedError`.

    A request that certainly did not run (the instance was unreachable, draining or
    overloaded) goes to another instance within ``timeout``. With ``idempotent=True`` one that
    may have run (its connection died in flight) is also sent again, up to 3 attempts in all.
    """

    def decorate(f: F) -> F:
        limit = DEFAULT_REQUEST_TIMEOUT if timeout is None else timeout
        return _mark(f, EndpointSpec("request", f.__name__, timeout=limit, idempotent=idempotent))

    return decorate(func) if func is not None else decorate


@overload
def subscribe(func: F) -> F: ...
@overload
def subscribe(*, inline: bool = False) -> Callable[[F], F]: ...


def subscribe(func: F | None = None, *, inline: bool = False) -> F | Callable[[F], F]:
    """The decorated ``TCPServiceClient`` method receives every event of the same name that the
    remote service publishes, in every instance of the subscribing service (broadcast).

    A plain ``def`` handler runs in the handler thread pool unless ``inline=True``."""

    def decorate(f: F) -> F:
        return _mark(f, EndpointSpec("subscribe", f.__name__, inline=inline))

    return decorate(func) if func is not None else decorate


@overload
def xsubscribe(func: F) -> F: ...
@overload
def xsubscribe(
    *, strategy: SubscriptionStrategy | str = SubscriptionStrategy.RANDOM, inline: bool = False
) -> Callable[[F], F]: ...


def xsubscribe(
    func: F | None = None, *, strategy: SubscriptionStrategy | str = SubscriptionStrategy.RANDOM, inline: bool = False
) -> F | Callable[[F], F]:
    """Like :func:`subscribe`, but each event reaches exactly one instance of each subscribing
    service, chosen by ``strategy``; delivery is at least once.

    ``strategy`` is a :class:`SubscriptionStrategy` or, as in vyked 2.x, its name in any case
    (``'LEADER'``, ``'RANDOM'``, or 2.x's default ``'DESIGNATION'``, which means RANDOM); any
    other value is a ``ValueError`` here, when the method is decorated."""
    chosen = SubscriptionStrategy.parse(strategy)

    def decorate(f: F) -> F:
        return _mark(f, EndpointSpec("xsubscribe", f.__name__, strategy=chosen, inline=inline))

    return decorate(func) if func is not None else decorate
