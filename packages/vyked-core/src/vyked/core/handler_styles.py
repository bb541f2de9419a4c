"""User handlers come in three styles; this module makes them callable alike, and says where
each runs.

``async def`` coroutines, plain ``def`` functions, and the seed's generator style
(``result = yield from sleep(5)``), which Python 3.11 no longer runs as a coroutine by itself:
:func:`as_coroutine_function` wraps such generators with :func:`types.coroutine` so that they
can ``yield from`` coroutines and be awaited.

:func:`execution_of` decides where a handler runs (:class:`Execution`): coroutines and
generators on the event loop; plain ``def`` handlers in the handler thread pool
(:mod:`vyked.core.threads`), as Starlette does for sync endpoints, unless the endpoint asks to
run ``inline``.

:func:`is_handler_failure` says which exceptions a handler raising means "this handler failed"
(answered to the caller) rather than "stop" (left to propagate).
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import types
from collections.abc import Callable, Generator
from typing import Any

_NOT_FAILURES = (KeyboardInterrupt, SystemExit, GeneratorExit, asyncio.CancelledError)


def is_handler_failure(exc: BaseException) -> bool:
    """Whether ``exc``, out of a handler, is that handler's failure, to be answered to its caller.

    Every ``Exception``, and also an application's own ``BaseException`` subclasses (vyked 2.x
    examples raise ``class UserException(BaseException)``): left to propagate, their caller
    would get no answer at all. Not ``KeyboardInterrupt`` and ``SystemExit``, which stop the
    process as usual, nor ``CancelledError`` and ``GeneratorExit``, which end the task or
    generator running the handler.
    """
    return isinstance(exc, Exception) or not isinstance(exc, _NOT_FAILURES)


def is_generator_style(func: Callable[..., Any]) -> bool:
    return inspect.isgeneratorfunction(inspect.unwrap(func))


def as_coroutine_function(func: Callable[..., Any]) -> Callable[..., Any]:
    """Return ``func`` itself if it is ``async def`` or plain, a wrapped version if a generator."""
    if not is_generator_style(func):
        return func
    if inspect.ismethod(func):
        # types.coroutine marks a plain function's code object; a bound method must be
        # marked through its function, and the method rebound.
        return types.MethodType(types.coroutine(func.__func__), func.__self__)
    return types.coroutine(func)


def is_async(func: Callable[..., Any]) -> bool:
    """True when calling ``func`` (after :func:`as_coroutine_function`) gives an awaitable."""
    target = inspect.unwrap(func)
    return inspect.iscoroutinefunction(target) or inspect.isgeneratorfunction(target)


class Execution(enum.Enum):
    """Where a handler runs."""

    LOOP = "loop"
    """``async def`` and generator handlers: awaited on the event loop (they must not block it)."""
    THREAD = "thread"
    """Plain ``def`` handlers: in the handler thread pool, so that blocking them blocks nothing else."""
    INLINE = "inline"
    """Plain ``def`` handlers that opted in (``inline=True``): called in the loop's own thread,
    to completion; for tiny pure functions, which a thread hand-off would only slow down."""


def execution_of(func: Callable[..., Any], *, inline: bool = False) -> Execution:
    """Where ``func`` runs; ``inline`` only matters for plain ``def`` handlers."""
    if is_async(func):
        return Execution.LOOP
    return Execution.INLINE if inline else Execution.THREAD


async def call_handler(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a handler of any style in the current thread and await its result if it has to be
    awaited (a plain ``def`` is called inline: see :func:`execution_of` for where handlers run)."""
    result = func(*args, **kwargs)
    if inspect.isawaitable(result):
        return await result
    if inspect.isgenerator(result):
        return await _drive(result)
    return result


@types.coroutine
def _drive(generator: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
    """Await a generator-style handler's generator (it yields futures, as coroutines do)."""
    return (yield from generator)
