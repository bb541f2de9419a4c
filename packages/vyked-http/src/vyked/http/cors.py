"""Cross-origin access for services made with ``allow_cross_domain=True``: answers to
preflight requests (vyked's, or the service's own ``preflight_response``), and the header that
lets any origin read an answer."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web

from vyked.core.handler_styles import as_coroutine_function, call_handler
from vyked.http.endpoint_wrapper import Handler

PreflightResponse = Callable[[web.Request], Any]
"""A service's own answer to preflight requests, as in vyked 2.x: called with the request, it
returns an aiohttp response (``def``, ``async def`` or a ``yield from`` generator)."""


def preflight_handler(methods: Iterable[str]) -> Handler:
    """Answers CORS preflight (and plain ``OPTIONS``) requests for a path serving ``methods``."""
    allowed = ", ".join(sorted({*methods, "OPTIONS"}))

    async def preflight(request: web.Request) -> web.StreamResponse:
        headers = {
            "Access-Control-Allow-Origin": "*",
            "Access-Control-Allow-Methods": allowed,
            "Access-Control-Max-Age": "86400",
            "Allow": allowed,
        }
        requested = request.headers.get("Access-Control-Request-Headers")
        if requested:
            headers["Access-Control-Allow-Headers"] = requested
        return web.Response(status=204, headers=headers)

    return preflight


def custom_preflight_handler(answer: PreflightResponse) -> Handler:
    """Answers preflight requests with ``answer(request)``, run on the event loop (a plain
    ``def`` is called there too: preflight answers are expected to be tiny)."""
    target = as_coroutine_function(answer)

    async def preflight(request: web.Request) -> web.StreamResponse:
        response = await call_handler(target, request)
        if not isinstance(response, web.StreamResponse):
            raise TypeError(f"preflight_response returned {type(response).__name__}, not an aiohttp Response")
        return response

    return preflight


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``app.on_response_prepare`` hook of cross-domain services: let any origin read answers."""
    response.headers.setdefault("Access-Control-Allow-Origin", "*")
