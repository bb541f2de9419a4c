"""``TCPServiceClient.send_request``: an endpoint called without a ``@request`` method, as tools
and scripts do, with the same routing, errors and caller name as a declared one."""

from __future__ import annotations

import pytest

from vyked import InvalidParams, RemoteError, TCPService, TCPServiceClient, UnknownEndpoint, api
from vyked.core.pytest_plugin import HostFactory


class Adder(TCPService):
    def __init__(self) -> None:
        super().__init__("Adder", 1, "127.0.0.1", 0)

    @api
    async def add(self, a: int, b: int) -> int:
        return a + b

    @api
    async def fail(self) -> None:
        raise ValueError("asked to")


async def test_send_request_calls_any_endpoint(vyked_host: HostFactory) -> None:
    await vyked_host(Adder())
    client = TCPServiceClient("Adder", 1)
    await vyked_host(clients=(client,))
    assert await client.send_request("add", {"a": 2, "b": 3}) == 5
    # app_name names the caller and entity routes: neither reaches the handler as a parameter
    assert await client.send_request("add", {"a": 1, "b": 1, "app_name": "tool", "entity": "k"}, idempotent=True) == 2
    with pytest.raises(InvalidParams):
        await client.send_request("add", {"a": 1})
    with pytest.raises(UnknownEndpoint):
        await client.send_request("subtract", {"a": 1, "b": 1})
    with pytest.raises(RemoteError, match="asked to"):
        await client.send_request("fail", timeout=5)


def test_a_request_method_may_not_shadow_it() -> None:
    from vyked import request
    from vyked.core.exceptions import DefinitionError

    with pytest.raises(DefinitionError, match="send_request"):

        class Shadowing(TCPServiceClient):
            @request
            def send_request(self) -> dict[str, object]:
                return locals()
