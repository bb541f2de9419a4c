"""Fixtures for cross-package tests: real registry and service processes on loopback."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from vyked import Host
from vyked.core.testing import ProcessRunner

# Test modules import shared helpers from integration_support.py; --import-mode=importlib
# does not put this folder on sys.path by itself.
sys.path.insert(0, str(Path(__file__).parent))

from integration_support import registry_port


@pytest.fixture
def registry_process() -> Iterator[int]:
    """A registry started as ``python -m vyked.registry``; yields the port it announced."""
    proc = ProcessRunner("-m", "vyked.registry", "--port", "0").start()
    try:
        yield registry_port(proc)
    finally:
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
    Host.reset()
