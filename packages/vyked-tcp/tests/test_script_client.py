"""A plain script that hosts no service can still call services through Host settings."""

from __future__ import annotations

import asyncio

import pytest
from tcp_testservices import Calculator, CalculatorClient

from vyked import Host, RegistryUnavailable
from vyked.core.pytest_plugin import HostFactory


async def test_client_connects_on_first_use_and_host_stop_closes(
    vyked_host: HostFactory, vyked_registry: object
) -> None:
    await vyked_host(Calculator())
    Host.registry_host = "127.0.0.1"
    Host.registry_port = vyked_registry.port  # type: ignore[attr-defined]
    client = CalculatorClient()  # bound to nothing: uses the process-wide host
    results = await asyncio.gather(client.add(1, 2), client.add(3, 4))
    assert results == [3, 7]
    runtime = Host.default()
    assert runtime.running and runtime.services == []
    await Host.stop()
    assert not runtime.running


async def test_several_registries_as_a_comma_list(vyked_host: HostFactory, vyked_registry: object) -> None:
    await vyked_host(Calculator())
    port = vyked_registry.port  # type: ignore[attr-defined]
    from vyked.core.testing import free_port

    Host.registry_host = f"127.0.0.1:{free_port()},127.0.0.1:{port}"  # the first one is down
    assert await CalculatorClient().add(2, 2) == 4


async def test_no_registry_reachable_is_a_clear_error() -> None:
    from vyked.core.testing import free_port

    Host.registry_host = "127.0.0.1"
    Host.registry_port = free_port()
    with pytest.raises(RegistryUnavailable, match="no registry reachable"):
        await CalculatorClient().add(1, 2)
