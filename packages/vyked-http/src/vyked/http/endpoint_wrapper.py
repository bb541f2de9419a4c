"""What runs around every handler: admission, required parameters, where the handler runs,
timeouts, errors and statistics.

:func:`wrap_endpoint` builds one aiohttp handler per route rather than an aiohttp middleware:
the wrapper is built once, knows its endpoint's name, timeout and statistics, and costs one
coroutine frame per request; a middleware would look all of that up on every request.
Services that need a real middleware can still add one in :meth:`HTTPService.make_app
<vyked.http.service.HTTPService.make_app>`.

Admission: the service's :class:`~vyked.core.inflight.InFlight` (found in the application
under :data:`IN_FLIGHT`) and the endpoint's own (``max_concurrency`` on the decorator) count
the requests running. Over a limit, or once the service drains, a request is answered 503
with ``{"error": "overloaded"}`` or ``{"error": "draining"}`` and the handler never runs.

Plain ``def`` handlers run in the handler thread pool (:mod:`vyked.core.threads`) unless their
decorator says ``inline=True``; a thread that outlives the route's ``timeout`` (answered 504)
finishes in the background and keeps counting as running until it does.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from time import perf_counter
from typing import Any

from aiohttp import WSCloseCode, web

from vyked.core.exceptions import VykedError
from vyked.core.handler_styles import (
    Execution,
    as_coroutine_function,
    call_handler,
    execution_of,
    is_handler_failure,
)
from vyked.core.inflight import InFlight, check_limit
from vyked.core.observe import Labels, Observation, Observer
from vyked.core.threads import HandlerPool, default_pool
from vyked.http.decorators import routes_of
from vyked.http.response import (
    error_response,
    handler_error_response,
    invalid_json_response,
    missing_params_response,
    timeout_response,
)
from vyked.http.stats import EndpointStats
from vyked.http.websockets import WebsocketTracker

logger = logging.getLogger("vyked.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
"""An aiohttp request handler."""

_REQUEST_JSON = web.BaseRequest.json.__code__

APP_HEADER = "X-Vyked-App"
"""The header carrying a caller's ``app_name`` (observers see it as ``Observation.app``)."""

IN_FLIGHT = web.AppKey("vyked.in_flight", InFlight)
"""``app[IN_FLIGHT]``: the service's requests running, its ``max_concurrency`` and draining."""


def _bad_request_body(exc: BaseException) -> bool:
    """Whether ``exc`` is ``request.json()`` failing on the client's body: the client's fault.

    Only when raised from within ``request.json()``: the same exception from parsing anything
    else (a downstream service's answer, a file) is the service's own failure, a 500."""
    if not isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError)):
        return False
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code is _REQUEST_JSON:
            return True
        tb = tb.tb_next
    return False


