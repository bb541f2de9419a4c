"""``vyked-registry`` / ``python -m vyked.registry``: run the registry, or ask one for status.

::

    vyked-registry [--host H] [--port P] [--redis URL] [--log-level L]
    vyked-registry status [--registry HOST:PORT] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Sequence

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
from vyked.core.protocol.packets import InstanceStatus, Packet, StatusQuery, StatusReport
from vyked.core.security import Trust
from vyked.core.transport import Connection, open_connection
from vyked.core.transport.connection import DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_HEARTBEAT_TIMEOUT
from vyked.registry.replication import DEFAULT_LEASE_TTL
from vyked.registry.server import DEFAULT_MAX_CONNECTIONS, Registry


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vyked-registry",
        description="Run the vyked service registry. 'vyked-registry status --help' for the status command.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=4500, help="port to listen on (default: 4500)")
    parser.add_argument(
        "--redis",
        metavar="URL",
        help="keep state in Redis (redis://HOST:PORT/DB) and share it with the other registries using it",
    )
    parser.add_argument(
        "--heartbeat-interval",
        type=float,
        default=DEFAULT_HEARTBEAT_INTERVAL,
        help=f"seconds of silence before a host is pinged (default: {DEFAULT_HEARTBEAT_INTERVAL})",
    )
    parser.add_argument(
        "--heartbeat-timeout",
        type=float,
        default=DEFAULT_HEARTBEAT_TIMEOUT,
        help=f"seconds of silence after which a host is dropped (default: {DEFAULT_HEARTBEAT_TIMEOUT})",
    )
    parser.add_argument(
        "--lease-ttl",
        type=float,
        default=DEFAULT_LEASE_TTL,
        help=f"with --redis: seconds an instance outlives its registry (default: {DEFAULT_LEASE_TTL})",
    )
    add_trust_arguments(parser)
    parser.add_argument(
        "--require-identity",
        action="store_true",
        help="with mutual TLS: accept a registration only for a service its client certificate names "
        "(SAN URI vyked://<Service>, or the CN)",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=DEFAULT_MAX_CONNECTIONS,
        help=f"hosts connected at once; more are refused (default: {DEFAULT_MAX_CONNECTIONS})",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        help="logging level (default: INFO)",
    )
    return parser


def build_status_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vyked-registry status", description="Show what a registry knows.")
    parser.add_argument(
        "--registry", default="127.0.0.1:4500", help="HOST:PORT of the registry (default: 127.0.0.1:4500)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_trust_arguments(parser)
    return parser


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
    args = build_parser().parse_args(args_list)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
        ).start()
    except MissingExtra as exc:  # --redis without the redis extra, or VYKED_LOOP=uvloop without uvloop
        option = "--redis: " if (exc.name or "").partition(".")[0] == "redis" else ""
        print(f"vyked-registry: {option}{exc}", file=sys.stderr)
        return 2
    except (ListenError, RegistryUnavailable, ConfigurationError) as exc:  # address in use; Redis down; bad TLS
        print(f"vyked-registry: {exc}", file=sys.stderr)
        return 1
    return 0


# -- status ------------------------------------------------------------------------------------


class _Answer:
    def __init__(self) -> None:
        self.future: asyncio.Future[StatusReport] = asyncio.get_running_loop().create_future()

    def packet_received(self, conn: Connection, packet: Packet) -> None:
        if isinstance(packet, StatusReport) and not self.future.done():
            self.future.set_result(packet)

    def connection_lost(self, conn: Connection, exc: BaseException | None) -> None:
        if not self.future.done():
            self.future.set_exception(ConnectionLost("the registry closed the connection"))


async def fetch_status(host: str, port: int, timeout: float = 5.0, trust: Trust | None = None) -> StatusReport:
    """Ask the registry at ``host:port`` for its :class:`StatusReport`."""
    answer = _Answer()
    trust = trust or Trust.configure()
    try:
        conn = await open_connection(
            host,
            port,
            answer,
            role="status",
            timeout=timeout,
            secret=trust.secret,
            ssl_context=trust.connect_context() if trust.tls else None,
        )
    except BaseException:
        answer.future.cancel()  # nobody will wait for it
        raise
    try:
        conn.send(StatusQuery())
        return await asyncio.wait_for(answer.future, timeout)
    finally:
        conn.close()


def status_main(argv: Sequence[str]) -> int:
    args = build_status_parser().parse_args(argv)
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


def format_table(report: StatusReport) -> str:
    headers = ("SERVICE", "VERSION", "TYPE", "ADDRESS", "NODE", "STATE", "UPTIME", "DOWNTIME", "HEARTBEAT")
    rows = [headers] + [_row(s) for s in report.instances]
    widths = [max(len(row[i]) for row in rows) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.append(f"registry {report.registry}: {len(report.instances)} instance(s) at {time.strftime('%H:%M:%S')}")
    return "\n".join(lines)


def _row(s: InstanceStatus) -> tuple[str, ...]:
    i = s.instance
    state = s.state + (f" (waiting for {', '.join(s.waiting_for)})" if s.waiting_for else "")
    heartbeat = "-" if s.last_heartbeat is None else f"{s.last_heartbeat:.1f}s ago"
    return (i.service, i.version, i.kind, f"{i.host}:{i.port}", i.node_id[:12], state,
            _duration(s.uptime), _duration(s.downtime), heartbeat)  # fmt: skip


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
