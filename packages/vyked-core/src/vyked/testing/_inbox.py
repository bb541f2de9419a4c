"""Waiting for handlers in tests: :class:`Inbox` and :func:`record`.

A test that publishes an event, or sends a request that another service handles in the
background, needs to know when the handler has run: ``record(obj, "method")`` wraps the
method on that one object (a ``TCPServiceClient``'s ``@subscribe`` handler, a ``TCPService``'s
``@api`` method...) so that each call is recorded in an :class:`Inbox` once it has finished,
and ``await inbox.wait_for(n)`` returns as soon as ``n`` calls have. Like Nameko's
``entrypoint_waiter`` or FastStream's ``wait_call``, without sleeping and polling.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from vyked.core.handler_styles import as_coroutine_function, is_async

__all__ = ["Call", "Inbox", "record"]


@dataclass(frozen=True, slots=True)
class Call:
    """One finished call: its arguments, and what it returned or raised."""

    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    error: Exception | None = None


class Inbox:
    """Calls recorded as they finish, from any thread (plain ``def`` handlers run in a pool).

    ::

        inbox = record(listener, "password_changed")
        await identity.change_password("ann", "s3cret")
        [call] = await inbox.wait_for(1)
        assert call.kwargs == {"user_name": "ann"}
    """

    def __init__(self) -> None:
        self.calls: list[Call] = []
        """Every call recorded so far, in the order they finished."""
        self._lock = threading.Lock()
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def add(self, call: Call) -> None:
        """Record ``call`` (thread-safe) and wake the waiters it satisfies."""
        with self._lock:
            self.calls.append(call)
            count = len(self.calls)
            ready = [w for w in self._waiters if w[0] <= count]
            self._waiters = [w for w in self._waiters if w[0] > count]
        for _, loop, waiter in ready:
            try:
                loop.call_soon_threadsafe(_wake, waiter)
            except RuntimeError:  # that loop has closed: nobody waits any more
                pass

    async def wait_for(self, count: int = 1, timeout: float = 5.0) -> list[Call]:
        """Wait until ``count`` calls have been recorded in all (those recorded before this
        call count: :meth:`clear` starts over), and return the first ``count``. Raises
        :class:`TimeoutError`, saying what did arrive, after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if len(self.calls) >= count:
                return self.calls[:count]
            waiter: asyncio.Future[None] = loop.create_future()
            entry = (count, loop, waiter)
            self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            raise TimeoutError(
                f"waited {timeout} s for {count} call(s), {len(self.calls)} arrived: {self.calls!r}"
            ) from None
        finally:
            with self._lock:
                if entry in self._waiters:
                    self._waiters.remove(entry)
        return self.calls[:count]

    @property
    def kwargs(self) -> list[dict[str, Any]]:
        """The keyword arguments of each call (what a handler received), in order."""
        return [call.kwargs for call in self.calls]

    def clear(self) -> None:
        """Forget the calls recorded so far."""
        with self._lock:
            self.calls.clear()

    def wrap(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """``func``, recording each call in this inbox once it returns or raises.

        The wrapper keeps ``func``'s style, so vyked runs it where it ran ``func``: ``async
        def`` and generator handlers on the loop (as an ``async def``), plain ``def`` ones in
        the handler thread pool or inline. It keeps ``func``'s signature, so parameters are
        checked as before; a call whose arguments do not fit raises :class:`TypeError` and is
        not recorded.
        """
        recorder: Callable[..., Any]
        signature = inspect.signature(func)
        if is_async(func):
            target = as_coroutine_function(func)

            async def recorder(*args: Any, **kwargs: Any) -> Any:
                signature.bind(*args, **kwargs)  # arguments that do not fit never reach func
                try:
                    result = await target(*args, **kwargs)
                except Exception as exc:
                    self.add(Call(args, kwargs, error=exc))
                    raise
                self.add(Call(args, kwargs, result))
                return result

        else:

            def recorder(*args: Any, **kwargs: Any) -> Any:
                signature.bind(*args, **kwargs)
                try:
                    result = func(*args, **kwargs)
                except Exception as exc:
                    self.add(Call(args, kwargs, error=exc))
                    raise
                self.add(Call(args, kwargs, result))
                return result

        return _dressed_as(recorder, func, signature)

    def __len__(self) -> int:
        return len(self.calls)

    def __iter__(self) -> Iterator[Call]:
        return iter(list(self.calls))

    def __repr__(self) -> str:
        return f"<Inbox {len(self.calls)} call(s)>"


def _dressed_as(wrapper: Any, func: Callable[..., Any], signature: inspect.Signature) -> Callable[..., Any]:
    """``wrapper`` with ``func``'s name, docstring and signature, but not ``__wrapped__``:
    vyked would look through it and take the wrapper for ``func``'s style."""
    for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
        if hasattr(func, attr):
            setattr(wrapper, attr, getattr(func, attr))
    wrapper.__signature__ = signature
    return wrapper  # type: ignore[no-any-return]


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def record(target: object, method: str, inbox: Inbox | None = None) -> Inbox:
    """Record every call of ``target.method`` (on that object only) in ``inbox`` (default: a
    new one), which is returned.

    Do it before the object is hosted: vyked looks a service's ``@api`` methods and a
    client's ``@subscribe`` handlers up when the host starts (or the client is bound).
    """
    inbox = inbox if inbox is not None else Inbox()
    original = getattr(target, method)
    if not callable(original):
        raise TypeError(f"{target!r}.{method} is not callable")
    setattr(target, method, inbox.wrap(original))
    return inbox
