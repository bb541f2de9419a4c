"""The instrumentation seam: what a host tells its observers (metrics, tracing).

Every :class:`~vyked.core.service_host.ServiceHost` holds a list of :class:`Observer` objects,
``host.observers``, empty unless metrics (``metrics_port``) or an application turned something
on. The few places that matter call the observers: a client call and a served request start
and end (:class:`Observation`), an event is published or reaches a handler. With no observer
the cost on the hot paths is one empty-list test. Observers are called in the event loop's
thread and must be quick: they run inside every request.

Counting is not the observers' job where vyked counts already (``PubSubStats``, an HTTP
service's ``/_stats``, circuit breaker transitions, requests in flight): those objects are
*metric sources*, read only when metrics are scraped, by :func:`families_of`. A source is any
object with a ``metric_families()`` method returning :class:`Family` objects, which are plain
data: prometheus-client is imported only by :mod:`vyked.core.metrics`, which turns them into
its own types.

Writing an observer::

    class Timing(Observer):
        def request_started(self, observation):
            return time.monotonic()

        def request_ended(self, observation, state, outcome, error, duration):
            print(observation.endpoint, outcome, time.monotonic() - state)

    host.observers.append(Timing())

Observers also carry context across hops (:mod:`vyked.core.tracing` does, for OpenTelemetry):
an observation's :attr:`Observation.carrier` is what a client call sends along (the request
packet's ``trace`` field, HTTP headers) and what a served request received; an observer may
set :attr:`Observation.context`, the :class:`contextvars.Context` the handler then runs in.
Events alike: :meth:`Observer.event_published` writes into the event's carrier, and
:meth:`Observer.event_received` may return an :class:`EventScope` the handlers run in.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import weakref
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from time import perf_counter
from typing import Any, Literal, Protocol, Self, SupportsIndex

from vyked.core.exceptions import VykedError

__all__ = [
    "LATENCY_BUCKETS",
    "EventScope",
    "Family",
    "Histogram",
    "Labels",
    "MetricSource",
    "Observation",
    "Observer",
    "Observers",
    "Stopwatch",
    "Stopwatches",
    "Timed",
    "Timings",
    "families_of",
    "observe",
    "outcome_of",
    "stopwatch_for",
]

logger = logging.getLogger(__name__)

LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""Upper bounds (seconds) of every latency histogram vyked keeps; a last bucket takes the rest."""


def outcome_of(error: BaseException | None, other: str = "error") -> str:
    """The ``outcome`` label of a request that ended with ``error``: ``ok``, a vyked error's
    code (``remote_error``, ``timeout``, ``service_unavailable``, ``connection_lost``,
    ``overloaded``, ``draining``, ``unknown_endpoint``...), ``cancelled``, ``timeout`` for a
    builtin :class:`TimeoutError`, else ``other``."""
    if error is None:
        return "ok"
    if isinstance(error, VykedError):
        return error.code
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    if isinstance(error, TimeoutError):
        return "timeout"
    return other


class Observer:
    """Hooks a host calls; each does nothing unless overridden.

    An observer that only counts latencies may set :attr:`timings`: when it is a host's only
    observer, the TCP hot paths then time requests into it directly (:class:`Timed`) instead
    of calling the hooks, which costs a fraction.

    A request (``observation.side`` is ``client`` for a call this host makes, ``server`` for
    one its services answer; ``observation.kind`` is ``tcp`` or ``http``) calls
    :meth:`request_started` once and :meth:`request_ended` once, with whatever
    :meth:`request_started` returned (a span, say) as ``state``. A client call is observed once
    however many attempts (retries, fail-over) it takes.
    """

    timings: Timings | None = None
    """Where :class:`Timed` observations record, if this observer only counts latencies."""

    def request_started(self, observation: Observation) -> Any:
        """A request starts; the value returned comes back to :meth:`request_ended`."""
        return None

    def request_ended(
        self, observation: Observation, state: Any, outcome: str, error: BaseException | None, duration: float
    ) -> None:
        """The request ended after ``duration`` seconds: ``outcome`` is :func:`outcome_of`
        ``error`` (HTTP services: ``observation.status`` holds the answer's status)."""

    def event_published(self, service: str, version: str, event: str, carrier: dict[str, str]) -> None:
        """A ``@publish`` method of a service of this host published ``event``; what the
        observer puts in ``carrier`` travels with the event (tracing context)."""

    def event_received(
        self, service: str, version: str, event: str, exclusive: bool, carrier: Mapping[str, str] | None
    ) -> EventScope | None:
        """An event of ``service`` reached this host's handlers (once per event and route),
        with the ``carrier`` its publisher filled. An :class:`EventScope` returned makes the
        handlers run in its context (the first observer to return one wins)."""
        return None


