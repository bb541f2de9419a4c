"""Retrying with backoff: one policy and two loops for every reconnecting part of vyked.

:class:`Backoff` says how long to pause after ``n`` failures in a row (exponential, capped,
with equal jitter so that many hosts losing the same peer do not come back in step; the model
is redis-py's ``EqualJitterBackoff``). :func:`retry` repeats an operation until it succeeds;
:func:`reconnect_forever` keeps a session (a connection and what runs over it) alive for as
long as its task lives. Both stop as soon as their task is cancelled, even when a library
swallowed the cancellation (see :mod:`vyked.core.tasks`).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NoReturn, TypeVar

from vyked.core.tasks import cancel_and_wait, raise_if_cancelling, wait_until

T = TypeVar("T")

ErrorTypes = type[BaseException] | tuple[type[BaseException], ...]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Pause ``min(cap, base * 2**failures)``, half of it fixed and half random."""

    base: float = 0.05
    cap: float = 1.0

    def compute(self, failures: int) -> float:
        """Seconds to wait after ``failures`` failed attempts in a row (``failures`` 0: the
        pause before the first retry, between ``base / 2`` and ``base``)."""
        delay = min(self.cap, self.base * 2.0 ** min(failures, 32))
        return delay / 2 + random.uniform(0, delay / 2)


DEFAULT_BACKOFF = Backoff(base=0.05, cap=0.5)
"""Pauses of 25-50 ms doubling up to 0.25-0.5 s: how the registry client and registry
replication come back after a failure (publish-subscribe caps at its ``reconnect_delay_max``)."""


class Attempts:
    """How many attempts of one loop failed in a row; a session resets it once it is up.

    ``up`` (optional) is set while a session is up: from :meth:`succeeded` until it ends.
    """

    __slots__ = ("backoff", "failures", "up")

    def __init__(self, backoff: Backoff, up: asyncio.Event | None = None) -> None:
        self.backoff = backoff
        self.failures = 0
        self.up = up

    def succeeded(self) -> None:
        """The connection is up: the next failure starts the backoff from the beginning."""
        self.failures = 0
        if self.up is not None:
            self.up.set()

    def ended(self) -> None:
        if self.up is not None:
            self.up.clear()

    async def pause(self) -> None:
        await asyncio.sleep(self.backoff.compute(self.failures))
        self.failures += 1


async def retry(
    operation: Callable[[], Awaitable[T]],
    *,
    retry_on: ErrorTypes,
    backoff: Backoff = DEFAULT_BACKOFF,
    logger: logging.Logger,
    what: str,
) -> T:
    """Call ``operation`` until it returns; errors of ``retry_on`` are logged (debug) and retried."""
    attempts = Attempts(backoff)
    while True:
        raise_if_cancelling()
        try:
            return await operation()
        except retry_on as exc:
            logger.debug("%s failed (%s); retrying", what, exc)
        raise_if_cancelling()
        await attempts.pause()


async def reconnect_forever(
    session: Callable[[Attempts], Awaitable[object]],
    *,
    retry_on: ErrorTypes,
    backoff: Backoff = DEFAULT_BACKOFF,
    logger: logging.Logger,
    what: str,
    up: asyncio.Event | None = None,
) -> NoReturn:
    """Run ``session`` again and again until the task is cancelled.

    ``session`` connects, calls ``attempts.succeeded()`` once it is up, and returns or raises
    when the connection ends. Errors of ``retry_on`` are expected (logged at debug level:
    the session logs what its users must know); any other exception is a bug, logged with its
    traceback, and the loop carries on, since a dead reconnect loop would silently stop a
    host from ever hearing from that peer again. ``up`` is set while a session is up.
    """
    attempts = Attempts(backoff, up)
    while True:
        raise_if_cancelling()
        try:
            await session(attempts)
        except asyncio.CancelledError:
            raise
        except retry_on as exc:
            logger.debug("%s: %s; reconnecting", what, exc)
        except Exception:
            logger.exception("unexpected error in %s; starting over", what)
        finally:
            attempts.ended()
        raise_if_cancelling()  # a session may have swallowed the cancellation: no pause then
        await attempts.pause()


class Reconnecting:
    """A :func:`reconnect_forever` loop as an object its owner starts, restarts and stops.

    :attr:`up` is set while a session is up (between ``attempts.succeeded()`` and its end).
    """

    def __init__(
        self,
        session: Callable[[Attempts], Awaitable[object]],
        *,
        retry_on: ErrorTypes,
        backoff: Backoff = DEFAULT_BACKOFF,
        logger: logging.Logger,
        what: str,
    ) -> None:
        self.up = asyncio.Event()
        self._session = session
        self._retry_on, self._backoff, self._logger, self._what = retry_on, backoff, logger, what
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the loop unless it runs."""
        if self.running:
            return
        self._task = asyncio.get_running_loop().create_task(
            reconnect_forever(
                self._session,
                retry_on=self._retry_on,
                backoff=self._backoff,
                logger=self._logger,
                what=self._what,
                up=self.up,
            )
        )

    async def restart(self, wait: float = 0.0) -> bool:
        """Stop the loop if it runs and start it again (a session whose settings changed); wait
        up to ``wait`` seconds for a session to be up, and say whether one is."""
        await self.stop()
        self.start()
        return await wait_until(self.up, wait) if wait > 0 else self.up.is_set()

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        self.up.clear()
