"""The cost of metrics and of tracing on the RPC path and on publish-subscribe, in one run.

Three configurations of the same hosts, switched between runs by setting their observers
(:class:`Switch`), so that the same hosts, connections and services serve them all:

- ``off``: no observer (tracing off: ``host.tracing = False``, so neither ``VYKED_TRACING``
  nor a global tracer provider can turn it on);
- ``metrics``: every host's :class:`vyked.core.metrics.RequestMetrics`, as ``metrics_port``
  set it up (caller and callee, publisher and subscriber); ``/metrics`` is served throughout;
- ``tracing``: a :class:`vyked.core.tracing.Tracing` observer on every host, with an
  OpenTelemetry SDK ``TracerProvider`` in each process (``BatchSpanProcessor`` feeding an
  exporter that drops the spans; a local provider, not the global one): every call and event
  makes its spans and carries the trace context across the wire (the ``request`` and
  ``event`` packets' ``trace`` field).

RPC: a child process runs a registry and the echo host; this process calls it through a client
host (see ``bench_rpc.py``); a ``configure`` call switches the callee:

- sequential: one request in flight; latency p50
- pipelined: 100 requests in flight on one connection; requests per second, and the CPU time
  per call of both processes (``/proc``): the cost itself, less swayed than latency and
  throughput by where the scheduler puts the two processes (though it moves too, on a shared
  machine)

Publish-subscribe (embedded transport, no Redis; see ``bench_pubsub.py``): in this process, a
registry, a publisher host and a subscriber host (an inline ``@subscribe`` handler); events
per second from the first ``@publish`` until the subscriber has handled the last one, sent in
batches of ``BATCH``, each followed by ``PubSub.flush()``, with at most ``WINDOW`` batches not
yet handled; and this process's CPU time per event.

Runs of metrics alternate with runs of off (``alternating.py``; many short ones, ``--runs``), then
runs of tracing with runs of off (fewer, ``--tracing-runs``: its cost is far above the noise);
a figure is the best run, a change the median of the runs' ratios to the off runs either side.
Before each run the spans still queued are exported and the garbage collected, so that no run
pays for the one before (tracing makes much of both). Checked along the way: the callee's
``/metrics`` counts the calls, a traced call's server span and a traced event's handler join
the caller's trace.

Target (the observability issue): metrics within 5% of off; tracing is reported, no target.
Run: ``python bench/bench_observability.py`` (needs ``vyked-core[metrics,otel]`` and
``opentelemetry-sdk``); ``--help`` for the counts.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import importlib.util
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from alternating import Figures, alternate
from bench_rpc import percentile, pipelined, sequential
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from server_process import cpu_seconds, server_process

from vyked import ServiceHost, TCPService, TCPServiceClient, api, publish, request, subscribe
from vyked.core.metrics import RequestMetrics
from vyked.core.observe import Observer
from vyked.core.serving import run
from vyked.core.testing import http_get
from vyked.core.tracing import Tracing
from vyked.registry import Registry
from vyked.tcp.pubsub import PubSub

TARGET = 0.05
CONFIGS = ("off", "metrics", "tracing")
BATCH = 256
WINDOW = 2
HIGHER_IS_BETTER = {"p50": False, "rps": True, "cpu": False, "eps": True, "ecpu": False}
CPU_MEASURES = ("cpu", "ecpu")
"""The CPU time per call and per event: what metrics cost, less swayed by scheduling than
latency and throughput, which move by about 5% from run to run on a shared machine."""


# -- configurations -----------------------------------------------------------------------------


class DropSpans(SpanExporter):
    """An exporter that takes every batch and does nothing with it."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def tracer_provider() -> TracerProvider:
    """This process's provider for the ``tracing`` hosts; never made the global one."""
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(DropSpans()))
    return provider


def make_host(registry_port: int) -> ServiceHost:
    """A host with a metrics port, untraced whatever ``VYKED_TRACING`` says: :class:`Switch`
    sets its configuration once started."""
    host = ServiceHost(f"127.0.0.1:{registry_port}", metrics_host="127.0.0.1", metrics_port=0)
    host.tracing = False
    return host


class Switch:
    """Puts a started host in a configuration by setting its observers: none (``off``), its
    :class:`~vyked.core.metrics.RequestMetrics` (``metrics``: what ``metrics_port`` gave it), a
    :class:`~vyked.core.tracing.Tracing` observer (``tracing``). The same hosts, connections
    and services serve every configuration, so that only the observers differ between runs."""

    def __init__(self, host: ServiceHost, provider: TracerProvider) -> None:
        (requests,) = [o for o in host.observers if isinstance(o, RequestMetrics)]
        self.host = host
        self.observers: dict[str, list[Observer]] = {
            "off": [],
            "metrics": [requests],
            "tracing": [Tracing(provider)],
        }

    def set(self, config: str) -> None:
        self.host.observers = self.observers[config]