class Observers(list[Observer]):
    """A host's observers: a list (append, remove... as usual) that keeps up to date what the
    hot paths ask on every request and event, so that they ask it in one attribute read.

    - :attr:`timings`: the :class:`Timings` of the only observer, when there is one and it just
      counts latencies (then requests are timed by a :class:`Stopwatch`); else None.
    - :attr:`on_publish`, :attr:`on_receive`: the observers that implement
      :meth:`Observer.event_published` / :meth:`Observer.event_received` (metrics do not: events
      are counted where they pass anyway), so that the others are not called for every event.
    """

    __slots__ = ("_followers", "on_publish", "on_receive", "timings")

    def __init__(self, observers: Iterable[Observer] = ()) -> None:
        super().__init__(observers)
        self._followers: weakref.WeakSet[Stopwatches] = weakref.WeakSet()
        self._changed()

    def stopwatches(self, labels: Callable[[str], Labels]) -> Stopwatches:
        """The :class:`Stopwatches` of a client or a service of this host (``labels``: the
        :data:`Labels` of an endpoint name), kept in step with :attr:`timings`."""
        stopwatches = Stopwatches(labels)
        stopwatches.follow(self.timings)
        self._followers.add(stopwatches)
        return stopwatches

    def _changed(self) -> None:
        only = self[0] if len(self) == 1 else None
        timings = self.timings = None if only is None else only.timings
        self.on_publish = tuple(o for o in self if type(o).event_published is not Observer.event_published)
        self.on_receive = tuple(o for o in self if type(o).event_received is not Observer.event_received)
        for stopwatches in list(self._followers):
            if stopwatches.timings is not timings:
                stopwatches.follow(timings)

    def append(self, observer: Observer) -> None:
        super().append(observer)
        self._changed()

    def extend(self, observers: Iterable[Observer]) -> None:
        super().extend(observers)
        self._changed()

    def insert(self, index: SupportsIndex, observer: Observer) -> None:
        super().insert(index, observer)
        self._changed()

    def remove(self, observer: Observer) -> None:
        super().remove(observer)
        self._changed()

    def pop(self, index: SupportsIndex = -1) -> Observer:
        observer = super().pop(index)
        self._changed()
        return observer

    def clear(self) -> None:
        super().clear()
        self._changed()

    def __setitem__(self, index: Any, value: Any) -> None:
        super().__setitem__(index, value)
        self._changed()

    def __delitem__(self, index: SupportsIndex | slice) -> None:
        super().__delitem__(index)
        self._changed()

    def __iadd__(self, observers: Iterable[Observer]) -> Self:  # type: ignore[override,misc]
        self.extend(observers)
        return self

    def __imul__(self, times: SupportsIndex) -> Self:
        super().__imul__(times)
        self._changed()
        return self

    def sort(self, *, key: Any = None, reverse: bool = False) -> None:
        super().sort(key=key, reverse=reverse)
        self._changed()  # the order decides which observer's event scope wins

    def reverse(self) -> None:
        super().reverse()
        self._changed()

    def __reduce__(self) -> tuple[type[Observers], tuple[list[Observer]]]:
        # A copy (or an unpickled list) is a list of the same observers with no stopwatches
        # following it: the original's keep following the original.
        return type(self), (list(self),)


