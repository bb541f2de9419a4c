"""``vyked-registry`` / ``python -m vyked.registry``: run the registry, or ask one for status.

::

    vyked-registry [--host H] [--port P] [--redis URL] [--dashboard-port N] [--log-level L] ...
    vyked-registry status [--registry HOST:PORT] [--json]

Every option defaults to a ``VYKED_*`` variable (:mod:`vyked.registry.settings`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec

from vyked.core.addresses import parse_addresses
from vyked.core.exceptions import (
    ConfigurationError,
    ConnectionLost,
    ListenError,
    MissingExtra,
    RegistryUnavailable,
    VykedError,
)
from vyked.core.logs import configure_logging
from vyked.core.security import Trust
from vyked.core.status import fetch_status, format_table
from vyked.core.transport.connection import DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_HEARTBEAT_TIMEOUT
from vyked.registry import settings
from vyked.registry.replication import DEFAULT_LEASE_TTL
from vyked.registry.server import DEFAULT_MAX_CONNECTIONS, Registry

EXTRA_OPTIONS = {"redis": "--redis: ", "aiohttp": "--dashboard-port: ", "prometheus_client": "--metrics-port: "}
"""The option that needs the optional dependency a MissingExtra names."""


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The registry's options; each defaults to its ``VYKED_*`` variable (see
    :mod:`vyked.registry.settings`), read from ``environ`` (default: the process's). A malformed
    variable raises :class:`~vyked.core.exceptions.ConfigurationError`."""
    env = settings.Environment(environ)
    parser = argparse.ArgumentParser(
        prog="vyked-registry",
        description="Run the vyked service registry. 'vyked-registry status --help' for the status command. "
        "Every option defaults to the VYKED_* variable named in its help; options given here win.",
    )

    def option(flag: str, variable: str, convert: Callable[[str], Any], default: Any, help: str, **kw: Any) -> None:
        value = env.get(variable, convert, default)
        shown = "" if default is None else f"default: {default}; "
        parser.add_argument(flag, type=_checked(convert), default=value, help=f"{help} ({shown}env {variable})", **kw)

    option("--host", "VYKED_REGISTRY_HOST", settings.text, "127.0.0.1", "address to listen on")
    option("--port", "VYKED_REGISTRY_PORT", settings.port, 4500, "port to listen on")
    option(
        "--redis",
        "VYKED_REGISTRY_REDIS",
        settings.text,
        None,
        "keep state in Redis (redis://HOST:PORT/DB) and share it with the other registries using it",
        metavar="URL",
    )
    option(
        "--heartbeat-interval",
        "VYKED_HEARTBEAT_INTERVAL",
        settings.seconds,
        DEFAULT_HEARTBEAT_INTERVAL,
        "seconds of silence before a host is pinged",
        metavar="SECONDS",
    )
    option(
        "--heartbeat-timeout",
        "VYKED_HEARTBEAT_TIMEOUT",
        settings.seconds,
        DEFAULT_HEARTBEAT_TIMEOUT,
        "seconds of silence after which a host is dropped",
        metavar="SECONDS",
    )
    option(
        "--lease-ttl",
        "VYKED_LEASE_TTL",
        settings.seconds,
        DEFAULT_LEASE_TTL,
        "with --redis: seconds an instance outlives its registry",
        metavar="SECONDS",
    )
    add_trust_arguments(parser)
    parser.add_argument(
        "--require-identity",
        action=argparse.BooleanOptionalAction,
        default=env.get("VYKED_REQUIRE_IDENTITY", settings.boolean, False),
        help="with mutual TLS: accept a registration only for a service its client certificate names "
        "(SAN URI vyked://<Service>, or the CN) (default: no; env VYKED_REQUIRE_IDENTITY)",
    )
    option(
        "--max-connections",
        "VYKED_MAX_CONNECTIONS",
        settings.positive_int,
        DEFAULT_MAX_CONNECTIONS,
        "hosts connected at once; more are refused",
        metavar="N",
    )
    option(
        "--dashboard-port",
        "VYKED_DASHBOARD_PORT",
        settings.port,
        None,
        "serve the web dashboard and its JSON API on this port (0: any free port); "
        "needs pip install 'vyked-registry[dashboard]'; it has no authentication",
        metavar="PORT",
    )
    option(
        "--dashboard-host",
        "VYKED_DASHBOARD_HOST",
        settings.text,
        "127.0.0.1",
        "address the dashboard listens on; anything but loopback exposes the cluster's topology",
        metavar="HOST",
    )
    option(
        "--metrics-port",
        "VYKED_METRICS_PORT",
        settings.port,
        None,
        "serve /metrics (Prometheus), /livez and /readyz on this port (0: any free port); "
        "needs pip install 'vyked-registry[metrics]'",
        metavar="PORT",
    )
    option(
        "--metrics-host", "VYKED_METRICS_HOST", settings.text, "0.0.0.0", "address of the metrics port", metavar="HOST"
    )
    option(
        "--log-format",
        "VYKED_LOG_FORMAT",
        settings.log_format,
        "text",
        "log lines as text or JSON",
        choices=("text", "json"),
    )
    option(
        "--log-level",
        "VYKED_LOG_LEVEL",
        settings.log_level,
        "INFO",
        "logging level",
        choices=settings.LOG_LEVELS,
    )
    return parser


