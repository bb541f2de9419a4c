"""The service and clients the TCP tests share."""

from __future__ import annotations

import asyncio
from typing import Any

from vyked import TCPService, TCPServiceClient, api, apideprecated, request


class Calculator(TCPService):
    """Every handler style and failure the tests need."""

    def __init__(self, version: object = 1) -> None:
        super().__init__("Calculator", version, "127.0.0.1", 0)
        self.calls = 0

    @api
    async def add(self, a: int, b: int) -> int:
        self.calls += 1
        return a + b

    @api
    def multiply(self, a: int, b: int) -> int:
        return a * b

    @api
    def slow_square(self, x: int) -> Any:
        yield from asyncio.sleep(0.01)
        return x * x

    @api
    async def whoami(self) -> str:
        return self.node_id

    @api
    async def fail(self, message: str) -> None:
        raise ValueError(message, 42)

    @api(timeout=0.2)
    async def stuck(self) -> None:
        await asyncio.sleep(10)

    @api
    async def sleep(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "slept"

    @api
    async def unserialisable(self) -> object:
        return object()

    @apideprecated(replacement_api="add")
    def plus(self, a: int, b: int) -> int:
        return a + b


class CalculatorClient(TCPServiceClient):
    def __init__(self, version: object = 1) -> None:
        super().__init__("Calculator", version)

    @request
    def add(self, a: int, b: int) -> dict[str, Any]:
        return locals()

    @request
    def multiply(self, a: int, b: int) -> dict[str, Any]:
        return locals()

    @request
    def slow_square(self, x: int) -> dict[str, Any]:
        return locals()

    @request
    def whoami(self, entity: str | None = None) -> dict[str, Any]:
        return locals()

    @request
    def fail(self, message: str) -> dict[str, Any]:
        return locals()

    @request
    def stuck(self) -> dict[str, Any]:
        return locals()

    @request(timeout=0.3)
    def sleep(self, seconds: float) -> dict[str, Any]:
        return locals()

    @request
    def unserialisable(self) -> dict[str, Any]:
        return locals()

    @request
    def plus(self, a: int, b: int) -> dict[str, Any]:
        return locals()

    @request
    def divide(self, a: int, b: int) -> dict[str, Any]:
        return locals()


class PatientClient(TCPServiceClient):
    def __init__(self) -> None:
        super().__init__("Calculator", 1)

    @request(timeout=30)
    def sleep(self, seconds: float) -> dict[str, Any]:
        return locals()


class SloppyClient(TCPServiceClient):
    """Sends parameters that do not fit the remote signature."""

    def __init__(self) -> None:
        super().__init__("Calculator", 1)

    @request
    def add(self, a: int) -> dict[str, Any]:
        return {"a": a, "c": 1}
