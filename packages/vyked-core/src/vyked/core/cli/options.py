"""Options several ``vyked`` commands share, and the settings they make."""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
from types import ModuleType
from typing import Annotated, Any

import typer

from vyked.core.cli.output import ExitCode, Output
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


TCP_MISSING = "needs vyked-tcp: pip install vyked-tcp"


def import_needing_tcp(out: Output, module: str) -> ModuleType:
    """Import ``module``, which needs vyked-tcp; without it, exit 2 saying what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if (exc.name or "").startswith("vyked.tcp"):
            out.fail(ExitCode.USAGE, TCP_MISSING)
        raise


def parse_target(out: Output, target: str, last: str, example: str) -> tuple[str, str | None, str]:
    """``SERVICE[:VERSION].LAST`` → (service, version or None, last part); exit 2 with an
    ``example`` when it is not that."""
    head, dot, name = target.rpartition(".")
    service, colon, version = head.partition(":")
    if not dot or not name.strip() or not service.strip() or (colon and not version.strip()):
        out.fail(ExitCode.USAGE, f"{target!r}: expected SERVICE[:VERSION].{last}, e.g. {example}")
    return service.strip(), version.strip() or None, name.strip()


def parse_json_object(out: Output, text: str, subject: str, verb: str, contents: str) -> dict[str, Any]:
    """A JSON object from an argument (``-``: read from stdin); exit 2 saying ``subject``
    ``verb`` not JSON, or must be an object of ``contents``."""
    if text.strip() == "-":
        text = sys.stdin.read()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        out.fail(ExitCode.USAGE, f"{subject} {verb} not JSON: {exc}")
    if not isinstance(value, dict):
        out.fail(ExitCode.USAGE, f"{subject} must be a JSON object of {contents}, not {text.strip()!r}")
    return value
