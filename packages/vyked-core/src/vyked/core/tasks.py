"""Background tasks: spawning them, stopping them, and keeping cancellation intact.

A loop that catches a library's errors and tries again can swallow its own cancellation:
redis-py, for one, turns an ``asyncio`` timeout that fires as the task is cancelled into its
own ``TimeoutError`` (a ``RedisError``). The loop then never ends, and whoever awaits it
(a host stopping) waits forever. Such loops call :func:`raise_if_cancelling` at the top of
every round (:func:`vyked.core.backoff.reconnect_forever` does), and are stopped with
:func:`cancel_and_wait`.

:class:`TaskSet` is the one way vyked starts fire-and-forget work (a handler run, an
acknowledgement sent later): it keeps a reference to each task until it ends, so the loop
cannot garbage-collect it, and cancels what is left when its owner closes.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

STOP_TIMEOUT = 2.0
"""Seconds :func:`cancel_and_wait` waits for cancelled tasks before leaving them behind."""


def raise_if_cancelling() -> None:
    """Raise ``CancelledError`` if someone asked the current task to stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


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


async def wait_until(event: asyncio.Event, timeout: float) -> bool:
    """Wait for ``event`` at most ``timeout`` seconds; False if it is still not set."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True


class TaskSet:
    """Tasks an object starts and must stop when it closes."""

    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, T], context: contextvars.Context | None = None) -> asyncio.Task[T]:
        """Run ``coro`` as a task (in ``context``, else a copy of the current one), kept until
        it ends; :meth:`close` cancels it if it has not."""
        task = asyncio.get_running_loop().create_task(coro, context=context)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    async def wait(self, timeout: float) -> int:
        """Wait (without cancelling) for the tasks running now to end, at most ``timeout``
        seconds; returns how many still run."""
        running = set(self._tasks)
        if not running or timeout <= 0:
            return len(running)
        _, pending = await asyncio.wait(running, timeout=timeout)
        return len(pending)

    async def close(self, timeout: float = STOP_TIMEOUT) -> None:
        """Cancel every task still running and wait for them (see :func:`cancel_and_wait`)."""
        await cancel_and_wait(*self._tasks, timeout=timeout)
