"""Service contracts: what a service offers, as JSON, from its decorators and type hints.

:func:`describe` gives vyked's own document: for each service its TCP endpoints (parameters
and result as JSON Schema, from the handlers' type hints, through msgspec), the events it
publishes (their fields: the ``@publish`` method's parameters, as the seed's ``return
locals()`` sends them), its HTTP routes, and what its clients call and subscribe to.
:func:`asyncapi` turns that into an AsyncAPI 3.0 document of the requests and events.
``vyked schema`` prints either; nothing here opens a socket, so a running host could serve
them too.

A parameter without a type hint, or with one msgspec cannot describe, is "any value" (``{}``),
the hint's text kept as ``x-python-type``.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from vyked.core.__about__ import __version__
from vyked.core.client import ServiceClient
from vyked.core.endpoints import collect
from vyked.core.service import Service
from vyked.core.versions import major

__all__ = ["SCHEMA_VERSION", "asyncapi", "describe"]

SCHEMA_VERSION = "1"
"""The version of the layout of :func:`describe`'s document."""
REF_TEMPLATE = "#/components/schemas/{name}"

_Slot = Callable[[dict[str, Any]], None]
"""Puts one generated schema where it belongs in the document."""


class _Schemas:
    """Types to describe, described all at once so that shared types become one component."""

    def __init__(self) -> None:
        self._types: list[Any] = []
        self._slots: list[tuple[_Slot, str | None, dict[str, Any]]] = []
        self._count = 0

    def add(self, tp: Any, slot: _Slot, *, inline_as: str | None = None, extra: dict[str, Any] | None = None) -> None:
        """Describe ``tp`` into ``slot``; ``inline_as``: a generated struct, inlined with that title."""
        self._types.append(tp)
        self._slots.append((slot, inline_as, extra or {}))

    def params(self, func: Callable[..., Any], skip_first: bool, slot: _Slot, title: str) -> None:
        """The keyword parameters of ``func`` as one JSON object schema."""
        fields: list[tuple[Any, ...]] = []
        notes: dict[str, str] = {}
        hints = _hints(func)
        parameters = list(inspect.signature(func).parameters.values())[1 if skip_first else 0 :]
        for p in parameters:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            tp = _describable(hints.get(p.name, Any), p.name, notes)
            if p.default is p.empty:
                fields.append((p.name, tp))
            else:
                fields.append((p.name, tp, _default(p.default)))
        self._count += 1
        struct = msgspec.defstruct(f"VykedParams{self._count}", fields, kw_only=True)
        extra: dict[str, Any] = {}
        if notes:
            extra["x-python-types"] = notes
        if any(p.kind is p.VAR_KEYWORD for p in parameters):
            extra["additionalProperties"] = True
        self.add(struct, slot, inline_as=title, extra=extra)

    def result(self, func: Callable[..., Any], slot: _Slot) -> None:
        hint = _hints(func).get("return", Any)
        if inspect.isgeneratorfunction(func):  # yield from style: Generator[Y, S, R] returns R
            args = typing.get_args(hint)
            hint = args[2] if len(args) == 3 else Any
        notes: dict[str, str] = {}
        tp = _describable(hint, "return", notes)
        self.add(tp, slot, extra={"x-python-type": notes["return"]} if notes else None)

    def resolve(self) -> dict[str, Any]:
        """Fill every slot; returns the shared components."""
        schemas, components = msgspec.json.schema_components(self._types, ref_template=REF_TEMPLATE)
        for schema, (slot, inline_as, extra) in zip(schemas, self._slots, strict=True):
            if inline_as is not None:
                name = schema["$ref"].rpartition("/")[2]
                schema = components.pop(name)
                schema["title"] = inline_as
            slot({**schema, **extra})
        return dict(sorted(components.items()))


def describe(services: Sequence[Service]) -> dict[str, Any]:
    """vyked's contract document of ``services`` (see the module docstring and ``docs/cli.md``)."""
    schemas = _Schemas()
    described = [_service(service, schemas) for service in services]
    components = schemas.resolve()
    return {
        "vyked_schema": SCHEMA_VERSION,
        "generator": f"vyked-core {__version__}",
        "services": described,
        "components": {"schemas": components},
    }


