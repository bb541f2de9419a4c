"""The observers list keeps what the hot paths ask current; stopwatches count by outcome."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Mapping
from typing import cast

import pytest

from vyked.core.exceptions import RequestTimeout
from vyked.core.metrics import RequestMetrics
from vyked.core.observe import (
    LATENCY_BUCKETS,
    EventScope,
    Histogram,
    Labels,
    Observation,
    Observer,
    Observers,
    Stopwatch,
    Timed,
    Timings,
    observe,
    stopwatch_for,
)
from vyked.core.service_host import ServiceHost

LABELS: Labels = ("client", "tcp", "Echo", "1", "echo")


def views(observers: Observers) -> tuple[Timings | None, tuple[Observer, ...], tuple[Observer, ...]]:
    """``(timings, on_publish, on_receive)``, read afresh after each change."""
    return observers.timings, observers.on_publish, observers.on_receive


class Publishing(Observer):
    def event_published(self, service: str, version: str, event: str, carrier: dict[str, str]) -> None:
        carrier["seen"] = event


class Receiving(Observer):
    def event_received(
        self, service: str, version: str, event: str, exclusive: bool, carrier: Mapping[str, str] | None
    ) -> EventScope | None:
        return None


def test_derived_views_follow_every_change() -> None:
    metrics, publishing, receiving = RequestMetrics(), Publishing(), Receiving()
    timings = metrics.timings
    observers = Observers()
    assert views(observers) == (None, (), ())
    observers.append(metrics)  # the only observer counts latencies; it implements no event hook
    assert views(observers) == (timings, (), ())
    observers.append(publishing)  # no longer alone: requests need observations
    assert views(observers) == (None, (publishing,), ())
    observers.insert(0, receiving)
    assert views(observers) == (None, (publishing,), (receiving,))
    observers.remove(publishing)
    assert views(observers) == (None, (), (receiving,))
    assert observers.pop(0) is receiving
    assert views(observers) == (timings, (), ())
    observers += [publishing]
    assert views(observers) == (None, (publishing,), ())
    del observers[1]
    assert views(observers) == (timings, (), ())
    observers[0] = receiving
    assert views(observers) == (None, (), (receiving,))
    observers.extend([publishing])
    observers *= 2
    assert views(observers) == (None, (publishing, publishing), (receiving, receiving))
    observers.clear()
    assert views(observers) == (None, (), ())


def test_a_host_keeps_its_observers_object_when_assigned_a_list() -> None:
    host = ServiceHost("127.0.0.1:1")
    kept = host.observers
    metrics = RequestMetrics()
    host.observers = [metrics]  # what a user may write
    assert host.observers is kept  # services and clients made before still see the change
    assert kept == [metrics] and kept.timings is metrics.timings


class Recording(Observer):
    """Says which requests it saw start and end, with the state it gave each."""

    def __init__(self, name: str, seen: list[tuple[str, str, object]]) -> None:
        self.name, self.seen = name, seen

    def request_started(self, observation: Observation) -> object:
        self.seen.append((self.name, "started", observation.endpoint))
        return f"{self.name}'s state"

    def request_ended(
        self, observation: Observation, state: object, outcome: str, error: BaseException | None, duration: float
    ) -> None:
        self.seen.append((self.name, "ended", state))


@pytest.mark.parametrize("before", [1, 2])
def test_a_request_is_ended_by_the_observers_that_started_it(before: int, caplog: pytest.LogCaptureFixture) -> None:
    seen: list[tuple[str, str, object]] = []
    first, second, third = (Recording(name, seen) for name in ("first", "second", "third"))
    observers = Observers([first, second][:before])
    observation = Observation(observers, LABELS)
    observers[:] = [third, first, second]  # the host's observers change while the request runs
    observation.end()
    started = [(o.name, "started", "echo") for o in (first, second)[:before]]
    ended = [(o.name, "ended", f"{o.name}'s state") for o in (first, second)[:before]]
    assert seen == started + ended  # third, which started nothing, ends nothing
    assert "an observer failed" not in caplog.text


def test_stopwatches_only_for_metrics_alone_and_without_context() -> None:
    metrics = RequestMetrics()
    observers = Observers([metrics])
    stopwatch = stopwatch_for(observers, LABELS)
    assert isinstance(stopwatch, Stopwatch)
    assert stopwatch_for(observers, LABELS) is stopwatch  # one for every request of the labels
    assert stopwatch_for(observers, LABELS, app="billing") is None  # the app must be counted
    assert stopwatch_for(observers, LABELS, carrier={"traceparent": "x"}) is None
    assert stopwatch_for([metrics], LABELS) is stopwatch  # a plain list is asked the same
    assert stopwatch_for(Observers([metrics, Publishing()]), LABELS) is None
    assert isinstance(observe(observers, LABELS), Timed)
    assert type(observe(observers, LABELS, app="billing")) is Observation


def test_a_stopwatch_counts_by_outcome_into_the_metrics_histograms() -> None:
    metrics = RequestMetrics()
    stopwatch = metrics.timings.stopwatch(LABELS)
    stopwatch.record(0.0002)
    stopwatch.record(0.003)
    stopwatch.record(1.5, RequestTimeout("late"))
    stopwatch.record(0.01, ValueError("no answer"))
    timed = stopwatch.start()
    timed.end()
    timed.end()  # a second end does nothing
    by_outcome = metrics.timings.histograms[LABELS]
    # errors are counted at once; answered requests wait in the stopwatch until folded
    assert {outcome: h.count for outcome, h in by_outcome.items()} == {"timeout": 1, "error": 1}
    assert by_outcome["timeout"].sum == 1.5
    assert len(stopwatch.durations) == 3
    # the request metrics' families fold them, then read the same histograms
    families = {f.name: f for f in metrics.metric_families()}
    assert stopwatch.durations == []
    assert by_outcome["ok"].count == 3
    assert by_outcome["ok"].counts[0] >= 1 and by_outcome["ok"].sum >= 0.0032
    totals = dict(families["vyked_client_requests_total"].samples)
    assert totals[("tcp", "Echo", "1", "echo", "ok")] == 3
    assert totals[("tcp", "Echo", "1", "echo", "timeout")] == 1


def test_folding_counts_as_observing_one_by_one() -> None:
    # on each bucket's bound (which counts as within it), either side of it, and beyond the last
    values = [b * f for b in LATENCY_BUCKETS for f in (0.5, 1.0, 1.5)] + [0.0, 100.0]
    one_by_one, folded = Histogram(), Histogram()
    for v in values:
        one_by_one.observe(v)
    folded.observe_all(values)
    assert folded.counts == one_by_one.counts and folded.count == len(values)
    assert folded.sum == sum(values)
    # ``le`` buckets: a value on a bound is within it
    on_bound = Histogram()
    on_bound.observe_all([LATENCY_BUCKETS[0]])
    assert on_bound.counts[0] == 1


def test_counting_latencies_from_their_starts_counts_as_observing_one_by_one() -> None:
    now = 1000.0
    # latencies either side of each bound (not on one: there the rounding of ``now - start``
    # decides), beyond the last, zero; starts in no order
    latencies = [b * f for b in LATENCY_BUCKETS for f in (0.9, 1.1)] + [0.0, 100.0]
    starts = [now - latency for latency in reversed(latencies)]
    one_by_one, counted = Histogram(), Histogram()
    for start in starts:
        one_by_one.observe(now - start)
    counted.observe_since(now, starts)
    assert counted.counts == one_by_one.counts and counted.count == len(latencies)
    assert counted.sum == pytest.approx(one_by_one.sum, abs=1e-9)
    crowded = Histogram()  # all in one bucket: one bisection counts them
    crowded.observe_since(now, [now - 0.0003, now - 0.0002, now - 0.0004])
    assert crowded.counts[0] == 3 and crowded.count == 3 and crowded.sum == pytest.approx(0.0009)
    # a stopwatch counts a read's answers so; a lone answer waits for the fold like the others
    stopwatch = RequestMetrics().timings.stopwatch(LABELS)
    stopwatch.answered_since(now, [now - 0.003, now - 0.002])
    stopwatch.answered_since(now, [now - 0.2])
    assert stopwatch.by_outcome["ok"].count == 2 and stopwatch.durations == [pytest.approx(0.2)]
    stopwatch.record_answers(0.004, 5)  # five answers of one write
    assert stopwatch.by_outcome["ok"].counts[LATENCY_BUCKETS.index(0.005)] == 6


def test_stopwatches_follow_the_hosts_observers() -> None:
    made: list[str] = []

    def labels(name: str) -> Labels:
        made.append(name)
        return ("server", "tcp", "Echo", "1", name)

    observers = Observers()
    stopwatches = observers.stopwatches(labels)
    assert stopwatches.timings is None and stopwatches.by_name == {}  # nothing observes: nothing timed
    with pytest.raises(RuntimeError):
        stopwatches.of("echo")
    metrics = RequestMetrics()
    observers.append(metrics)
    first = metrics.timings
    assert stopwatches.timings is first and stopwatches.by_name == {}
    echo = stopwatches.of("echo")
    assert stopwatches.of("echo") is echo and made == ["echo"]  # made once
    assert stopwatches.by_name == {"echo": echo}  # where the hot paths look first
    assert first.stopwatches[("server", "tcp", "Echo", "1", "echo")] is echo
    echo.record(0.001)
    observers.append(Publishing())  # metrics are not alone: no stopwatch
    assert stopwatches.by_name == {} and stopwatches.timings is None
    other = RequestMetrics()
    observers[:] = [other]  # as ``host.observers = [...]`` does: another metrics observer took over
    second = other.timings
    assert stopwatches.by_name == {}
    again = stopwatches.of("echo")
    assert again is not echo and second.stopwatches[again.labels] is again
    first.fold()
    assert first.histograms[echo.labels]["ok"].count == 1  # what was timed stays where it was


def test_a_copy_of_the_observers_is_a_list_of_its_own() -> None:
    metrics = RequestMetrics()
    observers = Observers([metrics])
    stopwatches = observers.stopwatches(lambda name: ("client", "tcp", "Echo", "1", name))
    copied = copy.copy(observers)
    copied.clear()  # the copy's stopwatches are not the original's
    assert copied.timings is None and stopwatches.timings is metrics.timings
    assert stopwatches.of("echo") is metrics.timings.stopwatches[("client", "tcp", "Echo", "1", "echo")]
    unpickled = pickle.loads(pickle.dumps(Observers([Observer()])))
    assert type(unpickled) is Observers and len(unpickled) == 1 and unpickled.timings is None


class NamedReceiving(Receiving):
    def __init__(self, name: str) -> None:
        self.name = name


def test_reordering_the_observers_reorders_what_events_ask() -> None:
    receiving = [NamedReceiving(str(n)) for n in range(3)]
    observers = Observers(receiving)
    observers.reverse()
    assert observers.on_receive == tuple(reversed(receiving))  # the first to answer wins
    observers.sort(key=lambda o: cast(NamedReceiving, o).name)
    assert observers.on_receive == tuple(receiving)