class EventScope:
    """Where the handlers of one received event run: ``context`` (a :class:`contextvars.Context`
    holding, say, a span); ``finish(error)`` is called once they are done (``error``: what the
    first failing handler raised)."""

    __slots__ = ("context", "finish")

    def __init__(
        self, context: contextvars.Context, finish: Callable[[BaseException | None], None] | None = None
    ) -> None:
        self.context = context
        self.finish = finish

    def end(self, error: BaseException | None = None) -> None:
        finish, self.finish = self.finish, None
        if finish is not None:
            try:
                finish(error)
            except Exception:
                logger.exception("an observer failed at the end of an event")


_OTHER = {"server": "remote_error", "client": "error"}
"""The outcome of an error that is not vyked's: a handler raised it (server), or it is no answer."""

Labels = tuple[str, str, str, str, str]
"""``(side, kind, service, version, endpoint)``: what an :class:`Observation` is about. Call
sites build each once (per endpoint), not per request."""


class Observation:
    """One request being observed, from its start to its end; made only when the host has
    observers. ``labels`` says which request (see :data:`Labels`; also as the properties
    :attr:`side`, :attr:`kind`, :attr:`service`, :attr:`version`, :attr:`endpoint`); ``app``
    is the caller's ``app_name`` when it sent one; ``status`` the HTTP status answered
    (services), once ended.

    ``carrier`` holds the propagation headers (W3C ``traceparent``, ``baggage``): on the client
    side observers fill it in :meth:`Observer.request_started` and the transport sends it; on
    the server side it is what arrived. ``context``, when an observer sets it on a served
    request, is the :class:`contextvars.Context` the handler runs in."""

    __slots__ = ("app", "carrier", "context", "labels", "observers", "started", "states", "status")

    def __init__(
        self,
        observers: Sequence[Observer],
        labels: Labels,
        app: str | None = None,
        carrier: Mapping[str, str] | None = None,
    ) -> None:
        # The observers as they are now: a host's list may change before the request ends,
        # and each observer must end what it started.
        observers = tuple(observers)
        self.observers: Sequence[Observer] | None = observers
        self.labels = labels
        self.app = app
        self.status = 0
        self.carrier: Mapping[str, str] | None = carrier
        self.context: contextvars.Context | None = None
        # One observer (metrics, or tracing) is the common case: no list for it.
        if len(observers) == 1:
            self.states: Any = observers[0].request_started(self)
        else:
            self.states = [observer.request_started(self) for observer in observers]
        self.started = perf_counter()

    @property
    def side(self) -> str:
        """``client`` (a call this host makes) or ``server`` (a request its services answer)."""
        return self.labels[0]

    @property
    def kind(self) -> str:
        """``tcp`` or ``http``."""
        return self.labels[1]

    @property
    def service(self) -> str:
        return self.labels[2]

    @property
    def version(self) -> str:
        return self.labels[3]

    @property
    def endpoint(self) -> str:
        """The ``@api`` / ``@request`` name, or the HTTP endpoint (decorated method) name."""
        return self.labels[4]

    def end(self, error: BaseException | None = None, status: int = 0) -> None:
        """The request ended (with ``error``, or answered); a second call does nothing."""
        duration = perf_counter() - self.started
        observers = self.observers
        if observers is None:
            return
        self.observers = None
        self.status = status
        outcome = "ok" if error is None else outcome_of(error, _OTHER[self.labels[0]])
        try:
            if len(observers) == 1:
                observers[0].request_ended(self, self.states, outcome, error, duration)
            else:
                for observer, state in zip(observers, self.states, strict=True):
                    observer.request_ended(self, state, outcome, error, duration)
        except Exception:
            logger.exception("an observer failed at the end of %r", self)

    def __repr__(self) -> str:
        side, kind, service, _, endpoint = self.labels
        return f"<Observation {side} {kind} {service}.{endpoint}>"


