"""OpenTelemetry traces across real processes: a caller starts a span and calls service A, which
calls service B and publishes an event; A, B and the subscriber each report the trace id they
saw, and all are the caller's. Over the embedded transport and Redis, broadcast and exclusive;
HTTP client to HTTP service too. The service processes run the SDK with a tracer provider
(``traced_services.py``); this process traces through a local provider, so that no global one
leaks into the other tests."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from integration_support import wait_for_line
from traced_services import TraceB

from vyked import HTTPServiceClient, ServiceHost, TCPServiceClient, get, request
from vyked.core.exceptions import RemoteError
from vyked.core.testing import ProcessRunner, RedisServer

pytest.importorskip("opentelemetry.sdk", reason="needs opentelemetry-sdk (a test dependency)")

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from vyked.core.tracing import Tracing

HERE = Path(__file__).parent
SCRIPT = str(HERE / "traced_services.py")
STARTED = re.compile(r"host started")
SPAN = re.compile(r"^SPAN (.+) (SERVER|CLIENT|PRODUCER|CONSUMER|INTERNAL) ([0-9a-f]{32}) (\w+) (\{.*\})$")


class TraceAClient(TCPServiceClient):
    def __init__(self) -> None:
        super().__init__("TraceA", 1)

    @request(timeout=10)
    def relay(self) -> dict[str, Any]:
        return locals()


class TraceBClient(TCPServiceClient):
    def __init__(self) -> None:
        super().__init__("TraceB", 1)

    @request(timeout=10)
    def fail(self) -> dict[str, Any]:
        return locals()

    @request(timeout=10)
    def whoami_in_thread(self) -> dict[str, Any]:
        return locals()


class TraceWebClient(HTTPServiceClient):
    def __init__(self) -> None:
        super().__init__("TraceWeb", 1)

    @get(path="/whoami")
    def whoami(self) -> dict[str, Any]:
        return locals()


@pytest.fixture(params=["embedded", "redis"])
def pubsub(request: pytest.FixtureRequest) -> str | None:
    if request.param == "embedded":
        return None
    server: RedisServer = request.getfixturevalue("redis_server")
    return str(server.url)


@pytest.fixture
def tracer() -> Iterator[tuple[Tracing, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield Tracing(provider), exporter
    provider.shutdown()


def spans_of(proc: ProcessRunner) -> list[tuple[str, str, str, str, dict[str, Any]]]:
    """The spans a service process printed: (name, kind, trace id, status, attributes)."""
    found = []
    for line in proc.output().splitlines():
        if match := SPAN.match(line):
            name, kind, trace_id, status, attributes = match.groups()
            found.append((name, kind, trace_id, status, json.loads(attributes)))
    return found


async def eventually(check: Any, proc: ProcessRunner, timeout: float = 15.0) -> Any:
    """Poll ``check()`` until it returns something true; that value. Fails showing ``proc``'s
    output."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not (value := check()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"never held; the output of {proc.args}:\n{proc.output()}")
        await asyncio.sleep(0.05)
    return value


