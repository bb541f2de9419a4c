"""Service side of request-response: run the ``@api`` handler a request names, answer it.

One :class:`Dispatcher` per service. Where a handler runs depends on its style
(:func:`vyked.core.handler_styles.execution_of`): ``async def`` and generator handlers run as
tasks on the loop, plain ``def`` handlers in the handler thread pool
(:mod:`vyked.core.threads`), and plain ones marked ``@api(inline=True)`` inline, in the loop's
thread, without a task (the cheapest path). ``@api(timeout=...)`` bounds all but the inline
ones. Every request gets exactly one answer: a ``response`` or an ``error`` whose ``code`` says
what went wrong (see ``docs/protocol.md``).

Before running anything the dispatcher asks the service's and the endpoint's
:class:`~vyked.core.inflight.InFlight`: a request over ``max_concurrency`` is refused at once
with ``overloaded``, and every request after :meth:`Dispatcher.start_draining` with
``draining``; neither ran, so the caller may send it elsewhere.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

from vyked.core.exceptions import (
    InvalidParams,
    RemoteError,
    RequestException,
    RequestTimeout,
    ServiceUnavailable,
    UnknownEndpoint,
    VykedError,
)
from vyked.core.forwarding import keyword_caller
from vyked.core.handler_styles import Execution, as_coroutine_function, execution_of, is_handler_failure
from vyked.core.inflight import InFlight, concurrency_limit
from vyked.core.names import same_service
from vyked.core.observe import (
    Family,
    Labels,
    Observation,
    Observer,
    Observers,
    Stopwatch,
    Timings,
    observe,
)
from vyked.core.protocol import ENCODE_ERRORS, encode_frame, encode_payload, frame_header
from vyked.core.protocol.packets import Error, Packet, Request, Response
from vyked.core.service_errors import VykedServiceException
from vyked.core.tasks import TaskSet
from vyked.core.threads import HandlerPool, default_pool
from vyked.core.transport import Connection
from vyked.tcp.decorators import EndpointSpec

logger = logging.getLogger(__name__)

MAX_CALLERS_LOGGED = 1_000
"""Distinct callers' ``app_name`` a service logs the first request of (names come from callers)."""


@dataclass(slots=True)
class Endpoint:
    """An ``@api`` method bound to its service, ready to call."""

    name: str
    handler: Callable[..., Any]
    execution: Execution
    timeout: float | None
    deprecation: str | None
    signature: inspect.Signature
    running: InFlight
    """This endpoint's requests running now, and its ``max_concurrency``."""
    immediate: bool = field(init=False)
    """Inline, without a ``max_concurrency`` of its own: its requests may run on the
    dispatcher's hot path (:meth:`Dispatcher.dispatch_all`) when nothing else stands in the
    way. Fixed once made: an endpoint's :attr:`running` is never drained (the service's is)."""
    call: Callable[[dict[str, Any]], Any] = field(init=False)
    """Calls :attr:`handler` with a request's parameters (see
    :func:`~vyked.core.forwarding.keyword_caller`)."""

    def __post_init__(self) -> None:
        self.immediate = self.execution is Execution.INLINE and not self.running.guarded
        self.call = keyword_caller(self.handler)

    @classmethod
    def bind(cls, service_name: str, method: Callable[..., Any], spec: EndpointSpec) -> Endpoint:
        deprecation = None
        if spec.deprecated:
            deprecation = f"{service_name}.{spec.name} is deprecated"
            if spec.replacement_api:
                deprecation += f"; use {spec.replacement_api} instead"
        return cls(
            name=spec.name,
            handler=as_coroutine_function(method),
            execution=execution_of(method, inline=spec.inline),
            timeout=spec.timeout,
            deprecation=deprecation,
            signature=inspect.signature(method),
            running=InFlight(f"{service_name}.{spec.name}", spec.max_concurrency),
        )


