"""Prometheus metrics and health probes on a port of their own (``pip install 'vyked-core[metrics]'``).

The only module that imports ``prometheus_client``; ``ServiceHost`` imports it (through
:func:`vyked.core.optional.require`) only when it has a ``metrics_port``. What it serves, from a
thread of its own (prometheus-client's HTTP handler), so that it answers even while the event
loop is blocked:

- ``GET /metrics``: the Prometheus text format. vyked's figures are read in the event loop's
  thread (one ``call_soon_threadsafe`` per scrape) from the objects that count them
  (:mod:`vyked.core.observe`): :class:`RequestMetrics` (requests, through the host's observer
  list), an HTTP service's statistics, ``PubSubStats``, circuit breakers, connections. The
  process's CPU, memory and garbage collector figures come with them.
- ``GET /livez``: 200 while the event loop runs callbacks; 503 ``event loop blocked for X s``
  when it has not run one for :data:`LIVEZ_TIMEOUT` seconds.
- ``GET /readyz``: 200 while the host is ready (see
  :meth:`~vyked.core.service_host.ServiceHost.readiness`), else 503; a JSON body says why.
- ``GET /schema``: the host's service contracts as JSON (:func:`vyked.core.contracts.describe`,
  what ``vyked schema`` prints); ``/schema?format=asyncapi`` an AsyncAPI 3.0 document.

:class:`MetricsServer` is not tied to a service host: ``vyked-registry --metrics-port`` serves
the registry's own families and readiness through it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import json
import logging
import math
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, urlparse

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    MetricsHandler,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from vyked.core.observe import Family, Histogram, Observation, Observer, Timings, families_of
from vyked.core.transport.connection import COUNTS

if TYPE_CHECKING:
    from vyked.core.service_host import ServiceHost

__all__ = ["LIVEZ_TIMEOUT", "MetricsServer", "RequestMetrics", "serve_host_metrics"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

LIVEZ_TIMEOUT = 1.0
"""Seconds ``/livez`` and ``/readyz`` wait for the event loop to run a callback."""
SCRAPE_TIMEOUT = 2.0
"""Seconds ``/metrics`` waits for the event loop to read vyked's figures."""
TICK_INTERVAL = 0.25
"""How often the loop stamps the time, for ``/livez`` to say how long it has been blocked (and
counts the latencies its stopwatches hold: :meth:`~vyked.core.observe.Timings.fold`)."""
MAX_APPS = 100
"""Distinct ``app`` label values (callers' ``app_name``) kept per endpoint; more count as ``other``."""

Readiness = Callable[[], tuple[bool, dict[str, Any]]]
Schema = Callable[[str], dict[str, Any]]
"""The contracts document in a format (``json`` or ``asyncapi``); raises ValueError for another."""
Sources = Callable[[], Iterable[Family]]


# -- counting requests ----------------------------------------------------------------------------


class RequestMetrics(Observer):
    """Counts every observed request in a latency :class:`~vyked.core.observe.Histogram` per
    ``(side, kind, service, version, endpoint, outcome)``: one dictionary look-up and one
    bisection per request, in the event loop's thread. HTTP services count their own requests
    (``/_stats``, the same figures); of those only the callers' ``app_name`` is counted here."""

    def __init__(self) -> None:
        self.timings: Timings = Timings()
        """The latencies: filled by :meth:`request_ended`, or directly by
        :class:`~vyked.core.observe.Timed` observations when this is the host's only observer."""
        self.apps: dict[tuple[str, str, str, str, str], int] = {}
        self._app_names: dict[tuple[str, str, str, str], set[str]] = {}

    def request_ended(
        self, observation: Observation, state: Any, outcome: str, error: BaseException | None, duration: float
    ) -> None:
        labels = observation.labels
        if observation.app:
            self._count_app(observation)
        if labels[1] == "http" and labels[0] == "server":
            return  # counted by the service (``/_stats``)
        self.timings.observe(labels, outcome, duration)

    def _count_app(self, observation: Observation) -> None:
        endpoint = observation.labels[1:]
        names = self._app_names.setdefault(endpoint, set())
        app = observation.app or ""
        if app not in names:
            if len(names) >= MAX_APPS:
                app = "other"
            else:
                names.add(app)
        key = (*endpoint, app)
        self.apps[key] = self.apps.get(key, 0) + 1

    def metric_families(self) -> list[Family]:
        self.timings.fold()
        labels = ["kind", "service", "version", "endpoint", "outcome"]
        families: dict[str, tuple[Family, Family]] = {}
        for side, what in (("client", "Calls this host made"), ("server", "Requests this host's services answered")):
            families[side] = (
                Family(f"vyked_{side}_requests_total", f"{what}, by outcome", "counter", labels),
                Family(f"vyked_{side}_request_duration_seconds", f"{what}: latency", "histogram", labels),
            )
        for (side, *values), by_outcome in list(self.timings.histograms.items()):
            total, latency = families[side]
            for outcome, histogram in list(by_outcome.items()):
                total.add([*values, outcome], histogram.count)
                latency.add([*values, outcome], histogram.snapshot())
        apps = Family(
            "vyked_server_requests_by_app_total",
            "Requests answered, by the caller's app_name (X-Vyked-App)",
            "counter",
            ["kind", "service", "version", "endpoint", "app"],
        )
        for key, count in list(self.apps.items()):
            apps.add(key, count)
        return [family for pair in families.values() for family in pair] + [apps]


