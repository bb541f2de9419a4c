"""OpenTelemetry tracing (``pip install 'vyked-core[otel]'``): spans for every request and
event, and their context carried across hops.

vyked uses ``opentelemetry-api`` only. The application chooses the SDK, the exporter and the
tracer provider (``opentelemetry.trace.set_tracer_provider``); until it does, a host adds no
tracing at all (``VYKED_TRACING=auto``, the default). :class:`Tracing` is an
:class:`~vyked.core.observe.Observer`:

- a client call (TCP ``@request``, HTTP client) is a ``CLIENT`` span; its context goes with the
  request: the ``trace`` field of the ``request`` packet, HTTP headers (W3C ``traceparent``,
  ``tracestate``, ``baggage``: whatever propagator the application configured);
- a served request is a ``SERVER`` span, child of the caller's, current while the handler
  runs (so its own calls, events and log lines belong to the trace);
- ``@publish`` is a ``PRODUCER`` span whose context travels with the event (the ``event``
  packet's ``trace`` field; over Redis a reserved payload field, see ``docs/protocol.md``),
  and each delivery to ``@subscribe`` / ``@xsubscribe`` handlers is a ``CONSUMER`` span, child
  of it, redeliveries included.

Attributes follow the semantic conventions: ``rpc.system = "vyked"``, ``rpc.service``,
``rpc.method`` for TCP; ``http.response.status_code`` for HTTP; ``messaging.system``,
``messaging.destination.name``, ``messaging.operation.type`` for events. An error is recorded
on its span (``record_exception``, status ``ERROR``).

``VYKED_TRACING``: ``auto`` (trace when a tracer provider is configured at host start), ``on``
(always: needs ``opentelemetry-api``), ``off``.
"""

from __future__ import annotations

import contextvars
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from vyked.core.exceptions import ConfigurationError
from vyked.core.observe import EventScope, Observation, Observer
from vyked.core.optional import require
from vyked.core.settings import parse_flag

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider

__all__ = ["TRACING_ENV", "Tracing", "tracing_wanted"]

TRACING_ENV = "VYKED_TRACING"
OTEL_EXTRA = "vyked-core[otel]"
_MODES = ("auto", "on", "off")


def tracing_wanted(setting: str | bool | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """Whether a host should trace: ``setting`` (True/False, or a mode) if given, else
    ``VYKED_TRACING`` (default ``auto``). ``auto`` traces when ``opentelemetry-api`` is installed
    and the application has set a tracer provider; ``on`` without the API raises
    :class:`~vyked.core.exceptions.MissingExtra` naming the extra; an unknown mode is a
    :class:`~vyked.core.exceptions.ConfigurationError` naming the variable."""
    if isinstance(setting, bool):
        mode = "on" if setting else "off"
    elif setting is not None:
        mode = _mode(setting, "tracing")
    else:
        raw = (os.environ if environ is None else environ).get(TRACING_ENV, "").strip()
        mode = _mode(raw, TRACING_ENV) if raw else "auto"
    if mode == "off":
        return False
    if mode == "on":
        require("opentelemetry.trace", OTEL_EXTRA, dependency="opentelemetry")
        return True
    # An application that set a tracer provider has imported the API: otherwise there is
    # nothing to see, and no reason to pay the import.
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return False
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def _mode(raw: str, what: str) -> str:
    if raw.strip().lower() == "auto":
        return "auto"
    try:
        return "on" if parse_flag(raw, variable=what) else "off"
    except ConfigurationError:
        raise ConfigurationError(f"{what}={raw!r}: expected one of {', '.join(_MODES)}") from None


class Tracing(Observer):
    """Spans for a host's requests and events, through ``opentelemetry-api`` (see the module
    docstring). ``tracer_provider`` defaults to the global one."""

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        from opentelemetry import context, propagate, trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        from vyked.core.__about__ import __version__

        self._trace = trace
        self._context = context
        self._propagate = propagate
        self._kinds = {"client": SpanKind.CLIENT, "server": SpanKind.SERVER}
        self._producer, self._consumer = SpanKind.PRODUCER, SpanKind.CONSUMER
        self._status, self._error_code = Status, StatusCode.ERROR
        self.tracer: Tracer = trace.get_tracer("vyked", __version__, tracer_provider)

    # -- requests -------------------------------------------------------------------------------

    def request_started(self, observation: Observation) -> Span:
        side, kind, service, _, endpoint = observation.labels
        if kind == "tcp":
            attributes: dict[str, Any] = {"rpc.system": "vyked", "rpc.service": service, "rpc.method": endpoint}
        else:
            attributes = {"vyked.service": service, "vyked.endpoint": endpoint}
        if observation.app:
            attributes["vyked.app"] = observation.app
        name = f"{service}/{endpoint}"
        if side == "client":
            # a child of whatever span is current where the call is made
            span = self.tracer.start_span(name, kind=self._kinds[side], attributes=attributes)
            carrier: dict[str, str] = {}
            self._propagate.inject(carrier, context=self._trace.set_span_in_context(span))
            observation.carrier = carrier
            return span
        parent = self._propagate.extract(observation.carrier) if observation.carrier else None
        span = self.tracer.start_span(name, context=parent, kind=self._kinds[side], attributes=attributes)
        observation.context = self._context_with(span, parent)
        return span

    def request_ended(
        self, observation: Observation, state: Any, outcome: str, error: BaseException | None, duration: float
    ) -> None:
        span: Span = state
        if observation.status:
            span.set_attribute("http.response.status_code", observation.status)
        if error is not None:
            self._record(span, error)
        elif observation.status >= 500:
            span.set_status(self._status(self._error_code, f"HTTP {observation.status}"))
        span.end()

    # -- events ---------------------------------------------------------------------------------

    def event_published(self, service: str, version: str, event: str, carrier: dict[str, str]) -> None:
        destination = f"{service}.{event}"
        span = self.tracer.start_span(
            f"publish {destination}", kind=self._producer, attributes=_messaging(destination, "publish")
        )
        self._propagate.inject(carrier, context=self._trace.set_span_in_context(span))
        span.end()

    def event_received(
        self, service: str, version: str, event: str, exclusive: bool, carrier: Mapping[str, str] | None
    ) -> EventScope:
        destination = f"{service}.{event}"
        parent = self._propagate.extract(carrier) if carrier else None
        attributes = _messaging(destination, "process")
        attributes["vyked.exclusive"] = exclusive
        span = self.tracer.start_span(
            f"process {destination}", context=parent, kind=self._consumer, attributes=attributes
        )

        def finish(error: BaseException | None) -> None:
            if error is not None:
                self._record(span, error)
            span.end()

        return EventScope(self._context_with(span, parent), finish)

    # -- helpers --------------------------------------------------------------------------------

    def _context_with(self, span: Span, parent: Any) -> contextvars.Context:
        """A copy of the current context in which ``span`` (and ``parent``'s baggage) is current."""
        scope = contextvars.copy_context()
        scope.run(self._context.attach, self._trace.set_span_in_context(span, parent))
        return scope

    def _record(self, span: Span, error: BaseException) -> None:
        span.record_exception(error)
        span.set_status(self._status(self._error_code, f"{type(error).__name__}: {error}"))


def _messaging(destination: str, operation: str) -> dict[str, Any]:
    return {
        "messaging.system": "vyked",
        "messaging.destination.name": destination,
        "messaging.operation.type": operation,
    }
