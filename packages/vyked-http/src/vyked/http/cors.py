"""Cross-origin access for services made with ``allow_cross_domain=True``: answers to
preflight requests, and the header that lets any origin read an answer."""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

from vyked.http.endpoint_wrapper import Handler


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


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``app.on_response_prepare`` hook of cross-domain services: let any origin read answers."""
    response.headers.setdefault("Access-Control-Allow-Origin", "*")