def build_status_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    env = settings.Environment(environ)
    parser = argparse.ArgumentParser(prog="vyked-registry status", description="Show what a registry knows.")
    parser.add_argument(
        "--registry",
        default=env.get("VYKED_REGISTRY", settings.text, "127.0.0.1:4500"),
        help="HOST:PORT of the registry (default: 127.0.0.1:4500; env VYKED_REGISTRY)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_trust_arguments(parser)
    return parser


def _checked(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """``convert`` as an argparse type, whose message argparse shows."""

    def checked(raw: str) -> Any:
        try:
            return convert(raw)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    checked.__name__ = convert.__name__
    return checked


def add_trust_arguments(parser: argparse.ArgumentParser) -> None:
    """The cluster secret and TLS options; each defaults to its VYKED_* variable."""
    parser.add_argument(
        "--secret-file",
        metavar="PATH",
        help="file holding the cluster secret (default: VYKED_SECRET, VYKED_SECRET_FILE)",
    )
    parser.add_argument("--tls-cert", metavar="PEM", help="certificate chain (default: VYKED_TLS_CERT)")
    parser.add_argument("--tls-key", metavar="PEM", help="private key (default: VYKED_TLS_KEY)")
    parser.add_argument(
        "--tls-ca", metavar="PEM", help="CA that peers' certificates must chain to: mutual TLS (default: VYKED_TLS_CA)"
    )


def trust_from(args: argparse.Namespace) -> Trust:
    return Trust.configure(
        secret_file=args.secret_file, tls_cert=args.tls_cert, tls_key=args.tls_key, tls_ca=args.tls_ca
    )


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["status"]:
        return status_main(args_list[1:])
    try:
        parser = build_parser()
    except ConfigurationError as exc:  # a malformed VYKED_* variable
        print(f"vyked-registry: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(args_list)
    configure_logging(args.log_level, args.log_format, force=True)
    try:
        Registry(
            args.host,
            args.port,
            redis_url=args.redis,
            heartbeat_interval=args.heartbeat_interval,
            heartbeat_timeout=args.heartbeat_timeout,
            lease_ttl=args.lease_ttl,
            trust=trust_from(args),
            require_identity=args.require_identity,
            max_connections=args.max_connections,
            dashboard_port=args.dashboard_port,
            dashboard_host=args.dashboard_host,
            metrics_port=args.metrics_port,
            metrics_host=args.metrics_host,
        ).start()
    except MissingExtra as exc:  # --redis or --dashboard-port without their extra, or VYKED_LOOP=uvloop without uvloop
        option = EXTRA_OPTIONS.get((exc.name or "").partition(".")[0], "")
        print(f"vyked-registry: {option}{exc}", file=sys.stderr)
        return 2
    except (ListenError, RegistryUnavailable, ConfigurationError) as exc:  # address in use; Redis down; bad TLS
        print(f"vyked-registry: {exc}", file=sys.stderr)
        return 1
    return 0


# -- status ------------------------------------------------------------------------------------


def status_main(argv: Sequence[str]) -> int:
    try:
        parser = build_status_parser()
    except ConfigurationError as exc:
        print(f"vyked-registry status: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    logging.getLogger("vyked").setLevel(logging.ERROR)  # the one-line message below says it all
    ((host, port),) = parse_addresses(args.registry)
    try:
        report = asyncio.run(fetch_status(host, port, trust=trust_from(args)))
    except (ConnectionLost, TimeoutError) as exc:
        print(f"vyked-registry status: cannot reach the registry at {host}:{port}: {exc}", file=sys.stderr)
        return 1
    except VykedError as exc:  # not trusted (secret, TLS), or a malformed setting
        print(f"vyked-registry status: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(msgspec.to_builtins(report), indent=2))
    else:
        print(format_table(report))
    return 0
