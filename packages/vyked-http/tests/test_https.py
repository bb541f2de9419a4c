"""HTTPS: services serving it (``ssl_context=`` or the host's ``VYKED_TLS_*``), the registry
recording it, and clients picking the scheme and verifying certificates on their own."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from vyked import HTTPService, HTTPServiceClient, Request, Response, get
from vyked.core.exceptions import AuthenticationFailed, ConnectionLost
from vyked.core.pytest_plugin import started_hosts
from vyked.core.security import Trust
from vyked.core.service_host import ServiceHost

Serve = Callable[[Any], Awaitable[Any]]
Hosts = Callable[..., Awaitable[ServiceHost]]


class Secure(HTTPService):
    def __init__(self, ssl_context: Any = None) -> None:
        super().__init__("Secure", 1, "127.0.0.1", 0, ssl_context=ssl_context)

    @get(path="/secret")
    def secret(self, request: Request) -> Response:
        return Response(text=f"over {request.scheme}")


class SecureClient(HTTPServiceClient):
    def __init__(self, ssl: Any = False, timeout: float = 10.0) -> None:
        super().__init__("Secure", 1, ssl=ssl, timeout=timeout)

    @get()
    def secret(self) -> dict[str, Any]:
        path = "/secret"
        return locals()


@pytest.fixture
async def tls_registry(tls: Any) -> AsyncIterator[Any]:
    """A registry serving TLS with the ``tls`` certificate: hosts with TLS settings reach
    their registry over TLS too, so they need one."""
    if importlib.util.find_spec("vyked.registry") is None:
        pytest.skip("vyked-registry is not installed")
    from vyked.registry import Registry

    async with Registry("127.0.0.1", 0, ssl_context=tls.server_context()) as registry:
        yield registry


@pytest.fixture
async def tls_hosts(tls_registry: Any) -> AsyncIterator[Hosts]:
    """Started hosts on ``tls_registry``; keyword arguments go to :class:`ServiceHost`."""
    async with started_hosts(f"127.0.0.1:{tls_registry.port}") as make:
        yield make


def registered(host: ServiceHost) -> list[tuple[str, bool]]:
    """``(kind, tls)`` of every instance of Secure, as the registry told ``host``."""
    return sorted((i.kind, i.tls) for i in host.directory.instances("Secure"))


async def test_serves_https(serve: Serve, http: aiohttp.ClientSession, tls: Any) -> None:
    service = await serve(Secure(tls.server_context()))
    assert service.serves_tls
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


async def test_an_https_service_is_registered_as_tls_and_clients_need_no_ssl_argument(
    tls_hosts: Hosts, tls: Any
) -> None:
    service = Secure(tls.server_context())
    await tls_hosts(service, tls_ca=tls.cert)  # the CA only: the host itself serves no TLS
    client = SecureClient()
    client_host = await tls_hosts(clients=(client,), tls_ca=tls.cert)
    assert registered(client_host) == [("http", True)]
    assert client.ssl is False
    response = await client.secret()
    assert response.status == 200
    assert await response.text() == "over https"
    # the seed's ssl=True still works, and means the same
    legacy = SecureClient(ssl=True)
    client_host.bind_client(legacy)
    assert await (await legacy.secret()).text() == "over https"


async def test_plaintext_instances_stay_http_whatever_the_client_ssl(tls_hosts: Hosts, tls: Any) -> None:
    service = Secure()
    service_host = await tls_hosts(service, tls_ca=tls.cert)  # no certificate: serves plain HTTP
    assert service_host.trust.server_ssl is None
    assert not service.serves_tls
    assert service.url.startswith("http://")
    client = SecureClient(ssl=tls.client_context())
    client_host = await tls_hosts(clients=(client,), tls_ca=tls.cert)
    assert registered(client_host) == [("http", False)]
    assert await (await client.secret()).text() == "over http"


async def test_a_service_serves_https_with_the_hosts_tls_settings(
    tls_hosts: Hosts, tls: Any, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VYKED_TLS_CERT", str(tls.cert))
    monkeypatch.setenv("VYKED_TLS_KEY", str(tls.key))
    monkeypatch.setenv("VYKED_TLS_CA", str(tls.cert))  # with a CA, mutual TLS
    service = Secure()  # no ssl_context of its own
    service_host = await tls_hosts(service)
    assert service.ssl_context is service_host.trust.server_ssl is not None
    assert service.serves_tls
    assert service.url.startswith("https://127.0.0.1:")
    client = SecureClient()
    client_host = await tls_hosts(clients=(client,))
    assert registered(client_host) == [("http", True)]
    # the client host presents its certificate from the same variables
    assert await (await client.secret()).text() == "over https"
    # mutual TLS: a caller without a certificate is turned away
    with pytest.raises(aiohttp.ClientError):
        async with http.get(f"{service.url}/secret", ssl=tls.client_context()) as response:
            await response.read()
    anonymous = SecureClient()
    await tls_hosts(clients=(anonymous,), trust=Trust.configure(tls_ca=tls.cert, environ={}))
    with pytest.raises(ConnectionLost):
        await anonymous.secret()


async def test_a_certificate_the_client_does_not_trust_is_authentication_failed(
    tls_hosts: Hosts, tls: Any, other_tls: Any
) -> None:
    service = Secure(other_tls.server_context())
    await tls_hosts(service, tls_ca=tls.cert)
    client = SecureClient()
    client_host = await tls_hosts(clients=(client,), tls_ca=tls.cert)  # trusts tls, not other_tls
    with pytest.raises(AuthenticationFailed) as caught:
        await client.secret()
    message = str(caught.value)
    assert f"Secure at 127.0.0.1:{service.host_port}" in message
    assert "does not trust" in message
    assert "certificate" in message.rpartition("does not trust")[2]
    assert isinstance(caught.value.__cause__, aiohttp.ClientConnectorCertificateError)
    # the client's own ssl= context is used in place of the host's
    trusting = SecureClient(ssl=other_tls.client_context())
    client_host.bind_client(trusting)
    assert await (await trusting.secret()).text() == "over https"


async def test_an_untrusted_instance_fails_at_once_without_failing_over(
    tls_hosts: Hosts, tls: Any, other_tls: Any
) -> None:
    untrusted, trusted = Secure(other_tls.server_context()), Secure(tls.server_context())
    await tls_hosts(untrusted, trusted, tls_ca=tls.cert)
    client = SecureClient()
    await tls_hosts(clients=(client,), tls_ca=tls.cert)
    outcomes = []
    for _ in range(4):  # round-robin over the two instances
        try:
            outcomes.append(await (await client.secret()).text())
        except AuthenticationFailed as exc:
            outcomes.append(str(exc))
    # with failover every call would have reached the trusted instance; and the untrusted one
    # is not set aside as unreachable either: it fails every other call, loudly
    refused = [o for o in outcomes if o != "over https"]
    assert len(refused) == 2
    assert all(f"Secure at 127.0.0.1:{untrusted.host_port} serves a TLS certificate" in o for o in refused)


async def test_an_ssl_context_client_on_a_plain_cluster(vyked_host: Any, tls: Any) -> None:
    """No TLS settings anywhere (plaintext registry): an HTTPS service still registers as
    such, and a client verifying with its own context reaches it."""
    await vyked_host(Secure(tls.server_context()))
    client = SecureClient(tls.client_context())
    client_host = await vyked_host(clients=(client,))
    assert registered(client_host) == [("http", True)]
    response = await client.secret()
    assert response.status == 200
    assert await response.text() == "over https"
    # without a context of its own, the system's CAs do not know the certificate
    plain = SecureClient()
    client_host.bind_client(plain)
    with pytest.raises(AuthenticationFailed, match="self.signed certificate"):
        await plain.secret()
