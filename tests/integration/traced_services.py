"""Service processes for the tracing tests, each with the OpenTelemetry SDK and a tracer
provider set (so that ``VYKED_TRACING=auto`` turns tracing on), printing every span it ends as
``SPAN <name> <kind> <trace id> <status> <attributes as JSON>`` and reporting the trace id its
handlers saw.

- ``b``: ``TraceB`` (TCP, ``whoami`` and ``fail``) and ``TraceWeb`` (HTTP, ``GET /whoami``);
- ``a``: ``TraceA`` (TCP, ``relay``): calls ``TraceB.whoami``, publishes ``relayed``, answers
  both trace ids;
- ``subscriber``: subscribes to ``TraceA.relayed`` (broadcast and exclusive) and prints
  ``SEEN <how> <trace id>``.

python traced_services.py ROLE --registry HOST:PORT (pub-sub: VYKED_PUBSUB, else embedded)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from vyked import (
    Host,
    HTTPService,
    TCPService,
    TCPServiceClient,
    api,
    get,
    publish,
    request,
    subscribe,
    xsubscribe,
)


def say(line: str) -> None:
    """One whole line in one write: handlers in worker threads print while spans are exported."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def current_trace_id() -> str:
    return format(trace.get_current_span().get_span_context().trace_id, "032x")


class PrintingExporter(SpanExporter):
    """Prints each span as one line, for the test to read."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            context = span.get_span_context()
            assert context is not None
            attributes = {k: v for k, v in (span.attributes or {}).items() if isinstance(v, str | int | bool)}
            say(
                f"SPAN {span.name} {span.kind.name} {context.trace_id:032x} {span.status.status_code.name} "
                f"{json.dumps(attributes, sort_keys=True)}"
            )
        return SpanExportResult.SUCCESS


class TraceB(TCPService):
    def __init__(self) -> None:
        super().__init__("TraceB", 1, "127.0.0.1", 0)

    @api
    async def whoami(self) -> str:
        return current_trace_id()

    @api
    def whoami_in_thread(self) -> str:
        return current_trace_id()

    @api
    async def fail(self) -> None:
        raise ValueError("asked to fail")


class TraceWeb(HTTPService):
    def __init__(self) -> None:
        super().__init__("TraceWeb", 1, "127.0.0.1", 0)

    @get(path="/whoami")
    async def whoami(self, request: web.Request) -> web.Response:
        return web.json_response({"trace_id": current_trace_id()})


class TraceBClient(TCPServiceClient):
    def __init__(self) -> None:
        super().__init__("TraceB", 1)

    @request
    def whoami(self) -> dict[str, Any]:
        return locals()


class TraceA(TCPService):
    def __init__(self) -> None:
        super().__init__("TraceA", 1, "127.0.0.1", 0)
        self.b = TraceBClient()
        self.clients = [self.b]

    @api
    async def relay(self) -> dict[str, str]:
        seen_by_b = await self.b.whoami()
        self.relayed(step="relay")
        return {"a": current_trace_id(), "b": seen_by_b}

    @publish
    def relayed(self, step: str) -> dict[str, Any]:
        return locals()


class TraceABroadcasts(TCPServiceClient):
    def __init__(self) -> None:
        super().__init__("TraceA", 1)

    @subscribe
    def relayed(self, step: str) -> None:
        say(f"SEEN broadcast {current_trace_id()}")  # in a worker thread: a plain def


class TraceAExclusives(TCPServiceClient):
    def __init__(self) -> None:
        super().__init__("TraceA", 1)

    @xsubscribe
    async def relayed(self, step: str) -> None:
        say(f"SEEN exclusive {current_trace_id()}")


class Listener(TCPService):
    """A service that only listens (exclusive subscriptions belong to a service)."""

    def __init__(self) -> None:
        super().__init__("TraceListener", 1, "127.0.0.1", 0)
        self.clients = [TraceABroadcasts(), TraceAExclusives()]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["a", "b", "subscriber"])
    parser.add_argument("--registry", required=True)
    args = parser.parse_args()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(PrintingExporter()))
    trace.set_tracer_provider(provider)
    Host.registry_host = args.registry
    if args.role == "b":
        Host.attach_service(TraceB())
        Host.attach_service(TraceWeb())
    elif args.role == "a":
        Host.attach_service(TraceA())
    else:
        Host.attach_service(Listener())
    Host.run()