class Timings:
    """Latency :class:`Histogram` objects by what was requested (:data:`Labels`) and outcome;
    :meth:`fold` before reading them (their stopwatches count answered requests in bulk)."""

    __slots__ = ("histograms", "stopwatches")

    def __init__(self) -> None:
        self.histograms: dict[Labels, dict[str, Histogram]] = {}
        self.stopwatches: dict[Labels, Stopwatch] = {}

    def of(self, labels: Labels) -> dict[str, Histogram]:
        """The histograms of ``labels``, by outcome."""
        by_outcome = self.histograms.get(labels)
        if by_outcome is None:
            by_outcome = self.histograms[labels] = {}
        return by_outcome

    def stopwatch(self, labels: Labels) -> Stopwatch:
        """The :class:`Stopwatch` of ``labels`` (one for every request of them)."""
        stopwatch = self.stopwatches.get(labels)
        if stopwatch is None:
            stopwatch = self.stopwatches[labels] = Stopwatch(self.of(labels), labels)
        return stopwatch

    def fold(self) -> None:
        """Count what every stopwatch holds (:meth:`Stopwatch.fold`): before :attr:`histograms`
        are read, and regularly, so that nothing piles up."""
        for stopwatch in list(self.stopwatches.values()):
            stopwatch.fold()

    def observe(self, labels: Labels, outcome: str, duration: float) -> None:
        by_outcome = self.of(labels)
        histogram = by_outcome.get(outcome)
        if histogram is None:
            histogram = by_outcome[outcome] = Histogram()
        histogram.observe(duration)


class Stopwatch:
    """Records the latencies of every request of one :data:`Labels` into their histograms, by
    outcome; one for all of them. The hot paths use it when the host's only observer counts
    latencies (see :class:`Stopwatches`), timing each request from a start they keep
    themselves (a served request from its arrival, :attr:`Connection.read_at
    <vyked.core.transport.connection.Connection.read_at>`; a call from its sending), so that
    nothing is made per request; elsewhere :meth:`start` makes a :class:`Timed`.

    An answered request's latency is only appended to :attr:`durations` (:meth:`record`);
    :meth:`fold` counts them into the ``ok`` histogram in bulk (:meth:`Histogram.observe_all`:
    a pass per bucket over the values above it), which the metrics server does when it is
    scraped and every quarter of a second. Requests answered together are counted at once
    (:meth:`record_answers`, :meth:`answered_since`); errors too."""

    __slots__ = ("by_outcome", "durations", "labels")

    def __init__(self, by_outcome: dict[str, Histogram], labels: Labels) -> None:
        self.by_outcome = by_outcome
        self.labels = labels
        self.durations: list[float] = []
        """Latencies (seconds) of answered requests, not yet counted in the ``ok`` histogram."""

    def record(self, duration: float, error: BaseException | None = None) -> None:
        """A request ended after ``duration`` seconds, with ``error`` (None: answered)."""
        if error is None:
            self.durations.append(duration)
        else:
            self._histogram(outcome_of(error, _OTHER[self.labels[0]])).observe(duration)

    def record_answers(self, duration: float, count: int) -> None:
        """``count`` requests were answered after ``duration`` seconds each (the requests of
        one read, answered in one write): counted in the ``ok`` histogram at once."""
        (self.by_outcome.get("ok") or self._histogram("ok")).observe_many(duration, count)

    def answered_since(self, now: float, starts: list[float]) -> None:
        """Requests started at ``starts`` (:func:`perf_counter` times; the list is sorted in
        place) were all answered at ``now`` (the answers of one read): counted in the ``ok``
        histogram at once (:meth:`Histogram.observe_since`)."""
        if len(starts) == 1:
            self.durations.append(now - starts[0])
        else:
            self._histogram("ok").observe_since(now, starts)

    def fold(self) -> None:
        """Count the latencies in :attr:`durations` into the ``ok`` histogram."""
        durations = self.durations
        if durations:
            self.durations = []
            self._histogram("ok").observe_all(durations)

    def _histogram(self, outcome: str) -> Histogram:
        histogram = self.by_outcome.get(outcome)
        if histogram is None:
            histogram = self.by_outcome[outcome] = Histogram()
        return histogram

    def start(self, started: float | None = None) -> Timed:
        """An observation of one request, started now or at ``started`` (a :func:`perf_counter`
        time), that this stopwatch records when it ends."""
        return Timed(self, perf_counter() if started is None else started)


