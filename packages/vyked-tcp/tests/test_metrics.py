"""Metrics of TCP hosts, scraped over HTTP from their metrics port after real calls."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from vyked import (
    RemoteError,
    RequestTimeout,
    ServiceHost,
    ServiceUnavailable,
    TCPService,
    TCPServiceClient,
    api,
    publish,
    request,
    subscribe,
)
from vyked.core.exceptions import ConfigurationError
from vyked.core.pytest_plugin import HostFactory
from vyked.core.testing import http_get

pytest.importorskip("prometheus_client", reason="needs vyked-core[metrics]")
from prometheus_client.parser import text_string_to_metric_families

METRICS = {"metrics_port": 0, "metrics_host": "127.0.0.1"}


class Metered(TCPService):
    def __init__(self) -> None:
        super().__init__("Metered", 1, "127.0.0.1", 0)
        self.release = asyncio.Event()

    @api(inline=True)
    def echo(self, x: int) -> int:
        return x

    @api
    async def fail(self) -> None:
        raise ValueError("no")

    @api
    async def hold(self) -> str:
        await self.release.wait()
        return "released"

    @api
    def in_thread(self, x: int) -> int:
        return x * 2

    @publish
    def happened(self, n: int) -> dict[str, Any]:
        return locals()


class MeteredClient(TCPServiceClient):
    def __init__(self) -> None:
        super().__init__("Metered", 1)
        self.seen: list[int] = []

    @request
    def echo(self, x: int) -> dict[str, Any]:
        return locals()

    @request
    def fail(self) -> dict[str, Any]:
        return locals()

    @request(timeout=0.2)
    def hold(self) -> dict[str, Any]:
        return locals()

    @request
    def in_thread(self, x: int) -> dict[str, Any]:
        return locals()

    @subscribe
    def happened(self, n: int) -> None:
        self.seen.append(n)


class NobodyClient(TCPServiceClient):
    def __init__(self) -> None:
        super().__init__("Nobody", 1)

    @request
    def anything(self) -> dict[str, Any]:
        return locals()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(host: ServiceHost) -> Samples:
    """Every sample of the host's ``/metrics``, fetched over HTTP (from a thread: the server
    reads vyked's figures in this loop)."""
    status, body = await asyncio.to_thread(http_get, f"http://127.0.0.1:{host.metrics_port}/metrics")
    assert status == 200, body
    found: Samples = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample ``name`` with exactly these labels (0 if absent)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_calls_are_counted_by_outcome_on_both_sides(vyked_host: HostFactory) -> None:
    service = Metered()
    server = await vyked_host(service, **METRICS)
    client, nobody = MeteredClient(), NobodyClient()
    caller = await vyked_host(clients=(client, nobody), **METRICS)

    for i in range(3):
        assert await client.echo(i) == i
    assert await client.in_thread(4) == 8
    for _ in range(2):
        with pytest.raises(RemoteError):
            await client.fail()
    with pytest.raises(RequestTimeout):
        await client.hold()
    with pytest.raises(ServiceUnavailable):
        await nobody.anything()

    calls = await scrape(caller)
    labels = {"kind": "tcp", "service": "Metered", "version": "1"}
    assert value(calls, "vyked_client_requests_total", **labels, endpoint="echo", outcome="ok") == 3
    assert value(calls, "vyked_client_requests_total", **labels, endpoint="in_thread", outcome="ok") == 1
    assert value(calls, "vyked_client_requests_total", **labels, endpoint="fail", outcome="remote_error") == 2
    assert value(calls, "vyked_client_requests_total", **labels, endpoint="hold", outcome="timeout") == 1
    assert (
        value(
            calls,
            "vyked_client_requests_total",
            kind="tcp",
            service="Nobody",
            version="1",
            endpoint="anything",
            outcome="service_unavailable",
        )
        == 1
    )
    histogram = {**labels, "endpoint": "hold", "outcome": "timeout"}
    assert value(calls, "vyked_client_request_duration_seconds_count", **histogram) == 1
    # its 0.2 s timeout: uvloop's timers may fire up to a millisecond early
    assert value(calls, "vyked_client_request_duration_seconds_sum", **histogram) >= 0.199
    assert value(calls, "vyked_client_request_duration_seconds_bucket", **histogram, le="0.1") == 0
    assert value(calls, "vyked_client_request_duration_seconds_bucket", **histogram, le="+Inf") == 1
    assert value(calls, "vyked_connections_opened_total", direction="out") >= 2  # registry, instance

    # The handler of the timed-out call still runs: in flight on the service's side.
    served = await scrape(server)
    assert value(served, "vyked_server_requests_in_flight", **labels, endpoint="hold") == 1
    assert value(served, "vyked_server_requests_total", **labels, endpoint="echo", outcome="ok") == 3
    assert value(served, "vyked_server_requests_total", **labels, endpoint="in_thread", outcome="ok") == 1
    assert value(served, "vyked_server_requests_total", **labels, endpoint="fail", outcome="remote_error") == 2
    assert value(served, "vyked_server_request_duration_seconds_count", **labels, endpoint="echo", outcome="ok") == 3
    assert value(served, "vyked_service_info", service="Metered", version="1", kind="tcp") == 1
    assert value(served, "vyked_host_state", state="running") == 1

    service.release.set()
    for _ in range(100):
        served = await scrape(server)
        if value(served, "vyked_server_requests_total", **labels, endpoint="hold", outcome="ok") == 1:
            break
        await asyncio.sleep(0.02)
    assert value(served, "vyked_server_requests_in_flight", **labels, endpoint="hold") == 0
    assert value(served, "vyked_server_requests_total", **labels, endpoint="hold", outcome="ok") == 1