class Dispatcher:
    """Routes ``request`` packets to endpoints and writes their answers."""

    def __init__(
        self,
        service_name: str,
        endpoints: dict[str, Endpoint],
        *,
        max_in_flight: int = 1_000,
        max_concurrency: int | None = None,
        pool: HandlerPool | None = None,
        version: str = "",
        observers: list[Observer] | None = None,
    ) -> None:
        """``max_concurrency`` caps the requests the service runs at once (default:
        ``VYKED_MAX_CONCURRENCY``, else no cap); ``pool`` runs plain ``def`` handlers
        (default: the process's :func:`~vyked.core.threads.default_pool`); ``observers`` (the
        host's list, read for every read of a connection) see each request
        (:mod:`vyked.core.observe`)."""
        self.service_name = service_name
        self.version = version
        self.observers = observers if isinstance(observers, Observers) else Observers(observers or ())
        self._labels: dict[str, Labels] = {name: ("server", "tcp", service_name, version, name) for name in endpoints}
        self._unknown: Labels = ("server", "tcp", service_name, version, "")
        """What observers see requests as; an unknown endpoint as "" (names sent by callers
        would make labels without end)."""
        self._stopwatches = self.observers.stopwatches(self._labels.__getitem__)
        """What times requests of known endpoints when metrics are the host's only observer."""
        self.endpoints = endpoints
        self.max_in_flight = max_in_flight
        """Requests one connection may have running; at the limit the connection is not read."""
        self.running = InFlight(service_name, concurrency_limit(max_concurrency))
        """The service's requests running now (inline ones never show: they end before anything
        else can look); its ``max_concurrency``; whether it is draining."""
        self._pool = pool
        self._tasks = TaskSet()
        self._callers: set[str] = set()
        """The ``app`` names (callers' ``app_name``) that have called this service, each logged once."""

    def dispatch_all(
        self, conn: Connection, packets: list[Packet], other: Callable[[Connection, Packet], None]
    ) -> None:
        """Dispatch the requests among the packets of one read; hand the rest to ``other``.

        This loop is the hot path of a service: it runs an inline handler on the spot when
        nothing is to be refused or logged and nothing observes but metrics (a stopwatch times
        the request from the read that brought it to the write of its answer: nothing is made
        per request, and the clock is read once a write); everything else goes
        through :meth:`_dispatch`. The answers it makes leave together, in one write after the
        last packet, or before anything else the read holds is handled (which may close the
        connection); errors are written as they come (answers may come in any order)."""
        endpoints, service_name, running = self.endpoints, self.service_name, self.running
        observers = self.observers
        timings = observers.timings  # None unless metrics alone observe
        unobserved = not observers
        answers: list[bytes] = []
        timed: list[str] = []  # the endpoints of the answers made, timed when they leave
        try:
            for packet in packets:
                if (
                    type(packet) is Request
                    and (endpoint := endpoints.get(packet.endpoint)) is not None
                    and endpoint.immediate
                    and not packet.app
                    and packet.service == service_name
                    and not running.guarded
                    and (unobserved or (timings is not None and not packet.trace))
                ):
                    outcome: BaseException | None
                    try:
                        result = endpoint.call(packet.params)
                    except BaseException as exc:
                        outcome = self._inline_failed(conn, packet, endpoint, exc)
                    else:
                        try:  # encode_frame, without a call
                            body = encode_payload(Response(packet.id, result, endpoint.deprecation))
                        except ENCODE_ERRORS:  # the general answer says why
                            outcome = self._send_result(conn, packet.id, endpoint, result)
                        else:
                            answers.append(frame_header(len(body)) + body)
                            if timings is not None:
                                timed.append(endpoint.name)
                            continue
                    if timings is not None:  # failed, or answered by _send_result
                        if outcome is None:
                            timed.append(endpoint.name)
                        else:
                            stopwatch = timings.stopwatch(self._labels[endpoint.name])
                            stopwatch.record(perf_counter() - conn.read_at, outcome)
                    continue
                # Anything else may close the connection: what was answered goes first.
                if answers or timed:
                    sending, timing, answers, timed = answers, timed, [], []  # once, even if it raises
                    self._send_answers(conn, sending, timing, timings)
                if type(packet) is Request:
                    self._dispatch(conn, packet, endpoints.get(packet.endpoint))
                else:
                    other(conn, packet)
                if conn.closed:
                    return
        finally:  # what was answered leaves, even if a handler's BaseException ends the read
            if answers or timed:
                self._send_answers(conn, answers, timed, timings)

    def _send_answers(self, conn: Connection, answers: list[bytes], timed: list[str], timings: Timings | None) -> None:
        """Write the answers :meth:`dispatch_all` made (unless the connection closed), and count
        in ``timings`` (those in use when the read began: a handler may have changed the host's
        observers since) how long their requests took, from the read that brought them to this
        write (``timed``: the endpoint of each request timed; they all took the same time)."""
        if answers and not conn.closed:
            conn.send_frames(answers)
        if timed and timings is not None:
            elapsed = perf_counter() - conn.read_at
            first, count = timed[0], len(timed)
            stopwatches = self._stopwatches
            if stopwatches.timings is timings and (count == 1 or timed.count(first) == count):  # as usual
                stopwatch = stopwatches.by_name.get(first) or stopwatches.of(first)
                if count == 1:  # a lone request (sequential calls): with the others in bulk
                    stopwatch.durations.append(elapsed)
                else:
                    stopwatch.record_answers(elapsed, count)
            else:  # several endpoints, or the observers changed during the read
                for name in dict.fromkeys(timed):
                    timings.stopwatch(self._labels[name]).record_answers(elapsed, timed.count(name))

    def _dispatch(self, conn: Connection, request: Request, endpoint: Endpoint | None) -> None:
        """Everything :meth:`dispatch_all`'s hot path leaves: observed requests, refusals, routing
        errors, handlers that run in a thread or as a task."""
        running = self.running
        observers = self.observers
        # With metrics alone, a stopwatch times the request (nothing made per request, for the
        # inline path); with other observers, an observation does.
        stopwatch: Stopwatch | None = None
        observation: Observation | None = None
        started = 0.0
        if observers:
            timings = observers.timings
            if timings is not None and endpoint is not None and not request.app and not request.trace:
                stopwatch = self._stopwatches.of(request.endpoint)
                started = conn.read_at  # timed from its arrival
            else:
                labels = self._labels.get(request.endpoint, self._unknown)
                observation = observe(observers, labels, request.app or None, request.trace)
        if request.app:
            self._note_caller(request.app)
        service = request.service
        if endpoint is None or (
            service and service != self.service_name and not same_service(service, self.service_name)
        ):
            error: BaseException = running.refusal() or self._routing_error(request)
            self._send_error(conn, request.id, error)
            _ended(observation, stopwatch, started, error)
            return
        if running.guarded or endpoint.running.guarded:
            refusal = running.refusal() or endpoint.running.refusal()
            if refusal is not None:
                self._send_error(conn, request.id, refusal)
                _ended(observation, stopwatch, started, refusal)
                return
        execution = endpoint.execution
        if execution is Execution.INLINE:
            # the context an observer (tracing) asks the handler to run in
            context = None if observation is None else observation.context
            outcome: BaseException | None
            try:
                if context is None:
                    result = endpoint.call(request.params)
                else:
                    result = context.run(endpoint.call, request.params)
            except BaseException as exc:
                outcome = self._inline_failed(conn, request, endpoint, exc)
            else:
                outcome = self._send_result(conn, request.id, endpoint, result)
                if outcome is None and stopwatch is not None:  # answered: timed, nothing else to do
                    stopwatch.record(perf_counter() - started)
                    return
            if observation is not None or stopwatch is not None:
                _ended(observation, stopwatch, started, outcome)
            return
        if stopwatch is not None:  # a task or a thread ends it: it needs an observation
            observation = stopwatch.start(started)
        running.enter()
        endpoint.running.enter()
        conn.in_flight += 1
        if conn.in_flight == self.max_in_flight:
            conn.hold_reading()
        context = None if observation is None else observation.context
        if execution is Execution.THREAD:
            call = _ThreadCall(self, conn, request, endpoint, observation)
            if context is None:
                call.start(self._pool or default_pool())
            else:  # the pool runs the handler in a copy of the context it is given work in
                context.run(call.start, self._pool or default_pool())
        else:
            self._tasks.spawn(self._run(conn, request, endpoint, observation), context)

    async def _run(
        self, conn: Connection, request: Request, endpoint: Endpoint, observation: Observation | None
    ) -> None:
        scope: asyncio.Timeout | None = None
        outcome: BaseException | None = None
        try:
            if endpoint.timeout is None:
                result = await endpoint.call(request.params)
            else:
                async with asyncio.timeout(endpoint.timeout) as scope:
                    result = await endpoint.call(request.params)
        except BaseException as exc:
            if not is_handler_failure(exc):  # cancelled (the service stops), or the process exits
                outcome = exc
                raise
            error: BaseException = exc
            if scope is not None and scope.expired():
                error = self._timeout_error(endpoint)
                logger.warning("%s", error)
            outcome = self._handler_error(endpoint, request, error)
            self._send_error(conn, request.id, outcome)
        else:
            outcome = self._send_result(conn, request.id, endpoint, result)
        finally:
            self._finished(conn, endpoint)
            if observation is not None:
                observation.end(outcome)

    def _inline_failed(
        self, conn: Connection, request: Request, endpoint: Endpoint, exc: BaseException
    ) -> BaseException:
        """An inline handler raised ``exc``: answer the error and return it; re-raise what is
        no failure of the handler's (cancellation, ``SystemExit``, ``KeyboardInterrupt``)."""
        if not is_handler_failure(exc):
            raise exc
        outcome = self._handler_error(endpoint, request, exc)
        self._send_error(conn, request.id, outcome)
        return outcome

    def _finished(self, conn: Connection, endpoint: Endpoint) -> None:
        self.running.exit()
        endpoint.running.exit()
        conn.in_flight -= 1
        if conn.in_flight == self.max_in_flight - 1:
            conn.release_reading()

    def _timeout_error(self, endpoint: Endpoint) -> RequestTimeout:
        return RequestTimeout(
            f"{self.service_name}.{endpoint.name} did not finish within its timeout of {endpoint.timeout} s"
        )

    # -- draining ------------------------------------------------------------------------------

    def start_draining(self) -> None:
        """Answer every request from now on with ``draining`` (nothing runs; the caller may
        send it to another instance). Requests already running go on."""
        self.running.start_draining()

    async def drained(self, grace: float) -> int:
        """Wait until the requests running (async ones and those in threads, including threads
        whose callers were already answered ``timeout``) have finished, at most ``grace``
        seconds; returns how many are still running."""
        return await self.running.drained(grace)

    async def close(self) -> None:
        """Cancel handlers still running on the loop (their callers' connections are closing);
        handlers in threads cannot be cancelled: they finish and their results are dropped."""
        await self._tasks.close()

    # -- answers ---------------------------------------------------------------------------

    def _send_result(self, conn: Connection, request_id: int, endpoint: Endpoint, result: Any) -> Exception | None:
        """Answer ``result``; returns the error answered instead if JSON cannot carry it."""
        if conn.closed:
            return None
        try:
            frame = encode_frame(Response(request_id, result, endpoint.deprecation))
        except ENCODE_ERRORS as exc:
            logger.error("%s.%s returned a value JSON cannot carry: %s", self.service_name, endpoint.name, exc)
            error = TypeError(f"{endpoint.name} returned a value JSON cannot carry: {exc}")
            self._send_error(conn, request_id, error)
            return error
        conn.send_frame(frame)
        return None

    def metric_families(self) -> list[Family]:
        """Requests running now, by endpoint (inline ones never show: they end first)."""
        family = Family(
            "vyked_server_requests_in_flight",
            "Requests running now",
            "gauge",
            ["kind", "service", "version", "endpoint"],
        )
        for name, endpoint in self.endpoints.items():
            family.add(["tcp", self.service_name, self.version, name], endpoint.running.count)
        return [family]

    def _send_error(self, conn: Connection, request_id: int, exc: BaseException) -> None:
        if conn.closed:
            return
        conn.send(error_packet(request_id, exc))

    def _note_caller(self, app: str) -> None:
        """Log the first request of each calling application (the ``app_name`` it sent)."""
        callers = self._callers
        if app not in callers and len(callers) < MAX_CALLERS_LOGGED:
            callers.add(app)
            logger.info("%s: first request from app %r", self.service_name, app)

    def _routing_error(self, request: Request) -> VykedError:
        if request.service and not same_service(request.service, self.service_name):
            return ServiceUnavailable(
                f"this instance serves {self.service_name!r}, not {request.service!r} (stale routing?)"
            )
        available = ", ".join(sorted(self.endpoints)) or "none"
        return UnknownEndpoint(f"{self.service_name} has no endpoint {request.endpoint!r} (endpoints: {available})")

    def _handler_error(self, endpoint: Endpoint, request: Request, exc: BaseException) -> BaseException:
        if isinstance(exc, TypeError):
            try:
                endpoint.signature.bind(**request.params)
            except TypeError as mismatch:
                return InvalidParams(f"{self.service_name}.{endpoint.name}: {mismatch}")
        if isinstance(exc, VykedServiceException):  # expected by design (2.x's "handled" errors)
            logger.info("%s.%s raised %s: %s", self.service_name, endpoint.name, type(exc).__name__, exc)
        elif not isinstance(exc, VykedError):
            logger.warning(
                "%s.%s raised %s: %s", self.service_name, endpoint.name, type(exc).__name__, exc, exc_info=exc
            )
        return exc


