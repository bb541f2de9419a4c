from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from vyked import Host

# Test modules share service classes from tcp_testservices.py; --import-mode=importlib does
# not put this folder on sys.path by itself.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
async def clean_host_class() -> AsyncIterator[None]:
    """The Host façade is process-wide; give every test a fresh one."""
    saved = dict(vars(Host))
    yield
    await Host.stop()
    for attr in ("registry_host", "registry_port", "pubsub_host", "pubsub_port", "pubsub_url", "name"):
        setattr(Host, attr, saved[attr])
    Host._tcp_service = Host._http_service = Host._runtime = None