async def test_events_and_the_publish_buffer_are_counted(vyked_host: HostFactory) -> None:
    service = Metered()
    publisher = await vyked_host(service, **METRICS)
    client = MeteredClient()
    subscriber = await vyked_host(clients=(client,), **METRICS)
    for n in range(3):
        service.happened(n)
    for _ in range(200):
        if len(client.seen) == 3:
            break
        await asyncio.sleep(0.01)
    assert sorted(client.seen) == [0, 1, 2]

    published = await scrape(publisher)
    assert value(published, "vyked_events_total", what="published") == 3
    assert value(published, "vyked_events_total", what="sent") == 3
    assert value(published, "vyked_pubsub_buffered_events") == 0
    received = await scrape(subscriber)
    assert value(received, "vyked_events_total", what="received") == 3
    assert value(received, "vyked_events_total", what="published") == 0


async def test_without_a_metrics_port_nothing_observes(
    vyked_host: HostFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VYKED_METRICS_PORT", raising=False)
    host = await vyked_host(Metered())
    assert host.observers == []
    assert host.metrics is None and host.metrics_port is None


async def test_the_metrics_port_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VYKED_METRICS_PORT", "0")
    assert ServiceHost("127.0.0.1:1").metrics_port == 0
    assert ServiceHost("127.0.0.1:1", metrics_port=9999).metrics_port == 9999  # explicit first
    monkeypatch.setenv("VYKED_METRICS_PORT", "nine")
    with pytest.raises(ConfigurationError, match="VYKED_METRICS_PORT='nine'"):
        ServiceHost("127.0.0.1:1")


async def test_the_metrics_port_publishes_the_contracts(vyked_host: HostFactory) -> None:
    """``/schema``: what ``vyked schema`` prints, as JSON or AsyncAPI; a bad format is a 400."""
    import json

    server = await vyked_host(Metered(), **METRICS)
    base = f"http://127.0.0.1:{server.metrics_port}/schema"
    status, body = await asyncio.to_thread(http_get, base)
    assert status == 200
    (described,) = json.loads(body)["services"]
    assert described["name"] == "Metered"
    assert {"echo", "fail", "hold", "in_thread"} <= {e["name"] for e in described["endpoints"]}
    status, body = await asyncio.to_thread(http_get, f"{base}?format=asyncapi")
    assert status == 200 and json.loads(body)["asyncapi"].startswith("3.")
    status, body = await asyncio.to_thread(http_get, f"{base}?format=xml")
    assert status == 400 and "unknown format 'xml'" in json.loads(body)["message"]


async def test_answered_calls_are_counted_without_a_scrape(vyked_host: HostFactory) -> None:
    """Answered requests wait in their stopwatch only until the metrics server's next tick."""
    from vyked.core.metrics import TICK_INTERVAL, RequestMetrics

    server = await vyked_host(Metered(), **METRICS)
    client = MeteredClient()
    caller = await vyked_host(clients=(client,), **METRICS)
    await client.echo(0)  # connected: the calls that follow take the fast path, timed by stopwatches
    await asyncio.gather(*(client.echo(i) for i in range(50)))
    await asyncio.sleep(TICK_INTERVAL * 2)
    for host, side in ((caller, "client"), (server, "server")):
        (metrics,) = [o for o in host.observers if isinstance(o, RequestMetrics)]
        labels = (side, "tcp", "Metered", "1", "echo")
        assert metrics.timings.stopwatches[labels].durations == []
        assert metrics.timings.histograms[labels]["ok"].count == 51


async def test_the_answers_of_a_read_are_counted_by_endpoint_from_their_sending(vyked_host: HostFactory) -> None:
    """The caller counts the answers of one read together, per endpoint, each from the moment
    its request was sent: calls held 0.1 s by the service count at least that; echoes sent
    as they are released, answered with them, do not."""
    from vyked.core.metrics import RequestMetrics
    from vyked.core.observe import LATENCY_BUCKETS

    service = Metered()
    await vyked_host(service, **METRICS)
    client = MeteredClient()
    caller = await vyked_host(clients=(client,), **METRICS)
    await client.echo(0)  # connected: the calls that follow take the fast path, timed by stopwatches
    held = [asyncio.ensure_future(client.hold()) for _ in range(10)]
    await asyncio.sleep(0.1)
    echoes = [asyncio.ensure_future(client.echo(i)) for i in range(20)]
    service.release.set()
    assert await asyncio.gather(*held) == ["released"] * 10
    assert await asyncio.gather(*echoes) == list(range(20))
    (metrics,) = [o for o in caller.observers if isinstance(o, RequestMetrics)]
    metrics.timings.fold()
    hold = metrics.timings.histograms[("client", "tcp", "Metered", "1", "hold")]["ok"]
    echo = metrics.timings.histograms[("client", "tcp", "Metered", "1", "echo")]["ok"]
    assert (hold.count, echo.count) == (10, 21)
    at_least = LATENCY_BUCKETS.index(0.1)  # held 0.1 s or more: nothing in the buckets up to 0.05 s
    assert sum(hold.counts[:at_least]) == 0 and hold.sum >= 10 * 0.1
    assert echo.sum < 10 * 0.1


class HeldTwice(TCPService):
    """Two endpoints whose requests wait until released: their calls stay in flight."""

    def __init__(self) -> None:
        super().__init__("HeldTwice", 1, "127.0.0.1", 0)
        self.release = asyncio.Event()

    @api(inline=True)
    def ping(self) -> str:
        return "pong"

    @api
    async def first(self) -> str:
        await self.release.wait()
        return "late"

    @api
    async def second(self) -> str:
        await self.release.wait()
        return "late"


class HeldTwiceClient(TCPServiceClient):
    def __init__(self) -> None:
        super().__init__("HeldTwice", 1)

    @request
    def ping(self) -> dict[str, Any]:
        return locals()

    @request
    def first(self) -> dict[str, Any]:
        return locals()

    @request
    def second(self) -> dict[str, Any]:
        return locals()


async def test_a_reads_answers_are_counted_from_the_sending_of_each(vyked_host: HostFactory) -> None:
    """Answers of two endpoints in one read, each call sent at a known time (its pending entry's
    sending time, set here): each latency lands in its own bucket, per endpoint, whichever way
    the read counts them (together for the first endpoint seen, one by one for the other)."""
    from vyked.core.metrics import RequestMetrics
    from vyked.core.observe import LATENCY_BUCKETS
    from vyked.core.protocol.packets import Response
    from vyked.tcp.pool import POOL

    service = HeldTwice()
    await vyked_host(service, **METRICS)
    client = HeldTwiceClient()
    caller = await vyked_host(clients=(client,), **METRICS)
    assert await client.ping() == "pong"  # connected: the calls that follow are timed by stopwatches
    names = ["first", "second", "first", "second", "first"]
    latencies = [0.0003, 0.007, 0.002, 20.0, 0.3]  # buckets 0.0005, 0.01, 0.0025, +Inf, 0.5
    calls = [asyncio.ensure_future(getattr(client, name)()) for name in names]
    (ic,) = await asyncio.wait_for(_connections_with(caller, POOL, len(names)), 5)
    conn = ic.connection
    assert conn is not None
    now = 1000.0
    for request_id, latency in zip(list(ic.pending), latencies, strict=True):
        entry = ic.pending[request_id]
        ic.pending[request_id] = (*entry[:4], now - latency, *entry[5:])  # sent ``latency`` ago
    conn.read_at = now  # the read that brings the answers
    ic.packets_received(conn, [Response(request_id, "early") for request_id in list(ic.pending)])
    assert await asyncio.gather(*calls) == ["early"] * len(names)
    (metrics,) = [o for o in caller.observers if isinstance(o, RequestMetrics)]
    metrics.timings.fold()
    histograms = metrics.timings.histograms
    first = histograms[("client", "tcp", "HeldTwice", "1", "first")]["ok"]
    second = histograms[("client", "tcp", "HeldTwice", "1", "second")]["ok"]
    bucket = {bound: LATENCY_BUCKETS.index(bound) for bound in (0.0005, 0.0025, 0.5, 0.01)}
    assert first.count == 3 and second.count == 2
    assert first.counts[bucket[0.0005]] == first.counts[bucket[0.0025]] == first.counts[bucket[0.5]] == 1
    assert second.counts[bucket[0.01]] == 1 and second.counts[-1] == 1
    assert first.sum == pytest.approx(0.3023) and second.sum == pytest.approx(20.007)
    service.release.set()  # their own answers come later, for nothing in flight: dropped
    await asyncio.sleep(0.05)
    assert (first.count, second.count) == (3, 2) and not ic.pending


async def _connections_with(host: ServiceHost, pool_key: Any, in_flight: int) -> list[Any]:
    """The host's connections once one has ``in_flight`` requests pending."""
    pool = host.extension(pool_key)
    while True:
        connections = [ic for ic in pool.connections.values() if len(ic.pending) == in_flight]
        if connections:
            return connections
        await asyncio.sleep(0.01)
