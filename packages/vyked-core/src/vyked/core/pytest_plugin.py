"""The ``vyked`` pytest plugin: fixtures for testing vyked applications (``docs/testing.md``).

Registered through the ``pytest11`` entry point of ``vyked-core`` (``-p no:vyked`` turns it
off). It adds fixtures and nothing else: no autouse fixture, no hook that changes how tests are
collected or run (one imports the registry after collection when a test will use it), so
suites that do not use it see no difference, in any pytest-asyncio mode.
Its ``async`` fixtures are declared with ``pytest_asyncio.fixture`` (they need pytest-asyncio; in
``strict`` mode the tests that use them need ``@pytest.mark.asyncio``, as usual) and run in
the test's event loop (``asyncio_default_fixture_loop_scope`` decides its scope).

- ``vyked_registry``: an in-process registry on a free loopback port (needs ``vyked-registry``;
  skips the test without it).
- ``vyked_host``: ``await vyked_host(*services, clients=(...), **settings)``, a started
  :class:`~vyked.core.service_host.ServiceHost` on ``vyked_registry``; stopped after the test.
- ``vyked_http``: ``await vyked_http(service)``, the base URL of an ``HTTPService`` served on
  a free loopback port without a registry; stopped after the test.
- ``vyked_clean_host``: the process-wide :class:`~vyked.core.host.Host` as new before the
  test, stopped and reset after it.
- ``vyked_registry_process``: a :class:`~vyked.testing.RegistryProcess` (a real
  ``python -m vyked.registry``), stopped after the test.
- ``vyked_processes``: ``vyked_processes(runner)`` starts a
  :class:`~vyked.testing.ProcessRunner` (or :class:`~vyked.testing.ServiceProcess`...) and
  stops it after the test.
- ``redis_server``: a throwaway :class:`~vyked.testing.RedisServer`, per session.

``VYKED_TEST_LOOP=uvloop`` runs every asyncio test on uvloop (through pytest-asyncio's
``pytest_asyncio_loop_factories`` hook, pytest-asyncio 1.4 or later); unset or ``asyncio``
leaves pytest-asyncio's default loop.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pytest

from vyked.core.exceptions import ConfigurationError, MissingExtra
from vyked.core.host import Host
from vyked.core.serving import LoopFactory, loop_factory

if TYPE_CHECKING:
    from vyked.http import HTTPService

from vyked.testing import (
    HostFactory,
    ProcessRunner,
    RedisServer,
    RegistryProcess,
    ServeHTTP,
    serve_http,
    started_hosts,
)

__all__ = ["HostFactory", "started_hosts"]

P = TypeVar("P", bound=ProcessRunner)

TEST_LOOP_ENV = "VYKED_TEST_LOOP"
"""``uvloop`` runs the asyncio tests on uvloop; unset or ``asyncio``: pytest-asyncio's default."""

F = TypeVar("F", bound=Callable[..., Any])


def async_fixture(func: F) -> F:
    """pytest-asyncio's fixture decorator, so that the async fixtures work in its strict mode
    too; without pytest-asyncio nothing can run them anyway, and the plain one keeps the plugin
    loadable."""
    if importlib.util.find_spec("pytest_asyncio") is None:
        return cast(F, pytest.fixture(func))
    return cast(F, importlib.import_module("pytest_asyncio").fixture(func))


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


def pytest_collection_finish(session: pytest.Session) -> None:
    """Import the registry once collection is done, if a test will need it: a first import
    costs tens of milliseconds, which belong to the session, not to the first test's timing."""
    wanted = any("vyked_registry" in getattr(item, "fixturenames", ()) for item in session.items)
    if wanted and importlib.util.find_spec("vyked.registry") is not None:
        importlib.import_module("vyked.registry")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A throwaway ``redis-server`` on a free loopback port, for the whole session
    (``redis_server.url``); tests may :meth:`~RedisServer.restart` it."""
    with RedisServer() as server:
        yield server


@async_fixture
async def vyked_registry() -> AsyncIterator[Any]:
    """A :class:`vyked.registry.Registry` listening on a free loopback port, in the test's
    loop (``vyked_registry.port``); skips the test when vyked-registry is not installed."""
    if importlib.util.find_spec("vyked.registry") is None:
        pytest.skip("vyked-registry is not installed")
    from vyked.registry import Registry

    async with Registry("127.0.0.1", 0) as registry:
        yield registry


@async_fixture
async def vyked_host(vyked_registry: Any) -> AsyncIterator[HostFactory]:
    """``await vyked_host(*services, clients=(...), **settings)``: a started host on
    ``vyked_registry`` (see :func:`vyked.testing.started_hosts`); all stopped after the test."""
    async with started_hosts(f"127.0.0.1:{vyked_registry.port}") as make:
        yield make


@async_fixture
async def vyked_http() -> AsyncIterator[ServeHTTP]:
    """``await vyked_http(service)``: the base URL of an ``HTTPService`` served on a free
    loopback port without a registry (see :func:`vyked.testing.serve_http`); stopped after
    the test."""
    async with contextlib.AsyncExitStack() as stack:

        async def serve(service: HTTPService) -> str:
            return await stack.enter_async_context(serve_http(service))

        yield serve


@async_fixture
async def vyked_clean_host() -> AsyncIterator[None]:
    """The process-wide :class:`~vyked.core.host.Host` as new for the test: reset before it,
    stopped and reset after it. Make it autouse in a ``conftest.py`` of a suite that uses
    ``Host``."""
    Host.reset()
    yield
    await Host.stop()
    Host.reset()


@pytest.fixture
def vyked_registry_process() -> Iterator[RegistryProcess]:
    """A registry as a real process (``python -m vyked.registry``) on a free port, listening
    when the test starts (``.address``, ``.kill()``, ``.pause()``, ``.restart()`` on the same
    port); stopped after the test."""
    with RegistryProcess() as registry:
        yield registry


@pytest.fixture
def vyked_processes() -> Iterator[Callable[[P], P]]:
    """``vyked_processes(runner)`` starts ``runner`` (a :class:`~vyked.testing.ProcessRunner`,
    :class:`~vyked.testing.ServiceProcess`...) and returns it; every one is stopped after the
    test, the last started first."""
    started: list[ProcessRunner] = []

    def start(runner: P) -> P:
        started.append(runner)
        runner.start()
        return runner

    yield start
    for runner in reversed(started):
        runner.stop()
