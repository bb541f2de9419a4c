"""User handlers come in three styles; this module makes them callable alike.

``async def`` coroutines, plain ``def`` functions, and the seed's generator style
(``result = yield from sleep(5)``), which Python 3.11 no longer runs as a coroutine by itself:
:func:`as_coroutine_function` wraps such generators with :func:`types.coroutine` so that they
can ``yield from`` coroutines and be awaited.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Generator
from typing import Any


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


async def call_handler(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a handler of any style and await its result if it has to be awaited."""
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
