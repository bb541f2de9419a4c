"""IdentityService as a real process, crashed, frozen and restarted under a live client."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from identity import IdentityClient

from vyked.testing import RegistryProcess, ServiceProcess, started_hosts

IDENTITY = str(Path(__file__).with_name("identity.py"))


@pytest.fixture
def identity_process(
    vyked_registry_process: RegistryProcess, vyked_processes: Callable[[ServiceProcess], ServiceProcess]
) -> ServiceProcess:
    """identity.py running on its own, registered with the registry process."""
    return vyked_processes(ServiceProcess(IDENTITY, registry=vyked_registry_process.address))


async def test_a_crashed_instance_is_unavailable_until_restarted(
    vyked_registry_process: RegistryProcess, identity_process: ServiceProcess
) -> None:
    async with started_hosts(vyked_registry_process.address) as make:
        identity = IdentityClient()
        await make(clients=(identity,))
        assert await identity.create("ann", "pw") == {"user_name": "ann"}

        identity_process.kill()  # SIGKILL: no goodbye to the registry
        # ConnectionLost if the request went out before the client saw the connection die,
        # ServiceUnavailable if not: both are ConnectionErrors
        with pytest.raises(ConnectionError):
            await identity.create("bob", "pw")

        await asyncio.to_thread(identity_process.restart)  # returns once it is registered again
        assert await identity.create("bob", "pw") == {"user_name": "bob"}


async def test_a_frozen_instance_answers_once_resumed(
    vyked_registry_process: RegistryProcess, identity_process: ServiceProcess
) -> None:
    async with started_hosts(vyked_registry_process.address) as make:
        identity = IdentityClient()
        await make(clients=(identity,))
        await identity.create("ann", "pw")

        identity_process.pause()  # SIGSTOP: connections stay open, nothing answers
        call = asyncio.ensure_future(identity.create("bob", "pw"))
        done, _ = await asyncio.wait([call], timeout=0.5)
        assert not done

        identity_process.resume()
        assert await call == {"user_name": "bob"}


async def test_services_come_back_after_the_registry_restarts(
    vyked_registry_process: RegistryProcess, identity_process: ServiceProcess
) -> None:
    since = identity_process.mark()
    await asyncio.to_thread(vyked_registry_process.restart, kill=True)  # same port, empty state
    await identity_process.wait_for_line_async("connected to registry at", since=since)  # and registered again

    async with started_hosts(vyked_registry_process.address) as make:
        identity = IdentityClient()
        await make(clients=(identity,))  # a new host learns of the instance from the new registry
        assert await identity.create("ann", "pw") == {"user_name": "ann"}
