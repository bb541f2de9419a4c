"""Requests running now: counted, capped (a bulkhead) and drained: :class:`InFlight`.

One object per service and one per endpoint with a ``max_concurrency``; the TCP dispatcher
and the HTTP endpoint wrapper use the same one. Before running a request they ask
:meth:`InFlight.refusal`: over the limit a request is refused at once with
:class:`~vyked.core.exceptions.Overloaded`, and once draining with
:class:`~vyked.core.exceptions.Draining`; both say that nothing ran, so a client may send the
request to another instance. A request counts from :meth:`~InFlight.enter` until
:meth:`~InFlight.exit`, which for a handler in a thread is when the thread returns, even after
its caller has been answered ``RequestTimeout``: the thread is still busy.

Not thread-safe, and need not be: every call happens in the event loop's thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from vyked.core.exceptions import Draining, Overloaded, VykedError
from vyked.core.settings import env_positive_int

MAX_CONCURRENCY_VARIABLE = "VYKED_MAX_CONCURRENCY"


class InFlight:
    """Requests running for ``name``; at most ``limit`` (None: no limit)."""

    __slots__ = ("_waiters", "count", "draining", "guarded", "limit", "name")

    def __init__(self, name: str, limit: int | None = None) -> None:
        self.name = name
        self.limit = check_limit(limit)
        self.count = 0
        self.draining = False
        self.guarded = self.limit is not None
        """Whether :meth:`refusal` can refuse anything (a limit, or draining): when False, the
        hot paths skip calling it."""
        self._waiters: list[asyncio.Future[None]] = []

    def refusal(self) -> VykedError | None:
        """Why a new request must be refused now, or None to run it."""
        if self.draining:
            return Draining(f"{self.name} is shutting down and takes no new requests; nothing ran")
        if self.limit is not None and self.count >= self.limit:
            return Overloaded(
                f"{self.name} already runs {self.count} requests, its limit (max_concurrency={self.limit}); nothing ran"
            )
        return None

    def enter(self) -> None:
        self.count += 1

    def exit(self) -> None:
        self.count -= 1
        if self.count == 0 and self._waiters:
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._waiters.clear()

    def start_draining(self) -> None:
        """Refuse every new request from now on (with ``Draining``)."""
        self.draining = True
        self.guarded = True

    async def drained(self, grace: float) -> int:
        """Wait until no request runs, at most ``grace`` seconds; how many still run then."""
        if self.count == 0:
            return 0
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(grace):
                await waiter
        except TimeoutError:
            pass
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        return self.count

    def __repr__(self) -> str:
        limit = "" if self.limit is None else f"/{self.limit}"
        state = " draining" if self.draining else ""
        return f"<InFlight {self.name} {self.count}{limit}{state}>"


def check_limit(limit: int | None) -> int | None:
    """``limit`` itself if it is None or a positive int; ValueError otherwise."""
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ValueError(f"max_concurrency must be a positive number of requests, got {limit!r}")
    return limit


def concurrency_limit(limit: int | None, environ: Mapping[str, str] | None = None) -> int | None:
    """A service's ``max_concurrency``: the argument if given, else ``VYKED_MAX_CONCURRENCY``,
    else None (no limit). A malformed variable is a :class:`ConfigurationError`."""
    if limit is not None:
        return check_limit(limit)
    return env_positive_int(MAX_CONCURRENCY_VARIABLE, None, "requests", environ)
