"""``VYKED_*`` environment variables as defaults of the ``vyked-registry`` options.

An option given on the command line wins over its variable, which wins over the built-in
default. An empty variable counts as unset; a malformed one is a
:class:`~vyked.core.exceptions.ConfigurationError` naming it.

==========================  ==================================
option                      variable
==========================  ==================================
``--host``                  ``VYKED_REGISTRY_HOST``
``--port``                  ``VYKED_REGISTRY_PORT``
``--redis``                 ``VYKED_REGISTRY_REDIS``
``--heartbeat-interval``    ``VYKED_HEARTBEAT_INTERVAL``
``--heartbeat-timeout``     ``VYKED_HEARTBEAT_TIMEOUT``
``--lease-ttl``             ``VYKED_LEASE_TTL``
``--require-identity``      ``VYKED_REQUIRE_IDENTITY`` (``1``/``true``/``yes``/``on`` or ``0``/...)
``--max-connections``       ``VYKED_MAX_CONNECTIONS``
``--dashboard-port``        ``VYKED_DASHBOARD_PORT``
``--dashboard-host``        ``VYKED_DASHBOARD_HOST``
``--metrics-port``          ``VYKED_METRICS_PORT``
``--metrics-host``          ``VYKED_METRICS_HOST``
``--log-format``            ``VYKED_LOG_FORMAT``
``--log-level``             ``VYKED_LOG_LEVEL``
``status --registry``       ``VYKED_REGISTRY``
``--secret-file``, ``--tls-*``  ``VYKED_SECRET``/``_SECRET_FILE``, ``VYKED_TLS_*`` (:mod:`vyked.core.security`)
==========================  ==================================
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TypeVar

from vyked.core.exceptions import ConfigurationError

T = TypeVar("T")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class Environment:
    """Reads ``VYKED_*`` variables (from ``environ``, default :data:`os.environ`) as option defaults."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ

    def get(self, variable: str, convert: Callable[[str], T], default: T) -> T:
        raw = self.environ.get(variable, "").strip()
        if not raw:
            return default
        try:
            return convert(raw)
        except ValueError as exc:
            raise ConfigurationError(f"{variable}={raw!r}: {exc}") from None


def port(raw: str) -> int:
    value = _int(raw)
    if not 0 <= value <= 65535:
        raise ValueError("expected a port number, 0 to 65535")
    return value


def positive_int(raw: str) -> int:
    value = _int(raw)
    if value < 1:
        raise ValueError("expected a whole number, 1 or more")
    return value


def seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise ValueError("expected a number of seconds, more than 0")
    return value


def boolean(raw: str) -> bool:
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ValueError("expected 1, true, yes, on or 0, false, no, off")


def log_level(raw: str) -> str:
    if raw.upper() not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}")
    return raw.upper()


def log_format(raw: str) -> str:
    if raw.lower() not in ("text", "json"):
        raise ValueError("expected text or json")
    return raw.lower()


def text(raw: str) -> str:
    return raw


def _int(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError("expected a whole number") from None