def wrap_endpoint(
    name: str,
    method: Callable[..., Any],
    stats: EndpointStats,
    *,
    timeout: float | None = None,
    required_params: tuple[str, ...] = (),
    websockets: WebsocketTracker | None = None,
    inline: bool | None = None,
    max_concurrency: int | None = None,
    in_flight: InFlight | None = None,
    pool: HandlerPool | None = None,
    observers: list[Observer] | None = None,
    service: str = "",
    version: str = "",
) -> Handler:
    """The aiohttp handler for one endpoint: calls ``method`` (any handler style) and turns its
    failures into JSON answers, counted in ``stats`` and logged under ``name``.

    ``inline`` and ``max_concurrency`` default to what the method's route decorators say (the
    smallest ``max_concurrency`` of them); ``in_flight`` (the service's counter) defaults to
    ``request.app[IN_FLIGHT]`` if the application has one; ``pool`` to the process's
    handler pool. ``observers`` (the host's list) see each request as endpoint
    ``stats.name`` of ``service`` ``version`` (:mod:`vyked.core.observe`)."""
    specs = routes_of(method)
    if inline is None:
        inline = any(spec.inline for spec in specs)
    if max_concurrency is None:
        limits = [spec.max_concurrency for spec in specs if spec.max_concurrency is not None]
        max_concurrency = min(limits) if limits else None
    running = InFlight(name, check_limit(max_concurrency))
    execution = execution_of(method, inline=inline)
    target = as_coroutine_function(method)
    # async def: awaited as is; generator style (awaited) and inline plain def: call_handler
    invoke: Callable[[web.Request], Coroutine[Any, Any, Any]] = (
        target if inspect.iscoroutinefunction(target) else functools.partial(call_handler, target)
    )
    threaded = execution is Execution.THREAD
    record = stats.record
    watchers: list[Observer] = observers if observers is not None else []
    labels: Labels = ("server", "http", service, version, stats.name)

    async def handle(request: web.Request) -> web.StreamResponse:
        started = perf_counter()
        headers = request.headers
        observation = Observation(watchers, labels, headers.get(APP_HEADER), headers) if watchers else None
        in_service = in_flight if in_flight is not None else request.app.get(IN_FLIGHT)
        refusal = running.refusal() if in_service is None else in_service.refusal() or running.refusal()
        if refusal is not None:
            response: web.StreamResponse = _refused_response(name, refusal)
            record(response.status, perf_counter() - started)
            if observation is not None:
                observation.end(refusal, response.status)
            return response
        if required_params:
            query = request.query
            missing = [p for p in required_params if p not in query]
            if missing:
                response = missing_params_response(name, missing)
                record(400, perf_counter() - started)
                if observation is not None:
                    observation.end(None, 400)
                return response
        if in_service is not None:
            in_service.enter()
        running.enter()
        scope: asyncio.Timeout | None = None
        failure: BaseException | None = None
        try:
            coro = (
                _in_thread(pool or default_pool(), target, request, in_service, running)
                if threaded
                else invoke(request)
            )
            call: Awaitable[Any] = coro
            if observation is not None and observation.context is not None:
                # an observer (tracing) asks the handler to run in this context
                call = asyncio.get_running_loop().create_task(coro, context=observation.context)
            if timeout is None:
                response = await call
            else:
                async with asyncio.timeout(timeout) as scope:
                    response = await call
            if not isinstance(response, web.StreamResponse):
                raise TypeError(f"{name} returned {type(response).__name__}, not an aiohttp Response")
        except web.HTTPException as exc:
            # aiohttp's own control flow (raise web.HTTPNotFound()): the handler's answer.
            record(exc.status, perf_counter() - started)
            if observation is not None:
                observation.end(None, exc.status)
            raise
        except BaseException as exc:
            if not is_handler_failure(exc):  # cancelled (the client went away), or the process exits
                raise
            failure = exc
            timed_out = timeout is not None and scope is not None and scope.expired()
            bad_body = not timed_out and _bad_request_body(exc)
            if timed_out:
                stats.timeouts += 1
            elif not bad_body:
                stats.errors += 1
            ws = websockets.pop(request) if websockets is not None else None
            if ws is None and request.writer.output_size > 0:
                # The handler had started streaming its response: no error answer can follow.
                # aiohttp logs the traceback and closes the connection.
                logger.error("%s failed with %s after its response had started", name, type(exc).__name__)
                record(500, perf_counter() - started)
                if observation is not None:
                    observation.end(exc, 500)
                if not isinstance(exc, Exception):  # aiohttp handles exceptions only
                    raise RuntimeError(f"{name} raised {type(exc).__name__}: {exc}") from exc
                raise
            if timed_out:
                if threaded:
                    logger.warning(
                        "%s did not finish within its timeout of %s s; it runs on in its thread", name, timeout
                    )
                else:
                    logger.warning("%s did not finish within its timeout of %s s", name, timeout)
                response = timeout_response(name, timeout or 0.0)
            elif bad_body:
                logger.info("%s: answered 400, the request body is not valid JSON (%s)", name, exc)
                response = invalid_json_response(name, exc)
            else:
                logger.error("%s raised %s: %s", name, type(exc).__name__, exc, exc_info=exc)
                response = handler_error_response(name, exc)
            if ws is not None:  # the handshake is done: close the socket rather than answer
                await ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"internal error")
                response = ws
        finally:
            if websockets is not None:
                websockets.pop(request)
            if not threaded:  # a thread's slots are freed when it returns
                _release(in_service, running)
        record(response.status, perf_counter() - started)
        if observation is not None:
            observation.end(failure, response.status)
        return response

    handle.__name__ = getattr(method, "__name__", "handle")
    handle.__qualname__ = name
    return handle


async def _in_thread(
    pool: HandlerPool, target: Callable[..., Any], request: web.Request, service: InFlight | None, running: InFlight
) -> Any:
    future = pool.submit(target, request)
    future.add_done_callback(functools.partial(_thread_returned, service, running))
    # Shielded: a timeout stops the waiting, not the thread, whose end frees the slots.
    result = await asyncio.shield(future)
    return await result if inspect.isawaitable(result) else result


def _refused_response(endpoint: str, refusal: VykedError) -> web.Response:
    """503 ``overloaded`` or ``draining``: the handler did not run; another instance may."""
    return error_response(503, refusal.code, str(refusal), endpoint=endpoint)


def _release(service: InFlight | None, running: InFlight) -> None:
    if service is not None:
        service.exit()
    running.exit()


def _thread_returned(service: InFlight | None, running: InFlight, future: asyncio.Future[Any]) -> None:
    _release(service, running)
    if not future.cancelled():
        future.exception()  # retrieved: the caller may have stopped waiting (timeout)
