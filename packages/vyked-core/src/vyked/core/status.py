"""Asking a registry what it knows: the ``status`` query of ``vyked status`` and
``vyked-registry status``, and the table they print.

:func:`fetch_status` opens one connection, sends ``status`` and returns the
:class:`~vyked.core.protocol.packets.StatusReport`; :func:`status_rows` gives the table's
cells, which :func:`format_table` lays out as plain text.
"""

from __future__ import annotations

import asyncio
import time

from vyked.core.exceptions import ConnectionLost
from vyked.core.protocol.packets import InstanceStatus, Packet, StatusQuery, StatusReport
from vyked.core.security import Trust
from vyked.core.transport import Connection, open_connection

__all__ = ["STATUS_HEADERS", "duration", "fetch_status", "format_table", "status_footer", "status_rows"]

STATUS_HEADERS = ("SERVICE", "VERSION", "TYPE", "ADDRESS", "NODE", "STATE", "UPTIME", "DOWNTIME", "HEARTBEAT")


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
    """Ask the registry at ``host:port`` for its :class:`StatusReport` (``trust``: the secret
    and TLS to connect with; default: the ``VYKED_SECRET``/``VYKED_TLS_*`` variables)."""
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


def status_rows(report: StatusReport) -> list[tuple[str, ...]]:
    """One row of :data:`STATUS_HEADERS` cells per instance."""
    return [_row(s) for s in report.instances]


def status_footer(report: StatusReport) -> str:
    return f"registry {report.registry}: {len(report.instances)} instance(s) at {time.strftime('%H:%M:%S')}"


def format_table(report: StatusReport) -> str:
    """The report as a plain-text table, with a last line naming the registry."""
    rows = [STATUS_HEADERS, *status_rows(report)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(STATUS_HEADERS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.append(status_footer(report))
    return "\n".join(lines)


def _row(s: InstanceStatus) -> tuple[str, ...]:
    i = s.instance
    state = s.state + (f" (waiting for {', '.join(s.waiting_for)})" if s.waiting_for else "")
    heartbeat = "-" if s.last_heartbeat is None else f"{s.last_heartbeat:.1f}s ago"
    return (i.service, i.version, i.kind, f"{i.host}:{i.port}", i.node_id[:12], state,
            duration(s.uptime), duration(s.downtime), heartbeat)  # fmt: skip


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
