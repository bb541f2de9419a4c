"""The JSON bodies vyked itself answers with: errors, ``/ping`` and ``/_stats``.

Every error vyked produces (not the ones handlers return) has the same shape::

    {"error": "<code>", "message": "<human-readable text>", ...}

where ``code`` matches the ``code`` of the corresponding :mod:`vyked.core.exceptions` class
when there is one (``invalid_params``, ``timeout``, ``service_unavailable``), and extra fields
depend on the error (``missing`` for a missing parameter, ``type`` and ``endpoint`` for 500).
Bodies never carry a traceback; tracebacks go to the log.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from vyked.core.exceptions import RequestTimeout, ServiceUnavailable, VykedError

INTERNAL_ERROR = "internal_error"
INVALID_JSON = "invalid_json"


def json_response(payload: Any, status: int = 200) -> web.Response:
    """A compact JSON response."""
    return web.Response(
        status=status,
        body=json.dumps(payload, separators=(",", ":")).encode(),
        content_type="application/json",
    )


def error_response(status: int, code: str, message: str, **fields: Any) -> web.Response:
    """The JSON error body shared by every error vyked answers with."""
    return json_response({"error": code, "message": message, **fields}, status)


def missing_params_response(endpoint: str, missing: list[str]) -> web.Response:
    """400: required query parameters are absent."""
    return error_response(
        400,
        "invalid_params",
        f"missing required query parameter{'s' if len(missing) > 1 else ''}: {', '.join(missing)}",
        missing=missing,
        endpoint=endpoint,
    )


def invalid_json_response(endpoint: str, exc: BaseException) -> web.Response:
    """400: the body the handler read with ``request.json()`` is not JSON (or not text in its
    charset). The message describes the client's own input only: what and where (line,
    column), never the body itself."""
    return error_response(400, INVALID_JSON, f"the request body is not valid JSON: {exc}", endpoint=endpoint)


def timeout_response(endpoint: str, timeout: float) -> web.Response:
    """504: the handler ran past its timeout."""
    return error_response(
        504,
        RequestTimeout.code,
        f"{endpoint} did not finish within its timeout of {timeout} s",
        endpoint=endpoint,
        timeout=timeout,
    )


def handler_error_response(endpoint: str, exc: BaseException) -> web.Response:
    """The answer to a handler that raised: 500 naming the exception's type.

    Exceptions raised by vyked clients the handler used map to gateway statuses: a service it
    called was unavailable (503) or did not answer in time (504). Messages of other exceptions
    may hold anything (queries, paths, secrets), so only the type crosses the wire.
    """
    error_type = type(exc).__name__
    if isinstance(exc, ServiceUnavailable):
        return error_response(503, exc.code, str(exc), type=error_type, endpoint=endpoint)
    if isinstance(exc, RequestTimeout):
        return error_response(504, exc.code, str(exc), type=error_type, endpoint=endpoint)
    code = exc.code if isinstance(exc, VykedError) else INTERNAL_ERROR
    return error_response(500, code, f"{endpoint} failed with {error_type}", type=error_type, endpoint=endpoint)
