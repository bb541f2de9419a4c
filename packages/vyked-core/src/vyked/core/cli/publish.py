"""``vyked publish SERVICE[:VERSION].EVENT JSON``: publish an event as the service would."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Annotated, Any, TypeVar

import typer

from vyked.core.cli.options import (
    JsonOption,
    PubsubOption,
    RegistryOption,
    VerboseOption,
    host_settings,
    import_needing_tcp,
    parse_json_object,
    parse_target,
    quiet_logging,
)
from vyked.core.cli.output import Output
from vyked.core.cli.status import fetch_any
from vyked.core.exceptions import ServiceUnavailable, VykedError
from vyked.core.security import Trust
from vyked.core.serving import run as run_on_loop
from vyked.core.settings import HostSettings
from vyked.core.versions import version_key

T = TypeVar("T")


def publish(
    target: Annotated[
        str,
        typer.Argument(
            metavar="SERVICE[:VERSION].EVENT",
            help="The event; without VERSION, the highest version of SERVICE registered (events are scoped by "
            "the major version).",
            show_default=False,
        ),
    ],
    payload: Annotated[
        str,
        typer.Argument(
            metavar="JSON", help="The event's fields, a JSON object ('-': read it from stdin).", show_default=False
        ),
    ],
    pubsub: PubsubOption = None,
    registry: RegistryOption = None,
    wait: Annotated[
        float,
        typer.Option(
            "--wait",
            min=0.0,
            help="Embedded transport: seconds at most to wait for subscribing hosts to connect (it stops waiting "
            "once none has come for 0.5 s, or once --subscribers have).",
        ),
    ] = 5.0,
    subscribers: Annotated[
        int | None,
        typer.Option(
            "--subscribers",
            min=0,
            help="Embedded transport: publish once this many subscribing hosts have subscribed; if they have not "
            "within --wait, publish nothing and exit 3.",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            "-t",
            min=0.001,
            help="Seconds to wait for the event to leave: written to Redis, or (embedded) exclusive deliveries "
            "acknowledged.",
        ),
    ] = 10.0,
    bind: Annotated[
        str,
        typer.Option(
            "--bind",
            metavar="ADDRESS",
            help="Embedded transport: the address the publishing instance listens on for subscribers "
            "(0.0.0.0: advertised as the address this machine reaches the registry from).",
        ),
    ] = "0.0.0.0",
    json_output: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Publish an event as SERVICE's @publish method would.

    Over Redis (VYKED_PUBSUB or --pubsub) the event is written to Redis. With the embedded
    transport a short-lived instance of SERVICE registers, subscribing hosts connect to it, the
    event is sent to them, and the instance stops: hosts that have not subscribed within --wait
    miss a broadcast event. Exit codes: 0 published; 2 bad arguments, JSON or settings; 3 no
    registry, Redis unreachable, or fewer --subscribers than asked (nothing published); 4
    exclusive deliveries not acknowledged within --timeout.
    """
    out = Output("publish", json_output)
    quiet_logging(verbose)
    service, version, event = parse_target(out, target, "EVENT", "IdentityService:1.password_changed")
    fields = parse_json_object(out, payload, "the payload", "is", "the event's fields")
    try:
        settings = host_settings(registry, pubsub)
    except VykedError as exc:
        out.fail_with(exc)
    import_needing_tcp(out, "vyked.core.cli.publishing")
    from vyked.core.cli import publishing  # imported just above: typed here

    try:
        chosen = version or run_on_loop(_registered_version(settings, service))
        if settings.pubsub:
            coro = publishing.publish_redis(settings, service, chosen, event, fields, timeout)
        else:
            coro = publishing.publish_embedded(
                settings, service, chosen, event, fields, wait=wait, wanted=subscribers, timeout=timeout, bind=bind
            )
        done = run_on_loop(_bounded(coro, wait + timeout + 10.0))
    except VykedError as exc:
        out.fail_with(exc, f"{service}.{event}: ")
    report = {
        "service": service,
        "version": chosen,
        "event": event,
        "transport": done.transport,
        "subscribers": done.subscribers,
    }
    if json_output:
        out.result({"published": True, **report})
    elif done.subscribers is None:
        out.line(f"published {service}:{chosen}.{event} to Redis")
    else:
        reached = f"{done.subscribers} subscribing host{'s' if done.subscribers != 1 else ''}"
        note = "" if done.subscribers else " (no subscriber: the event reached nobody)"
        out.line(f"published {service}:{chosen}.{event} to {reached}{note}")


async def _registered_version(settings: HostSettings, service: str) -> str:
    """The highest version of ``service`` among the live TCP instances the registry lists."""
    report = await fetch_any(settings.registry, Trust.configure())
    versions = {
        s.instance.version
        for s in report.instances
        if s.instance.service == service and s.instance.kind == "tcp" and s.state in ("active", "pending")
    }
    if not versions:
        raise ServiceUnavailable(
            f"no tcp instance of {service!r} is registered to take the version from: give it, {service}:VERSION.EVENT"
        )
    return max(versions, key=version_key)


async def _bounded(coro: Coroutine[Any, Any, T], seconds: float) -> T:
    """A last bound on the whole command, should Redis or the registry never answer."""
    try:
        async with asyncio.timeout(seconds):
            return await coro
    except TimeoutError:
        raise ServiceUnavailable(f"nothing answered within {seconds:g} s") from None
