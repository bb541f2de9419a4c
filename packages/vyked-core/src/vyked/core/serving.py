"""Serving until the process is told to stop: the body of every vyked server process."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

logger = logging.getLogger(__name__)


async def serve_until_signalled(start: Callable[[], Awaitable[Any]], stop: Callable[[], Awaitable[Any]]) -> None:
    """Run ``start``, wait for SIGINT or SIGTERM, run ``stop``."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    try:
        await start()
        await stopping.wait()
        logger.info("stopping")
    finally:
        await stop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def configure_logging(level: int | str = logging.INFO) -> None:
    """Log to stderr at ``level`` unless the application configured logging itself."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
