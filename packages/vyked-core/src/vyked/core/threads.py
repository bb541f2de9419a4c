"""The thread pool that plain ``def`` handlers run in, so that they never stall the event loop.

Starlette and FastAPI run synchronous endpoints in a worker thread (``run_in_threadpool``,
anyio's default limit of 40 threads); vyked does the same for ``@api``, ``@subscribe``,
``@xsubscribe`` and HTTP route handlers written as plain ``def``: a handler that blocks (a
database driver, ``time.sleep``, a file) or computes for a while leaves the loop free to
answer heartbeats and other requests. ``async def`` and generator handlers stay on the loop.

One pool serves the whole process (:func:`default_pool`). It has at most
``VYKED_THREAD_POOL_SIZE`` threads (default :data:`DEFAULT_POOL_SIZE`), or what
:func:`configure` says; work beyond that waits in a queue (limit it with ``max_concurrency``).
Threads start on demand, are named ``vyked-handler-N``, end after :data:`IDLE_TIMEOUT`
seconds without work, and are daemon threads: a handler stuck in a thread never keeps the
process from exiting. Each call runs in a copy of the caller's :mod:`contextvars` context,
so tracing and logging context set by the request's code reaches the handler.

A thread cannot be interrupted: a caller that stops waiting (a timeout) only stops waiting;
the handler runs on and its result is dropped.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextvars
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from vyked.core.settings import env_positive_int

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_POOL_SIZE = 40
"""Threads of the handler pool unless configured: anyio's (and so Starlette's) default."""
POOL_SIZE_VARIABLE = "VYKED_THREAD_POOL_SIZE"
IDLE_TIMEOUT = 10.0
"""Seconds a handler thread waits for work before it ends."""

_local = threading.local()
"""``loop``: in a handler thread running a call, the event loop that submitted it."""


class HandlerPool:
    """At most ``size`` daemon threads running calls handed over from event loops.

    :meth:`submit` is called in an event loop and returns an ``asyncio.Future`` of that loop,
    resolved (in the loop) when the call returns or raises.
    """

    def __init__(
        self, size: int = DEFAULT_POOL_SIZE, *, name: str = "vyked-handler", idle_timeout: float = IDLE_TIMEOUT
    ) -> None:
        _check_size(size)
        self.name = name
        self.idle_timeout = idle_timeout
        self._size = size
        self._pending: collections.deque[_Call] = collections.deque()
        self._wakeup = threading.Condition(threading.Lock())
        self._idle = 0
        """Threads waiting for work; each takes one pending call when woken."""
        self._threads: set[threading.Thread] = set()
        self._numbers = itertools.count(1)

    @property
    def size(self) -> int:
        return self._size

    @size.setter
    def size(self, size: int) -> None:
        """A larger pool starts its extra threads as work comes; a smaller one lets the surplus
        threads end as they finish their current call."""
        _check_size(size)
        with self._wakeup:
            self._size = size
            self._wakeup.notify_all()

    @property
    def threads(self) -> int:
        """Threads alive now, busy or idle."""
        return len(self._threads)

    @property
    def queued(self) -> int:
        """Calls waiting for a free thread."""
        return len(self._pending)

    def submit(self, func: Callable[..., T], /, *args: Any, **kwargs: Any) -> asyncio.Future[T]:
        """Run ``func(*args, **kwargs)`` in a pool thread, in a copy of the current context.

        Must be called in an event loop. Cancelling the returned future does not stop a call
        that has started (nothing can); one that has not started yet is skipped.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        call = _Call(loop, future, contextvars.copy_context(), func, args, kwargs)
        with self._wakeup:
            self._pending.append(call)
            if self._idle >= len(self._pending):
                self._wakeup.notify()
            elif len(self._threads) < self._size:
                thread = threading.Thread(target=self._work, name=f"{self.name}-{next(self._numbers)}", daemon=True)
                self._threads.add(thread)
                thread.start()
            # else: every thread is busy; the first to finish takes it
        return future

    def _work(self) -> None:
        me = threading.current_thread()
        wakeup = self._wakeup
        while True:
            with wakeup:
                deadline = time.monotonic() + self.idle_timeout
                while not self._pending:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or len(self._threads) > self._size:
                        # Only with nothing pending: a later submission starts a new thread.
                        self._threads.discard(me)
                        return
                    self._idle += 1
                    wakeup.wait(remaining)
                    self._idle -= 1
                call = self._pending.popleft()
            call.run()
            del call  # drop the arguments and result before waiting, perhaps for long
            if len(self._threads) > self._size:
                with wakeup:
                    if len(self._threads) > self._size:
                        self._threads.discard(me)
                        return

    def __repr__(self) -> str:
        return f"<HandlerPool {self.name} size={self._size} threads={len(self._threads)} queued={self.queued}>"


