"""pytest fixtures for vyked applications, registered through the ``pytest11`` entry point.

- ``redis_server``: a real ``redis-server`` on a free loopback port, per test session.
- ``vyked_registry``: an in-process registry on a free port (needs ``vyked-registry``).
- ``vyked_host``: a factory of started :class:`~vyked.core.host.ServiceHost` objects bound to
  ``vyked_registry``, stopped after the test.

``VYKED_TEST_LOOP=uvloop`` runs every asyncio test on uvloop (through pytest-asyncio's
``pytest_asyncio_loop_factories`` hook, pytest-asyncio 1.4 or later); unset or ``asyncio``
leaves pytest-asyncio's default loop.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any

import pytest

from vyked.core.client import ServiceClient
from vyked.core.exceptions import ConfigurationError, MissingExtra
from vyked.core.service import Service
from vyked.core.service_host import ServiceHost
from vyked.core.serving import LoopFactory, loop_factory
from vyked.core.testing import RedisServer

HostFactory = Callable[..., Awaitable[ServiceHost]]

TEST_LOOP_ENV = "VYKED_TEST_LOOP"
"""``uvloop`` runs the asyncio tests on uvloop; unset or ``asyncio``: pytest-asyncio's default."""


class _LoopFactories:
    """Registered only when ``VYKED_TEST_LOOP`` asks for another loop, so that plain test runs
    are parametrized exactly as without vyked."""

    def __init__(self, factories: Mapping[str, LoopFactory]) -> None:
        self.factories = dict(factories)

    @pytest.hookimpl(optionalhook=True)
    def pytest_asyncio_loop_factories(self, config: pytest.Config, item: pytest.Item) -> Mapping[str, LoopFactory]:
        return self.factories

    def pytest_report_header(self, config: pytest.Config) -> str:
        return f"vyked: asyncio tests run on {', '.join(self.factories)} ({TEST_LOOP_ENV})"


def pytest_configure(config: pytest.Config) -> None:
    choice = os.environ.get(TEST_LOOP_ENV, "").strip().lower()
    if choice in ("", "asyncio"):
        return
    try:
        factory = loop_factory(choice, variable=TEST_LOOP_ENV)
    except ConfigurationError as exc:
        raise pytest.UsageError(str(exc)) from exc
    except MissingExtra as exc:
        raise pytest.UsageError(f"{TEST_LOOP_ENV}={choice}: {exc}") from exc
    if factory is None:  # "auto" without uvloop installed
        return
    if not hasattr(config.hook, "pytest_asyncio_loop_factories"):
        raise pytest.UsageError(f"{TEST_LOOP_ENV}={choice} needs pytest-asyncio>=1.4 (pytest_asyncio_loop_factories)")
    config.pluginmanager.register(_LoopFactories({"uvloop": factory}), "vyked-test-loop")


@contextlib.asynccontextmanager
async def started_hosts(registry: str) -> AsyncIterator[HostFactory]:
    """A factory of started hosts on ``registry`` (``make(*services, clients=(), **settings)``;
    the settings go to :class:`ServiceHost`), all stopped when the block ends."""
    hosts: list[ServiceHost] = []

    async def make(*services: Service, clients: tuple[ServiceClient, ...] = (), **settings: Any) -> ServiceHost:
        host = ServiceHost(registry, **settings)
        for service in services:
            host.attach(service)
        for client in clients:
            host.bind_client(client)
        hosts.append(host)
        await host.start()
        return host

    try:
        yield make
    finally:
        for host in reversed(hosts):
            await host.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
async def vyked_registry() -> AsyncIterator[Any]:
    if importlib.util.find_spec("vyked.registry") is None:
        pytest.skip("vyked-registry is not installed")
    from vyked.registry import Registry

    async with Registry("127.0.0.1", 0) as registry:
        yield registry


@pytest.fixture
async def vyked_host(vyked_registry: Any) -> AsyncIterator[HostFactory]:
    async with started_hosts(f"127.0.0.1:{vyked_registry.port}") as make:
        yield make