def _service(service: Service, schemas: _Schemas) -> dict[str, Any]:
    cls = type(service)
    doc: dict[str, Any] = {
        "name": service.name,
        "version": service.version,
        "kind": service.kind,
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "description": _summary(cls),
    }
    if service.kind == "tcp":
        endpoints, events = _tcp(service, schemas)
        doc["endpoints"], doc["events"] = endpoints, events
    elif service.kind == "http":
        doc["routes"] = _http(service)
    doc["clients"] = [_client(client, schemas) for client in service.clients]
    return doc


def _tcp(service: Service, schemas: _Schemas) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from vyked.tcp.decorators import EndpointSpec, of_kind

    cls = type(service)
    endpoints: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for attr, specs in collect(cls, EndpointSpec, of_kind("api", "publish")).items():
        func = inspect.unwrap(getattr(cls, attr))
        for spec in specs:
            if spec.kind == "api":
                entry: dict[str, Any] = {"name": spec.name, "description": _summary(func), "params": {}, "result": {}}
                schemas.params(func, True, _setter(entry, "params"), f"{service.name}.{spec.name} params")
                schemas.result(func, _setter(entry, "result"))
                entry.update(timeout=spec.timeout, deprecated=spec.deprecated, max_concurrency=spec.max_concurrency)
                if spec.deprecated:
                    entry["replacement"] = spec.replacement_api
                endpoints.append(entry)
            else:
                event: dict[str, Any] = {"name": spec.name, "description": _summary(func), "payload": {}}
                schemas.params(func, True, _setter(event, "payload"), f"{service.name}.{spec.name} event")
                events.append(event)
    return endpoints, events


def _http(service: Service) -> list[dict[str, Any]]:
    from vyked.http.decorators import RouteSpec

    cls = type(service)
    routes: list[dict[str, Any]] = []
    for attr, specs in collect(cls, RouteSpec).items():
        func = inspect.unwrap(getattr(cls, attr))
        for spec in specs:
            routes.append(
                {
                    "handler": attr,
                    "method": "GET" if spec.websocket else spec.method,
                    "paths": list(spec.paths),
                    "websocket": spec.websocket,
                    "required_params": list(spec.required_params),
                    "timeout": spec.timeout,
                    "max_concurrency": spec.max_concurrency,
                    "description": _summary(func),
                }
            )
    return routes


def _client(client: ServiceClient, schemas: _Schemas) -> dict[str, Any]:
    """What a service's client says of its dependency: the requests it sends and the events
    it subscribes to."""
    entry: dict[str, Any] = {"service": client.name, "version": client.version, "kind": client.kind}
    if client.kind != "tcp":
        return entry
    from vyked.tcp.decorators import EndpointSpec, of_kind

    cls = type(client)
    declared = collect(cls, EndpointSpec, of_kind("request", "subscribe", "xsubscribe"))
    entry["requests"] = sorted(s.name for specs in declared.values() for s in specs if s.kind == "request")
    subscriptions: list[dict[str, Any]] = []
    for attr, specs in declared.items():
        func = inspect.unwrap(getattr(cls, attr))
        for spec in specs:
            if spec.kind == "request":
                continue
            sub: dict[str, Any] = {
                "event": spec.name,
                "delivery": "broadcast" if spec.kind == "subscribe" else "exclusive",
                "handler": attr,
            }
            if spec.strategy is not None:
                sub["strategy"] = spec.strategy.value
            schemas.params(func, True, _setter(sub, "payload"), f"{client.name}.{spec.name} event")
            subscriptions.append(sub)
    entry["subscriptions"] = subscriptions
    return entry


# -- AsyncAPI ------------------------------------------------------------------------------------


