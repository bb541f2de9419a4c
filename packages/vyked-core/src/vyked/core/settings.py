"""A host's settings from explicit arguments, ``VYKED_*`` variables and defaults, read once.

- ``registry``: ``VYKED_REGISTRY`` (``host:port,host:port``); default ``127.0.0.1:4500``, the
  registry's own default, which the host logs when it starts;
- ``pubsub``: ``VYKED_PUBSUB`` (a ``redis://``, ``rediss://`` or ``unix://`` URL); default
  none: the embedded transport;
- ``name``: ``VYKED_NAME``; default none;
- ``heartbeat_interval``, ``heartbeat_timeout``: ``VYKED_HEARTBEAT_INTERVAL``,
  ``VYKED_HEARTBEAT_TIMEOUT`` (seconds); default 0.5 and 2;
- ``ronin``: ``VYKED_RONIN`` (``1``/``true``/``yes``/``on`` or ``0``/``false``/``no``/``off``);
  default false. A ronin host serves without a registry, as vyked 2.x's ``Host.ronin``.

An explicit argument wins over its variable, which wins over the default; an empty variable
counts as unset; a malformed one is a :class:`~vyked.core.exceptions.ConfigurationError`
naming it. The cluster secret and TLS (:mod:`vyked.core.security`), the metrics port and the
drain grace (:mod:`vyked.core.service_host`), the log format and level
(:mod:`vyked.core.logs`) and the event loop (:mod:`vyked.core.serving`) are read where they
are used, with the same rules.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from vyked.core.addresses import DEFAULT_REGISTRY_PORT, Address, RegistrySpec, parse_addresses
from vyked.core.exceptions import ConfigurationError
from vyked.core.transport.connection import DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_HEARTBEAT_TIMEOUT

__all__ = [
    "DEFAULT_REGISTRY",
    "HEARTBEAT_INTERVAL_ENV",
    "HEARTBEAT_TIMEOUT_ENV",
    "NAME_ENV",
    "PUBSUB_ENV",
    "REGISTRY_ENV",
    "RONIN_ENV",
    "HostSettings",
    "parse_flag",
    "parse_pubsub",
    "parse_registry",
]

REGISTRY_ENV = "VYKED_REGISTRY"
PUBSUB_ENV = "VYKED_PUBSUB"
NAME_ENV = "VYKED_NAME"
HEARTBEAT_INTERVAL_ENV = "VYKED_HEARTBEAT_INTERVAL"
HEARTBEAT_TIMEOUT_ENV = "VYKED_HEARTBEAT_TIMEOUT"
RONIN_ENV = "VYKED_RONIN"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})

DEFAULT_REGISTRY: tuple[Address, ...] = (("127.0.0.1", DEFAULT_REGISTRY_PORT),)
"""Where a host looks for the registry when nothing says: the registry's own default address."""

PUBSUB_SCHEMES = ("redis://", "rediss://", "unix://")

Source = Literal["argument", "environment", "default"]