async def test_one_trace_across_services_and_events(
    registry_process: int, pubsub: str | None, tracer: tuple[Tracing, InMemorySpanExporter]
) -> None:
    registry = f"127.0.0.1:{registry_process}"
    env = {"VYKED_PUBSUB": pubsub} if pubsub else {}
    procs = [ProcessRunner(SCRIPT, role, "--registry", registry, env=env).start() for role in ("b", "a", "subscriber")]
    try:
        for proc in procs:
            await asyncio.to_thread(wait_for_line, proc, STARTED)
        b, a, subscriber = procs
        tracing, exporter = tracer
        caller = TraceAClient()
        host = ServiceHost(registry=registry, pubsub=pubsub)
        host.tracing = False  # no global provider here: the local one, explicitly
        host.observers.append(tracing)
        host.bind_client(caller)
        await host.start()
        try:
            # The subscriber may not hear events published before its subscriptions are in
            # place (broadcasts are not kept): call until it has heard one call's event.
            for _ in range(50):
                exporter.clear()
                with tracing.tracer.start_as_current_span("caller") as span:
                    trace_id = format(span.get_span_context().trace_id, "032x")
                    answer = await caller.relay()
                assert answer == {"a": trace_id, "b": trace_id}
                await asyncio.sleep(0.2)
                if f"SEEN broadcast {trace_id}" in subscriber.output():
                    break
        finally:
            await host.stop()
        seen = await eventually(
            lambda: len(s := set(re.findall(rf"^SEEN (\w+) {trace_id}$", subscriber.output(), re.M))) == 2 and s,
            subscriber,
        )
        assert seen == {"broadcast", "exclusive"}

        # the caller's own client span, a child of its span, with the RPC conventions
        (client_span,) = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
        assert client_span.name == "TraceA/relay"
        assert client_span.parent is not None and client_span.parent.span_id == span.get_span_context().span_id
        assert dict(client_span.attributes or {}) == {
            "rpc.system": "vyked", "rpc.service": "TraceA", "rpc.method": "relay",
        }  # fmt: skip
        # each process's spans: server, client, producer, consumer, all in the caller's trace
        a_spans = await eventually(lambda: len(s := [x for x in spans_of(a) if x[2] == trace_id]) >= 3 and s, a)
        assert {(name, kind) for name, kind, *_ in a_spans} >= {
            ("TraceA/relay", "SERVER"), ("TraceB/whoami", "CLIENT"), ("publish TraceA.relayed", "PRODUCER"),
        }  # fmt: skip
        b_spans = await eventually(lambda: spans_of(b), b)
        assert ("TraceB/whoami", "SERVER", trace_id) in [(n, k, t) for n, k, t, *_ in b_spans]
        consumer = await eventually(
            lambda: [s for s in spans_of(subscriber) if s[1] == "CONSUMER" and s[2] == trace_id], subscriber
        )
        assert {s[0] for s in consumer} == {"process TraceA.relayed"}
        assert {s[4]["messaging.destination.name"] for s in consumer} == {"TraceA.relayed"}
    finally:
        for proc in procs:
            proc.stop()


async def test_http_hop_thread_handlers_and_errors(
    registry_process: int, tracer: tuple[Tracing, InMemorySpanExporter]
) -> None:
    """HTTP client to HTTP service carries the trace; a plain ``def`` handler (a worker thread)
    sees it too; a handler's error is recorded on both ends' spans."""
    registry = f"127.0.0.1:{registry_process}"
    proc = ProcessRunner(SCRIPT, "b", "--registry", registry).start()
    try:
        await asyncio.to_thread(wait_for_line, proc, STARTED)
        tracing, exporter = tracer
        web, b = TraceWebClient(), TraceBClient()
        host = ServiceHost(registry=registry)
        host.tracing = False
        host.observers.append(tracing)
        host.bind_client(web)
        host.bind_client(b)
        await host.start()
        try:
            with tracing.tracer.start_as_current_span("caller") as span:
                trace_id = format(span.get_span_context().trace_id, "032x")
                response = await web.whoami()
                in_thread = await b.whoami_in_thread()
                with pytest.raises(RemoteError, match="asked to fail"):
                    await b.fail()
        finally:
            await host.stop()
        assert (await response.json())["trace_id"] == trace_id
        assert in_thread == trace_id

        failed = [s for s in exporter.get_finished_spans() if s.name == "TraceB/fail"]
        assert failed and failed[0].status.status_code is StatusCode.ERROR
        served = await eventually(lambda: [s for s in spans_of(proc) if s[0] == "TraceB/fail"], proc)
        assert served[0][1:4] == ("SERVER", trace_id, "ERROR")
        web_spans = await eventually(lambda: [s for s in spans_of(proc) if s[0] == "TraceWeb/whoami"], proc)
        assert web_spans[0][1:4] == ("SERVER", trace_id, "UNSET")
        assert web_spans[0][4]["http.response.status_code"] == 200
    finally:
        proc.stop()


async def test_no_tracing_without_a_provider(registry_process: int) -> None:
    """With no tracer provider configured (``auto``), a host adds no observer and sends no
    trace context: nothing to pay."""
    host = ServiceHost(registry=f"127.0.0.1:{registry_process}")
    host.attach(TraceB())
    await host.start()
    try:
        assert host.observers == []
    finally:
        await host.stop()