class Stopwatches:
    """The stopwatches of one client's calls or one service's requests, by endpoint name, in
    :attr:`timings`: those of the host's only observer when it just counts latencies, kept in
    step by the host's :class:`Observers` (:meth:`Observers.stopwatches` makes them). The hot
    paths use it so::

        if observers.timings is not None:  # metrics alone observe
            try:
                stopwatch = stopwatches.by_name[name]
            except KeyError:
                stopwatch = stopwatches.of(name)

    one look-up a request in a plain dictionary, by a name (hashing the :data:`Labels` tuple
    would cost more than the rest; and indexing a subclass of ``dict`` goes through its
    ``__getitem__`` method, several times the cost). Only for names of known endpoints: a
    name a caller sent must not add an entry."""

    __slots__ = ("__weakref__", "by_name", "labels", "timings")

    def __init__(self, labels: Callable[[str], Labels]) -> None:
        self.labels = labels
        """The :data:`Labels` of an endpoint name."""
        self.timings: Timings | None = None
        self.by_name: dict[str, Stopwatch] = {}
        """The stopwatches made so far in :attr:`timings` (none while there are no timings)."""

    def follow(self, timings: Timings | None) -> None:
        """Time into ``timings`` from now on (None: stop timing); the stopwatches made so far
        stay with the timings they count into."""
        self.timings = timings
        self.by_name = {}

    def of(self, name: str) -> Stopwatch:
        """The stopwatch of endpoint ``name`` in :attr:`timings`, made on first use; raises
        :class:`RuntimeError` while there are no timings."""
        timings = self.timings
        if timings is None:
            raise RuntimeError("no timings to time into: metrics are not the host's only observer")
        stopwatch = self.by_name.get(name)
        if stopwatch is None:
            stopwatch = self.by_name[name] = timings.stopwatch(self.labels(name))
        return stopwatch


class Timed(Observation):
    """An :class:`Observation` that only times the request with a :class:`Stopwatch` (see
    :func:`observe`): no hooks, no state, no context."""

    __slots__ = ("stopwatch",)
    # read-only stand-ins for the slots of Observation this class never fills
    app = None
    carrier = None
    context = None

    def __init__(self, stopwatch: Stopwatch, started: float) -> None:
        self.stopwatch: Stopwatch | None = stopwatch
        self.labels = stopwatch.labels
        self.started = started

    def end(self, error: BaseException | None = None, status: int = 0) -> None:
        stopwatch = self.stopwatch
        if stopwatch is None:
            return  # ended already
        self.stopwatch = None
        stopwatch.record(perf_counter() - self.started, error)


def stopwatch_for(
    observers: Sequence[Observer], labels: Labels, app: str | None = None, carrier: Mapping[str, str] | None = None
) -> Stopwatch | None:
    """The :class:`Stopwatch` of ``labels`` when the only observer just counts latencies
    (:attr:`Observer.timings`) and nothing else rides along (no ``app``, no ``carrier``);
    else None: the request needs an :class:`Observation`."""
    if app is None and not carrier:
        timings = observers.timings if type(observers) is Observers else _only_timings(observers)
        if timings is not None:
            return timings.stopwatches.get(labels) or timings.stopwatch(labels)
    return None


def _only_timings(observers: Sequence[Observer]) -> Timings | None:
    return observers[0].timings if len(observers) == 1 else None


def observe(
    observers: Sequence[Observer], labels: Labels, app: str | None = None, carrier: Mapping[str, str] | None = None
) -> Observation:
    """The observation of one request: a :class:`Timed` when the only observer just counts
    latencies (see :func:`stopwatch_for`), else an :class:`Observation`. ``observers`` must
    not be empty."""
    stopwatch = stopwatch_for(observers, labels, app, carrier)
    if stopwatch is not None:
        return stopwatch.start()
    return Observation(observers, labels, app, carrier)


# -- metric sources -----------------------------------------------------------------------------


