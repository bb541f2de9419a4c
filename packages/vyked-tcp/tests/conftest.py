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
    yield
    await Host.stop()
    Host.reset()
