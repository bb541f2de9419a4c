"""Options several ``vyked`` commands share, and the settings they make."""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer

from vyked.core.logs import LOG_LEVEL_ENV, configure_logging
from vyked.core.settings import HostSettings, parse_pubsub, parse_registry

__all__ = ["JsonOption", "PubsubOption", "RegistryOption", "VerboseOption", "host_settings", "quiet_logging"]

RegistryOption = Annotated[
    str | None,
    typer.Option(
        "--registry",
        "-r",
        metavar="HOST:PORT[,HOST:PORT]",
        help="The registry (default: VYKED_REGISTRY, else 127.0.0.1:4500).",
        show_default=False,
    ),
]
PubsubOption = Annotated[
    str | None,
    typer.Option(
        "--pubsub",
        metavar="URL",
        help="Redis URL for publish-subscribe (default: VYKED_PUBSUB, else the embedded transport).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of output for people.")]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Log what vyked does (INFO) on stderr.")]


def host_settings(registry: str | None = None, pubsub: str | None = None, name: str | None = None) -> HostSettings:
    """The host settings: these options first, then the ``VYKED_*`` variables, then defaults.
    A malformed option or variable raises :class:`~vyked.core.exceptions.ConfigurationError`."""
    return HostSettings.load(
        registry=parse_registry(registry, variable="--registry") if registry is not None else None,
        pubsub=parse_pubsub(pubsub, variable="--pubsub") if pubsub is not None else None,
        name=name,
    )


def quiet_logging(verbose: bool) -> None:
    """Logging for the commands that talk to a cluster and exit: what they print says it all,
    so vyked's own log shows errors only, unless ``--verbose`` or ``VYKED_LOG_LEVEL`` asks."""
    if verbose:
        level: str | int = logging.INFO
    elif os.environ.get(LOG_LEVEL_ENV, "").strip():
        level = os.environ[LOG_LEVEL_ENV]
    else:
        level = logging.ERROR
    configure_logging(level)
