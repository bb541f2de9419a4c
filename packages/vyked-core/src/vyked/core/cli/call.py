"""``vyked call SERVICE[:VERSION].ENDPOINT [JSON]``: one request to a TCP endpoint, found
through the registry, as a ``@request`` method of a ``TCPServiceClient`` would send it."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer

from vyked.core.cli.options import (
    JsonOption,
    RegistryOption,
    VerboseOption,
    host_settings,
    import_needing_tcp,
    parse_json_object,
    parse_target,
    quiet_logging,
)
from vyked.core.cli.output import ExitCode, Output
from vyked.core.exceptions import ServiceUnavailable, VykedError
from vyked.core.service_host import ServiceHost
from vyked.core.serving import run as run_on_loop
from vyked.core.settings import HostSettings
from vyked.core.versions import version_key

DEFAULT_TIMEOUT = 30.0
"""Seconds for the whole call (registry included), as a ``@request`` waits by default."""


def call(
    target: Annotated[
        str,
        typer.Argument(
            metavar="SERVICE[:VERSION].ENDPOINT",
            help="The endpoint; without VERSION, the highest version registered.",
            show_default=False,
        ),
    ],
    params: Annotated[
        str,
        typer.Argument(
            metavar="JSON",
            help="The parameters, a JSON object ('-': read it from stdin).",
            show_default=False,
        ),
    ] = "{}",
    timeout: Annotated[
        float, typer.Option("--timeout", "-t", min=0.001, help="Seconds to wait for the answer, all included.")
    ] = DEFAULT_TIMEOUT,
    registry: RegistryOption = None,
    json_output: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Call a TCP endpoint through the registry and print its result as JSON.

    Exit codes: 0 answered; 1 the service answered with an error (its type and message are
    printed); 2 bad arguments, JSON or settings; 3 no registry or no instance of the service
    (the request did not run); 4 no answer within --timeout, or the connection was lost (it
    may have run).
    """
    out = Output("call", json_output)
    quiet_logging(verbose)
    service, version, endpoint = parse_target(out, target, "ENDPOINT", "IdentityService:1.create")
    kwargs = parse_json_object(out, params, "the parameters", "are", "the endpoint's parameters")
    try:
        settings = host_settings(registry)
    except VykedError as exc:
        out.fail_with(exc)
    import_needing_tcp(out, "vyked.tcp")
    try:
        result = run_on_loop(_call(settings, service, version, endpoint, kwargs, timeout))
    except TimeoutError:
        out.fail(ExitCode.TIMEOUT, f"{target}: no answer within {timeout:g} s", kind="RequestTimeout")
    except VykedError as exc:
        out.fail_with(exc, f"{target}: ")
    out.result(result)


def pick_version(host: ServiceHost, service: str, kind: str = "tcp") -> str:
    """The highest version of ``service`` the host knows a live ``kind`` instance of."""
    versions = {i.version for i in host.directory.instances(service) if i.kind == kind}
    if not versions:
        raise ServiceUnavailable(f"no {kind} instance of {service!r} is registered")
    return max(versions, key=version_key)


async def _call(
    settings: HostSettings, service: str, version: str | None, endpoint: str, params: dict[str, Any], timeout: float
) -> Any:
    from vyked.tcp import TCPServiceClient

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    host = _client_host(settings)
    try:
        async with asyncio.timeout_at(deadline):
            await host.start()
            await host.watch(service)
            client = TCPServiceClient(service, version or pick_version(host, service))
            host.bind_client(client)
            return await client.send_request(endpoint, params, timeout=max(0.001, deadline - loop.time()))
    finally:
        await host.stop()


def _client_host(settings: HostSettings) -> ServiceHost:
    """A host with no service, for a command that calls or publishes and exits."""
    return ServiceHost(
        list(settings.registry),
        pubsub=settings.pubsub,
        name=settings.name or "vyked-cli",
        heartbeat_interval=settings.heartbeat_interval,
        heartbeat_timeout=settings.heartbeat_timeout,
    )