def asyncapi(services: Sequence[Service], *, title: str | None = None) -> dict[str, Any]:
    """An AsyncAPI 3.0 document of the services' requests (receive, with a reply) and events
    (send), and of the events their clients subscribe to (receive)."""
    doc = describe(services)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for service in doc["services"]:
        name, version = service["name"], service["version"]
        for endpoint in service.get("endpoints", []):
            request_id = _key(f"{name}.requests.{endpoint['name']}")
            reply_id = _key(f"{name}.replies.{endpoint['name']}")
            channels[request_id] = {
                "address": f"{name}/{major(version)}/{endpoint['name']}",
                "title": f"{name}.{endpoint['name']}",
                "description": "A TCP request over vyked's protocol, to an instance found through the registry.",
                "messages": {"request": _message(f"{name}.{endpoint['name']}.request", endpoint["params"], endpoint)},
            }
            channels[reply_id] = {
                "address": None,
                "description": "The answer, on the connection the request came on.",
                "messages": {"reply": _message(f"{name}.{endpoint['name']}.reply", endpoint["result"], {})},
            }
            operations[_key(f"{name}.{endpoint['name']}")] = {
                "action": "receive",
                "channel": _ref("channels", request_id),
                "messages": [_ref("channels", request_id, "messages", "request")],
                "reply": {
                    "channel": _ref("channels", reply_id),
                    "messages": [_ref("channels", reply_id, "messages", "reply")],
                },
                **(
                    {"description": f"Deprecated: use {endpoint.get('replacement') or 'another endpoint'}."}
                    if endpoint.get("deprecated")
                    else {}
                ),
            }
        for event in service.get("events", []):
            channel_id = _event_channel(channels, name, version, event["name"], event["payload"], event)
            operations[_key(f"{name}.publish.{event['name']}")] = {
                "action": "send",
                "channel": _ref("channels", channel_id),
                "messages": [_ref("channels", channel_id, "messages", "event")],
            }
        for client in service.get("clients", []):
            for sub in client.get("subscriptions", []):
                channel_id = _event_channel(
                    channels, client["service"], client["version"], sub["event"], sub["payload"], {}
                )
                operations[_key(f"{name}.on.{client['service']}.{sub['event']}")] = {
                    "action": "receive",
                    "channel": _ref("channels", channel_id),
                    "messages": [_ref("channels", channel_id, "messages", "event")],
                    "description": f"{sub['delivery']} subscription ({sub['handler']})",
                }
    names = [f"{s['name']} {s['version']}" for s in doc["services"]]
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": title or (names[0].partition(" ")[0] if len(names) == 1 else "vyked services"),
            "version": doc["services"][0]["version"] if len(names) == 1 else ", ".join(names) or "0",
            "description": f"Generated by {doc['generator']} from {', '.join(names) or 'no service'}.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": doc["components"],
    }


def _event_channel(
    channels: dict[str, Any], service: str, version: str, event: str, payload: dict[str, Any], source: dict[str, Any]
) -> str:
    channel_id = _key(f"{service}.events.{event}")
    if channel_id not in channels:
        channels[channel_id] = {
            "address": f"vyked:event:{service}:{major(version)}:{event}",
            "title": f"{service}.{event}",
            "description": f"Events of {service} version {major(version)}.x (the Redis channel; the embedded "
            "transport sends them on vyked connections).",
            "messages": {"event": _message(f"{service}.{event}", payload, source)},
        }
    return channel_id


def _message(name: str, payload: dict[str, Any], source: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"name": name, "payload": payload}
    if source.get("description"):
        message["summary"] = source["description"]
    return message


def _ref(*path: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in path)}


def _key(text: str) -> str:
    """An identifier AsyncAPI accepts for a channel or operation."""
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", text)


# -- helpers ---------------------------------------------------------------------------------------


def _setter(target: dict[str, Any], key: str) -> _Slot:
    def put(schema: dict[str, Any]) -> None:
        target[key] = schema

    return put


def _hints(func: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func)
    except Exception:  # a hint naming what cannot be resolved: keep the ones that are types
        return {k: v for k, v in getattr(func, "__annotations__", {}).items() if not isinstance(v, str)}


def _describable(tp: Any, name: str, notes: dict[str, str]) -> Any:
    """``tp`` if msgspec can describe it; else ``Any``, noting the hint in ``notes``."""
    try:
        msgspec.json.schema(tp)
    except Exception:
        notes[name] = tp if isinstance(tp, str) else getattr(tp, "__qualname__", None) or repr(tp)
        return Any
    return tp


def _default(value: Any) -> Any:
    """A struct field's default: the value when JSON can show it, else a factory (no default shown)."""
    try:
        msgspec.json.encode(value)
    except Exception:
        return msgspec.field(default_factory=lambda: value)
    if isinstance(value, list | dict | set | bytearray) and value:
        return msgspec.field(default_factory=lambda: value)
    return value


def _summary(obj: object) -> str:
    """The first paragraph of ``obj``'s docstring, on one line."""
    raw = obj.__doc__ if isinstance(obj, type) or callable(obj) else None  # never a base class's
    doc = inspect.cleandoc(raw) if isinstance(raw, str) else ""
    return " ".join(doc.split("\n\n", 1)[0].split())