# -- the server -----------------------------------------------------------------------------------


class _LoopCollector(Collector):
    """vyked's families, read in the event loop's thread, then turned into prometheus-client's."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sources: Sources) -> None:
        self.loop = loop
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        try:
            families = call_in_loop(self.loop, self._read, SCRAPE_TIMEOUT)
        except concurrent.futures.TimeoutError:
            logger.warning("/metrics: the event loop did not answer in %s s; vyked's figures left out", SCRAPE_TIMEOUT)
            return
        except RuntimeError:  # the loop has closed
            return
        yield from to_prometheus(families)

    def _read(self) -> list[Family]:
        families = list(self.sources())
        for family in families:  # copied here, where they change
            family.samples = [
                (values, value.snapshot() if isinstance(value, Histogram) else value)
                for values, value in family.samples
            ]
        return families


def to_prometheus(families: Iterable[Family]) -> Iterator[Metric]:
    """prometheus-client families from vyked's; samples of families of the same name (two
    services of one host, say) are merged."""
    merged: dict[str, Family] = {}
    for family in families:
        first = merged.get(family.name)
        if first is None:
            merged[family.name] = Family(family.name, family.help, family.kind, family.labels)
            first = merged[family.name]
        first.samples.extend(family.samples)
    for family in merged.values():
        metric: CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily
        if family.kind == "histogram":
            metric = HistogramMetricFamily(family.name, family.help, labels=family.labels)
            for values, value in family.samples:
                assert isinstance(value, Histogram)
                buckets = [("+Inf" if bound == math.inf else repr(bound), float(n)) for bound, n in value.cumulative()]
                metric.add_metric(list(values), buckets, value.sum)
        else:
            kind = CounterMetricFamily if family.kind == "counter" else GaugeMetricFamily
            metric = kind(family.name, family.help, labels=family.labels)
            for values, value in family.samples:
                assert not isinstance(value, Histogram)
                metric.add_metric(list(values), float(value))
        yield metric


def call_in_loop(loop: asyncio.AbstractEventLoop, func: Callable[[], T], timeout: float) -> T:
    """``func()`` run in ``loop``'s thread, from another thread; raises
    :class:`concurrent.futures.TimeoutError` if the loop does not run it within ``timeout``, and
    :class:`RuntimeError` if the loop is closed."""
    try:
        if asyncio.get_running_loop() is loop:
            return func()
    except RuntimeError:
        pass
    future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def run() -> None:
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(func())
            except BaseException as exc:
                future.set_exception(exc)

    loop.call_soon_threadsafe(run)
    try:
        return future.result(timeout)
    finally:
        future.cancel()


class MetricsServer:
    """``/metrics``, ``/livez`` and ``/readyz`` on ``host:port`` (port 0: a free one, then
    :attr:`port`), served from a thread. ``sources`` returns the vyked families to expose and
    is called in ``loop``'s thread; ``readiness`` (None: always ready) and ``schema`` (None: no
    ``/schema``) too; ``collectors`` are more prometheus-client collectors; ``tick`` is called in
    the loop every :data:`TICK_INTERVAL` seconds (what counts in bulk folds then). Start and
    close it from the loop's thread."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        port: int,
        host: str = "0.0.0.0",
        *,
        sources: Sources,
        readiness: Readiness | None = None,
        schema: Schema | None = None,
        collectors: Iterable[Collector] = (),
        process_metrics: bool = True,
        tick: Callable[[], object] | None = None,
    ) -> None:
        self.loop = loop
        self.port = port
        self.host = host
        self.readiness = readiness
        self.schema = schema
        self.tick = tick
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_LoopCollector(loop, sources))
        more: list[Collector] = [PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR] if process_metrics else []
        for collector in [*more, *collectors]:
            self.registry.register(collector)
        self.last_tick = time.monotonic()
        self._tick_handle: asyncio.TimerHandle | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> MetricsServer:
        """Bind and serve; raises :class:`~vyked.core.exceptions.ListenError` if the port is taken."""
        from vyked.core.exceptions import ListenError

        addresses = socket.getaddrinfo(self.host or None, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family = addresses[0][0]
        server_class = type("VykedMetricsHTTPServer", (ThreadingHTTPServer,), {"address_family": family})
        try:
            server: ThreadingHTTPServer = server_class((self.host, self.port), _handler(self))
        except OSError as exc:
            raise ListenError(f"cannot serve metrics on {self.host}:{self.port}: {exc}") from exc
        server.daemon_threads = True
        server.block_on_close = False
        self._server = server
        self.port = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="vyked-metrics", daemon=True
        )
        self._thread.start()
        self._tick()
        logger.info("metrics and probes on http://%s:%d (/metrics, /livez, /readyz)", self.host, self.port)
        return self

    def _tick(self) -> None:
        self.last_tick = time.monotonic()
        if self.tick is not None:
            try:
                self.tick()
            except Exception:
                logger.exception("the metrics server's tick failed")
        self._tick_handle = self.loop.call_later(TICK_INTERVAL, self._tick)

    def close(self) -> None:
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(1.0)
            self._thread = None

    # -- the probes (in the server's threads) -----------------------------------------------------

    def livez(self) -> tuple[int, str]:
        answered = threading.Event()
        try:
            self.loop.call_soon_threadsafe(answered.set)
        except RuntimeError:
            return 503, "event loop closed\n"
        if answered.wait(LIVEZ_TIMEOUT):
            return 200, "ok\n"
        return 503, f"event loop blocked for {time.monotonic() - self.last_tick:.1f} s\n"

    def readyz(self) -> tuple[int, dict[str, Any]]:
        if self.readiness is None:
            ready, report = True, {"status": "ready"}
        else:
            try:
                ready, report = call_in_loop(self.loop, self.readiness, LIVEZ_TIMEOUT)
            except concurrent.futures.TimeoutError:
                blocked = time.monotonic() - self.last_tick
                return 503, {"status": "blocked", "reason": f"event loop blocked for {blocked:.1f} s"}
            except RuntimeError:
                return 503, {"status": "stopped", "reason": "event loop closed"}
        return (200 if ready else 503), report

    def contracts(self, fmt: str) -> tuple[int, dict[str, Any]]:
        if self.schema is None:
            return 404, {"error": "not_found", "message": "this server publishes no contracts"}
        try:
            return 200, call_in_loop(self.loop, functools.partial(self.schema, fmt), SCRAPE_TIMEOUT)
        except ValueError as exc:
            return 400, {"error": "bad_request", "message": str(exc)}
        except concurrent.futures.TimeoutError:
            return 503, {"error": "blocked", "message": "the event loop did not answer in time"}
        except RuntimeError:
            return 503, {"error": "stopped", "message": "event loop closed"}