class _Call:
    """One call handed to the pool, and the loop future waiting for it."""

    __slots__ = ("args", "context", "func", "future", "kwargs", "loop")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
        context: contextvars.Context,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self.loop = loop
        self.future = future
        self.context = context
        self.func = func
        self.args = args
        self.kwargs = kwargs

    def run(self) -> None:
        if self.future.cancelled():  # the caller gave up before a thread was free
            return
        _local.loop = self.loop
        try:
            result = self.context.run(self.func, *self.args, **self.kwargs)
        except BaseException as exc:  # delivered to the caller, as if the call had been inline
            self._deliver(_settle_exception, exc)
        else:
            self._deliver(_settle_result, result)
        finally:
            _local.loop = None

    def _deliver(self, settle: Callable[[asyncio.Future[Any], Any], None], value: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(settle, self.future, value)
        except RuntimeError:  # the loop has closed: nobody waits any more
            logger.debug("dropping the result of %r: its event loop is closed", self.func)


def _settle_result(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _settle_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        if isinstance(exc, StopIteration):  # a future refuses it, as a coroutine would turn it
            wrapped = RuntimeError(f"the call raised {exc!r}")
            wrapped.__cause__ = exc
            exc = wrapped
        future.set_exception(exc)


def _check_size(size: int) -> None:
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"a handler thread pool needs at least one thread, got {size!r}")


# -- the process-wide pool ---------------------------------------------------------------------

_default: HandlerPool | None = None
_configured: int | None = None
_default_lock = threading.Lock()


def pool_size_from_env(environ: Mapping[str, str] | None = None) -> int:
    """``VYKED_THREAD_POOL_SIZE`` if set, else :data:`DEFAULT_POOL_SIZE`; a value that is not
    a positive integer is a :class:`~vyked.core.exceptions.ConfigurationError`."""
    size = env_positive_int(POOL_SIZE_VARIABLE, DEFAULT_POOL_SIZE, "threads", environ)
    assert size is not None
    return size


def configure(size: int) -> None:
    """Set how many threads run plain ``def`` handlers in this process (wins over
    ``VYKED_THREAD_POOL_SIZE``). Takes effect at once, also on a pool already in use."""
    global _configured
    _check_size(size)
    with _default_lock:
        _configured = size
        if _default is not None:
            _default.size = size


def default_pool() -> HandlerPool:
    """The process's handler pool, made on first use."""
    global _default
    pool = _default
    if pool is None:
        with _default_lock:
            if _default is None:
                _default = HandlerPool(_configured if _configured is not None else pool_size_from_env())
            pool = _default
    return pool


async def run_in_thread(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run ``func(*args, **kwargs)`` in the handler pool and wait for its result."""
    return await default_pool().submit(func, *args, **kwargs)


def handler_loop() -> asyncio.AbstractEventLoop | None:
    """In a handler thread running a call, the event loop that handed it over; else None."""
    loop: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
    return loop


def call_on_loop(func: Callable[..., T], /, *args: Any) -> T:
    """Call ``func(*args)`` in the event loop and return its result (or raise its exception).

    From a handler thread, the call is handed to the loop that submitted the handler and the
    thread waits for it: this is how code running in a thread touches loop-bound objects
    (transports, futures) safely. Anywhere else (an inline handler, the loop itself), it is a
    plain call.
    """
    loop = handler_loop()
    if loop is None:
        return func(*args)
    done: concurrent.futures.Future[T] = concurrent.futures.Future()

    def call() -> None:
        try:
            done.set_result(func(*args))
        except BaseException as exc:
            done.set_exception(exc)

    loop.call_soon_threadsafe(call)
    return done.result()


def _forget_after_fork() -> None:
    # Threads do not survive fork(): a child starts with a fresh pool (and a fresh lock).
    global _default, _default_lock
    _default = None
    _default_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
