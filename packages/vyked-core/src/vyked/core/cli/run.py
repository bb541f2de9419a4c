"""``vyked run MODULE[:ATTR]...``: host the services found, like ``Host.run()``."""

from __future__ import annotations

import importlib.util
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from vyked.core.cli.loading import LoadError, Target, load_services, parse_target
from vyked.core.cli.options import PubsubOption, RegistryOption, host_settings
from vyked.core.cli.output import ExitCode, Output, exit_code_of
from vyked.core.exceptions import ListenError, VykedError
from vyked.core.logs import configure_logging
from vyked.core.optional import require
from vyked.core.service_host import ServiceHost
from vyked.core.serving import run_until_signalled

logger = logging.getLogger("vyked.cli")

RELOAD_STOP_TIMEOUT = 15
"""Seconds a reloading parent lets the old process drain (SIGINT) before SIGKILL: the default
drain grace (10 s) and some."""


def run(
    targets: Annotated[
        list[str],
        typer.Argument(
            metavar="MODULE[:ATTR]...",
            help="What to serve: a module (pkg.mod) or file (svc.py), optionally :ATTR naming a service "
            "class, instance, factory or list. Without ATTR: every service instance in the module, and every "
            "service class defined there that takes no arguments.",
            show_default=False,
        ),
    ],
    registry: RegistryOption = None,
    pubsub: PubsubOption = None,
    name: Annotated[
        str | None, typer.Option("--name", help="The host's name in logs (default: VYKED_NAME).", show_default=False)
    ] = None,
    reload: Annotated[
        bool, typer.Option("--reload", help="Restart when a .py file changes (development; needs vyked-core[reload]).")
    ] = False,
    reload_dirs: Annotated[
        list[Path] | None,
        typer.Option(
            "--reload-dir",
            metavar="DIR",
            help="With --reload: watch DIR (repeatable; default: the targets' directories or packages).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Host the services found until SIGINT or SIGTERM, then drain and stop.

    Settings come from the environment (VYKED_REGISTRY, VYKED_PUBSUB, VYKED_NAME, VYKED_SECRET,
    VYKED_TLS_*, VYKED_METRICS_PORT, VYKED_DRAIN_GRACE, VYKED_LOG_FORMAT, VYKED_LOG_LEVEL...),
    the options above winning. The event loop is uvloop when installed (VYKED_LOOP).
    """
    out = Output("run")
    try:
        configure_logging()
        settings = host_settings(registry, pubsub, name)
        if reload:
            _run_reloading(out, targets, registry, pubsub, name, reload_dirs or [])
            return
        host = ServiceHost(
            list(settings.registry) if settings.registry_source != "default" else None,
            pubsub=settings.pubsub,
            name=settings.name,
            heartbeat_interval=settings.heartbeat_interval,
            heartbeat_timeout=settings.heartbeat_timeout,
        )
    except LoadError as exc:  # --reload: a target that is not MODULE[:ATTR]
        out.fail(ExitCode.USAGE, str(exc))
    except VykedError as exc:  # a malformed option or VYKED_* variable; no watchfiles for --reload
        out.fail_with(exc)
    try:
        services = load_services(targets)
    except LoadError as exc:
        out.fail(ExitCode.USAGE, str(exc))
    except VykedError as exc:  # a missing extra, a definition error
        out.fail_with(exc)
    except Exception as exc:  # the module's own code
        out.crashed(exc, f"loading {' '.join(targets)}")
    for service in services:
        host.attach(service)
    logger.info(
        "hosting %s",
        ", ".join(f"{s.kind} {s.name} v{s.version} ({type(s).__module__}.{type(s).__qualname__})" for s in services),
    )
    try:
        run_until_signalled(host.start, host.stop)
    except ListenError as exc:
        out.fail(ExitCode.REMOTE_ERROR, f"{type(exc).__name__}: {exc}")
    except VykedError as exc:  # no registry (3), not trusted or misconfigured (2)
        code = exit_code_of(exc)
        out.fail(code, f"{type(exc).__name__}: {exc}")


def _run_reloading(
    out: Output, targets: list[str], registry: str | None, pubsub: str | None, name: str | None, dirs: list[Path]
) -> None:
    """Run ``vyked run`` (without ``--reload``) in a child process, restarted whenever a
    ``.py`` file changes under the watched directories."""
    from vyked.core.cli.app import RELOAD_EXTRA

    watchfiles = require("watchfiles", RELOAD_EXTRA)
    parsed = [parse_target(t) for t in targets]  # a typo fails here, not in a restart loop
    watched = [d.resolve() for d in dirs] or _default_watch_dirs(parsed)
    missing = [str(d) for d in watched if not d.is_dir()]
    if missing:
        out.fail(ExitCode.USAGE, f"--reload-dir: no such directory: {', '.join(missing)}")
    command = [sys.executable, "-m", "vyked.core.cli", "run", *targets]
    for option, value in (("--registry", registry), ("--pubsub", pubsub), ("--name", name)):
        if value is not None:
            command += [option, value]
    logger.info("reloading on changes to .py files in %s", ", ".join(map(str, watched)))

    def changed(changes: set[tuple[object, str]]) -> None:
        paths = sorted({os.path.relpath(path) for _, path in changes})
        logger.info("changed: %s; restarting", ", ".join(paths[:5]) + (" ..." if len(paths) > 5 else ""))

    watchfiles.run_process(
        *watched,
        target=shlex.join(command),
        target_type="command",
        callback=changed,
        watch_filter=watchfiles.PythonFilter(),
        sigint_timeout=RELOAD_STOP_TIMEOUT,
    )


def _default_watch_dirs(targets: list[Target]) -> list[Path]:
    """Each file target's directory; each module target's top-level package (or its file's
    directory), found without importing it; else the current directory."""
    found: list[Path] = []
    for target in targets:
        directory: Path | None = None
        if target.path is not None:
            directory = target.path.parent
        else:
            top = target.module.partition(".")[0]
            cwd = os.getcwd()
            if cwd not in sys.path:
                sys.path.insert(0, cwd)
            spec = importlib.util.find_spec(top)
            if spec is not None and spec.submodule_search_locations:
                directory = Path(next(iter(spec.submodule_search_locations)))
            elif spec is not None and spec.origin:
                directory = Path(spec.origin).parent
        if directory is not None and directory.resolve() not in found:
            found.append(directory.resolve())
    return found or [Path.cwd()]
