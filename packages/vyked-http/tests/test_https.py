"""``ssl_context=``: HTTPS services, called directly and through the registry."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from vyked import HTTPService, HTTPServiceClient, Request, Response, get

Serve = Callable[[Any], Awaitable[Any]]


class Secure(HTTPService):
    def __init__(self, ssl_context: Any) -> None:
        super().__init__("Secure", 1, "127.0.0.1", 0, ssl_context=ssl_context)

    @get(path="/secret")
    def secret(self, request: Request) -> Response:
        return Response(text=f"over {request.scheme}")


class SecureClient(HTTPServiceClient):
    def __init__(self, ssl: Any) -> None:
        super().__init__("Secure", 1, ssl=ssl)

    @get()
    def secret(self) -> dict[str, Any]:
        path = "/secret"
        return locals()


async def test_serves_https(serve: Serve, http: aiohttp.ClientSession, tls: Any) -> None:
    service = await serve(Secure(tls.server_context()))
    assert service.url.startswith("https://127.0.0.1:")
    async with http.get(f"{service.url}/secret", ssl=tls.client_context()) as response:
        assert response.status == 200
        assert await response.text() == "over https"
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        async with http.get(f"{service.url}/secret"):  # the system CAs do not know the certificate
            pass
    with pytest.raises(aiohttp.ClientError):
        async with http.get(f"http://127.0.0.1:{service.host_port}/secret"):
            pass


async def test_client_reaches_an_https_service_through_the_registry(vyked_host: Any, tls: Any) -> None:
    await vyked_host(Secure(tls.server_context()))
    client = SecureClient(tls.client_context())
    await vyked_host(clients=(client,))
    response = await client.secret()
    assert response.status == 200
    assert await response.text() == "over https"
