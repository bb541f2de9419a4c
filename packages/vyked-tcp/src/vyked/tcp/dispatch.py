"""Service side of request-response: run the ``@api`` handler a request names, answer it.

One :class:`Dispatcher` per service. Plain ``def`` handlers run inline (no task: the cheap
path); ``async def`` and generator handlers run as tasks, bounded by ``@api(timeout=...)``.
Every request gets exactly one answer: a ``response`` or an ``error`` whose ``code`` says
what went wrong (see ``docs/protocol.md``).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vyked.core.exceptions import (
    InvalidParams,
    RequestTimeout,
    ServiceUnavailable,
    UnknownEndpoint,
    VykedError,
)
from vyked.core.handler_styles import as_coroutine_function, is_async
from vyked.core.protocol import encode_frame, encode_payload
from vyked.core.protocol.packets import Error, Request, Response
from vyked.core.tasks import TaskSet
from vyked.core.transport import Connection
from vyked.tcp.decorators import EndpointSpec

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Endpoint:
    """An ``@api`` method bound to its service, ready to call."""

    name: str
    handler: Callable[..., Any]
    is_async: bool
    timeout: float | None
    deprecation: str | None
    signature: inspect.Signature

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
            is_async=is_async(method),
            timeout=spec.timeout,
            deprecation=deprecation,
            signature=inspect.signature(method),
        )


class Dispatcher:
    """Routes ``request`` packets to endpoints and writes their answers."""

    def __init__(self, service_name: str, endpoints: dict[str, Endpoint], *, max_in_flight: int = 1_000) -> None:
        self.service_name = service_name
        self.endpoints = endpoints
        self.max_in_flight = max_in_flight
        """Requests one connection may have running; at the limit the connection is not read."""
        self._tasks = TaskSet()

    def dispatch(self, conn: Connection, request: Request) -> None:
        endpoint = self.endpoints.get(request.endpoint)
        if endpoint is None or (request.service and request.service != self.service_name):
            self._send_error(conn, request.id, self._routing_error(request))
            return
        if not endpoint.is_async:
            try:
                result = endpoint.handler(**request.params)
            except Exception as exc:
                self._send_error(conn, request.id, self._handler_error(endpoint, request, exc))
            else:
                self._send_result(conn, request.id, endpoint, result)
            return
        conn.in_flight += 1
        if conn.in_flight == self.max_in_flight:
            conn.hold_reading()
        self._tasks.spawn(self._run(conn, request, endpoint))

    async def _run(self, conn: Connection, request: Request, endpoint: Endpoint) -> None:
        scope: asyncio.Timeout | None = None
        try:
            if endpoint.timeout is None:
                result = await endpoint.handler(**request.params)
            else:
                async with asyncio.timeout(endpoint.timeout) as scope:
                    result = await endpoint.handler(**request.params)
        except Exception as exc:
            error: Exception = exc
            if scope is not None and scope.expired():
                error = RequestTimeout(
                    f"{self.service_name}.{endpoint.name} did not finish within its timeout of {endpoint.timeout} s"
                )
                logger.warning("%s", error)
            self._send_error(conn, request.id, self._handler_error(endpoint, request, error))
        else:
            self._send_result(conn, request.id, endpoint, result)
        finally:
            conn.in_flight -= 1
            if conn.in_flight == self.max_in_flight - 1:
                conn.release_reading()

    async def close(self) -> None:
        """Cancel handlers still running (their callers' connections are closing)."""
        await self._tasks.close()

    # -- answers ---------------------------------------------------------------------------

    def _send_result(self, conn: Connection, request_id: int, endpoint: Endpoint, result: Any) -> None:
        if conn.closed:
            return
        try:
            frame = encode_frame(Response(id=request_id, result=result, deprecation=endpoint.deprecation))
        except TypeError as exc:
            logger.error("%s.%s returned a value JSON cannot carry: %s", self.service_name, endpoint.name, exc)
            self._send_error(conn, request_id, TypeError(f"{endpoint.name} returned a value JSON cannot carry: {exc}"))
            return
        conn.send_frame(frame)

    def _send_error(self, conn: Connection, request_id: int, exc: BaseException) -> None:
        if conn.closed:
            return
        conn.send(error_packet(request_id, exc))

    def _routing_error(self, request: Request) -> VykedError:
        if request.service and request.service != self.service_name:
            return ServiceUnavailable(
                f"this instance serves {self.service_name!r}, not {request.service!r} (stale routing?)"
            )
        available = ", ".join(sorted(self.endpoints)) or "none"
        return UnknownEndpoint(f"{self.service_name} has no endpoint {request.endpoint!r} (endpoints: {available})")

    def _handler_error(self, endpoint: Endpoint, request: Request, exc: Exception) -> Exception:
        if isinstance(exc, TypeError):
            try:
                endpoint.signature.bind(**request.params)
            except TypeError as mismatch:
                return InvalidParams(f"{self.service_name}.{endpoint.name}: {mismatch}")
        if not isinstance(exc, VykedError):
            logger.warning(
                "%s.%s raised %s: %s", self.service_name, endpoint.name, type(exc).__name__, exc, exc_info=exc
            )
        return exc


def error_packet(request_id: int | None, exc: BaseException) -> Error:
    """Describe ``exc`` as an ``error`` packet: vyked errors by code, others as remote errors."""
    if isinstance(exc, VykedError):
        return Error(id=request_id, code=exc.code, message=str(exc), error_type=type(exc).__name__)
    return Error(
        id=request_id,
        code="remote_error",
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
    except TypeError:
        return [repr(a) for a in args]
    return list(args)
