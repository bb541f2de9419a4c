"""What every ``vyked`` command prints, and its exit codes.

Results go to stdout: for people (indented, coloured on a terminal) by default, as one line
of JSON with ``--json``. Errors go to stderr as one line, ``vyked CMD: message``; with
``--json`` they are also printed to stdout as ``{"error": {"type", "code", "message"}}`` so
that scripts read one document whatever happened.
"""

from __future__ import annotations

import enum
import json
import sys
import traceback
from typing import Any, NoReturn

import typer

from vyked.core.exceptions import (
    AuthenticationFailed,
    ConfigurationError,
    ConnectionLost,
    DefinitionError,
    InvalidParams,
    MissingExtra,
    PublishError,
    RemoteError,
    RequestTimeout,
    UnknownEndpoint,
    VykedError,
)

__all__ = ["ExitCode", "Output", "error_type", "exit_code_of"]


class ExitCode(enum.IntEnum):
    """The exit status of every ``vyked`` command (``docs/cli.md``)."""

    OK = 0
    REMOTE_ERROR = 1
    """The service answered with an error (its handler raised; unknown endpoint; bad params).
    ``vyked run``: a service failed (cannot listen, raised while starting)."""
    USAGE = 2
    """Bad arguments, JSON or ``VYKED_*`` setting; a missing extra or distribution; not trusted
    (cluster secret, TLS); nothing to serve."""
    UNAVAILABLE = 3
    """No registry answered, or no instance of the service could take the request: it did not run."""
    TIMEOUT = 4
    """No answer in time, or the connection died with the request in flight: it may have run."""


def exit_code_of(exc: VykedError) -> ExitCode:
    """The exit code that stands for ``exc``."""
    if isinstance(exc, RemoteError | UnknownEndpoint | InvalidParams):
        return ExitCode.REMOTE_ERROR
    if isinstance(exc, ConfigurationError | MissingExtra | DefinitionError | PublishError | AuthenticationFailed):
        return ExitCode.USAGE
    if isinstance(exc, RequestTimeout) or (isinstance(exc, ConnectionLost) and not exc.not_executed):
        return ExitCode.TIMEOUT
    return ExitCode.UNAVAILABLE


def error_type(exc: BaseException) -> str:
    """The remote exception's type for a :class:`RemoteError`, else the error's class name."""
    if isinstance(exc, RemoteError):
        return exc.remote_type
    return type(exc).__name__


def error_message(exc: BaseException) -> str:
    if isinstance(exc, RemoteError):
        return exc.message
    return str(exc)


class Output:
    """Printing for one command run."""

    def __init__(self, command: str, json_output: bool = False) -> None:
        self.command = command
        self.json = json_output

    def result(self, value: Any) -> None:
        """``value`` (JSON-compatible) on stdout."""
        if self.json:
            print(json.dumps(value, separators=(",", ":"), ensure_ascii=False), flush=True)
        elif sys.stdout.isatty():
            from rich.console import Console

            Console().print_json(data=value)
        else:
            print(json.dumps(value, indent=2, ensure_ascii=False), flush=True)

    def line(self, message: str) -> None:
        """A result for people, one line on stdout."""
        print(message, flush=True)

    def fail(
        self,
        code: ExitCode,
        message: str,
        *,
        kind: str = "",
        error_code: str = "",
        detail: str | None = None,
        **extra: Any,
    ) -> NoReturn:
        """Print ``message`` and exit with ``code``; with ``--json`` the error document holds
        ``detail`` (default: ``message``) as its message."""
        print(f"vyked {self.command}: {message}", file=sys.stderr, flush=True)
        if self.json:
            error: dict[str, Any] = {
                "type": kind or code.name.lower(),
                "message": message if detail is None else detail,
                "exit_code": int(code),
            }
            if error_code:
                error["code"] = error_code
            error.update(extra)
            print(json.dumps({"error": error}, ensure_ascii=False), flush=True)
        raise typer.Exit(int(code))

    def crashed(self, exc: BaseException, doing: str) -> NoReturn:
        """User code raised while ``doing``: its traceback (from here down) and exit 1."""
        print(f"vyked {self.command}: {doing} raised {type(exc).__name__}:", file=sys.stderr, flush=True)
        traceback.print_exception(exc, file=sys.stderr)
        raise typer.Exit(int(ExitCode.REMOTE_ERROR))

    def fail_with(self, exc: VykedError, context: str = "") -> NoReturn:
        """Print ``exc`` (its remote type and message for a remote error) and exit with its code."""
        kind, message = error_type(exc), error_message(exc)
        extra: dict[str, Any] = {}
        if isinstance(exc, RemoteError) and exc.remote_args:
            extra["args"] = exc.remote_args
        text = f"{kind}: {message}" if message else kind
        self.fail(exit_code_of(exc), context + text, kind=kind, error_code=exc.code, detail=message, **extra)
