"""Fixtures for cross-package tests: real registry and service processes on loopback."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from vyked import Host
from vyked.core.testing import ProcessRunner, free_port, wait_for_port

# Test modules import shared helpers from integration_support.py; --import-mode=importlib
# does not put this folder on sys.path by itself.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def registry_process() -> Iterator[int]:
    """A registry started as ``python -m vyked.registry``; yields its port."""
    port = free_port()
    proc = ProcessRunner("-m", "vyked.registry", "--port", str(port)).start()
    wait_for_port(port)
    yield port
    proc.stop()


@pytest.fixture
def start_process() -> Iterator[Callable[..., ProcessRunner]]:
    """Start ``python ARGS...``; every process is stopped after the test."""
    started: list[ProcessRunner] = []

    def start(*args: str) -> ProcessRunner:
        proc = ProcessRunner(*args).start()
        started.append(proc)
        return proc

    yield start
    for proc in reversed(started):
        proc.stop()


@pytest.fixture(autouse=True)
async def clean_host_class() -> AsyncIterator[None]:
    yield
    await Host.stop()
    Host.registry_host = None
    Host.registry_port = 4500
    Host._tcp_service = Host._http_service = None