# -- RPC ----------------------------------------------------------------------------------------


class Echo(TCPService):
    def __init__(self) -> None:
        super().__init__("Echo", 1, "127.0.0.1", 0)
        self.switch: Switch | None = None

    @api(inline=True)
    def configure(self, config: str) -> None:
        """Put this host in ``config`` (see :class:`Switch`)."""
        assert self.switch is not None
        self.switch.set(config)

    @api(inline=True)
    def echo(self, x: int, name: str) -> dict[str, Any]:
        return {"x": x, "name": name}

    @api(inline=True)
    def trace_id(self) -> int:
        """The trace of the span current in the handler (0: none)."""
        return trace.get_current_span().get_span_context().trace_id


class EchoClient(TCPServiceClient):
    def __init__(self) -> None:
        super().__init__("Echo", 1)

    @request
    def configure(self, config: str) -> dict[str, Any]:
        return locals()

    @request
    def echo(self, x: int, name: str) -> dict[str, Any]:
        return locals()

    @request
    def trace_id(self) -> dict[str, Any]:
        return {}


async def serve() -> None:
    """The child process: a registry and the echo host, until stdin closes."""
    provider = tracer_provider()
    registry = Registry("127.0.0.1", 0)
    await registry.open()
    host = make_host(registry.port)
    echo = Echo()
    host.attach(echo)
    await host.start()
    echo.switch = Switch(host, provider)
    print(registry.port, host.metrics_port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await host.stop()
    await registry.close()
    provider.shutdown()


async def check_propagation(client: EchoClient, provider: TracerProvider) -> None:
    """A traced call's server span belongs to the caller's trace."""
    with provider.get_tracer("bench").start_as_current_span("check") as span:
        served = await client.trace_id()
    assert served == span.get_span_context().trace_id != 0, (served, span.get_span_context())


async def scrape(port: int) -> str:
    status, text = await asyncio.to_thread(http_get, f"http://127.0.0.1:{port}/metrics")
    assert status == 200, text
    return text


async def start_caller(registry_port: int) -> tuple[ServiceHost, EchoClient]:
    """A client host calling the echo host, warmed up."""
    host = make_host(registry_port)
    client = EchoClient()
    host.bind_client(client)
    await host.start()
    assert await client.echo(1, "bench") == {"x": 1, "name": "bench"}
    call = functools.partial(echo, client)
    await sequential(call, 500)
    await pipelined(call, 5000)
    return host, client


def echo(client: EchoClient, i: int) -> Any:
    return client.echo(i, "bench")


async def measure_rpc(
    registry_port: int,
    metrics_port: int,
    server_pid: int,
    provider: TracerProvider,
    n_seq: int,
    n_pipe: int,
    runs: dict[str, int],
) -> Figures:
    """Sequential p50, pipelined throughput, and the CPU time of a pipelined call (caller and
    callee), of the echo in each configuration, alternating with off."""
    host, client = await start_caller(registry_port)
    switch = Switch(host, provider)
    call = functools.partial(echo, client)

    async def configure(config: str) -> None:
        switch.set(config)
        await client.configure(config)

    await configure("tracing")
    await check_propagation(client, provider)

    def cpu() -> float:
        """Seconds of CPU used so far by this process and the child serving the calls."""
        return time.process_time() + (cpu_seconds(server_pid) or 0.0)

    async def one(config: str) -> dict[str, float]:
        await configure(config)
        p50 = percentile(await sequential(call, n_seq), 50)
        used = cpu()
        rps = await pipelined(call, n_pipe)
        return {"p50": p50, "rps": rps, "cpu": (cpu() - used) / n_pipe}

    async def check_scrape() -> None:
        text = await scrape(metrics_port)
        assert 'vyked_server_requests_total{endpoint="echo"' in text, text[:500]

    figures = await measure_alternately(one, runs, provider)
    await check_scrape()
    text = await scrape(host.metrics_port)
    counted = [line for line in text.splitlines() if line.startswith("vyked_client_requests_total{")]
    figures.notes = [f"RPC caller (metrics runs): {line}" for line in counted]
    await host.stop()
    return figures


# -- publish-subscribe --------------------------------------------------------------------------


class Ticker(TCPService):
    def __init__(self) -> None:
        super().__init__("Ticker", 1, "127.0.0.1", 0)

    @publish
    def tick(self, n: int, user: str) -> dict[str, Any]:
        return locals()

    @publish
    def probe(self) -> dict[str, Any]:
        return {}


class Counter:
    """Events a subscriber handled; :meth:`until` waits for a count."""

    def __init__(self) -> None:
        self.count = 0
        self.wanted = 0
        self.reached = asyncio.Event()

    def hit(self) -> None:
        self.count += 1
        if self.count >= self.wanted:
            self.reached.set()

    async def until(self, count: int, timeout: float = 60) -> None:
        if self.count < count:
            self.wanted = count
            self.reached.clear()
            async with asyncio.timeout(timeout):
                await self.reached.wait()


class TickerClient(TCPServiceClient):
    def __init__(self, counter: Counter) -> None:
        super().__init__("Ticker", 1)
        self.counter = counter
        self.probed: asyncio.Future[int] | None = None

    @subscribe(inline=True)  # in the loop's thread: no handler pool in the figures
    def tick(self, n: int, user: str) -> None:
        self.counter.hit()

    @subscribe(inline=True)
    def probe(self) -> None:
        """Tell the trace of the span current in the handler (0: none)."""
        if self.probed is not None:
            self.probed.set_result(trace.get_current_span().get_span_context().trace_id)


@dataclass
class PubSubPair:
    """A publisher host and a subscriber host, switched between configurations together."""

    ticker: Ticker
    hub: PubSub
    client: TickerClient
    hosts: list[ServiceHost]
    switches: list[Switch]

    @classmethod
    async def start(cls, registry_port: int, provider: TracerProvider) -> PubSubPair:
        publisher = make_host(registry_port)
        ticker = Ticker()
        publisher.attach(ticker)
        await publisher.start()
        client = TickerClient(Counter())
        subscriber = make_host(registry_port)
        subscriber.bind_client(client)
        await subscriber.start()
        hosts = [publisher, subscriber]
        return cls(ticker, PubSub.of(publisher), client, hosts, [Switch(host, provider) for host in hosts])

    def configure(self, config: str) -> None:
        for switch in self.switches:
            switch.set(config)

    async def events_per_second(self, events: int) -> float:
        """Publish ``events`` in batches, at most :data:`WINDOW` batches not yet handled (the
        hub's ``flush()`` waits for nothing with broadcast events: without a window the publisher
        would never yield to the subscriber); the rate until the subscriber has handled all."""
        counter = self.client.counter
        counter.count = 0
        started = time.perf_counter()
        for first in range(0, events, BATCH):
            for n in range(first, min(first + BATCH, events)):
                self.ticker.tick(n, "ann")
            assert await self.hub.flush()
            await counter.until(first - (WINDOW - 1) * BATCH)
        await counter.until(events)
        return events / (time.perf_counter() - started)

    async def check_propagation(self, provider: TracerProvider) -> None:
        """A traced event's handler runs in the publisher's trace."""
        self.client.probed = asyncio.get_running_loop().create_future()
        with provider.get_tracer("bench").start_as_current_span("check") as span:
            self.ticker.probe()
        async with asyncio.timeout(5):
            handled = await self.client.probed
        assert handled == span.get_span_context().trace_id != 0, (handled, span.get_span_context())

    async def stop(self) -> None:
        for host in reversed(self.hosts):
            await host.stop()


async def measure_pubsub(provider: TracerProvider, events: int, runs: dict[str, int]) -> Figures:
    """Events per second, and the CPU time of an event, from the publisher to the subscriber in
    each configuration, alternating with off."""
    async with Registry("127.0.0.1", 0) as registry:
        pair = await PubSubPair.start(registry.port, provider)
        await pair.events_per_second(min(events, 2000))  # warm up; also waits for the subscription
        pair.configure("tracing")
        await pair.check_propagation(provider)

        async def one(config: str) -> dict[str, float]:
            pair.configure(config)
            used = time.process_time()
            eps = await pair.events_per_second(events)
            return {"eps": eps, "ecpu": (time.process_time() - used) / events}

        figures = await measure_alternately(one, runs, provider)
        sides = (("publisher", "published"), ("subscriber", "received"))
        for (side, what), host in zip(sides, pair.hosts, strict=True):
            prefix = f'vyked_events_total{{what="{what}"}}'
            text = await scrape(host.metrics_port)
            figures.notes += [f"pub-sub {side}: {line}" for line in text.splitlines() if line.startswith(prefix)]
        await pair.stop()
    return figures


# -- alternating runs ----------------------------------------------------------------------------


async def measure_alternately(
    one: Callable[[str], Awaitable[dict[str, float]]], runs: dict[str, int], provider: TracerProvider
) -> Figures:
    """``runs[config]`` runs of each configuration, alternating with runs of off."""
    figures = Figures("off", HIGHER_IS_BETTER)
    for config, count in runs.items():
        await alternate(one, config, count, figures, functools.partial(settle, provider))
    return figures


async def settle(provider: TracerProvider) -> None:
    """Leave nothing of the previous run to the next: the spans still queued are exported (the
    span processor's thread would otherwise do it during the next run), the garbage is
    collected (a run that made much would otherwise have the next one pay for collecting it),
    and the child process gets a moment for the same."""
    provider.force_flush()
    gc.collect()
    await asyncio.sleep(0.05)


async def measure(
    registry_port: int, metrics_port: int, server_pid: int, args: argparse.Namespace
) -> dict[str, Figures]:
    provider = tracer_provider()
    try:
        runs = {"metrics": args.runs, "tracing": args.tracing_runs}
        rpc = await measure_rpc(
            registry_port, metrics_port, server_pid, provider, args.sequential, args.pipelined, runs
        )
        pubsub = await measure_pubsub(provider, args.events, runs)
    finally:
        provider.shutdown()
    return {"rpc": rpc, "pubsub": pubsub}


# -- report -------------------------------------------------------------------------------------

ROWS = (  # part, measure, label, scale, format
    ("rpc", "p50", "RPC sequential p50 (us)", 1e6, "{:12.1f}"),
    ("rpc", "rps", "RPC pipelined x100 (req/s)", 1, "{:12,.0f}"),
    ("rpc", "cpu", "RPC CPU per call (us)", 1e6, "{:12.1f}"),
    ("pubsub", "eps", "pub-sub (events/s)", 1, "{:12,.0f}"),
    ("pubsub", "ecpu", "pub-sub CPU per event (us)", 1e6, "{:12.1f}"),
)


def report(loop: str, figures: dict[str, Figures], args: argparse.Namespace) -> bool:
    """Print one loop's table; True when metrics are within the target everywhere."""
    print(
        f"\n{loop} loop, {args.runs} runs of metrics and {args.tracing_runs} of tracing, each between two runs of off:"
    )
    print("figures are the best runs, changes the median of the runs' ratios to the off runs either side")
    print("(+: slower latency / more throughput / more CPU); CPU: this process's and the callee's, pipelined")
    print(f"{'':30}{' figures ':-^34}{'':3}{' change vs off ':-^17}")
    print(f"{'':28}{'off':>12}{'metrics':>12}{'tracing':>12}{'metrics':>10}{'tracing':>10}   target (metrics)")
    within_all = {True: True, False: True}  # by: is it a CPU measure
    for part, key, label, scale, fmt in ROWS:
        fig = figures[part]
        if key not in fig.ratios.get("metrics", {}):
            continue  # no CPU figures where /proc is missing
        values = "".join(
            fmt.format(fig.figure(config, key) * scale) if config in fig.runs else f"{'n/a':>12}" for config in CONFIGS
        )
        metrics = fig.change("metrics", key)
        tracing = f"{fig.change('tracing', key):+10.1%}" if "tracing" in fig.ratios else f"{'n/a':>10}"
        within = -metrics <= TARGET if HIGHER_IS_BETTER[key] else metrics <= TARGET
        within_all[key in CPU_MEASURES] &= within
        target = f">= -{TARGET:.0%}" if HIGHER_IS_BETTER[key] else f"<= +{TARGET:.0%}"
        mark = "" if within else "  OVER TARGET"
        print(f"{label:28}{values}{metrics:+10.1%}{tracing}   {target}{mark}")
    verdict = {True: "yes", False: "NO"}
    print(f"metrics within {TARGET:.0%} of off in CPU per call and per event: {verdict[within_all[True]]}")
    print(f"metrics within {TARGET:.0%} of off in latency and throughput: {verdict[within_all[False]]}")
    ok = within_all[True] and within_all[False]
    for fig in figures.values():
        for note in fig.notes:
            print("  " + note)
    return ok


def main() -> None:
    default_loops = "asyncio,uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--loop", default="asyncio", help=argparse.SUPPRESS)
    parser.add_argument("--loops", default=default_loops, help=f"event loops to measure (default: {default_loops})")
    parser.add_argument("--sequential", type=int, default=1000, help="sequential RPC calls per run")
    parser.add_argument("--pipelined", type=int, default=10000, help="pipelined RPC calls per run")
    parser.add_argument("--events", type=int, default=10000, help="events published per pub-sub run")
    parser.add_argument("--runs", type=int, default=40, help="runs of metrics, alternating with runs of off")
    parser.add_argument("--tracing-runs", type=int, default=8, help="runs of tracing, alternating with runs of off")
    args = parser.parse_args()
    if args.serve:
        run(serve(), loop=args.loop)
        return
    for loop in args.loops.split(","):
        started = time.perf_counter()
        with server_process(__file__, "--loop", loop) as ports:
            registry_port, metrics_port = ports
            figures = run(measure(registry_port, metrics_port, ports.pid, args), loop=loop)
        report(loop, figures, args)
        print(f"  ({time.perf_counter() - started:.0f} s for the {loop} loop)")


if __name__ == "__main__":
    main()
