"""Fixtures of the vyked 2.x compatibility tests: a registry process, and 2.x style service
processes (``user_service.py``, ``account_service.py``, ``ronin_service.py``) that log the
ports they serve on."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vyked.core.testing import ProcessRunner, RedisServer

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compat_support import registry_port


@pytest.fixture
def registry() -> Iterator[int]:
    """A registry process (``python -m vyked.registry``); yields its port."""
    proc = ProcessRunner("-m", "vyked.registry", "--port", "0").start()
    try:
        yield registry_port(proc)
    finally:
        proc.stop()


@pytest.fixture
def start_process() -> Iterator[Callable[..., ProcessRunner]]:
    """Start ``python ARGS...``; every process is stopped after the test."""
    started: list[ProcessRunner] = []

    def start(*args: str, env: dict[str, str] | None = None) -> ProcessRunner:
        proc = ProcessRunner(*args, env=env).start()
        started.append(proc)
        return proc

    yield start
    for proc in reversed(started):
        proc.stop()


@pytest.fixture(params=["embedded", "redis"])
def pubsub(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """The extra arguments of the service scripts: none (the embedded transport), or a Redis URL."""
    if request.param == "embedded":
        yield []
        return
    with RedisServer() as server:
        yield [server.url]
