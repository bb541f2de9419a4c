"""The ``vyked`` console script: :func:`main` checks for the ``[cli]`` extra, then runs the
typer application :func:`build_app` puts together from one module per command."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from vyked.core.exceptions import MissingExtra
from vyked.core.optional import require

if TYPE_CHECKING:
    import typer

CLI_EXTRA = "vyked-core[cli]"
"""What brings typer and rich."""
RELOAD_EXTRA = "vyked-core[reload]"
"""What brings watchfiles, for ``vyked run --reload``."""

HELP = """vyked: run services, call them, publish events, show the registry's status and the
services' contracts.

Settings come from VYKED_* variables (VYKED_REGISTRY, VYKED_PUBSUB, VYKED_SECRET...; see
docs/configuration.md); options given here win. Exit codes: 0 ok, 1 the service answered with an
error, 2 usage or configuration error, 3 unavailable (nothing ran), 4 no answer in time (it may
have run)."""


def build_app() -> typer.Typer:
    """The typer application, every command registered."""
    import typer

    from vyked.core.__about__ import __version__
    from vyked.core.cli import call, publish, run, schema, status

    app = typer.Typer(
        name="vyked",
        help=HELP,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode="markdown",
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    def show_version(value: bool) -> None:
        if value:
            print(f"vyked {__version__}")
            raise typer.Exit(0)

    @app.callback()
    def _main(
        version: bool = typer.Option(
            False, "--version", callback=show_version, is_eager=True, help="Print the version and exit."
        ),
    ) -> None:
        pass

    app.command("run", no_args_is_help=True)(run.run)
    app.command("call", no_args_is_help=True)(call.call)
    app.command("publish", no_args_is_help=True)(publish.publish)
    app.command("status")(status.status)
    app.command("schema", no_args_is_help=True)(schema.schema)
    return app


def main() -> None:
    """The ``vyked`` console script."""
    try:
        require("typer", CLI_EXTRA)
        require("rich", CLI_EXTRA)
    except MissingExtra as exc:
        print(f"vyked: the vyked command needs {exc.name!r}: pip install '{CLI_EXTRA}'", file=sys.stderr)
        raise SystemExit(2) from None
    build_app()(prog_name="vyked")
