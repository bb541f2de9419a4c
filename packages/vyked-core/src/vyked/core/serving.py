"""Serving until the process is told to stop: the body of every vyked server process.

:func:`run_until_signalled` (behind ``Host.run()`` and ``vyked-registry``) runs on uvloop when
it is installed (``pip install 'vyked-core[uvloop]'``), and on asyncio's own loop otherwise;
``VYKED_LOOP`` (``auto``, ``asyncio`` or ``uvloop``) overrides the choice.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from vyked.core.exceptions import ConfigurationError
from vyked.core.logs import configure_logging
from vyked.core.optional import require

logger = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = ["configure_logging", "loop_factory", "loop_name", "run", "run_until_signalled", "serve_until_signalled"]

LOOP_ENV = "VYKED_LOOP"
"""The environment variable that picks the event loop: ``auto`` (the default: uvloop if it is
installed), ``asyncio`` or ``uvloop``."""
LOOPS = ("auto", "asyncio", "uvloop")
UVLOOP_EXTRA = "vyked-core[uvloop]"

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory(choice: str | None = None, *, variable: str = LOOP_ENV) -> LoopFactory | None:
    """The factory of the event loop ``choice`` (default: ``$VYKED_LOOP``, else ``auto``) names:
    ``uvloop.new_event_loop``, or None for asyncio's default loop.

    Raises :class:`~vyked.core.exceptions.MissingExtra` for ``uvloop`` when uvloop is not
    installed, and :class:`~vyked.core.exceptions.ConfigurationError` for an unknown name (the
    message names ``variable``, where the choice came from).
    """
    if choice is None:
        choice = os.environ.get(LOOP_ENV, "")
    choice = choice.strip().lower() or "auto"
    if choice not in LOOPS:
        raise ConfigurationError(f"{variable}={choice!r}: expected one of {', '.join(LOOPS)}")
    if choice == "asyncio" or (choice == "auto" and importlib.util.find_spec("uvloop") is None):
        return None
    uvloop = require("uvloop", UVLOOP_EXTRA)
    factory: LoopFactory = uvloop.new_event_loop
    return factory


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """``uvloop 0.21.0`` or ``asyncio (_UnixSelectorEventLoop)``: what the logs say runs."""
    module = type(loop).__module__.partition(".")[0]
    if module == "asyncio":
        return f"asyncio ({type(loop).__name__})"
    version = getattr(importlib.import_module(module), "__version__", "")
    return f"{module} {version}".strip()


def run(main: Coroutine[Any, Any, T], *, loop: str | None = None) -> T:
    """``asyncio.run(main)`` on the event loop :func:`loop_factory` picks (``loop`` or
    ``$VYKED_LOOP``)."""
    try:
        factory = loop_factory(loop)
    except BaseException:
        main.close()  # never awaited, and nothing to warn about
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def run_until_signalled(
    start: Callable[[], Awaitable[Any]], stop: Callable[[], Awaitable[Any]], *, loop: str | None = None
) -> None:
    """Run ``start``, serve until SIGINT or SIGTERM, run ``stop``: a server process's whole life,
    on the event loop :func:`loop_factory` picks."""
    run(serve_until_signalled(start, stop), loop=loop)


async def serve_until_signalled(start: Callable[[], Awaitable[Any]], stop: Callable[[], Awaitable[Any]]) -> None:
    """Run ``start``, wait for SIGINT or SIGTERM, run ``stop``."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    try:
        await start()
        logger.info("serving on the %s event loop", loop_name(loop))
        await stopping.wait()
        logger.info("stopping")
    finally:
        await stop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