@dataclass(frozen=True, slots=True)
class HostSettings:
    """What a :class:`~vyked.core.service_host.ServiceHost` needs that the environment may give."""

    registry: tuple[Address, ...] = DEFAULT_REGISTRY
    registry_source: Source = "default"
    """Where :attr:`registry` came from: the host logs it when it is the default."""
    pubsub: str | None = None
    """A Redis URL for publish-subscribe; None for the embedded transport."""
    name: str = ""
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT
    ronin: bool = False
    """Serve without a registry (vyked 2.x's stand-alone mode); clients of the host cannot
    find other services."""

    @classmethod
    def load(
        cls,
        *,
        registry: RegistrySpec = None,
        registry_port: int = DEFAULT_REGISTRY_PORT,
        pubsub: str | None = None,
        name: str | None = None,
        heartbeat_interval: float | None = None,
        heartbeat_timeout: float | None = None,
        ronin: bool | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> HostSettings:
        """Each argument given (not None; for ``name`` not empty) wins; else its variable in
        ``environ`` (default: :data:`os.environ`); else the default. ``registry_port`` is the
        port of the ``registry`` entries (argument or variable) that give none.

        Raises :class:`~vyked.core.exceptions.ConfigurationError` naming the variable when one
        is malformed (a variable whose argument is given is not read)."""
        env = os.environ if environ is None else environ
        source: Source = "argument"
        if registry is not None:
            addresses = tuple(parse_addresses(registry, registry_port))
        elif raw := _get(env, REGISTRY_ENV):
            addresses, source = parse_registry(raw, registry_port, variable=REGISTRY_ENV), "environment"
        else:
            addresses, source = DEFAULT_REGISTRY, "default"
        if pubsub is None and (raw := _get(env, PUBSUB_ENV)):
            pubsub = parse_pubsub(raw)
        if not name:
            name = _get(env, NAME_ENV)
        if heartbeat_interval is None:
            heartbeat_interval = _seconds(env, HEARTBEAT_INTERVAL_ENV, DEFAULT_HEARTBEAT_INTERVAL)
        if heartbeat_timeout is None:
            heartbeat_timeout = _seconds(env, HEARTBEAT_TIMEOUT_ENV, DEFAULT_HEARTBEAT_TIMEOUT)
        if ronin is None:
            raw = _get(env, RONIN_ENV)
            ronin = parse_flag(raw, variable=RONIN_ENV) if raw else False
        return cls(
            registry=addresses,
            registry_source=source,
            pubsub=pubsub or None,
            name=name,
            heartbeat_interval=heartbeat_interval,
            heartbeat_timeout=heartbeat_timeout,
            ronin=ronin,
        )

    def describe_registry(self) -> str:
        """``127.0.0.1:4500,10.0.0.2:4500``."""
        return ",".join(_format_address(a) for a in self.registry)


def parse_registry(
    text: str, default_port: int = DEFAULT_REGISTRY_PORT, *, variable: str = REGISTRY_ENV
) -> tuple[Address, ...]:
    """``"a:4500,b:4501"``, ``"a"``, ``"[::1]:4500"`` → addresses, strictly: a port must be a
    number from 1 to 65535 and at least one address must be given, else
    :class:`~vyked.core.exceptions.ConfigurationError` naming ``variable``."""
    addresses: list[Address] = []
    for item in text.split(","):
        entry = item.strip()
        if not entry:
            continue
        if entry.startswith("["):  # [IPv6 address]:port
            host, bracket, rest = entry[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                raise ConfigurationError(f"{variable}={text!r}: {entry!r} is not [IPv6 address]:port")
            port_text, has_port = rest[1:], bool(rest)
        elif entry.count(":") == 1:
            host, _, port_text = entry.partition(":")
            has_port = True
        else:  # no colon, or a bare IPv6 address: the default port
            host, port_text, has_port = entry, "", False
        port = default_port
        if has_port:
            port = int(port_text) if port_text.isdigit() else -1
        if not host.strip() or not 0 < port <= 65535:
            raise ConfigurationError(f"{variable}={text!r}: expected HOST:PORT[,HOST:PORT...], got {entry!r}")
        addresses.append((host.strip(), port))
    if not addresses:
        raise ConfigurationError(f"{variable}={text!r}: expected HOST:PORT[,HOST:PORT...]")
    return tuple(addresses)


def _get(env: Mapping[str, str], variable: str) -> str:
    return env.get(variable, "").strip()


def parse_pubsub(raw: str, *, variable: str = PUBSUB_ENV) -> str:
    """A Redis URL for publish-subscribe, checked: ``redis://``, ``rediss://`` or ``unix://``,
    else :class:`~vyked.core.exceptions.ConfigurationError` naming ``variable``."""
    raw = raw.strip()
    if not raw.lower().startswith(PUBSUB_SCHEMES):
        raise ConfigurationError(
            f"{variable}={raw!r}: expected a Redis URL (redis://HOST:PORT/DB, rediss://..., unix://...); "
            "unset it for the embedded transport"
        )
    return raw


def parse_flag(raw: str, *, variable: str) -> bool:
    """``1``, ``true``, ``yes``, ``on`` or ``0``, ``false``, ``no``, ``off`` (any case); anything
    else is a :class:`~vyked.core.exceptions.ConfigurationError` naming ``variable``."""
    text = raw.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigurationError(f"{variable}={raw!r}: expected 1, true, yes, on or 0, false, no, off")


def _seconds(env: Mapping[str, str], variable: str, default: float) -> float:
    raw = _get(env, variable)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise ConfigurationError(f"{variable}={raw!r}: expected a number of seconds, more than 0")
    return value


def env_positive_int(
    variable: str, default: int | None, what: str, environ: Mapping[str, str] | None = None
) -> int | None:
    """``$variable`` as a whole number of ``what`` (1 or more), ``default`` when unset; anything
    else is a :class:`~vyked.core.exceptions.ConfigurationError` naming the variable."""
    raw = _get(os.environ if environ is None else environ, variable)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigurationError(f"{variable}={raw!r}: must be a positive number of {what}")
    return value


def env_seconds_or_zero(variable: str, default: float, environ: Mapping[str, str] | None = None) -> float:
    """``$variable`` as seconds, 0 or more, ``default`` when unset; anything else is a
    :class:`~vyked.core.exceptions.ConfigurationError` naming the variable."""
    raw = _get(os.environ if environ is None else environ, variable)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ConfigurationError(f"{variable}={raw!r}: expected a number of seconds, 0 or more")
    return value


def _format_address(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
