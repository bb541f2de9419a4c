"""Keeping cancellation intact in retry loops.

A loop that catches a library's errors and tries again can swallow its own cancellation:
redis-py, for one, turns an ``asyncio`` timeout that fires as the task is cancelled into its
own ``TimeoutError`` (a ``RedisError``). The loop then never ends, and whoever awaits it
(a host stopping) waits forever. Such loops call :func:`raise_if_cancelling` at the top of
every round, and stop such tasks with :func:`cancel_and_wait`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

logger = logging.getLogger(__name__)


def raise_if_cancelling() -> None:
    """Raise ``CancelledError`` if someone asked the current task to stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


STOP_TIMEOUT = 2.0
"""Seconds :func:`cancel_and_wait` waits for cancelled tasks before leaving them behind."""


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None, timeout: float = STOP_TIMEOUT) -> None:
    """Cancel ``tasks`` and wait for them to end, but never longer than ``timeout``.

    A task stuck in a library call that swallowed its cancellation (redis-py can, in a
    blocking read: redis/redis-py#2028) is logged and left to end on its own, typically
    when the client it waits on is closed; a shutdown must not wait for it forever.
    """
    pending = [t for t in tasks if t is not None and not t.done()]
    for task in pending:
        task.cancel()
    if not pending:
        return
    done, stuck = await asyncio.wait(pending, timeout=timeout)
    for task in done:
        if not task.cancelled():
            task.exception()  # retrieved, so that asyncio does not report it as forgotten
    for task in stuck:
        logger.warning("%r ignored its cancellation for %.1f s; leaving it to end on its own", task, timeout)
