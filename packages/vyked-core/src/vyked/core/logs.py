"""Logging helpers shared by every vyked package: the log setup of server processes
(``VYKED_LOG_FORMAT``, ``VYKED_LOG_LEVEL``), JSON lines, and flood-proof logging.

:func:`configure_logging` is what ``Host.run()`` calls (and ``vyked-registry``): text lines by
default, or with ``VYKED_LOG_FORMAT=json`` one JSON object per line (:class:`JsonFormatter`):
``time``, ``level``, ``logger``, ``message``, the host's ``service`` and ``node_id``, and
``trace_id`` / ``span_id`` while an OpenTelemetry span is current (when ``opentelemetry-api``
is installed; never imported otherwise).
"""

from __future__ import annotations

import contextvars
import datetime
import importlib
import importlib.util
import logging
import os
import sys
from typing import Any

import msgspec

from vyked.core.exceptions import ConfigurationError

__all__ = [
    "LOG_FORMAT_ENV",
    "LOG_LEVEL_ENV",
    "JsonFormatter",
    "configure_logging",
    "log_count",
    "log_format",
    "log_level",
    "set_identity",
]

LOG_EVERY = 1000
LOG_FORMAT_ENV = "VYKED_LOG_FORMAT"
"""``text`` (the default) or ``json``."""
LOG_LEVEL_ENV = "VYKED_LOG_LEVEL"
"""A level name (``DEBUG``, ``INFO``...) or number; default ``INFO``."""
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_count(logger: logging.Logger, count: int, message: str, *args: Any, level: int = logging.WARNING) -> None:
    """Log ``message`` for the first of a series of like events and then every 1000th, so that
    a flood (events dropped by a full buffer) is visible without drowning the log. ``count``
    is the series' running total, including this one."""
    if count == 1 or count % LOG_EVERY == 0:
        logger.log(level, message, *args)


# -- settings -----------------------------------------------------------------------------------


def log_level(value: int | str | None = None, *, variable: str = LOG_LEVEL_ENV) -> int:
    """The level ``value`` names (default: ``$VYKED_LOG_LEVEL``, else INFO); an unknown name is
    a :class:`~vyked.core.exceptions.ConfigurationError` naming ``variable``."""
    if isinstance(value, int):
        return value
    if value is None:
        value = os.environ.get(LOG_LEVEL_ENV, "")
    text = value.strip().upper() or "INFO"
    if text.isdigit():
        return int(text)
    level = logging.getLevelNamesMapping().get(text)
    if level is None:
        raise ConfigurationError(
            f"{variable}={value!r}: expected a level name (DEBUG, INFO, WARNING, ERROR, CRITICAL) or number"
        )
    return level


def log_format(value: str | None = None, *, variable: str = LOG_FORMAT_ENV) -> str:
    """``text`` or ``json``: ``value``, else ``$VYKED_LOG_FORMAT``, else ``text``; anything else
    is a :class:`~vyked.core.exceptions.ConfigurationError` naming ``variable``."""
    if value is None:
        value = os.environ.get(LOG_FORMAT_ENV, "")
    text = value.strip().lower() or "text"
    if text not in FORMATS:
        raise ConfigurationError(f"{variable}={value!r}: expected one of {', '.join(FORMATS)}")
    return text


def configure_logging(
    level: int | str | None = None, fmt: str | None = None, *, force: bool = False, stream: Any = None
) -> None:
    """Log to stderr (or ``stream``) at ``level`` (default ``$VYKED_LOG_LEVEL``, else INFO) in
    ``fmt`` (``text`` or ``json``; default ``$VYKED_LOG_FORMAT``, else ``text``), unless the
    application configured logging itself (the root logger has handlers; ``force`` replaces
    them). Bad values raise :class:`~vyked.core.exceptions.ConfigurationError` naming the
    variable, even when the application's own configuration stays."""
    chosen_level = log_level(level)
    chosen_format = log_format(fmt)
    root = logging.getLogger()
    if root.handlers and not force:
        return
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if chosen_format == "json" else logging.Formatter(TEXT_FORMAT))
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(chosen_level)


# -- who is logging -------------------------------------------------------------------------------

Identity = tuple[str, str]
"""``(service, node_id)``."""

_identity: contextvars.ContextVar[Identity | None] = contextvars.ContextVar("vyked_log_identity", default=None)
_process_identity: list[Identity] = []


def set_identity(service: str, node_id: str) -> contextvars.Token[Identity | None]:
    """Name the host whose code logs from here on: in the current context (the tasks it
    starts inherit it) and, for the first host of the process, for every line that carries
    no context of its own (protocol callbacks, other threads). ``ServiceHost.start`` calls it."""
    identity = (service, node_id)
    if not _process_identity:
        _process_identity.append(identity)
    return _identity.set(identity)


def forget_identity(node_id: str) -> None:
    """The host with ``node_id`` stopped: its lines no longer name it by default."""
    if _process_identity and _process_identity[0][1] == node_id:
        _process_identity.clear()


def current_identity() -> Identity | None:
    identity = _identity.get()
    if identity is None and _process_identity:
        identity = _process_identity[0]
    return identity


# -- JSON lines -----------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (UTC, ISO 8601, milliseconds), ``level``,
    ``logger``, ``message``, ``service`` and ``node_id`` (of the host, once one has started),
    ``trace_id`` and ``span_id`` (hex, while an OpenTelemetry span is current), ``exception``
    and ``stack`` when the record has them."""

    def __init__(self) -> None:
        super().__init__()
        self._encode = msgspec.json.Encoder().encode
        self._trace: Any = None
        if importlib.util.find_spec("opentelemetry") is not None:
            try:
                self._trace = importlib.import_module("opentelemetry.trace")
            except ImportError:
                self._trace = None

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        line: dict[str, Any] = {
            "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        identity = current_identity()
        if identity is not None:
            line["service"], line["node_id"] = identity
        if self._trace is not None:
            context = self._trace.get_current_span().get_span_context()
            if context.is_valid:
                line["trace_id"] = format(context.trace_id, "032x")
                line["span_id"] = format(context.span_id, "016x")
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return self._encode(line).decode()
