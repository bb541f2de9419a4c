"""What runs around every handler: required parameters, timeouts, errors and statistics.

:func:`wrap_endpoint` builds one aiohttp handler per route rather than an aiohttp middleware:
the wrapper is built once, knows its endpoint's name, timeout and statistics, and costs one
coroutine frame per request; a middleware would look all of that up on every request.
Services that need a real middleware can still add one in :meth:`HTTPService.make_app
<vyked.http.service.HTTPService.make_app>`.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any

from aiohttp import WSCloseCode, web

from vyked.core.handler_styles import as_coroutine_function, call_handler
from vyked.http.response import (
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


def _bad_request_body(exc: Exception) -> bool:
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
) -> Handler:
    """The aiohttp handler for one endpoint: calls ``method`` (any handler style) and turns its
    failures into JSON answers, counted in ``stats`` and logged under ``name``."""
    target = as_coroutine_function(method)
    # plain def (called inline) and generator style (awaited) go through call_handler
    invoke: Callable[[web.Request], Awaitable[Any]] = (
        target if inspect.iscoroutinefunction(target) else functools.partial(call_handler, target)
    )
    record = stats.record

    async def handle(request: web.Request) -> web.StreamResponse:
        started = perf_counter()
        if required_params:
            query = request.query
            missing = [p for p in required_params if p not in query]
            if missing:
                response: web.StreamResponse = missing_params_response(name, missing)
                record(400, perf_counter() - started)
                return response
        scope: asyncio.Timeout | None = None
        try:
            if timeout is None:
                response = await invoke(request)
            else:
                async with asyncio.timeout(timeout) as scope:
                    response = await invoke(request)
            if not isinstance(response, web.StreamResponse):
                raise TypeError(f"{name} returned {type(response).__name__}, not an aiohttp Response")
        except web.HTTPException as exc:
            # aiohttp's own control flow (raise web.HTTPNotFound()): the handler's answer.
            record(exc.status, perf_counter() - started)
            raise
        except Exception as exc:
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
                raise
            if timed_out:
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
        record(response.status, perf_counter() - started)
        return response

    handle.__name__ = getattr(method, "__name__", "handle")
    handle.__qualname__ = name
    return handle
