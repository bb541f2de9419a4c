"""``vyked schema MODULE[:ATTR]...``: the services' contracts as JSON, or as AsyncAPI 3.0."""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from vyked.core.cli.loading import LoadError, load_services
from vyked.core.cli.output import ExitCode, Output
from vyked.core.exceptions import VykedError


class Format(enum.StrEnum):
    json = "json"
    asyncapi = "asyncapi"


def schema(
    targets: Annotated[
        list[str],
        typer.Argument(
            metavar="MODULE[:ATTR]...",
            help="The services, named as for 'vyked run'; nothing is started.",
            show_default=False,
        ),
    ],
    format: Annotated[
        Format,
        typer.Option(
            "--format",
            "-f",
            help="json: vyked's document (endpoints, events, routes, clients); asyncapi: an AsyncAPI 3.0 document "
            "of the requests and events.",
        ),
    ] = Format.json,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", metavar="FILE", help="Write the document to FILE instead of stdout.", show_default=False
        ),
    ] = None,
    title: Annotated[
        str | None, typer.Option("--title", help="AsyncAPI: the document's title.", show_default=False)
    ] = None,
) -> None:
    """Describe the services' endpoints, events and routes as JSON (JSON Schema from the type hints).

    Exit codes: 0 written; 2 a target cannot be loaded or holds no service.
    """
    from vyked.core.contracts import asyncapi, describe

    out = Output("schema")
    try:
        services = load_services(targets)
    except LoadError as exc:
        out.fail(ExitCode.USAGE, str(exc))
    except VykedError as exc:  # a service class vyked refuses (DefinitionError), a missing extra
        out.fail_with(exc)
    except Exception as exc:  # the module's own code
        out.crashed(exc, f"loading {' '.join(targets)}")
    document: dict[str, Any] = asyncapi(services, title=title) if format is Format.asyncapi else describe(services)
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if output is None:
        print(text, end="", flush=True)
    else:
        output.write_text(text)
