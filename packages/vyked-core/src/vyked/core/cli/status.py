"""``vyked status``: what the registry knows, as ``vyked-registry status`` prints it."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Annotated

import msgspec
import typer

from vyked.core.addresses import Address
from vyked.core.cli.options import JsonOption, RegistryOption, VerboseOption, host_settings, quiet_logging
from vyked.core.cli.output import Output
from vyked.core.exceptions import AuthenticationFailed, ConnectionLost, RegistryUnavailable, VykedError
from vyked.core.protocol.packets import StatusReport
from vyked.core.security import Trust
from vyked.core.serving import run as run_on_loop
from vyked.core.status import STATUS_HEADERS, fetch_status, format_table, status_footer, status_rows


def status(
    registry: RegistryOption = None,
    timeout: Annotated[
        float, typer.Option("--timeout", "-t", min=0.001, help="Seconds to wait for each registry.")
    ] = 5.0,
    json_output: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Show every instance the registry knows: live, draining or recently gone.

    With several registries (HOST:PORT,HOST:PORT) the first that answers is asked. --json
    prints the status_report document (docs/protocol.md). Exit codes: 0 answered; 2 bad
    settings or not trusted (secret, TLS); 3 no registry answered.
    """
    out = Output("status", json_output)
    quiet_logging(verbose)
    try:
        settings = host_settings(registry)
        trust = Trust.configure()
    except VykedError as exc:
        out.fail_with(exc)
    try:
        report = run_on_loop(fetch_any(settings.registry, trust, timeout))
    except VykedError as exc:
        hint = " (the default: set VYKED_REGISTRY or --registry)" if settings.registry_source == "default" else ""
        out.fail_with(exc, hint and f"{settings.describe_registry()}{hint}: ")
    if json_output:
        print(json.dumps(msgspec.to_builtins(report)), flush=True)
    elif sys.stdout.isatty():
        print_table(report)
    else:
        print(format_table(report), flush=True)


async def fetch_any(addresses: Sequence[Address], trust: Trust, timeout: float = 5.0) -> StatusReport:
    """The status report of the first registry of ``addresses`` that answers; raises
    :class:`RegistryUnavailable` when none does (or the first refusal: not trusted)."""
    errors: list[str] = []
    for host, port in addresses:
        try:
            return await fetch_status(host, port, timeout, trust)
        except AuthenticationFailed:
            raise
        except (ConnectionLost, RegistryUnavailable, TimeoutError, OSError) as exc:
            errors.append(f"{host}:{port}: {exc or type(exc).__name__}")
    raise RegistryUnavailable("no registry answered: " + "; ".join(errors))


def print_table(report: StatusReport) -> None:
    """The report as a rich table, for a terminal."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    styles = {"active": "green", "pending": "yellow", "draining": "cyan", "down": "red"}
    table = Table(*STATUS_HEADERS, caption=status_footer(report), box=None, header_style="bold")
    for row, instance in zip(status_rows(report), report.instances, strict=True):
        cells = [Text(cell) for cell in row]  # what hosts registered is text, never markup
        cells[5].stylize(styles.get(instance.state, ""))
        table.add_row(*cells)
    Console().print(table)