class Histogram:
    """Latencies counted in :data:`LATENCY_BUCKETS`: one bisection and two additions a value.

    Updated only in the event loop's thread; read there too (see :func:`families_of`).
    """

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sum += seconds

    def observe_many(self, seconds: float, count: int) -> None:
        """:meth:`observe` ``seconds`` ``count`` times."""
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += count
        self.sum += seconds * count

    def observe_since(self, now: float, starts: list[float]) -> None:
        """:meth:`observe` ``now - start`` for each of ``starts`` (sorted in place first): a
        bisection of ``starts`` per bucket, from the lowest until all are counted, not a pass
        over the values. Comparing ``start`` with ``now - bound`` rounds at the scale of
        ``now`` (:func:`perf_counter` counts from boot: about 1e-9 s after 100 days), so a
        latency that close to a bound may be counted on either side of it; the sum, taken
        as ``now * count - sum(starts)``, is off by as much for each value (a millionth of a
        latency of a millisecond)."""
        starts.sort()  # the earliest start first: the longest latency first
        count = len(starts)
        counts = self.counts
        counted = 0  # the latencies at most the bounds so far
        for bucket, bound in enumerate(LATENCY_BUCKETS):
            within = count - bisect_left(starts, now - bound)  # now - start <= bound
            counts[bucket] += within - counted
            counted = within
            if counted == count:
                break
        else:
            counts[-1] += count - counted
        self.sum += now * count - sum(starts)

    def observe_all(self, values: list[float]) -> None:
        """:meth:`observe` each of ``values``, bucket by bucket from the lowest: each pass keeps
        only the values above a bound, and the passes stop when none is left. Latencies crowd
        into a few buckets, so this costs a few passes over a shrinking list, a fraction of
        sorting them (or of a bisection each). A list comprehension: about 30 ns a value and
        pass, where ``filter(bound.__lt__, ...)`` costs three times that (a call each)."""
        counts = self.counts
        left = values
        for bucket, bound in enumerate(LATENCY_BUCKETS):
            above = [value for value in left if value > bound]
            counts[bucket] += len(left) - len(above)
            left = above
            if not left:
                break
        else:
            counts[-1] += len(left)
        self.sum += sum(values)

    @property
    def count(self) -> int:
        return sum(self.counts)

    def snapshot(self) -> Histogram:
        """A copy, taken where the histogram changes (the event loop's thread)."""
        copy = Histogram()
        copy.counts = list(self.counts)
        copy.sum = self.sum
        return copy

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, observations at most that)`` pairs, ending with ``(inf, count)``."""
        pairs, total = [], 0
        for bound, n in zip((*LATENCY_BUCKETS, float("inf")), self.counts, strict=True):
            total += n
            pairs.append((bound, total))
        return pairs


FamilyKind = Literal["counter", "gauge", "histogram"]


class Family:
    """One metric and its samples, as plain data: ``name`` (counters end in ``_total``),
    ``help``, ``kind`` and label names; :meth:`add` one value (a :class:`Histogram` for a
    histogram) per combination of label values."""

    __slots__ = ("help", "kind", "labels", "name", "samples")

    def __init__(self, name: str, help: str, kind: FamilyKind, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help
        self.kind = kind
        self.labels = tuple(labels)
        self.samples: list[tuple[tuple[str, ...], float | Histogram]] = []

    def add(self, values: Sequence[str], value: float | Histogram) -> Family:
        self.samples.append((tuple(values), value))
        return self

    def __repr__(self) -> str:
        return f"<Family {self.kind} {self.name} ({len(self.samples)} samples)>"


class MetricSource(Protocol):
    """Something that counts already and can say what, when metrics are scraped."""

    def metric_families(self) -> Iterable[Family]: ...


def families_of(*sources: object) -> list[Family]:
    """The families of every source that has a ``metric_families`` method (services, host
    extensions...); in the event loop's thread, where the sources change."""
    families: list[Family] = []
    for source in sources:
        method = getattr(source, "metric_families", None)
        if method is None:
            continue
        try:
            families.extend(method())
        except Exception:
            logger.exception("collecting the metrics of %r failed", source)
    return families