def _handler(server: MetricsServer) -> type[MetricsHandler]:
    class Handler(MetricsHandler):
        registry = server.registry

        def do_GET(self) -> None:
            url = urlparse(self.path)
            path = url.path
            if path == "/metrics":
                super().do_GET()
            elif path == "/livez":
                status, text = server.livez()
                self._answer(status, "text/plain; charset=utf-8", text.encode())
            elif path == "/readyz":
                status, report = server.readyz()
                self._answer(status, "application/json", json.dumps(report).encode() + b"\n")
            elif path == "/schema":
                fmt = parse_qs(url.query).get("format", ["json"])[0]
                status, document = server.contracts(fmt)
                self._answer(status, "application/json", json.dumps(document, indent=2).encode() + b"\n")
            else:
                self._answer(404, "text/plain; charset=utf-8", b"not found: try /metrics, /livez, /readyz or /schema\n")

        def _answer(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


# -- a service host's metrics ---------------------------------------------------------------------


def host_families(host: ServiceHost) -> list[Family]:
    """What the host itself says: its state, and each service it runs."""
    state = Family("vyked_host_state", "1 for the host's current state", "gauge", ["state"])
    state.add([host.state.value], 1)
    services = Family("vyked_service_info", "The services this host runs", "gauge", ["service", "version", "kind"])
    for service in host.services:
        services.add([service.name, service.version, service.kind], 1)
    return [state, services]


def serve_host_metrics(host: ServiceHost, port: int, address: str = "0.0.0.0") -> MetricsServer:
    """Count ``host``'s requests (a :class:`RequestMetrics` in its observers) and serve its
    metrics and probes on ``address:port``; what ``ServiceHost.start`` does with a
    ``metrics_port``. Call in the host's event loop."""
    requests = RequestMetrics()
    host.observers.append(requests)

    def sources() -> list[Family]:
        return host_families(host) + families_of(
            requests, host.directory.health, COUNTS, *host.services, *host.extensions_in_use()
        )

    def schema(fmt: str) -> dict[str, Any]:
        from vyked.core import contracts

        if fmt == "asyncapi":
            return contracts.asyncapi(host.services, title=host.name or None)
        if fmt == "json":
            return contracts.describe(host.services)
        raise ValueError(f"unknown format {fmt!r}: json or asyncapi")

    loop = asyncio.get_running_loop()
    return MetricsServer(
        loop, port, address, sources=sources, readiness=host.readiness, schema=schema, tick=requests.timings.fold
    ).start()
