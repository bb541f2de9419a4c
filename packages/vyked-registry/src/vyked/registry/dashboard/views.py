"""What the dashboard shows, as JSON-ready structures built from the registry's state; no I/O.

A service's *state* sums up its instances: ``active`` if one is, else ``pending``, else
``draining``, else ``down``; a service that instances depend on but that no instance of has
ever registered is ``missing``. An edge of the graph goes from a service to a service it
depends on, and is *satisfied* while a live instance of a matching version exists.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable

import msgspec

from vyked.core.protocol.packets import Dependency, InstanceInfo
from vyked.core.versions import best_version
from vyked.registry.state import ACTIVE, DOWN, DRAINING, PENDING, Registration, RegistryState

MISSING = "missing"
STATES = (ACTIVE, PENDING, DRAINING, DOWN)
"""Instance states, best first: a service takes the best of its instances' states."""


class InstanceView(msgspec.Struct):
    """One instance: :class:`~vyked.core.protocol.packets.InstanceStatus` and its dependencies."""

    instance: InstanceInfo
    state: str
    waiting_for: list[str]
    dependencies: list[Dependency]
    registered_at: float
    uptime: float
    downtime: float
    last_heartbeat: float | None
    registry: str


class ServiceView(msgspec.Struct):
    service: str
    state: str
    versions: list[str]
    kinds: list[str]
    counts: dict[str, int]
    """Instances by state (every state present, 0 included)."""
    dependencies: list[Dependency]
    dependents: list[str]
    instances: list[InstanceView]


class Node(msgspec.Struct):
    service: str
    state: str
    counts: dict[str, int]


class Edge(msgspec.Struct):
    source: str
    """The service that depends..."""
    target: str
    """...on this one,"""
    version: str
    """...in this version."""
    satisfied: bool


class Graph(msgspec.Struct):
    nodes: list[Node]
    edges: list[Edge]


class Overview(msgspec.Struct):
    """Everything the page draws; sent as the ``snapshot`` event."""

    registry: str
    address: str
    time: float
    """Unix time of the snapshot."""
    heartbeat_interval: float
    heartbeat_timeout: float
    services: list[ServiceView]
    graph: Graph


class Heartbeats(msgspec.Struct):
    time: float
    heartbeats: dict[str, float]
    """Node id -> seconds since its host was last heard from (instances held by this registry)."""


LastSeen = Callable[[Hashable], float | None]


def instance_views(state: RegistryState, last_seen: LastSeen) -> list[InstanceView]:
    views = []
    for reg in state.known():
        s = state.status_of(reg, last_seen)
        views.append(
            InstanceView(
                instance=s.instance,
                state=s.state,
                waiting_for=s.waiting_for,
                dependencies=list(reg.dependencies),
                registered_at=s.registered_at,
                uptime=s.uptime,
                downtime=s.downtime,
                last_heartbeat=s.last_heartbeat,
                registry=s.registry,
            )
        )
    return views


def service_views(instances: Iterable[InstanceView]) -> list[ServiceView]:
    by_service: dict[str, list[InstanceView]] = {}
    for view in instances:
        by_service.setdefault(view.instance.service, []).append(view)
    dependents: dict[str, set[str]] = {}
    for name, views in by_service.items():
        for view in views:
            for dep in view.dependencies:
                dependents.setdefault(dep.service, set()).add(name)
    services = []
    for name in sorted(by_service.keys() | dependents.keys()):
        views = by_service.get(name, [])
        counts = _counts(views)
        services.append(
            ServiceView(
                service=name,
                state=_summary(counts),
                versions=sorted({v.instance.version for v in views}),
                kinds=sorted({v.instance.kind for v in views}),
                counts=counts,
                dependencies=_unique(d for v in views for d in v.dependencies),
                dependents=sorted(dependents.get(name, ())),
                instances=views,
            )
        )
    return services


def graph(services: list[ServiceView]) -> Graph:
    live_versions = {
        s.service: [v.instance.version for v in s.instances if v.state in (ACTIVE, PENDING)] for s in services
    }
    nodes = [Node(s.service, s.state, s.counts) for s in services]
    edges = [
        Edge(s.service, dep.service, dep.version, _satisfied(dep, live_versions.get(dep.service, [])))
        for s in services
        for dep in s.dependencies
    ]
    return Graph(nodes, edges)


def overview(
    state: RegistryState,
    last_seen: LastSeen,
    *,
    address: str,
    now: float,
    heartbeat_interval: float,
    heartbeat_timeout: float,
) -> Overview:
    services = service_views(instance_views(state, last_seen))
    return Overview(
        registry=state.registry_id,
        address=address,
        time=now,
        heartbeat_interval=heartbeat_interval,
        heartbeat_timeout=heartbeat_timeout,
        services=services,
        graph=graph(services),
    )


def heartbeats(registrations: Iterable[Registration], last_seen: LastSeen, now: float) -> Heartbeats:
    ages = {}
    for reg in registrations:
        if reg.owner is not None:
            age = last_seen(reg.owner)
            if age is not None:
                ages[reg.instance.node_id] = round(age, 3)
    return Heartbeats(time=now, heartbeats=ages)


def _satisfied(dependency: Dependency, live_versions: list[str]) -> bool:
    return best_version(dependency.version, live_versions) is not None


def _counts(views: list[InstanceView]) -> dict[str, int]:
    counts = dict.fromkeys(STATES, 0)
    for view in views:
        counts[view.state] = counts.get(view.state, 0) + 1
    return counts


def _summary(counts: dict[str, int]) -> str:
    return next((state for state in STATES if counts.get(state)), MISSING)


def _unique(dependencies: Iterable[Dependency]) -> list[Dependency]:
    seen = {(d.service, d.version): d for d in dependencies}
    return [seen[key] for key in sorted(seen)]