class _ThreadCall:
    """A request whose plain ``def`` handler runs in the thread pool.

    Callbacks rather than a task: the hand-off costs one future and, with a timeout, one timer.
    The caller is answered when the thread returns or when the timeout fires, whichever comes
    first; the request's slots (connection, service, endpoint) are released when the thread
    returns, since until then it occupies a thread.
    """

    __slots__ = ("answered", "conn", "dispatcher", "endpoint", "observation", "request", "timer")

    def __init__(
        self,
        dispatcher: Dispatcher,
        conn: Connection,
        request: Request,
        endpoint: Endpoint,
        observation: Observation | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.conn = conn
        self.request = request
        self.endpoint = endpoint
        self.observation = observation
        self.answered = False
        self.timer: asyncio.TimerHandle | None = None

    def start(self, pool: HandlerPool) -> None:
        future = pool.submit(self.endpoint.call, self.request.params)
        if self.endpoint.timeout is not None:
            self.timer = asyncio.get_running_loop().call_later(self.endpoint.timeout, self._overdue)
        future.add_done_callback(self._returned)

    def _overdue(self) -> None:
        self.answered = True
        dispatcher = self.dispatcher
        error = dispatcher._timeout_error(self.endpoint)
        logger.warning("%s; it runs on in its thread and its result will be dropped", error)
        dispatcher._send_error(self.conn, self.request.id, error)
        if self.observation is not None:
            self.observation.end(error)

    def _returned(self, future: asyncio.Future[Any]) -> None:
        dispatcher = self.dispatcher
        if self.timer is not None:
            self.timer.cancel()
        outcome: BaseException | None = None
        try:
            if future.cancelled():
                outcome = asyncio.CancelledError()
                return
            exc = future.exception()
            if self.answered:
                if exc is not None:
                    dispatcher._handler_error(self.endpoint, self.request, _as_exception(exc))  # logged
                return
            if exc is not None:
                outcome = dispatcher._handler_error(self.endpoint, self.request, _as_exception(exc))
                dispatcher._send_error(self.conn, self.request.id, outcome)
            else:
                outcome = dispatcher._send_result(self.conn, self.request.id, self.endpoint, future.result())
        finally:
            dispatcher._finished(self.conn, self.endpoint)
            if self.observation is not None:
                self.observation.end(outcome)


def _as_exception(exc: BaseException) -> BaseException:
    if is_handler_failure(exc):
        return exc
    raise exc  # SystemExit, KeyboardInterrupt: as if the handler had run inline


def error_packet(request_id: int | None, exc: BaseException) -> Error:
    """Describe ``exc`` as an ``error`` packet: vyked errors by code, others as remote errors
    (``request_exception`` for a :class:`~vyked.core.service_errors.VykedServiceException`)."""
    if isinstance(exc, VykedError):
        return Error(id=request_id, code=exc.code, message=str(exc), error_type=type(exc).__name__)
    return Error(
        id=request_id,
        code=RequestException.code if isinstance(exc, VykedServiceException) else RemoteError.code,
        message=str(exc),
        error_type=_qualified_name(type(exc)),
        args=_portable_args(exc.args),
    )


def _qualified_name(cls: type) -> str:
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _portable_args(args: tuple[Any, ...]) -> list[Any]:
    try:
        encode_payload(args)
    except ENCODE_ERRORS:
        return [repr(a) for a in args]
    return list(args)


def _ended(
    observation: Observation | None, stopwatch: Stopwatch | None, started: float, error: BaseException | None
) -> None:
    """End the observation of a request answered on the spot (inline, refused, or not routed)."""
    if stopwatch is not None:
        stopwatch.record(perf_counter() - started, error)
    elif observation is not None:
        observation.end(error)
