"""Services the ``vyked`` command tests serve with ``vyked run cli_services.py:CLASS``.

- ``Calculator`` (``Calculator`` v1.2): typed ``@api`` endpoints for ``vyked call`` and
  ``vyked schema``, one that raises, one that sleeps; ``@publish`` events.
- ``Listener`` (``Listener`` v1): subscribes to Calculator's events and prints each one it
  receives as ``received EVENT {json}`` (broadcast) or ``handled EVENT {json}`` (exclusive).
- ``Pages`` (``Pages`` v1): an HTTP service, for the routes of ``vyked schema``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, TypedDict

from vyked import HTTPService, TCPService, TCPServiceClient, api, apideprecated, get, publish, subscribe, xsubscribe
from vyked.http import Request, Response


class Point(TypedDict):
    """A point on the plane (parameters arrive as JSON: a dict)."""

    x: float
    y: float


class Calculator(TCPService):
    """Arithmetic over the wire."""

    def __init__(self) -> None:
        super().__init__("Calculator", "1.2", "127.0.0.1", 0)

    @api
    async def add(self, a: int, b: int = 1) -> int:
        """The sum of a and b."""
        return a + b

    @api
    def norm(self, point: Point, scale: float = 1.0) -> dict[str, float]:
        return {"norm": (point["x"] ** 2 + point["y"] ** 2) ** 0.5 * scale}

    @api
    async def echo(self, value):  # type: ignore[no-untyped-def]  # untyped on purpose: "any value"
        return value

    @api
    async def fail(self, message: str) -> None:
        raise ValueError(message)

    @api
    async def slow(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"

    @apideprecated(replacement_api="add")
    async def plus(self, a: int, b: int) -> int:
        return a + b

    @publish
    def computed(self, expression: str, result: float) -> dict[str, Any]:
        """Something was computed."""
        return locals()

    @publish
    def job(self, n: int) -> dict[str, Any]:
        return locals()


class CalculatorEvents(TCPServiceClient):
    def __init__(self) -> None:
        super().__init__("Calculator", 1)

    @subscribe
    async def computed(self, expression: str, result: float) -> None:
        print(f"received computed {json.dumps({'expression': expression, 'result': result})}", flush=True)

    @xsubscribe
    async def job(self, n: int) -> None:
        print(f"handled job {json.dumps({'n': n})}", flush=True)


class Listener(TCPService):
    def __init__(self) -> None:
        super().__init__("Listener", 1, "127.0.0.1", 0)
        self.clients = [CalculatorEvents()]


class Pages(HTTPService):
    def __init__(self) -> None:
        super().__init__("Pages", 1, "127.0.0.1", 0)

    @get("/pages/{name}", required_params=["lang"])
    async def page(self, request: Request) -> Response:
        """One page, in the language asked for."""
        return Response(text=request.match_info["name"])


class NeedsArguments(TCPService):
    """Not instantiable without arguments: discovery skips it."""

    def __init__(self, ip: str, port: int) -> None:
        super().__init__("NeedsArguments", 1, ip, port)
